"""SQLite in one thread hop per transaction.

aiosqlite runs every call (each execute, fetch, commit, cursor close) on its worker thread and
waits for the answer: one hop, about 80 µs here, per call. The checkpointer and our store both
work under the saver's lock, so throughput is one over the time a decision holds that lock.
``OneHop`` runs a whole synchronous transaction on that thread in a single hop, and
``OneHopSqliteSaver`` does the same for the checkpointer's reads and writes by running
langgraph's own synchronous ``SqliteSaver`` there.

Most of a small write transaction's cost is its commit: an fsync of the WAL. ``Writer`` lets
every write, ours and the checkpointer's, share a commit with the others that queued while
the previous one was on its way to the disk (a group commit): under load N transactions
cost one fsync, not N; alone, a transaction costs what it did. A write that is one statement
(``OneStatement``) and finds itself alone runs without ``BEGIN``/``COMMIT``: SQLite makes a
lone statement a transaction of its own, as atomic and as durable, in one statement, not three.

When another process holds the write lock past the busy timeout ("database is locked"), a
write is tried again by ``bot.db.retry.Retry`` (so is a read, and a checkpoint read): a failed
group was rolled back whole, so running its transactions again cannot apply one twice.

This is the one place that touches private attributes of a dependency: aiosqlite's
``Connection._execute`` (queue a function for the worker thread) and ``Connection._conn``
(the sqlite3 connection that thread owns). pyproject.toml pins the aiosqlite and
langgraph-checkpoint-sqlite releases this was written against, and tests/unit/test_sqlite.py
checks the behaviour it relies on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Generic, TypeVar, cast

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from bot.db.grouped import Grouped
from bot.db.retry import Retry

T = TypeVar("T")


class OneHop:
    """Run ``fn(sqlite3.Connection)`` on aiosqlite's worker thread: one hop, whatever it does;
    with ``retry``, tried again while the file is locked (reads; ``fn`` must be safe to run
    again).

    ``fn`` runs off the event loop, so it must only touch the connection and its arguments.
    """

    def __init__(self, conn: aiosqlite.Connection, retry: Retry | None = None) -> None:
        self._conn = conn
        self._retry = retry

    async def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if self._retry is None:
            return await conn._execute(lambda: fn(conn._conn))
        return await self._retry.run(lambda: conn._execute(lambda: fn(conn._conn)), "a read")


def transaction(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """Wrap ``fn`` in ``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on any error). IMMEDIATE takes
    the write lock up front, so a second process on the file waits (busy_timeout) instead of
    failing with "database is locked" when a read would have to upgrade."""

    def run(db: sqlite3.Connection) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return result

    return run


class OneStatement(Generic[T]):
    """A write that needs no transaction around it: one SQL statement (in the rare case
    several, each leaving the database as a crash right after it would: a statement that
    changed nothing, then one that does).

    Called, it is the function it wraps, so any transaction runner takes it as it takes any
    other; the ``Writer``, finding it alone in a group, runs it in autocommit, where SQLite
    makes each statement its own transaction: atomic and durable as one in ``BEGIN`` …
    ``COMMIT`` (WAL, synchronous=FULL), and a write statement takes the write lock at its
    start (waiting busy_timeout), as ``BEGIN IMMEDIATE`` does. Nothing of this process runs
    between its statements (one hop on the connection's thread, under the writer's lock)."""

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn

    def __call__(self, db: sqlite3.Connection) -> T:
        return self.fn(db)


class Writer:
    """Write transactions, committed in groups.

    A transaction asked for while another group is being written joins the next group; each
    group is one ``BEGIN IMMEDIATE`` … ``COMMIT`` in one hop, under ``lock`` (the saver's, so
    no read of the checkpointer lands between a group's statements). A group is first run
    without savepoints (two statements fewer per transaction); if one of its transactions
    raises, the group is rolled back and run again with each transaction in its own
    savepoint, so the one that raises is rolled back alone and only its caller sees the error
    (transactions are written to be run again: ``retry`` does too). Every caller returns
    after the commit that made its work durable, so nothing a caller goes on to do (send a
    message, resume a graph) runs ahead of the disk. A group of one is exactly
    ``transaction(fn)``. A transaction that failed because the file was locked (its group was
    rolled back) is queued again by ``retry``, after a pause. A group of one ``OneStatement``
    is that statement alone, in autocommit."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        lock: asyncio.Lock,
        most: int = 64,
        retry: Retry | None = None,
    ) -> None:
        self._hop = OneHop(conn)
        self._lock = lock
        self._retry = retry or Retry()
        self._grouped: Grouped[Callable[[sqlite3.Connection], Any]] = Grouped(
            self._write_group, "sqlite-writer", most
        )

    async def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._retry.run(lambda: self._once(fn), "a write")

    async def _once(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return cast(T, await self._grouped(fn))

    async def _write_group(
        self, fns: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        """One group: one transaction in one hop, under the saver's lock."""
        async with self._lock:
            return cast(list[tuple[bool, Any]], await self._hop(partial(_commit, fns)))


def _commit(
    fns: Sequence[Callable[[sqlite3.Connection], Any]], db: sqlite3.Connection
) -> list[tuple[bool, Any]]:
    """One transaction for ``fns``. Savepoints only when one of several raised: the group is
    rolled back and run again, each in a savepoint of its own. One ``OneStatement`` alone is
    its statement in autocommit."""
    if len(fns) == 1:
        return [_alone(fns[0], db)]
    db.execute("BEGIN IMMEDIATE")
    try:
        results = [fn(db) for fn in fns]
    except Exception:
        db.rollback()  # one of them failed: isolate it below
    except BaseException:
        db.rollback()
        raise
    else:
        try:
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return [(True, r) for r in results]
    outcomes: list[tuple[bool, Any]] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for fn in fns:
            db.execute("SAVEPOINT one")
            try:
                outcomes.append((True, fn(db)))
            except Exception as exc:
                db.execute("ROLLBACK TO one")
                outcomes.append((False, exc))
            db.execute("RELEASE one")
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return outcomes


def _alone(fn: Callable[[sqlite3.Connection], Any], db: sqlite3.Connection) -> tuple[bool, Any]:
    """A group of one: ``transaction(fn)``, or a ``OneStatement``'s statement in autocommit."""
    try:
        if isinstance(fn, OneStatement):
            return True, _autocommit(fn, db)
        return True, transaction(fn)(db)
    except Exception as exc:
        return False, exc


def _autocommit(fn: OneStatement[T], db: sqlite3.Connection) -> T:
    """Run ``fn``'s statement as its own transaction: without the implicit ``BEGIN`` the
    sqlite3 module puts before a write (``isolation_level`` None), then as it was."""
    level = db.isolation_level
    db.isolation_level = None
    try:
        return fn(db)
    finally:
        db.isolation_level = level


class _Uncommitted:
    """The sqlite3 connection as langgraph's SqliteSaver sees it: its ``commit()`` after each
    write is left to the ``Writer``, which commits the whole group."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def cursor(self) -> sqlite3.Cursor:
        return self._db.cursor()

    def commit(self) -> None:
        pass


class OneHopSqliteSaver(AsyncSqliteSaver):
    """AsyncSqliteSaver whose get/put/put_writes cost one thread hop each instead of three to
    five: langgraph's synchronous SqliteSaver does the work on aiosqlite's thread, on the same
    sqlite3 connection, under the async saver's lock. Its writes go through ``writer``, which
    the bot's store shares, so they are committed in groups with everyone else's. Everything
    else is inherited."""

    def __init__(self, conn: aiosqlite.Connection, retry: Retry | None = None) -> None:
        super().__init__(conn)
        self._hop = OneHop(conn)
        self._retry = retry or Retry()
        self.writer = Writer(conn, self.lock, retry=self._retry)
        self._sync: SqliteSaver | None = None

    def _saver(self, db: sqlite3.Connection) -> SqliteSaver:
        if self._sync is None:
            self._sync = SqliteSaver(_Uncommitted(db), serde=self.serde)  # type: ignore[arg-type]
            self._sync.is_setup = True  # the async setup() made the same tables
        return self._sync

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        await self.setup()
        return await self._retry.run(lambda: self._get_tuple(config), "a checkpoint read")

    async def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        async with self.lock:  # taken for each try, so a pause between tries holds no lock
            return await self._hop(lambda db: self._saver(db).get_tuple(config))

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        await self.setup()
        return await self.writer(  # SqliteSaver.put is one INSERT
            OneStatement(lambda db: self._saver(db).put(config, checkpoint, metadata, new_versions))
        )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self.setup()

        def put(db: sqlite3.Connection) -> None:
            self._saver(db).put_writes(config, writes, task_id, task_path)

        # SqliteSaver.put_writes is one executemany: one statement per write.
        await self.writer(OneStatement(put) if len(writes) == 1 else put)
