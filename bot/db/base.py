"""What every aggregate of the store needs: the transaction a statement runs in (``Tx``),
the hops to the database, the lease that names this process, the wake-up notifications, and
the two records most transactions read (a run, an approval with its run).

The aggregates (bot/db/runs.py, approvals.py, deadlines.py, outbox.py, keys.py, audit.py) are
mixins over ``Base``; ``bot.db.store.Store`` joins them into the one object callers hold.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from bot.model import Approval, Delivery, Run

T = TypeVar("T")


class Cursor(Protocol):
    """What a statement gives back, sqlite3's cursor and bot/db/postgres.py's alike."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Sequence[Any]: ...


class Conn(Protocol):
    """The connection a transaction function is handed: sqlite3's on aiosqlite's thread, or
    bot/db/postgres.py's ``PgDb`` on a worker thread. The SQL is written once, for both."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor: ...


Row = sqlite3.Row


# Runs ``fn(db)`` where the database is (SQLite: aiosqlite's thread; PostgreSQL: a pooled
# connection on a worker thread, see bot/db/postgres.py) and returns its result.
Hop = Callable[[Callable[[Any], Any]], Awaitable[Any]]


@dataclass(frozen=True)
class RunLease:
    """Which process this is, and how long a run it drives stays its own without a renewal.

    Several processes share one database: a run is driven only by the process whose lease
    it holds (``bot_runs.owner``, until ``lease_until`` on ``clock``, the wall clock whatever
    clock the engine's deadlines use). The owner's lock says when it died (bot/db/liveness.py):
    its leases are taken over then; the time is the fallback for an owner whose death
    cannot be proven (another host that stopped answering)."""

    owner: str = field(default_factory=lambda: process_id())
    seconds: float = 30.0
    clock: Callable[[], float] = time.time

    def until(self) -> float:
        return self.clock() + self.seconds


def process_id() -> str:
    """``host:pid:random``: unique to this process (never reused by a restart), and tells an
    operator reading ``bot_runs.owner`` which replica drives a run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Tx:
    """One store transaction as its statements see it: the connection's ``execute`` and
    ``executemany`` (anything else, such as PostgreSQL's ``notify``, is the connection's),
    and the audit rows it writes, kept for its end (``_chain``)."""

    __slots__ = ("_db", "audit", "behind", "claim", "queued", "taken")

    def __init__(self, db: Conn) -> None:
        self._db = db
        self.audit: list[tuple[Any, ...]] = []  # integrity.CHAINED columns, in order
        # outbox rows it queued, waiting, and the first of each one's lane (``_queue``)
        self.queued: list[tuple[int, str | None]] = []
        # the fast path's owner and lease: new rows that may go at once are taken by their
        # insert (``_INSERT_TAKEN``) and kept here
        self.claim: tuple[str, float] | None = None
        self.taken: list[Delivery] = []
        self.behind: list[str | None] = []  # what each new row that could not go waits for

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._db.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _notify(db: Tx | Conn, what: str) -> None:
    """Tell the other processes on the database, at commit, that ``what`` (outbox,
    deadlines, runs) has work for them (PostgreSQL's NOTIFY; SQLite: nothing, one process
    per file is the rule there and the idle polls cover the rest)."""
    notify = getattr(db, "notify", None)
    if notify is not None:
        notify(what)


def _then_notify(fn: Callable[[Conn], T], what: str, db: Conn) -> T:
    result = fn(db)
    _notify(db, what)
    return result


class Base:
    """The state every aggregate's methods share (set by ``Store.__init__``) and the plumbing
    they run their SQL through. Each public method of an aggregate is one transaction and one
    thread hop (see ``bot.db.sqlite``)."""

    # set by ``Store.__init__``, which says what each is
    _hop: Hop
    _writer: Hop
    _postgres: bool
    _for_update: str
    lease: RunLease
    _on_outbox: Callable[[], None]
    _on_runs: Callable[[], None]
    _audit_key: bytes | None

    async def _write(self, fn: Callable[[Tx], T], wakes: bool = False, one: bool = False) -> T:
        """Run ``fn`` as one transaction: ``Store._write``, which needs the outbox's fast path
        and the audit chain (aggregates built on this base). ``one``: ``fn`` runs one
        statement and writes no audit row."""
        raise NotImplementedError

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        """A read: one hop, no lock (a single statement never lands inside our writes)."""
        params = tuple(args)
        return await self._hop(lambda db: db.execute(sql, params).fetchall())

    async def _one(self, sql: str, args: Iterable[Any]) -> Row | None:
        rows = await self._all(sql, args)
        return rows[0] if rows else None


def _run(row: Row, p: str = "") -> Run:
    return Run(
        run_id=row[p + "run_id"],
        command=row[p + "command"],
        input=json.loads(row[p + "input"]),
        requester=row[p + "requester"],
        channel=row[p + "channel"],
        status=row[p + "status"],
        thread_key=row[p + "thread_key"],
        outcome=json.loads(row[p + "outcome"]) if row[p + "outcome"] else None,
        created_at=row[p + "created_at"],
        response_url=row[p + "response_url"],
        attempt=row[p + "attempt"],
    )


def _approval(row: Row) -> Approval:
    approved = row["approved"]
    return Approval(
        interrupt_id=row["interrupt_id"],
        run_id=row["run_id"],
        request=json.loads(row["request"]),
        status=row["status"],
        channel=row["channel"],
        ts=row["ts"],
        choice=row["choice"],
        approved=None if approved is None else bool(approved),
        decided_by=row["decided_by"],
        comment=row["comment"],
        decided_at=row["decided_at"],
        created_at=row["created_at"],
        rules=json.loads(row["rules"]) if row["rules"] else None,
        meta=json.loads(row["meta"]) if row["meta"] else None,
        answer=json.loads(row["answer"]) if row["answer"] is not None else None,
        digest=row["digest"],
        graph_interrupt_id=row["graph_interrupt_id"],
    )


_RUN_COLUMNS = (
    "run_id",
    "command",
    "input",
    "requester",
    "channel",
    "status",
    "thread_key",
    "outcome",
    "created_at",
    "response_url",
    "attempt",
)


# An approval with its run in one read; the run's columns carry an r_ prefix.
_APPROVAL_AND_RUN = (
    "SELECT a.*, "
    + ", ".join(f"r.{c} AS r_{c}" for c in _RUN_COLUMNS)
    + " FROM bot_approvals a JOIN bot_runs r USING (run_id) WHERE a.interrupt_id=?"
)
