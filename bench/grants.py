"""``python -m bench.grants``: what a request decided by a standing grant costs, compared with
the same request decided by a click, in one sitting::

    python -m bench.grants [--emails 10] [--runs 5]

The demo's example agent (its policy allows run grants for ``send_email``) is asked to email
``--emails`` addresses, one tool call after the other, ``--runs`` times each way: every call
clicked Approve as soon as its message is in the workspace; or the first call "Approve &
allow…" for this run, the rest decided by that grant. Per email request: SQL statements and
database-thread time (sqlite3's trace callback and aiosqlite's thread, instrumented as
``python -m bench`` does: bench/_probe.py, measurement only), Slack Web API calls, and wall
time from the run's first approval to its end. One process holds the bot, its SQLite file and
the local workspace (loopback only), with the bot's pacing off so Slack's one post per second
per channel does not hide the bot's own time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _probe

WAIT = 30.0  # seconds any one step may take before the benchmark gives up


@dataclasses.dataclass
class Way:
    """One way of deciding, its totals over every run."""

    name: str
    requests: int = 0
    statements: int = 0
    db_seconds: float = 0.0
    slack_calls: int = 0
    wall: list[float] = dataclasses.field(default_factory=list)  # per run, per request

    def row(self) -> dict[str, float]:
        n = max(self.requests, 1)
        return {
            "statements": self.statements / n,
            "db_ms": self.db_seconds * 1000 / n,
            "slack_calls": self.slack_calls / n,
            "wall_ms": statistics.median(self.wall) * 1000 if self.wall else 0.0,
        }


CHANNEL = "#deploys"


def _texts(ws: Any) -> list[tuple[dict[str, Any], str]]:
    import json

    return [(m, json.dumps(m.get("blocks") or [])) for m in ws.messages(CHANNEL)]


def _buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["text"]["text"]
        for b in message.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
    ]


async def _settled(runtime: Any) -> None:
    """Every task of the bot finished and every queued Slack call sent."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        await runtime.tasks.idle()
        left = await runtime.store._all(
            "SELECT 1 FROM bot_outbox WHERE status IN ('pending','sending')"
        )
        if not left:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the bot did not settle")


async def one_run(ws: Any, runtime: Any, way: Way, emails: int, tag: str) -> None:
    """One run of the agent emailing ``emails`` addresses, decided ``way``."""
    to = [f"{tag}-{k}@example.com" for k in range(emails)]
    seen = len(ws.messages(CHANNEL))
    text = f"run agent tell {' '.join(to)} we ship"
    await ws.slash("alice", "/approvals", text, channel=CHANNEL)

    def new_ask() -> dict[str, Any] | None:
        return next((m for m in ws.messages(CHANNEL)[seen:] if _buttons(m)), None)

    first = await ws.wait_for(new_ask, timeout=WAIT)
    await _settled(runtime)
    before, calls, started = _probe.snapshot(), len(ws.calls), time.perf_counter()
    if way.name == "grant":
        await ws.click("bob", first, "Approve & allow…")
        view = await ws.wait_for(lambda: next(iter(ws.open_views("bob")), None), timeout=WAIT)
        await ws.submit_modal("bob", view, {"grant_scope": "run", "grant_for": "3600"})
    else:
        for _ in range(emails):
            ask = await ws.wait_for(new_ask, timeout=WAIT)
            seen = len(ws.messages(CHANNEL)) if ask is None else ws.messages(CHANNEL).index(ask)
            await ws.click("bob", ask, "Approve")
            seen += 1
    last = f"Done: Sent to {to[-1]}"
    await ws.wait_for(lambda: any(last in t for _, t in _texts(ws)), timeout=WAIT)
    ended = time.perf_counter()
    await _settled(runtime)
    after = _probe.snapshot()
    way.requests += emails
    way.statements += after["statements"] - before["statements"]
    way.db_seconds += after["db_thread_seconds"] - before["db_thread_seconds"]
    way.slack_calls += len(ws.calls) - calls
    way.wall.append((ended - started) / emails)


async def main(emails: int, runs: int) -> dict[str, dict[str, float]]:
    _probe.install()  # before the bot opens its database
    from bench.procs import free_port
    from bot.app.listeners import approvals
    from bot.demo import demo_settings
    from bot.localslack import LocalSlack
    from bot.runtime import BotRuntime

    with tempfile.TemporaryDirectory(prefix="bench-grants-") as tmp:
        port = free_port()
        settings = dataclasses.replace(demo_settings(port, Path(tmp) / "b.db"), pace=False)
        ws = LocalSlack(
            signing_secret=settings.signing_secret,
            bot_token=settings.bot_token,
            request_url=f"http://127.0.0.1:{port}/slack/events",
            commands=[approvals.SPEC],
        )
        runtime = await BotRuntime.open(settings)
        ws.web_app.add_routes(runtime.routes())
        await ws.start(host="127.0.0.1", port=port)
        await runtime.begin()
        ways = {"click": Way("click"), "grant": Way("grant")}
        try:
            await one_run(ws, runtime, Way("click"), 2, "warm")  # warm-up, not counted
            for i in range(runs):
                for way in ways.values():  # interleaved: both see the same machine
                    await one_run(ws, runtime, way, emails, f"{way.name}{i}")
        finally:
            await runtime.close()
            await ws.stop()
    return {name: way.row() for name, way in ways.items()}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grants", description=__doc__)
    parser.add_argument("--emails", type=int, default=10, help="tool calls per run")
    parser.add_argument("--runs", type=int, default=5, help="runs each way")
    args = parser.parse_args(argv)
    rows = asyncio.run(main(args.emails, args.runs))
    click, grant = rows["click"], rows["grant"]
    print(f"per email request, {args.runs} runs of {args.emails} each way (median wall time)")
    print("| figure | clicked each | granted after the first | ratio |")
    print("|---|---|---|---|")
    for key, label in (
        ("statements", "SQL statements"),
        ("db_ms", "DB-thread ms"),
        ("slack_calls", "Slack Web API calls"),
        ("wall_ms", "wall ms (first approval to the run's end)"),
    ):
        ratio = grant[key] / click[key] if click[key] else float("nan")
        print(f"| {label} | {click[key]:.2f} | {grant[key]:.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
