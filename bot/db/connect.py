"""Opening the database: SQLite at ``APPROVALS_DB`` (one file, one process), or PostgreSQL at
``DATABASE_URL`` (several replicas). Either way the result is the LangGraph checkpointer, the
store, the operator's queries, the wake-ups other processes send (PostgreSQL only), this
process's proof of life and the judge of others' (bot/db/liveness.py: an flock beside the file, or
an advisory lock) and how to close it all; the rest of the bot does not know which one it got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver

from bot.config import Settings
from bot.db.base import RunLease
from bot.db.liveness import AdvisoryLocks, FileLocks, Liveness
from bot.db.ops import OpsStore
from bot.db.retry import Retry
from bot.db.sqlite import OneHop, OneHopSqliteSaver
from bot.db.store import Store


@dataclass
class Backend:
    """What opening the database gives the runtime, SQLite or PostgreSQL alike: the
    checkpointer, the store, the operator's store, how to close, and the liveness lock held for
    the process's lifetime."""

    saver: BaseCheckpointSaver  # also has adelete_thread (retention)
    store: Store
    ops: OpsStore
    close: Callable[[], Awaitable[None]]
    liveness: Liveness  # held from before the store's first write until ``close`` returns
    # PostgreSQL: start listening for other processes' wake-ups (outbox, deadlines, runs).
    listen: Callable[[Mapping[str, Callable[[], None]]], None] = field(default=lambda wakes: None)


async def open_backend(settings: Settings, lease: RunLease) -> Backend:
    """The database the settings name, migrated to this release's schema. Everything on it
    shares one retry policy for transient errors (bot/db/retry.py)."""
    retry = Retry(settings.db_retry_seconds)
    if settings.database_url:
        return await _postgres(settings.database_url, lease, retry, settings.audit_key)
    return await _sqlite(settings, lease, retry)


async def _sqlite(settings: Settings, lease: RunLease, retry: Retry) -> Backend:
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    liveness = FileLocks(settings.db_path, lease.owner)
    await liveness.hold()
    try:
        conn = await aiosqlite.connect(settings.db_path)
    except BaseException:
        await liveness.close()
        raise
    try:
        # A second process on the file: a write waits this long for its lock, then is tried
        # again after a pause (in which this connection's thread serves reads).
        busy_ms = int(settings.sqlite_busy_seconds * 1000)
        await conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        saver = OneHopSqliteSaver(conn, retry)
        await saver.setup()  # WAL mode, checkpoint tables
        hop = OneHop(conn, retry)
        store = Store(hop, saver.writer, lease=lease, audit_key=settings.audit_key)
        await store.setup()
        await store.owner_started(lease.clock())
    except BaseException:
        await conn.close()
        await liveness.close()
        raise

    async def close() -> None:
        # LangGraph writes checkpoints from background tasks of its own that outlive a
        # cancelled run; they hold the saver's lock while they write. Close only between
        # writes, or a half-done write keeps the file locked for the next process.
        async with saver.lock:
            await conn.close()
        await liveness.close()  # last: nothing of this process writes after it

    return Backend(saver, store, OpsStore(hop, saver.writer), close, liveness)


async def _postgres(url: str, lease: RunLease, retry: Retry, audit_key: bytes | None) -> Backend:
    # Imported here: a SQLite deployment never loads psycopg.
    from bot.db.postgres import Database, open_saver
    from bot.db.wakeups import Listener

    liveness = AdvisoryLocks(url, lease.owner)
    await liveness.hold()
    db = Database(url, owner=lease.owner, retry=retry, fence=liveness.fence)
    try:
        await db.open()
    except BaseException:
        await liveness.close()
        raise
    try:
        saver, pool = await open_saver(url, retry=retry, fence=liveness.fence)
    except BaseException:
        await db.close()
        await liveness.close()
        raise
    store = Store(db.read, db.write, postgres=True, lease=lease, audit_key=audit_key)
    listeners: list[Listener] = []

    def listen(wakes: Mapping[str, Callable[[], None]]) -> None:
        listener = Listener(url, lease.owner, wakes, retry)
        listeners.append(listener)
        listener.start()

    async def close() -> None:
        for listener in listeners:
            await listener.stop()
        await saver.aclose()
        await pool.close()
        await db.close()
        await liveness.close()  # last: nothing of this process writes after it

    try:
        await store.setup()
        await store.owner_started(lease.clock())
    except BaseException:
        await close()
        raise
    return Backend(saver, store, OpsStore(db.read, db.write), close, liveness, listen)
