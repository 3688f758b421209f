"""The one class that touches aiosqlite's private API (bot/db/sqlite.py): what it relies on still
holds for the pinned releases, and its saver stores exactly what langgraph's own does."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from bot.db.sqlite import OneHop, OneHopSqliteSaver, OneStatement, Writer, transaction


async def test_one_hop_runs_on_aiosqlites_thread_with_its_connection(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "a.db") as conn:
        hop = OneHop(conn)

        def where(db: sqlite3.Connection) -> tuple[str, int]:
            return threading.current_thread().name, db.execute("SELECT 41 + 1").fetchone()[0]

        thread, answer = await hop(where)
        assert answer == 42 and thread != threading.current_thread().name


async def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "a.db") as conn:
        hop = OneHop(conn)
        await hop(transaction(lambda db: db.execute("CREATE TABLE t (x INTEGER)")))

        def half(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await hop(transaction(half))
        assert await hop(lambda db: db.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 0
        assert not await hop(lambda db: db.in_transaction)


class State(TypedDict, total=False):
    answer: str
    after: str


def graph() -> StateGraph:
    g = StateGraph(State)
    g.add_node("ask", lambda s: {"answer": interrupt("ok?")})
    g.add_node("after", lambda s: {"after": s["answer"] + "!"})
    g.add_edge(START, "ask")
    g.add_edge("ask", "after")
    g.add_edge("after", END)
    return g


async def run_twice(saver: AsyncSqliteSaver) -> tuple[list[str], dict[str, str]]:
    await saver.setup()
    app = graph().compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "t"}}
    first = await app.ainvoke({}, cfg)
    ids = [i.id for i in first["__interrupt__"]]
    done = await app.ainvoke(Command(resume={ids[0]: "yes"}), cfg)
    return ids, done


async def test_the_one_hop_saver_matches_langgraphs_async_saver(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "ours.db") as ours_conn:
        ours = await run_twice(OneHopSqliteSaver(ours_conn))
        state = (
            await graph()
            .compile(checkpointer=OneHopSqliteSaver(ours_conn))
            .aget_state({"configurable": {"thread_id": "t"}})
        )
    async with aiosqlite.connect(tmp_path / "theirs.db") as theirs_conn:
        theirs = await run_twice(AsyncSqliteSaver(theirs_conn))
    assert ours[1] == theirs[1]  # (interrupt ids hash the checkpoint id: they differ)
    assert ours[1] == {"answer": "yes", "after": "yes!"}
    assert not state.next and not state.interrupts


async def test_the_one_hop_saver_reads_what_langgraphs_saver_wrote(tmp_path: Path) -> None:
    """Same tables, same rows: a file written by AsyncSqliteSaver resumes under ours."""
    async with aiosqlite.connect(tmp_path / "a.db") as conn:
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        cfg = {"configurable": {"thread_id": "t"}}
        first = await graph().compile(checkpointer=saver).ainvoke({}, cfg)
        ours = graph().compile(checkpointer=OneHopSqliteSaver(conn))
        iid = first["__interrupt__"][0].id
        assert [i.id for i in (await ours.aget_state(cfg)).interrupts] == [iid]
        done = await ours.ainvoke(Command(resume={iid: "yes"}), cfg)
        assert done["after"] == "yes!"


async def test_concurrent_threads_share_the_one_hop_saver(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "a.db") as conn:
        saver = OneHopSqliteSaver(conn)
        await saver.setup()
        app = graph().compile(checkpointer=saver)
        cfgs = [{"configurable": {"thread_id": f"t{n}"}} for n in range(30)]
        firsts = await asyncio.gather(*(app.ainvoke({}, c) for c in cfgs))
        dones = await asyncio.gather(
            *(
                app.ainvoke(Command(resume={f["__interrupt__"][0].id: str(n)}), c)
                for n, (f, c) in enumerate(zip(firsts, cfgs, strict=True))
            )
        )
        assert [d["after"] for d in dones] == [f"{n}!" for n in range(30)]


class Counted(sqlite3.Connection):
    """Counts the COMMITs SQLite runs (the fsyncs the Writer is there to share)."""

    commits = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.set_trace_callback(self._seen)

    def _seen(self, sql: str) -> None:
        if sql.strip().upper() == "COMMIT":
            Counted.commits += 1


async def test_writes_queued_together_share_one_commit_and_fail_alone(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "a.db", factory=Counted) as conn:
        writer = Writer(conn, asyncio.Lock())
        await writer(lambda db: db.execute("CREATE TABLE t (x INTEGER UNIQUE)"))

        def put(x: int) -> Callable[[sqlite3.Connection], int]:
            def fn(db: sqlite3.Connection) -> int:
                db.execute("INSERT INTO t VALUES (?)", (x,))
                if x == 3:
                    db.execute("INSERT INTO t VALUES (?)", (x,))  # breaks UNIQUE: only this one
                return x

            return fn

        before = Counted.commits
        results = await asyncio.gather(*(writer(put(x)) for x in range(6)), return_exceptions=True)
        assert results[:3] == [0, 1, 2] and results[4:] == [4, 5]
        assert isinstance(results[3], sqlite3.IntegrityError)
        assert Counted.commits - before == 1  # six callers, one fsync
        rows = await OneHop(conn)(lambda db: db.execute("SELECT x FROM t ORDER BY x").fetchall())
        assert [r[0] for r in rows] == [0, 1, 2, 4, 5]  # the failed one left nothing behind
        assert not await OneHop(conn)(lambda db: db.in_transaction)


async def test_a_caller_returns_only_once_its_write_is_committed(tmp_path: Path) -> None:
    """Whatever a caller does next (send a message, resume a graph) never runs ahead of the
    disk: a second connection already sees the row when the call returns."""
    async with aiosqlite.connect(tmp_path / "a.db") as conn:
        writer = Writer(conn, asyncio.Lock())
        await writer(lambda db: db.execute("CREATE TABLE t (x INTEGER)"))
        seen = []
        for x in range(3):
            await asyncio.gather(
                writer(lambda db, x=x: db.execute("INSERT INTO t VALUES (?)", (x,))),
                writer(lambda db, x=x: db.execute("INSERT INTO t VALUES (?)", (x + 10,))),
            )
            other = sqlite3.connect(tmp_path / "a.db")
            try:
                seen.append(other.execute("SELECT COUNT(*) FROM t").fetchone()[0])
            finally:
                other.close()
        assert seen == [2, 4, 6]


async def test_the_savers_writes_join_the_group_without_committing_it(tmp_path: Path) -> None:
    """langgraph's SqliteSaver commits after each write; under the Writer that commit is the
    group's, so 30 threads paused at once cost far fewer commits than writes."""
    async with aiosqlite.connect(tmp_path / "a.db", factory=Counted) as conn:
        saver = OneHopSqliteSaver(conn)
        await saver.setup()
        app = graph().compile(checkpointer=saver)
        cfgs = [{"configurable": {"thread_id": f"t{n}"}} for n in range(30)]
        before = Counted.commits
        firsts = await asyncio.gather(*(app.ainvoke({}, c) for c in cfgs))
        commits = Counted.commits - before
        assert all(f["__interrupt__"] for f in firsts)
        assert commits < 30  # one write per thread at least, in far fewer commits
        for c in cfgs:  # and every checkpoint is there
            assert (await app.aget_state(c)).interrupts


class Traced(sqlite3.Connection):
    """Keeps every statement SQLite runs on this connection."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: list[str] = []
        self.set_trace_callback(self.seen.append)


async def test_a_lone_one_statement_write_is_its_own_transaction(tmp_path: Path) -> None:
    """A ``OneStatement`` alone runs without BEGIN/COMMIT and is on disk when its caller
    returns; queued with others it joins their transaction; one that fails leaves nothing."""
    async with aiosqlite.connect(tmp_path / "a.db", factory=Traced) as conn:
        traced = conn._conn
        assert isinstance(traced, Traced)
        writer = Writer(conn, asyncio.Lock())
        await writer(lambda db: db.execute("CREATE TABLE t (x INTEGER UNIQUE)"))

        def put(x: int) -> OneStatement[None]:
            return OneStatement(lambda db: db.execute("INSERT INTO t VALUES (?)", (x,)) and None)

        traced.seen.clear()
        await writer(put(1))
        assert traced.seen == ["INSERT INTO t VALUES (1)"]
        other = sqlite3.connect(tmp_path / "a.db")
        try:
            assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
        finally:
            other.close()
        with pytest.raises(sqlite3.IntegrityError):
            await writer(put(1))
        assert not await OneHop(conn)(lambda db: db.in_transaction)
        assert traced.isolation_level == ""  # the sqlite3 module's own transactions again

        traced.seen.clear()
        await asyncio.gather(writer(put(2)), writer(put(3)))
        assert traced.seen[0] == "BEGIN IMMEDIATE" and traced.seen[-1] == "COMMIT"
        rows = await OneHop(conn)(lambda db: db.execute("SELECT x FROM t ORDER BY x").fetchall())
        assert [r[0] for r in rows] == [1, 2, 3]
