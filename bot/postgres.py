"""PostgreSQL under the store's transaction functions, and LangGraph's Postgres checkpointer.

The store's transactions are plain synchronous functions ``fn(db)`` (bot/store.py). On SQLite
``db`` is the sqlite3 connection on aiosqlite's thread; here it is ``PgDb``, a small wrapper
over a pooled psycopg connection, run on a worker thread: one thread hop per transaction on
both backends, and one copy of the SQL. ``PgDb.execute`` turns the SQLite spelling into
PostgreSQL's where they differ, and only there:

- ``?`` placeholders become ``%s`` (and a literal ``%`` becomes ``%%``);
- ``json_each(?) AS x`` (a JSON array argument) becomes ``json_array_elements_text(%s::json)
  AS x(value)``;
- ``PRAGMA user_version`` reads and writes ``bot_schema.version``;
- in migrations, ``INTEGER PRIMARY KEY AUTOINCREMENT`` becomes ``BIGSERIAL PRIMARY KEY``,
  ``REAL`` becomes ``DOUBLE PRECISION``, ``TEXT`` compares bytewise (``COLLATE "C"``, as
  SQLite does: key prefixes are looked up by range), and ``INSERT OR IGNORE … SELECT`` ends
  in ``ON CONFLICT DO NOTHING``;
- the outbox's next ``seq`` comes from a sequence (``MAX(seq) + 1`` races between
  concurrent transactions, which SQLite never runs).

Statements whose semantics differ (claims that skip rows another process is taking) are
written out for each backend in the store itself. Transactions that deadlock with another
(PostgreSQL aborts one of them) are run again, a few times.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_LOCK = 0x617070726F76  # advisory lock key: "approv"; the bot's own migrations
SAVER_LOCK = SCHEMA_LOCK + 1  # LangGraph's checkpointer setup
AUDIT_LOCK = SCHEMA_LOCK + 2  # appending to the audit table's hash chain (until commit)
WAKE_CHANNEL = "bot_wake"  # NOTIFY channel; payload "<what>:<owner>"
LOCK_TRIES = 600  # 0.2 s apart: two minutes for another replica's checkpointer setup
RETRIES = 3  # a transaction PostgreSQL aborted as a deadlock is run this many times at most


class PgRow:
    """A result row read by name or by position, like ``sqlite3.Row``."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._names[key]]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Any:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._names)


def _rows(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    return lambda values: PgRow(names, values)


_JSON_EACH = re.compile(r"json_each\(\?\) AS (\w+)")
_VERSION_SET = re.compile(r"PRAGMA user_version\s*=\s*(\d+)")
_DDL = (
    (re.compile(r"INTEGER PRIMARY KEY AUTOINCREMENT"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
)
_NEXT_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM bot_outbox)"


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """The PostgreSQL spelling of one of the store's statements (see the module's notes)."""
    text = sql.strip()
    if text == "PRAGMA user_version":
        return "SELECT version FROM bot_schema"
    version = _VERSION_SET.fullmatch(text)
    if version:
        return f"UPDATE bot_schema SET version = {int(version.group(1))}"
    if text.startswith(("CREATE TABLE", "ALTER TABLE")):
        for pattern, spelled in _DDL:
            text = pattern.sub(spelled, text)
    if text.startswith("INSERT OR IGNORE"):
        text = "INSERT" + text.removeprefix("INSERT OR IGNORE") + " ON CONFLICT DO NOTHING"
    text = text.replace(_NEXT_SEQ, "nextval('bot_outbox_next_seq')")
    text = _JSON_EACH.sub(r"json_array_elements_text(?::json) AS \1(value)", text)
    return text.replace("%", "%%").replace("?", "%s")


class PgDb:
    """What a store transaction sees on PostgreSQL: ``execute`` and ``executemany`` as on a
    sqlite3 connection (returning a cursor with ``fetchone``, ``fetchall``, ``rowcount``),
    plus ``notify`` (sent at commit), ``lock_audit_chain`` and ``prepare_migrations``."""

    def __init__(self, conn: psycopg.Connection[Any], owner: str = "") -> None:
        self._conn = conn
        self._owner = owner
        self.notified: set[str] = set()

    def execute(self, sql: str, params: Iterable[Any] = ()) -> psycopg.Cursor[Any]:
        cur = self._conn.cursor(row_factory=_rows)
        return cur.execute(translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> psycopg.Cursor[Any]:
        cur = self._conn.cursor(row_factory=_rows)
        cur.executemany(translate(sql), [tuple(r) for r in rows])
        return cur

    def notify(self, what: str) -> None:
        self.notified.add(what)

    def send_notifications(self) -> None:
        for what in sorted(self.notified):
            self._conn.execute("SELECT pg_notify(%s, %s)", (WAKE_CHANNEL, f"{what}:{self._owner}"))

    def lock_audit_chain(self) -> None:
        """Wait for any other transaction appending to the audit chain; the lock ends with
        this transaction, after its commit made its rows visible to the next one."""
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))

    def prepare_migrations(self) -> None:
        """Wait for any other process migrating (the lock ends with this transaction), then
        make sure the version table exists."""
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        self._conn.execute("CREATE TABLE IF NOT EXISTS bot_schema (version INTEGER NOT NULL)")
        self._conn.execute(
            "INSERT INTO bot_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM bot_schema)"
        )
        self._conn.execute("CREATE SEQUENCE IF NOT EXISTS bot_outbox_next_seq")


class Database:
    """The store's side of PostgreSQL: a pool of synchronous connections and as many worker
    threads. ``read(fn)`` runs ``fn`` in autocommit (each statement its own snapshot);
    ``write(fn)`` runs it in one transaction and sends its notifications at commit."""

    def __init__(self, url: str, owner: str = "", size: int = 8) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True},
            open=False,
            name="bot-store",
        )
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="bot-pg")
        self._owner = owner

    async def open(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (the pool's own wait)
        await asyncio.get_running_loop().run_in_executor(
            self._threads, lambda: self._pool.open(wait=True, timeout=timeout)
        )

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self._pool.close)
        self._threads.shutdown(wait=False)

    async def read(self, fn: Callable[[PgDb], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._read, fn)

    async def write(self, fn: Callable[[PgDb], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._write, fn)

    def _read(self, fn: Callable[[PgDb], T]) -> T:
        with self._pool.connection() as conn:
            return fn(PgDb(conn, self._owner))

    def _write(self, fn: Callable[[PgDb], T]) -> T:
        for attempt in range(1, RETRIES + 1):
            try:
                with self._pool.connection() as conn, conn.transaction():
                    db = PgDb(conn, self._owner)
                    result = fn(db)
                    db.send_notifications()
                return result
            except psycopg.errors.DeadlockDetected:
                if attempt == RETRIES:
                    raise
                log.info("a transaction deadlocked with another; running it again")
        raise AssertionError("unreachable")


async def open_saver(url: str, size: int = 8) -> tuple[AsyncPostgresSaver, AsyncConnectionPool]:
    """LangGraph's AsyncPostgresSaver on a pool of its own, set up (its tables created or
    migrated) under an advisory lock, so replicas starting together take turns."""
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
        name="bot-checkpoints",
    )
    await pool.open(wait=True, timeout=30)
    try:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        async with pool.connection() as lock:
            await _take_lock(lock, SAVER_LOCK)
            try:
                await saver.setup()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (SAVER_LOCK,))
    except BaseException:
        await pool.close()
        raise
    return saver, pool


async def _take_lock(conn: psycopg.AsyncConnection[Any], key: int) -> None:
    """A session advisory lock, asked for again every 0.2 s rather than waited for: LangGraph's
    setup creates its indexes CONCURRENTLY, which waits for every open statement in the
    database, a blocked ``pg_advisory_lock`` included, while that one waits for the lock the
    setup holds (a deadlock PostgreSQL cannot see: the lock and the index are on two
    connections of one process)."""
    for _ in range(LOCK_TRIES):
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (key,))
        row = await cur.fetchone()
        if row and row["got"]:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("another process held the checkpointer's setup lock for 2 minutes")
