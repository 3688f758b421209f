"""Two replicas on PostgreSQL; the one driving a deploy loses its liveness lock's connection
(the database ends that one session, as a network blip or an operator would) again and again
while the deploy runs. It takes its lock again at once, so the other replica, looking all the
while, takes nothing over: the run stays with its driver, deploys once, and every progress
line is posted once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg

from bot.db.liveness import CONFIRM, LOCK_CLASS, lock_key
from bot.localslack import LocalSlack
from tests.conftest import Harness
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    FAST,
    STEPS,
    GatedBackend,
    buttons,
    done,
    message,
    progress_counts,
)

CUTS = 4


async def test_a_replica_whose_lock_connection_drops_keeps_its_run(
    ws: LocalSlack, tmp_path: Path, pg_url: str
) -> None:
    h = Harness(ws, tmp_path / "approvals.db", pg_url)
    gated = GatedBackend(closed=[1])  # the deploy waits after its first line
    try:
        driver = await h.start_bot(**FAST, backend=gated)
        other = await h.start_bot(**FAST, backend=gated)
        ws.request_url = driver.url  # every request goes to the driver
        await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
        msg = await h.wait(lambda: h.approval_message(), timeout=DEADLINE)
        await ws.click("bob", msg, "Approve")
        await h.wait(lambda: gated.started == 1, timeout=DEADLINE)
        owner = driver.runtime.store.lease.owner
        assert h.query("SELECT owner FROM bot_runs") == [(owner,)]

        cuts = 0
        with psycopg.connect(pg_url, autocommit=True) as admin:
            for _ in range(CUTS):
                sessions = admin.execute(
                    "SELECT pid FROM pg_locks WHERE locktype='advisory' AND classid::bigint=%s "
                    "AND objid::bigint=%s AND granted",
                    (LOCK_CLASS, lock_key(owner)),
                ).fetchall()
                for (pid,) in sessions:  # the driver's lock session only
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    cuts += 1
                other.runtime.leases.wake()  # it looks at once, and again and again
                for _ in range(int(CONFIRM / 0.05)):
                    await asyncio.sleep(0.05)
                    other.runtime.leases.wake()
                    assert h.query("SELECT owner FROM bot_runs") == [(owner,)]
        assert cuts == CUTS
        assert driver.runtime.backend.liveness.retaken == CUTS  # type: ignore[attr-defined]
        assert other.runtime.leases.reaped == 0 and other.runtime.leases.taken == 0

        gated.open()
        ts = msg["ts"]
        await h.wait(lambda: done(ws, ts), timeout=DEADLINE)
        await h.wait(
            lambda: not h.query("SELECT 1 FROM bot_outbox WHERE status IN ('pending','sending')"),
            timeout=DEADLINE,
        )
        events = dict(
            h.query(
                "SELECT event, COUNT(*) FROM bot_audit WHERE event IN "
                "('decided', 'resumed', 'run_done') GROUP BY event"
            )
        )
        assert events == {"decided": 1, "resumed": 1, "run_done": 1}, events
        assert gated.started == 1, f"deployed {gated.started} times"
        assert progress_counts(ws, ts) == dict.fromkeys(STEPS, 1)
        assert buttons(message(ws, ts)) == []
        assert h.query("SELECT COUNT(*) FROM bot_owners") == [(2,)]  # nobody was reaped
    finally:
        ws.release()
        for bot in h.bots:
            await bot.stop()
