"""SQLite in one thread hop per transaction.

aiosqlite runs every call (each execute, fetch, commit, cursor close) on its worker thread and
waits for the answer: one hop, about 80 µs here, per call. The checkpointer and our store both
work under the saver's lock, so throughput is one over the time a decision holds that lock.
``OneHop`` runs a whole synchronous transaction on that thread in a single hop, and
``OneHopSqliteSaver`` does the same for the checkpointer's reads and writes by running
langgraph's own synchronous ``SqliteSaver`` there.

This is the one place that touches private attributes of a dependency: aiosqlite's
``Connection._execute`` (queue a function for the worker thread) and ``Connection._conn``
(the sqlite3 connection that thread owns). pyproject.toml pins the aiosqlite and
langgraph-checkpoint-sqlite releases this was written against, and tests/unit/test_sqlite.py
checks the behaviour it relies on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

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

T = TypeVar("T")


class OneHop:
    """Run ``fn(sqlite3.Connection)`` on aiosqlite's worker thread: one hop, whatever it does.

    ``fn`` runs off the event loop, so it must only touch the connection and its arguments.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        return await conn._execute(lambda: fn(conn._conn))


def transaction(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """Wrap ``fn`` in ``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on any error). IMMEDIATE takes
    the write lock up front, so a second process on the file waits (busy_timeout) instead of
    failing with "database is locked" when a read would have to upgrade."""

    def run(db: sqlite3.Connection) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.rollback()
            raise
        db.commit()
        return result

    return run


class OneHopSqliteSaver(AsyncSqliteSaver):
    """AsyncSqliteSaver whose get/put/put_writes cost one thread hop each instead of three to
    five: langgraph's synchronous SqliteSaver does the work on aiosqlite's thread, on the same
    sqlite3 connection, under the async saver's lock. Everything else is inherited."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self._hop = OneHop(conn)
        self._sync: SqliteSaver | None = None

    def _saver(self, db: sqlite3.Connection) -> SqliteSaver:
        if self._sync is None:
            self._sync = SqliteSaver(db, serde=self.serde)
            self._sync.is_setup = True  # the async setup() made the same tables
        return self._sync

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        await self.setup()
        async with self.lock:
            return await self._hop(lambda db: self._saver(db).get_tuple(config))

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        await self.setup()
        async with self.lock:
            return await self._hop(
                lambda db: self._saver(db).put(config, checkpoint, metadata, new_versions)
            )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self.setup()
        async with self.lock:
            await self._hop(
                lambda db: self._saver(db).put_writes(config, writes, task_id, task_path)
            )
