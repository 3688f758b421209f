"""The raw floor: the /deploy graph of one checkout (``graphs.deploy.build_graph`` with
``SimulatedBackend(step_seconds=0)``) driven directly, with no Slack and no bot: ``ainvoke``
to its interrupt, then ``ainvoke(Command(resume=...))`` to the end, on ``AsyncSqliteSaver``
(LangGraph's default durability). Started as a script with ``cwd`` and ``PYTHONPATH`` set to the
checkout; prints one JSON object.

    python bench/_floor.py --flows 200 --concurrency 200 --count 20 --db /tmp/floor.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

import _probe  # this script's directory is sys.path[0]

_probe.install()  # measurement only: statement and hop counters, as in the bot

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: E402
from langgraph.types import Command  # noqa: E402

from graphs.deploy import DeployOptions, SimulatedBackend, build_graph  # noqa: E402

RESUME = {"choice": "approve", "approved": True, "decided_by": "U0BOB", "comment": None}


def _counts() -> dict[str, Any]:
    s = _probe.snapshot()
    return {k: s[k] for k in ("hops", "statements", "cpu_seconds", "db_thread_seconds")}


def _minus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {k: a[k] - b[k] for k in a}


async def main(flows: int, concurrency: int, count: int, db: str) -> dict[str, Any]:
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        graph = build_graph(DeployOptions(backend=SimulatedBackend(step_seconds=0))).compile(
            checkpointer=saver
        )

        async def start(name: str) -> dict[str, Any]:
            cfg = {"configurable": {"thread_id": name}}
            state = {"service": name, "version": "1.0.0", "env": "staging"}
            return await graph.ainvoke({**state, "requested_by": "U0ALICE"}, cfg)

        async def decide(name: str) -> None:
            out = await graph.ainvoke(Command(resume=RESUME), {"configurable": {"thread_id": name}})
            if (out.get("outcome") or {}).get("status") != "succeeded":
                raise RuntimeError(f"floor run {name} did not succeed: {out.get('outcome')}")

        for i in range(3):  # warm-up
            await start(f"warm{i}")
            await decide(f"warm{i}")
        # Per operation, one at a time: what a start and a decision cost on their own.
        started = _counts()
        for i in range(count):
            await start(f"count{i}")
        mid = _counts()
        for i in range(count):
            await decide(f"count{i}")
        end = _counts()
        # Throughput: every flow (start, then resume) at once, at most `concurrency` in flight.
        gate = asyncio.Semaphore(concurrency)

        async def flow(i: int) -> None:
            async with gate:
                await start(f"flow{i}")
                await decide(f"flow{i}")

        cpu0, t0 = _counts(), time.perf_counter()
        await asyncio.gather(*(flow(i) for i in range(flows)))
        wall = time.perf_counter() - t0
        cpu = _minus(_counts(), cpu0)
    return {
        "per_start": {k: v / count for k, v in _minus(mid, started).items()},
        "per_decision": {k: v / count for k, v in _minus(end, mid).items()},
        "flows": flows,
        "wall_seconds": wall,
        "approvals_per_second": flows / wall,
        "cpu_ms_per_flow": cpu["cpu_seconds"] * 1000 / flows,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    result = asyncio.run(main(args.flows, args.concurrency, args.count, args.db))
    json.dump(result, sys.stdout)
    sys.exit(0)
