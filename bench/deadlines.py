"""``python -m bench.deadlines``: the scheduler's figures, printed (nothing is asserted).

In one process: the real bot runtime (fake clock for deadlines) against the local workspace
over loopback, on a temp SQLite file.

- deadline → DM: how long from a due escalation to the DM in the workspace;
- idle: CPU the whole bot uses in 10 s with 10,000 deadlines waiting;
- burst: 1,000 escalations falling due at once: how long until all are claimed and fired,
  then how the DMs go out with the workspace enforcing Slack's rate limits (429s counted).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bot.config import Settings
from bot.localslack import LocalSlack
from bot.policy.parse import parse_policy
from bot.runtime import BotRuntime
from graphs.deploy import DeployOptions, SimulatedBackend

SECRET = "bench-secret"
TOKEN = "xoxb-bench"
POLICY = {
    "policy": {
        "deploy": {
            "prod": {
                "approvers": ["U0BOB"],
                "escalation": [{"after": "30m", "notify": ["U0DAN"]}],
            }
        }
    }
}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def poll(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    """Poll with a deadline (bounded: at most ``seconds``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return bool(predicate())


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = LocalSlack(signing_secret=SECRET, bot_token=TOKEN)
        await ws.start(host="127.0.0.1", port=0)
        clock = Clock()
        settings = Settings(
            bot_token=TOKEN,
            signing_secret=SECRET,
            api_url=ws.api_url,
            db_path=Path(tmp) / "bench.db",
            deploy=DeployOptions(backend=SimulatedBackend(step_seconds=0)),
            policy=parse_policy(POLICY, "bench"),
            pace=False,  # building the requests; pacing is turned on for the burst
        )
        rt = await BotRuntime.open(settings, clock)
        await rt.begin()
        try:
            await figures(rt, ws, clock)
        finally:
            await rt.close(grace=1)
            await ws.stop()


def dms(ws: LocalSlack) -> int:
    return len([m for m in ws.messages("D0DAN") if m.get("blocks")])


async def open_approvals(rt: BotRuntime, n: int) -> None:
    for start in range(0, n, 50):
        await asyncio.gather(
            *(
                rt.engine.start(
                    "/deploy",
                    {"service": "api", "version": f"1.0.{i}", "env": "prod"},
                    "U0ALICE",
                    "C0DEPLOYS",
                )
                for i in range(start, min(n, start + 50))
            )
        )


async def figures(rt: BotRuntime, ws: LocalSlack, clock: Clock) -> None:
    # deadline -> DM, one approval
    await open_approvals(rt, 1)
    await poll(lambda: rt.outbox._idle.is_set(), 10)  # measurement only
    clock.now += 30 * 60
    t0 = time.perf_counter()
    rt.scheduler.wake()
    await poll(lambda: dms(ws) >= 1, 10)
    print(f"deadline -> DM: {1000 * (time.perf_counter() - t0):.1f} ms")

    # idle with 10,000 deadlines waiting (synthetic rows: the scheduler reads only them)
    await rt.store._write(  # measurement only
        lambda db: db.executemany(
            "INSERT INTO bot_deadlines(interrupt_id, run_id, kind, level, due_at, status) "
            "VALUES (?, 'bench', 'escalate', 0, ?, 'pending')",
            [(f"idle{i}", clock.now + 86_400 + i) for i in range(10_000)],
        )
    )
    rt.scheduler.wake()
    await asyncio.sleep(0.5)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(10)
    cpu = time.process_time() - cpu0
    print(
        f"idle, 10,000 deadlines waiting: {1000 * cpu:.1f} ms CPU in "
        f"{time.perf_counter() - wall0:.1f} s (bot and workspace in this one process)"
    )

    # 1,000 escalations falling due at once, paced, against Slack's rate limits
    started = time.perf_counter()
    await open_approvals(rt, 1000)
    print(f"opened 1,000 approvals in {time.perf_counter() - started:.1f} s")
    await poll(lambda: rt.outbox._idle.is_set(), 120)  # measurement only
    rt.outbox.pacer.enabled = True
    ws.set_rate_limits(True)
    before_dms, before_calls, fired0 = dms(ws), len(ws.calls), rt.scheduler.fired
    clock.now += 30 * 60
    t0 = time.perf_counter()
    rt.scheduler.wake()
    await poll(lambda: rt.scheduler.fired - fired0 >= 1000, 60)
    claimed = time.perf_counter() - t0
    print(f"1,000 due at once: all claimed and fired in {claimed:.2f} s")
    await asyncio.sleep(30)
    calls = ws.calls[before_calls:]
    limited = sum(1 for c in calls if c.status == 429)
    print(
        f"in the 30 s after: {dms(ws) - before_dms} DMs delivered, {len(calls)} Web API calls, "
        f"{limited} answered 429"
    )


if __name__ == "__main__":
    asyncio.run(main())
