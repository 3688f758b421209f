"""Benchmark: ack latency and click-to-message-updated latency on loopback, plus a burst of
concurrent /deploy commands on one SQLite file. Prints its figures; asserts nothing.

    python -m tests.benchmark [--clicks 200] [--burst 50]

The whole stack is real: the local workspace signs and POSTs each click to the Bolt app over
HTTP, the bot answers through the Web API client, state lives in a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.localslack import LocalSlack
from tests.conftest import SECRET, TOKEN, Harness


def files_kb(pattern: str) -> float:
    return sum(os.path.getsize(p) for p in glob.glob(pattern)) / 1024


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(name: str, ms: list[float]) -> str:
    return (
        f"{name:<34} n={len(ms):<4} p50={pct(ms, 50):7.2f} ms  p99={pct(ms, 99):7.2f} ms  "
        f"max={max(ms):7.2f} ms  mean={statistics.mean(ms):7.2f} ms"
    )


def decided(message: dict[str, Any] | None) -> bool:
    return bool(message) and not any(b["type"] == "actions" for b in message.get("blocks", []))


async def main(clicks: int, burst: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = LocalSlack(signing_secret=SECRET, bot_token=TOKEN)
        await ws.start()
        h = Harness(ws, Path(tmp) / "bench.db")
        await h.start_bot()
        # Timings come from the workspace's own change events, not from polling, so the
        # measuring costs the bot (same process, same event loop) next to nothing.
        updated: dict[str, float] = {}  # ts -> when the message first showed a decision
        posted: dict[str, float] = {}  # ts -> when an approval message appeared

        def on_event(event: dict[str, Any], _to: str | None) -> None:
            if event.get("type") == "message" and "thread_ts" not in event:
                posted[event["ts"]] = time.perf_counter()
            if (
                event.get("type") == "message_changed"
                and event["ts"] not in updated
                and decided(ws.model.find_message(event["channel"], event["ts"]))
            ):
                updated[event["ts"]] = time.perf_counter()

        ws.model.listeners.append(on_event)

        slash_ack, post_ms, click_ack, click_update = [], [], [], []
        for i in range(clicks):
            posted.clear()
            t0 = time.perf_counter()
            d = await ws.slash("alice", "/deploy", f"svc{i} 1.0.{i} staging")
            slash_ack.append(d.elapsed * 1000)
            ts = await ws.wait_for(lambda: next(iter(posted), None), timeout=10, interval=0.0005)
            post_ms.append((posted[ts] - t0) * 1000)
            msg = ws.model.find_message(ws.conversation("#deploys").id, ts)
            t1 = time.perf_counter()
            d = await ws.click("bob", msg, "Approve")
            click_ack.append(d.elapsed * 1000)
            await ws.wait_for(lambda ts=msg["ts"]: ts in updated, timeout=10, interval=0.0005)
            click_update.append((updated[msg["ts"]] - t1) * 1000)
            await h.idle()

        print(f"loopback, {clicks} sequential requests each (2-core machine)")
        print(line("slash command ack", slash_ack))
        print(line("slash -> approval message posted", post_ms))
        print(line("click ack (block_actions)", click_ack))
        print(line("click -> message updated", click_update))

        t0 = time.perf_counter()
        before = len(ws.messages("#deploys"))
        acks = await asyncio.gather(
            *(ws.slash("alice", "/deploy", f"b{i} 2.0.{i} staging") for i in range(burst))
        )
        await ws.wait_for(lambda: len(ws.messages("#deploys")) >= before + burst, timeout=60)
        await h.idle()
        print(
            f"burst of {burst} concurrent /deploy: all acked "
            f"{all(a.status == 200 for a in acks)}, all posted in "
            f"{(time.perf_counter() - t0) * 1000:.0f} ms, "
            f"acks p99 {pct([a.elapsed * 1000 for a in acks], 99):.1f} ms"
        )
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size_kb = files_kb(f"{tmp}/bench.db*")
        runs = clicks + burst
        print(
            f"peak RSS (bot + workspace + client in one process): {rss_mb:.0f} MB; "
            f"SQLite files {size_kb:.0f} KB for {runs} runs ({size_kb / runs:.1f} KB/run)"
        )
        for bot in h.bots:
            await bot.stop()
        await ws.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.clicks, args.burst))
