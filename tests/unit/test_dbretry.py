"""The database's retry policy (bot/db/retry.py): which errors pass, and how long and how often
work is tried again, on an injected clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from bot.db.retry import CommitUnknown, Retry, is_transient


def test_what_counts_as_a_blink(tmp_path: Path) -> None:
    for exc in [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        errors.AdminShutdown(),
        errors.CrashShutdown(),
        errors.CannotConnectNow(),
        errors.SerializationFailure(),
        errors.DeadlockDetected(),
        errors.TooManyConnections(),
        errors.ConnectionFailure(),
        PoolTimeout("couldn't get a connection after 2.00 sec"),
        CommitUnknown("123", None),
    ]:
        assert is_transient(exc), exc
    for exc in [
        errors.UniqueViolation(),
        errors.UndefinedTable(),
        errors.QueryCanceled(),
        psycopg.ProgrammingError("bad"),
        ValueError("a bug"),
        sqlite3.OperationalError("no such table: bot_runs"),
    ]:
        assert not is_transient(exc), exc
    # SQLite's own "database is locked", from a second connection holding the write lock
    db = tmp_path / "a.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(db, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("BEGIN IMMEDIATE")
    assert is_transient(locked.value)
    holder.rollback()


class Clock:
    """Time that moves only when the retry sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_transient_failures_are_tried_again_with_capped_backoff() -> None:
    clock = Clock()
    retry = Retry(60, first=0.05, most=1.0, clock=clock, sleep=clock.sleep)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 10:
            raise errors.AdminShutdown()
        return "done"

    assert await retry.run(flaky, "a test") == "done"
    assert calls == 10 and len(clock.sleeps) == 9
    # 0.05 doubling to 1.0, each within ±20 %
    for got, nominal in zip(clock.sleeps, [0.05, 0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1], strict=True):
        assert nominal * 0.8 <= got <= nominal * 1.2, clock.sleeps


async def test_it_gives_up_after_the_budget_and_never_retries_other_errors() -> None:
    clock = Clock()
    retry = Retry(5, first=0.05, most=1.0, clock=clock, sleep=clock.sleep)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(psycopg.OperationalError):
        await retry.run(down, "a test")
    assert 5 <= clock.now - 100.0 <= 5 + 1e-9  # the last wait is cut to the budget
    assert 8 <= calls <= 12

    async def bug() -> None:
        nonlocal calls
        calls += 1
        raise errors.UniqueViolation()

    calls = 0
    with pytest.raises(errors.UniqueViolation):
        await retry.run(bug, "a test")
    assert calls == 1

    # a budget of 0: tried once
    calls = 0
    with pytest.raises(psycopg.OperationalError):
        await Retry(0, clock=clock, sleep=clock.sleep).run(down, "a test")
    assert calls == 1
