"""The audit table as a hash chain, on a real SQLite file and on PostgreSQL: every row a
decision writes is chained; ``python -m bot audit verify`` says how many rows it checked, or
names the first row that was changed, deleted, inserted or moved; with APPROVALS_AUDIT_KEY the
hashes are HMACs, and a chain recomputed without the key fails; replicas appending at once
make one chain; the rows of a database from before the chain are chained by its migration."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
import pytest

from bot import cli
from bot.db.migrations import MIGRATIONS
from bot.db.postgres import Database, PgDb, translate
from bot.db.sqlite import OneHop, Writer
from bot.db.store import Store
from bot.integrity import CHAINED, link, request_digest
from bot.model import Approval, Ballot, Item, Opening, Run, VoteResult
from tests.conftest import BACKENDS
from tests.reads import audit_events

KEY = "correct horse battery staple"
OTHER_KEY = "another key, sixteen+ chars"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@asynccontextmanager
async def opened(db: Path, url: str | None, key: str | None = None) -> AsyncIterator[Store]:
    """A migrated store on the SQLite file ``db``, or on PostgreSQL at ``url``."""
    audit_key = key.encode() if key else None
    if url is None:
        async with aiosqlite.connect(db) as conn:
            await conn.execute("PRAGMA busy_timeout=30000")
            s = Store(OneHop(conn), Writer(conn, asyncio.Lock()), audit_key=audit_key)
            await s.setup()
            yield s
        return
    pg = Database(url)
    await pg.open()
    try:
        s = Store(pg.read, pg.write, postgres=True, audit_key=audit_key)
        await s.setup()
        yield s
    finally:
        await pg.close()


def approve(user: str):
    def judge(_a: Approval, _r: Run) -> Ballot:
        return Ballot(user=user, choice="approve", approves=True, comment="ship it", required=1)

    return judge


def nothing(_: VoteResult) -> list[Item]:
    return []


async def history(s: Store, run_id: str = "r1", iid: str = "i1") -> None:
    """A whole run (rows 1-5: started, requested, decided, resumed, done), then a refused
    start (row 6)."""
    run = await s.create_run(run_id, "/deploy", {"service": "api"}, "U0ALICE", "C0DEPLOYS", 1.0)
    await s.pause(run, [(iid, {"kind": "x"}, None)], 2.0, lambda a: Opening(items=[]))
    await s.decide(iid, 3.0, approve("U0BOB"), nothing, list)
    await s.mark_resumed(iid, run_id, 4.0)
    await s.finish(run_id, "done", {"status": "succeeded"}, 5.0, lambda r, a: [])
    await s.record("start_refused", 6.0, user="U0EVE", detail={"command": "/deploy"})


async def verify(db: Path, url: str | None, key: str | None = None) -> tuple[int, str]:
    """``python -m bot audit verify`` as the operator runs it: exit code and what it said."""
    env = {"DATABASE_URL": url} if url else {"APPROVALS_DB": str(db)}
    if key:
        env["APPROVALS_AUDIT_KEY"] = key
    out, err = io.StringIO(), io.StringIO()

    def no_questions(prompt: str) -> str:
        raise EOFError

    term = cli.Terminal(out, err, no_questions)
    code = await asyncio.to_thread(cli.run, cli.parse(["audit", "verify"]), env, term)
    return code, out.getvalue() + err.getvalue()


def sql(db: Path, url: str | None, *statements: str) -> list[tuple[Any, ...]]:
    """Write the tables directly, as anyone with write access to the database could;
    returns the last statement's rows."""
    rows: list[tuple[Any, ...]] = []
    if url is None:
        with closing(sqlite3.connect(db)) as conn:
            for s in statements:
                cur = conn.execute(s)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
        return rows
    with psycopg.connect(url) as conn:
        for s in statements:
            cur = conn.execute(translate(s))
            rows = cur.fetchall() if cur.description else []
    return [tuple(r) for r in rows]


async def test_each_row_a_decision_writes_is_chained_and_verify_counts_them(
    tmp_path: Path, database_url: str | None
) -> None:
    db = tmp_path / "a.db"
    async with opened(db, database_url) as s:
        await history(s)
        events = await audit_events(s)
    assert [e["event"] for e in events] == [
        "run_started",
        "requested",
        "decided",
        "resumed",
        "run_done",
        "start_refused",
    ]
    assert all(e["hash"].startswith("sha256:") for e in events)
    # Rows about the approval carry the digest of the request it showed.
    digest = request_digest({"kind": "x"}, None)
    assert [e["digest"] for e in events] == [None, digest, digest, digest, None, None]
    code, said = await verify(db, database_url)
    assert code == 0, said
    assert "6 audit rows checked: the chain is intact" in said
    assert f"ends at row 6, hash {events[-1]['hash']}" in said


TAMPERING = {
    # what someone with write access does -> the first row verify names, rows intact before it
    "edit": (["UPDATE bot_audit SET user_id='U0MALLORY' WHERE id=3"], 3, 2),
    "delete": (["DELETE FROM bot_audit WHERE id=3"], 4, 2),
    "insert": (
        [
            "INSERT INTO bot_audit(at, event, user_id, run_id, interrupt_id, detail, digest, "
            "hash) SELECT at, event, user_id, run_id, interrupt_id, detail, digest, hash "
            "FROM bot_audit WHERE id=3"
        ],
        7,
        6,
    ),
    "reorder": (
        [
            "UPDATE bot_audit SET id=100 WHERE id=3",
            "UPDATE bot_audit SET id=3 WHERE id=4",
            "UPDATE bot_audit SET id=4 WHERE id=100",
        ],
        3,
        2,
    ),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
async def test_verify_names_the_first_row_that_does_not_match(
    tmp_path: Path, database_url: str | None, tampering: str
) -> None:
    db = tmp_path / "a.db"
    async with opened(db, database_url) as s:
        await history(s)
    statements, first_bad, intact = TAMPERING[tampering]
    sql(db, database_url, *statements)
    code, said = await verify(db, database_url)
    assert code == 1, said
    assert f"row {first_bad} does not match" in said
    assert f"{intact} rows before it follow the chain" in said


async def test_with_a_key_the_chain_cannot_be_recomputed_without_it(
    tmp_path: Path, database_url: str | None
) -> None:
    db = tmp_path / "a.db"
    async with opened(db, database_url, KEY) as s:
        await history(s)
    code, said = await verify(db, database_url, KEY)
    assert code == 0 and "carry an HMAC" in said, said
    code, said = await verify(db, database_url)
    assert code == 2 and "set it to the bot's key" in said, said
    code, said = await verify(db, database_url, OTHER_KEY)
    assert code == 2 and "is not the key row 1 was written with" in said, said
    code, said = await verify(db, database_url, "short")
    assert code == 2 and "at least 16 characters" in said, said

    # Row 3 edited, and its hash and every later one recomputed without the key.
    rows = sql(db, database_url, f"SELECT id, {', '.join(CHAINED)} FROM bot_audit ORDER BY id")
    updates = ["UPDATE bot_audit SET user_id='U0MALLORY' WHERE id=3"]
    prev = sql(db, database_url, "SELECT hash FROM bot_audit WHERE id=2")[0][0]
    for rid, *row in rows[2:]:
        if rid == 3:
            row[CHAINED.index("user_id")] = "U0MALLORY"
        prev = link(prev, row, None)
        updates.append(f"UPDATE bot_audit SET hash='{prev}' WHERE id={rid}")
    sql(db, database_url, *updates)
    code, said = await verify(db, database_url, KEY)
    assert code == 1 and "row 3 has a plain SHA-256 hash after rows written with the key" in said

    # The whole chain recomputed without the key: nothing in it was written with the key.
    prev, updates = "", []
    for rid, *row in sql(db, database_url, f"SELECT id, {', '.join(CHAINED)} FROM bot_audit"):
        prev = link(prev, row, None)
        updates.append(f"UPDATE bot_audit SET hash='{prev}' WHERE id={rid}")
    sql(db, database_url, *updates)
    code, said = await verify(db, database_url, KEY)
    assert code == 1 and "no row was written with APPROVALS_AUDIT_KEY" in said, said


async def test_replicas_appending_at_once_make_one_chain(tmp_path: Path, pg_url: str) -> None:
    """Two stores (two processes' pools) on one PostgreSQL schema, each writing runs, votes,
    claims and plain audit rows side by side: one chain, every row in it."""
    db = tmp_path / "unused.db"
    async with opened(db, pg_url, KEY) as one, opened(db, pg_url, KEY) as two:

        async def work(s: Store, n: int) -> None:
            await history(s, f"r{n}", f"i{n}")
            await asyncio.gather(
                *(s.record("note", 7.0, user=f"U{n}", detail={"k": k}) for k in range(5))
            )

        await asyncio.gather(*(work(one if n % 2 else two, n) for n in range(30)))
    assert sql(db, pg_url, "SELECT COUNT(*) FROM bot_audit") == [(30 * 11,)]
    code, said = await verify(db, pg_url, KEY)
    assert code == 0 and f"{30 * 11} audit rows checked: the chain is intact" in said, said


async def test_rows_from_before_the_chain_are_chained_by_the_migration(
    tmp_path: Path, database_url: str | None
) -> None:
    """A database at schema 8 (the release before the chain) with audit rows and an open
    approval: the upgrade chains the rows (with the key) and gives the approval the digest
    of the request stored then, so its old message's buttons stay bound to what it showed."""
    db = tmp_path / "a.db"
    old = [
        (
            "INSERT INTO bot_audit(at, event, user_id, run_id, interrupt_id, detail) VALUES "
            f"({at}, '{event}', 'U0ALICE', 'r1', NULL, NULL)"
        )
        for at, event in ((1.0, "run_started"), (2.5, "requested"), (3, "vote"))
    ]
    old += [
        "INSERT INTO bot_runs(run_id, command, input, requester, channel, status, created_at, "
        "updated_at) VALUES ('r1', '/deploy', '{}', 'U0ALICE', 'C0DEPLOYS', 'waiting', 1, 1)",
        "INSERT INTO bot_approvals(interrupt_id, run_id, request, status, created_at, meta) "
        """VALUES ('i1', 'r1', '{"b": [1, 2.5], "a": "\\u00e9"}', 'pending', 2, """
        """'{"response_schema": {"type": "object"}}')""",
    ]
    if database_url is None:
        with closing(sqlite3.connect(db)) as conn:
            for number, script in enumerate(MIGRATIONS[:8], 1):
                conn.executescript(script)
                conn.execute(f"PRAGMA user_version={number}")
            for statement in old:
                conn.execute(statement)
            conn.commit()
    else:
        with psycopg.connect(database_url) as conn:
            pg = PgDb(conn)
            pg.prepare_migrations()
            for number, script in enumerate(MIGRATIONS[:8], 1):
                for statement in (s for s in script.split(";") if s.strip()):
                    pg.execute(statement)
                pg.execute(f"PRAGMA user_version={number}")
            for statement in old:
                pg.execute(statement)
    async with opened(db, database_url, KEY) as s:
        approval = await s.get_approval("i1")
        await s.record("after", 9.0)
    assert approval is not None
    schema = {"response_schema": {"type": "object"}}
    assert approval.digest == request_digest({"a": "é", "b": [1, 2.5]}, schema)
    assert approval.graph_interrupt_id == "i1"
    code, said = await verify(db, database_url, KEY)
    assert code == 0 and "4 audit rows checked" in said and "from 1 on carry an HMAC" in said


def test_the_key_is_never_shown(tmp_path: Path) -> None:
    from bot.config import Settings

    settings = Settings(bot_token="x", signing_secret="y", audit_key=KEY.encode())
    assert KEY not in repr(settings)
    assert json.dumps(KEY) not in repr(settings)
