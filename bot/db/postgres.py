"""PostgreSQL under the store's transaction functions, and LangGraph's Postgres checkpointer.

The store's transactions are plain synchronous functions ``fn(db)`` (bot/db/runs.py, …). On SQLite
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
  concurrent transactions, which SQLite never runs);
- ``/* FOR SHARE */`` (a comment to SQLite, whose writes never run side by side) locks the
  rows a sub-select read, where a concurrent transaction must wait for this one.

Statements whose semantics differ (claims that skip rows another process is taking) are
written out for each backend in the store itself.

When the database blinks (a failover cuts every connection, the server restarts, a deadlock,
too many connections), each read and transaction is tried again by ``bot.db.retry.Retry``, and
so is each of LangGraph's checkpointer calls (``RetryingSaver``). After a failure the pool
drops its dead connections at once, and it never waits long to reconnect, so work resumes
within a second or two of the database's return. A transaction whose COMMIT lost its answer
may have landed: before running it again, the database is asked how it ended
(``pg_xact_status`` of the id the transaction read with its BEGIN): committed, and the first
run's result is the answer; aborted, and it runs again. So no transaction is applied twice,
and its caller learns what it did. (BEGIN and its id share a round trip, and so do the
notifications and COMMIT: a transaction costs no more round trips than before.)

Every try of a write (the store's and the checkpointer's) first passes this process's fence
(bot/db/liveness.py): an in-memory check while its liveness lock has been held without a break;
a wait while it is not, so a replica judged dead meanwhile writes nothing more for its runs.
Every connection has TCP keepalives (``KEEPALIVES``): one that hangs becomes an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any, TypeVar, cast

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg.sql import SQL, Literal
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from bot.db.grouped import Grouped
from bot.db.retry import CommitUnknown, Fence, Retry, is_conflict, is_transient

T = TypeVar("T")

SCHEMA_LOCK = 0x617070726F76  # advisory lock key: "approv"; the bot's own migrations
SAVER_LOCK = SCHEMA_LOCK + 1  # LangGraph's checkpointer setup
AUDIT_LOCK = SCHEMA_LOCK + 2  # appending to the audit table's hash chain (until commit)
WAKE_CHANNEL = "bot_wake"  # NOTIFY channel; payload "<what>:<owner>"
LOCK_TRIES = 600  # 0.2 s apart: two minutes for another replica's checkpointer setup
# A hop waits this long for a pooled connection, and the pool tries to reconnect for this long
# (it backs off 1 s, 2 s, …) before giving up; the hop's retry then asks again, so after an
# outage of any length a connection is tried within a second or two of the server's return.
CHECKOUT_SECONDS = 2.0
CONNECT_TIMEOUT = 5  # seconds for one new connection, unless DATABASE_URL says otherwise
# TCP keepalives on every connection, unless DATABASE_URL says otherwise: a connection whose
# peer went silent (a host gone, a network cut without a reset) fails after about
# KEEPALIVE_BOUND seconds instead of waiting for the operating system's two hours. An idle or
# waiting connection is probed after 5 s of silence, every 2 s, and dropped after 3 probes
# unanswered; data sent and not acknowledged for 10 s drops it too (tcp_user_timeout). A
# server busy on a long statement still answers the probes: only silence counts.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # milliseconds
}
KEEPALIVE_BOUND = 12


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
    """The row factory: column names read from the result itself (``cursor.description``
    builds a ``Column`` per column per statement, 5% of the bot's CPU on PostgreSQL)."""
    res = cursor.pgresult
    names = _names(tuple(res.fname(i) for i in range(res.nfields))) if res else {}
    return lambda values: PgRow(names, values)


@lru_cache(maxsize=512)
def _names(fields: tuple[bytes | None, ...]) -> dict[str, int]:
    """Each column's position by name (the store's column names are ASCII)."""
    return {(f or b"").decode(): i for i, f in enumerate(fields)}


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
    text = text.replace("/* FOR SHARE */", "FOR SHARE")
    return text.replace("%", "%%").replace("?", "%s")


class Pending:
    """A statement's cursor in pipeline mode: ``fetchone`` and ``fetchall`` wait for the
    answer (sending everything queued before it in the same round trip); ``rowcount`` waits
    for it too, as psycopg knows it only once the answer is in."""

    __slots__ = ("_cur", "_pipe")

    def __init__(self, cur: psycopg.Cursor[Any], pipe: psycopg.Pipeline) -> None:
        self._cur = cur
        self._pipe = pipe

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def __iter__(self) -> Any:
        return iter(self._cur.fetchall())

    @property
    def rowcount(self) -> int:
        self._pipe.sync()
        return self._cur.rowcount


class PgDb:
    """What a store transaction sees on PostgreSQL: ``execute`` and ``executemany`` as on a
    sqlite3 connection (returning a cursor with ``fetchone``, ``fetchall``, ``rowcount``),
    plus ``notify`` (sent at commit), ``lock_audit_chain`` and ``prepare_migrations``.

    A write runs in pipeline mode (``pipe``): a statement is sent without waiting for its
    answer, so BEGIN and the statements up to the first one whose answer the transaction
    reads share one round trip, and so do the notifications and COMMIT. An error surfaces
    at the next answer read, at the latest before COMMIT (``xid``)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        owner: str = "",
        pipe: psycopg.Pipeline | None = None,
        leave: Callable[[], None] = lambda: None,
    ) -> None:
        self._conn = conn
        self._owner = owner
        self._pipe = pipe
        self._leave = leave  # leave pipeline mode: its last sync, COMMIT's answer with it
        self._xid: psycopg.Cursor[Any] | None = None
        self.notified: set[str] = set()

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        cur = self._conn.cursor(row_factory=_rows)
        cur.execute(translate(sql), tuple(params))
        return cur if self._pipe is None else Pending(cur, self._pipe)

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Any:
        cur = self._conn.cursor(row_factory=_rows)
        cur.executemany(translate(sql), [tuple(r) for r in rows])
        return cur if self._pipe is None else Pending(cur, self._pipe)

    def notify(self, what: str) -> None:
        self.notified.add(what)

    def begin(self) -> None:
        """BEGIN, and ask for the transaction's id (read by ``xid``): should the COMMIT's
        answer be lost, the id tells how it ended. Both go with the transaction's first
        statements."""
        self._conn.execute("BEGIN")
        self._xid = self._conn.execute("SELECT pg_current_xact_id()::text")

    def xid(self) -> str:
        """The transaction's id; reading it waits for every statement sent so far (free when
        the transaction read an answer after its last write)."""
        assert self._xid is not None
        row = self._xid.fetchone()
        assert row is not None
        return str(row[0])

    def commit(self) -> None:
        """The notifications and COMMIT in one round trip."""
        for what in sorted(self.notified):
            self._conn.execute(
                SQL("SELECT pg_notify({}, {})").format(
                    Literal(WAKE_CHANNEL), Literal(f"{what}:{self._owner}")
                )
            )
        self._conn.execute("COMMIT")
        self._leave()

    def rollback(self) -> None:
        """End a failed transaction (nothing to do on a lost connection)."""
        with contextlib.suppress(psycopg.Error):
            if self._pipe is not None:
                self._pipe.sync()  # take in the answers still due, the error's included
        if self._conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("ROLLBACK")
                if self._pipe is not None:
                    self._pipe.sync()

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
    ``write(fn)`` runs it in one transaction and sends its notifications at commit. Both are
    tried again through a blink (see the module's notes)."""

    def __init__(
        self,
        url: str,
        owner: str = "",
        size: int = 8,
        retry: Retry | None = None,
        fence: Fence | None = None,
    ) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs=connect_kwargs(url, autocommit=True),
            open=False,
            name="bot-store",
            timeout=CHECKOUT_SECONDS,
            reconnect_timeout=CHECKOUT_SECONDS,
        )
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="bot-pg")
        self._owner = owner
        self._retry = retry or Retry()
        self._fence = fence or Fence()  # writes wait while this process's lock is in doubt

    async def open(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (the pool's own wait)
        await asyncio.get_running_loop().run_in_executor(
            self._threads, lambda: self._pool.open(wait=True, timeout=timeout)
        )

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self._pool.close)
        self._threads.shutdown(wait=False)

    async def read(self, fn: Callable[[PgDb], T]) -> T:
        loop = asyncio.get_running_loop()
        return await self._retry.run(
            lambda: loop.run_in_executor(self._threads, self._read, fn), "a read", self._sweep
        )

    async def write(self, fn: Callable[[PgDb], T]) -> T:
        loop = asyncio.get_running_loop()
        unsure: CommitUnknown | None = None  # the last try's COMMIT lost its answer

        async def attempt() -> T:
            nonlocal unsure
            await self._fence.passage()  # each try: the lock may have been lost meanwhile
            if unsure is not None:
                if await loop.run_in_executor(self._threads, self._committed, unsure.xid):
                    return cast(T, unsure.result)  # it landed: its result is the answer
                unsure = None  # it did not: run it again
            try:
                return await loop.run_in_executor(self._threads, self._write, fn)
            except CommitUnknown as exc:
                unsure = exc
                raise

        return await self._retry.run(attempt, "a write", self._sweep)

    def _read(self, fn: Callable[[PgDb], T]) -> T:
        with self._pool.connection() as conn:
            return fn(PgDb(conn, self._owner))

    def _write(self, fn: Callable[[PgDb], T]) -> T:
        with self._pool.connection() as conn:
            mode = conn.pipeline()
            pipe = mode.__enter__()
            left = False

            def leave() -> None:
                nonlocal left
                left = True  # once, even if its sync fails
                mode.__exit__(None, None, None)

            try:
                return self._transaction(fn, PgDb(conn, self._owner, pipe, leave))
            finally:
                if not left:  # after a failure; the error that matters is on its way
                    with contextlib.suppress(psycopg.Error):
                        mode.__exit__(None, None, None)

    @staticmethod
    def _transaction(fn: Callable[[PgDb], T], db: PgDb) -> T:
        db.begin()
        try:
            result = fn(db)
            xid = db.xid()
        except BaseException:
            db.rollback()
            raise
        try:
            db.commit()
        except Exception as exc:
            db.rollback()
            if is_transient(exc):  # the COMMIT may have landed: ask before running again
                raise CommitUnknown(xid, result) from exc
            raise
        return result

    def _committed(self, xid: str) -> bool:
        """Whether the transaction ``xid`` committed (False: it was aborted). One the server
        is still finishing (its connection's loss not noticed yet) is asked about again."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()
        status = row[0] if row else None
        if status == "in progress":
            raise CommitUnknown(xid, None)
        return status == "committed"

    async def _sweep(self, exc: BaseException) -> None:
        """After a lost connection, drop every dead one the pool holds (after a restart, all
        of them), so the next try gets a live connection rather than the next dead one."""
        if not is_conflict(exc):
            await asyncio.to_thread(self._pool.check)


def connect_kwargs(url: str, **kwargs: Any) -> dict[str, Any]:
    """Connection options for every connection the bot opens: ``kwargs``, a connect timeout
    (a host that vanished in a failover can leave a connection attempt hanging for minutes)
    and TCP keepalives (``KEEPALIVES``: a connection that hangs rather than breaks becomes a
    transient error), each unless the URL names it."""
    named = conninfo_to_dict(url)
    for key, value in {"connect_timeout": CONNECT_TIMEOUT, **KEEPALIVES}.items():
        if key not in named:
            kwargs[key] = value
    return kwargs


class _PooledSaver(PostgresSaver):
    """LangGraph's synchronous PostgresSaver on a pool, without its process-wide lock (which
    only a single shared connection needs): run on worker threads by ``RetryingSaver``. In a
    group of writes (``in_group``), its statements go on the group's connection, in the
    group's transaction and pipeline, instead of a pooled connection of their own."""

    def __init__(self, conn: Any, serde: Any = None) -> None:
        super().__init__(conn, serde=serde)
        self._group = threading.local()  # the connection of the group this thread writes

    @contextlib.contextmanager
    def in_group(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        self._group.conn = conn
        try:
            yield
        finally:
            self._group.conn = None

    @contextlib.contextmanager
    def _cursor(self, *, pipeline: bool = False) -> Iterator[psycopg.Cursor[DictRow]]:
        assert isinstance(self.conn, ConnectionPool)
        grouped: psycopg.Connection[Any] | None = getattr(self._group, "conn", None)
        if grouped is not None:  # already in a transaction and in pipeline mode
            with grouped.cursor(binary=True, row_factory=dict_row) as cur:
                yield cur
            return
        with self.conn.connection() as conn:
            if pipeline:
                with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur


class RetryingSaver(AsyncPostgresSaver):
    """LangGraph's AsyncPostgresSaver, each call tried again through a blink. A step's
    checkpoint that waits for the database, rather than failing the stream, means the step is
    not run again (a deploy repeated). Its writes are upserts keyed by thread, checkpoint and
    task, so one that landed before its answer was lost lands again as the same rows.

    The calls of every step (``aget_tuple``, ``aput``, ``aput_writes``) run LangGraph's
    synchronous saver on worker threads (``sync``), as the store's transactions do: psycopg's
    synchronous waits cost the event loop a thread hop, its asynchronous ones about three times
    that in polling. The rarer calls stay asynchronous.

    Writes are committed in groups (as ``bot.db.sqlite.Writer`` does on SQLite): a write asked
    for while a group is on its way joins the next one, and a group is one thread hop, one
    pooled connection, one transaction and one pipeline (``_write_group``), not one of each
    per write: under load most of a write's cost was that overhead, on a process whose CPU
    is the bottleneck. A group of one is the write alone, as before. Every caller returns
    after the commit that made its write durable. A group that fails is run again one write
    at a time (each an upsert: one that landed lands again as the same rows), so only the
    caller whose write fails sees the error; a blink fails them all, and each is tried again
    by its retry."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        retry: Retry,
        fence: Fence | None = None,
        sync: tuple[ConnectionPool, ThreadPoolExecutor] | None = None,
    ) -> None:
        super().__init__(pool)  # type: ignore[arg-type]
        self._pool = pool
        self._retry = retry
        self._fence = fence or Fence()  # writes wait while this process's lock is in doubt
        self._sync = None if sync is None else _PooledSaver(cast(Any, sync[0]), serde=self.serde)
        self._sync_pool = None if sync is None else sync[0]
        self._threads = None if sync is None else sync[1]
        # shared by the copies LangGraph makes of a checkpointer (one per run)
        self._grouped: Grouped[Callable[[], Any]] = Grouped(
            lambda writes: self._on_thread(partial(self._write_group, writes)), "checkpoint-writer"
        )

    async def _on_thread(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def _write_group(self, writes: Sequence[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """On a worker thread: ``writes`` in one transaction, in pipeline mode, on one pooled
        connection; after an error that is not a blink, each again on its own."""
        sync, pool = self._sync, self._sync_pool
        assert sync is not None and pool is not None
        if len(writes) > 1:
            with pool.connection() as conn:
                try:
                    with conn.pipeline(), conn.transaction(), sync.in_group(conn):
                        results = [write() for write in writes]
                    return [(True, r) for r in results]
                except Exception as exc:
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        with contextlib.suppress(psycopg.Error):
                            conn.rollback()
                    if is_transient(exc):
                        raise
        return [_outcome(write) for write in writes]

    async def aclose(self) -> None:
        """Close the synchronous pool and its threads (the asynchronous pool is the
        caller's)."""
        if self._sync_pool is not None and self._threads is not None:
            await self._on_thread(self._sync_pool.close)
            self._threads.shutdown(wait=False)

    async def _fenced(self, write: Callable[[], Awaitable[T]]) -> T:
        """One try of a write, once this process may write (bot/db/liveness.py's fence)."""
        await self._fence.passage()
        return await write()

    @contextlib.asynccontextmanager
    async def _cursor(
        self, *, pipeline: bool = False
    ) -> AsyncIterator[psycopg.AsyncCursor[DictRow]]:
        """LangGraph's cursor without its process-wide lock: that lock serialises every
        checkpoint read and write of the process, which only a single shared connection
        needs; each call here has a pooled connection of its own."""
        async with self._pool.connection() as conn:
            if pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    async def _sweep(self, exc: BaseException) -> None:
        """As ``Database._sweep``, on the saver's pools."""
        if not is_conflict(exc):
            await self._pool.check()
            if self._sync_pool is not None:
                await self._on_thread(self._sync_pool.check)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        sync = self._sync
        if sync is not None:
            return await self._retry.run(
                lambda: self._on_thread(lambda: sync.get_tuple(config)),
                "a checkpoint read",
                self._sweep,
            )
        get = super().aget_tuple
        return await self._retry.run(lambda: get(config), "a checkpoint read", self._sweep)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        sync = self._sync
        if sync is not None:
            return await self._retry.run(
                lambda: self._fenced(
                    lambda: self._grouped(
                        lambda: sync.put(config, checkpoint, metadata, new_versions)
                    )
                ),
                "a checkpoint",
                self._sweep,
            )
        put = super().aput
        return await self._retry.run(
            lambda: self._fenced(lambda: put(config, checkpoint, metadata, new_versions)),
            "a checkpoint",
            self._sweep,
        )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        sync = self._sync
        if sync is not None:
            await self._retry.run(
                lambda: self._fenced(
                    lambda: self._grouped(
                        lambda: sync.put_writes(config, writes, task_id, task_path)
                    )
                ),
                "a step's writes",
                self._sweep,
            )
            return
        put = super().aput_writes
        await self._retry.run(
            lambda: self._fenced(lambda: put(config, writes, task_id, task_path)),
            "a step's writes",
            self._sweep,
        )

    async def adelete_thread(self, thread_id: str) -> None:
        delete = super().adelete_thread
        await self._retry.run(
            lambda: self._fenced(lambda: delete(thread_id)), "a thread's deletion", self._sweep
        )


def _outcome(write: Callable[[], T]) -> tuple[bool, T | Exception]:
    try:
        return True, write()
    except Exception as exc:
        return False, exc


async def open_saver(
    url: str, size: int = 8, retry: Retry | None = None, fence: Fence | None = None
) -> tuple[RetryingSaver, AsyncConnectionPool]:
    """LangGraph's AsyncPostgresSaver (retrying, see ``RetryingSaver``) on a pool of its own,
    set up (its tables created or migrated) under an advisory lock, so replicas starting
    together take turns; and the synchronous pool and threads its step calls run on (closed
    by ``RetryingSaver.aclose``)."""
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=size,
        kwargs=connect_kwargs(url, autocommit=True, prepare_threshold=0, row_factory=dict_row),
        open=False,
        name="bot-checkpoints",
        timeout=CHECKOUT_SECONDS,
        reconnect_timeout=CHECKOUT_SECONDS,
    )
    sync = ConnectionPool(
        url,
        min_size=1,
        max_size=size,
        kwargs=connect_kwargs(url, autocommit=True, prepare_threshold=0, row_factory=dict_row),
        open=False,
        name="bot-checkpoints-sync",
        timeout=CHECKOUT_SECONDS,
        reconnect_timeout=CHECKOUT_SECONDS,
    )
    threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="bot-checkpoints")
    await pool.open(wait=True, timeout=30)
    saver = RetryingSaver(pool, retry or Retry(), fence, (sync, threads))
    try:
        await asyncio.get_running_loop().run_in_executor(
            threads, lambda: sync.open(wait=True, timeout=30)
        )
        async with pool.connection() as lock:
            await _take_lock(lock, SAVER_LOCK)
            try:
                await saver.setup()
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (SAVER_LOCK,))
    except BaseException:
        await saver.aclose()
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
