"""Proof of life (bot/db/liveness.py) against real processes, a real file and the real PostgreSQL:
a process killed with SIGKILL is dead to the others at once (SQLite) or within two looks a
second apart (PostgreSQL); a live one never is, not even while PostgreSQL drops its lock's
connection again and again."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from bot.db.base import process_id
from bot.db.liveness import CONFIRM, LOCK_CLASS, WATCH, AdvisoryLocks, FileLocks, Liveness, lock_key
from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
# A process that holds its lock as the bot does, says so, and waits to be killed.
HOLDER = """
import asyncio, sys
from pathlib import Path
from bot.db.liveness import AdvisoryLocks, FileLocks

async def main() -> None:
    where, owner = sys.argv[1], sys.argv[2]
    lock = AdvisoryLocks(where, owner) if "://" in where else FileLocks(Path(where), owner)
    await lock.hold()
    print("held", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def judge_for(where: str, owner: str) -> Liveness:
    return AdvisoryLocks(where, owner) if "://" in where else FileLocks(Path(where), owner)


@pytest.fixture
async def where(tmp_path: Path, database_url: str | None) -> str:
    return database_url or str(tmp_path / "approvals.db")


@pytest.fixture
async def judge(where: str) -> AsyncIterator[Liveness]:
    lock = judge_for(where, process_id())
    await lock.hold()
    yield lock
    await lock.close()


async def holder(where: str, owner: str, reaper: list[asyncio.subprocess.Process]):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, where, owner, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    reaper.append(proc)
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"held\n"
    return proc


async def dead_within(judge: Liveness, owner: str, seconds: float) -> float | None:
    """How long until ``judge`` says ``owner`` is dead (None: not within ``seconds``)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if owner in await judge.dead([owner]):
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    return None


async def test_a_killed_process_is_dead_to_the_others_and_a_live_one_is_not(
    where: str, judge: Liveness, reaper: list[asyncio.subprocess.Process]
) -> None:
    owner = process_id()
    proc = await holder(where, owner, reaper)
    # Alive: never dead, however long one looks (on PostgreSQL: over two looks a second apart).
    alive_for = CONFIRM + 2 * WATCH + 0.5 if "://" in where else 0.3
    assert await dead_within(judge, owner, alive_for) is None
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    took = await dead_within(judge, owner, 10)
    assert took is not None, "a killed process still looks alive"
    # SQLite: the kernel dropped the flock, so at once. PostgreSQL: two looks a second apart.
    assert took < (0.2 if "://" not in where else CONFIRM + 2 * WATCH + 0.5), took
    judge.forget([owner])  # its leases were taken over: what it left is cleaned up
    if "://" not in where:
        assert not (Path(where + ".owners") / owner).exists()


async def test_an_owner_nobody_can_prove_dead_keeps_its_leases(tmp_path: Path) -> None:
    """SQLite: an owner with no lock file (a process of an earlier release, or one already
    reaped) is not dead: its leases wait for their time. The judge never judges itself."""
    judge = FileLocks(tmp_path / "approvals.db", process_id())
    await judge.hold()
    try:
        assert await judge.dead(["elsewhere:1:0123abcd", "../../etc:1:x", judge.owner]) == set()
        assert (tmp_path / "approvals.db.owners" / judge.owner).exists()
    finally:
        await judge.close()


async def test_a_lock_connection_dropped_again_and_again_is_not_a_death(pg_url: str) -> None:
    """The database ends the session of a live replica's lock (a network blip, a terminated
    backend): it takes the lock again at once, and nobody judges it dead meanwhile. Nor when
    it is without its lock for less than CONFIRM seconds: dead means free on two looks that
    far apart."""
    owner = process_id()
    alive = AdvisoryLocks(pg_url, owner)
    judge = AdvisoryLocks(pg_url, process_id())
    await alive.hold()
    await judge.hold()

    async def never_dead(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert owner not in await judge.dead([owner])
            await asyncio.sleep(0.02)

    def cut(admin: psycopg.Connection, who: str) -> int:
        """End the session holding ``who``'s lock (this test's own, nobody else's)."""
        holders = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype='advisory' AND classid::bigint=%s "
            "AND objid::bigint=%s AND granted",
            (LOCK_CLASS, lock_key(who)),
        ).fetchall()
        for (pid,) in holders:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return len(holders)

    try:
        cuts = 0
        with psycopg.connect(pg_url, autocommit=True) as admin:
            for n in range(4):
                cuts += cut(admin, owner)
                if n >= 2:  # both at once, as a failover cuts every connection
                    assert cut(admin, judge.owner) == 1
                await never_dead(0.5)
        assert cuts == 4
        await never_dead(0.5)
        assert alive.retaken == cuts  # each time at once: the judge never saw it dead
        assert judge.retaken == 2
        for _ in range(2):  # without the lock for 0.6 s, twice
            await alive.close()
            await never_dead(0.6 * CONFIRM)
            alive = AdvisoryLocks(pg_url, owner)
            await alive.hold()
            # Held across one of the judge's looks: a lock free on two looks a second apart,
            # with none between them seeing it held, is a death however briefly it was back.
            await never_dead(WATCH + 0.3)
        await never_dead(CONFIRM + WATCH)
    finally:
        await alive.close()
        await judge.close()
