"""Transient database errors: which they are, and trying again for a bounded time.

A database blinks: a managed PostgreSQL fails over (every connection cut, the server back
seconds later), a server restarts, two transactions deadlock or fail to serialise, the server
is out of connections for a moment; on SQLite another process holds the write lock past the
busy timeout. None of that says anything about the work itself, so everything the bot does on
the database (the store's transactions and reads, LangGraph's checkpointer, the loops) goes
through one ``Retry``: work that fails transiently is tried again with capped exponential
backoff until it succeeds or ``seconds`` have passed since its first failure
(``APPROVALS_DB_RETRY_SECONDS``, a minute by default: about what a managed database's failover
takes). Any other error is raised at once.

A transaction whose COMMIT lost its answer may have landed: the hop that ran it raises
``CommitUnknown`` (transient) and, before running it again, asks the database how it ended
(``bot.db.postgres``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SECONDS = 60.0
# PostgreSQL SQLSTATEs that pass: serialization failure, deadlock, too many connections, admin
# shutdown (a terminated backend, a fast shutdown), crash shutdown, cannot connect now
# (starting up, shutting down); class 08 is a connection exception.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "53300", "57P01", "57P02", "57P03"})
CONFLICTS = frozenset({"40001", "40P01"})  # another transaction won: no outage
MAX_TRIES = 100_000  # a bound on the loop; time ends it long before


class CommitUnknown(Exception):
    """The connection was lost while a transaction committed: it may or may not have landed.
    ``xid`` is the transaction's id (ask the database how it ended), ``result`` what the
    transaction function returned (the caller's answer if it did land)."""

    def __init__(self, xid: str, result: object) -> None:
        super().__init__("the answer to a COMMIT was lost")
        self.xid = xid
        self.result = result


class Fenced(Exception):
    """This process's proof of life broke (bot/db/liveness.py) and is not restored yet: its
    writes wait, as they would for a database that does not answer."""

    def __init__(self) -> None:
        super().__init__("waiting to hold this process's liveness lock again")


class Fence:
    """Whether this process's writes may go: open while its liveness lock has been held
    without a break since it last proved it was not reaped (see the module's notes)."""

    WAIT = 1.0  # a write waits this long at a closed fence, then fails transiently (retried)

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def passage(self) -> None:
        """Return at once while open (no round trip); else wait for it to open, raising the
        transient ``Fenced`` after ``WAIT`` s so the caller's retry budget counts the wait."""
        if self._open.is_set():
            return
        try:
            async with asyncio.timeout(self.WAIT):
                await self._open.wait()
        except TimeoutError:
            raise Fenced() from None


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is the database blinking rather than anything about the work: trying
    the same work again later can succeed."""
    if isinstance(exc, (CommitUnknown, Fenced)):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
        return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    # psycopg is looked up, not imported: a SQLite deployment never loads it, and then no
    # error can be one of its.
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        # No SQLSTATE: the client's own verdict (connection lost or refused, a pool timeout).
        state = getattr(exc, "sqlstate", None)
        return state is None or state in TRANSIENT_SQLSTATES or state.startswith("08")
    return False


def is_conflict(exc: BaseException) -> bool:
    """A serialization failure or deadlock: the connection is fine, another transaction won."""
    return getattr(exc, "sqlstate", None) in CONFLICTS


def error_name(exc: BaseException) -> str:
    """What went wrong, for a log line: the class and SQLSTATE only (a driver's message may
    name the host or the user)."""
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} {state}" if state else type(exc).__name__


class Retry:
    """The one retry policy for the database.

    ``run(work)`` awaits ``work()`` and, while it fails transiently, waits (``first`` seconds,
    doubling up to ``most``, ±20 %) and awaits it again, until ``seconds`` have passed since
    the first failure; then the last error is raised. ``on_failure(error)`` runs after each
    transient failure (a pool drops its dead connections). ``clock`` and ``sleep`` are injectable.

    It also says, once per outage rather than once per caller, when the database stopped and
    started answering."""

    def __init__(
        self,
        seconds: float = DEFAULT_SECONDS,
        *,
        first: float = 0.05,
        most: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.seconds = seconds
        self.first = first
        self.most = most
        self._clock = clock
        self._sleep = sleep
        self._down_since: float | None = None  # the first failure of the current outage

    async def run(
        self,
        work: Callable[[], Awaitable[T]],
        what: str,
        on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> T:
        started: float | None = None
        delay = self.first
        for _ in range(MAX_TRIES):
            try:
                result = await work()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = self._clock()
                if started is None:
                    started = now
                    self._failed(exc, what, now)
                if now - started >= self.seconds:
                    log.error(
                        "database: %s failed for %.0f s (%s); giving up",
                        what,
                        now - started,
                        error_name(exc),
                    )
                    raise
                if on_failure is not None:
                    await on_failure(exc)
                wait = min(delay * random.uniform(0.8, 1.2), self.seconds - (now - started))
                await self._sleep(max(0.0, wait))
                delay = min(self.most, delay * 2)
                continue
            if started is not None and self._down_since is not None:
                log.warning(
                    "database: answering again after %.1f s", self._clock() - self._down_since
                )
                self._down_since = None
            return result
        raise AssertionError("unreachable: time ends the loop")

    def _failed(self, exc: BaseException, what: str, now: float) -> None:
        if is_conflict(exc):
            log.info("database: %s lost to another transaction (%s); again", what, error_name(exc))
        elif self._down_since is None:
            self._down_since = now
            log.warning(
                "database: %s failed (%s); trying again for up to %g s",
                what,
                error_name(exc),
                self.seconds,
            )
