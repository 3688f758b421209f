"""The local Slack workspace as the benchmark's Slack, and a tracker that timestamps what the
bot makes it show (approval posted, message updated, run done, App Home published) from the
workspace's own change events: no polling, and nothing the bot can see."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bench.procs import SECRET, TOKEN, BenchError
from bot.localslack import LocalSlack
from bot.localslack.callbacks import Delivery
from bot.localslack.model import BOT_USER_ID

CHANNELS = 50
REQUESTER, APPROVER = "alice", "bob"
SERVICE = re.compile(r"\bsvc(\d{7})\b")


def channel_id(i: int) -> str:
    return f"C0BENCH{i % CHANNELS:02d}"


class DriverGc:
    """gc pauses in this process (workspace and driver), so they can be told from the bot's.
    Every wave starts with ``gc.freeze()``: the objects alive by then (thousands of workspace
    messages and recorded calls) are never scanned again, so a collection during a wave only
    looks at what that wave allocated."""

    max_ms = 0.0
    total_ms = 0.0
    _started = 0.0

    @classmethod
    def install(cls) -> None:
        if cls._on_gc not in gc.callbacks:
            gc.callbacks.append(cls._on_gc)

    @classmethod
    def reset(cls) -> None:
        cls.max_ms = cls.total_ms = 0.0

    @classmethod
    def _on_gc(cls, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            cls._started = time.perf_counter()
        else:
            pause = (time.perf_counter() - cls._started) * 1000
            cls.max_ms = max(cls.max_ms, pause)
            cls.total_ms += pause


async def open_workspace() -> LocalSlack:
    """A started workspace with 50 channels (requester, approver and the bot in each), Slack's
    rate limits off, a 30 s ack timeout (acks slower than Slack's 3 s are counted, not cut) and
    an HTTP client with no connection limit (aiohttp's default of 100 would queue 500
    concurrent clicks in the client and bill the bot for it)."""
    DriverGc.install()
    ws = LocalSlack(signing_secret=SECRET, bot_token=TOKEN, ack_timeout=30.0)
    members = ["U0ALICE", "U0BOB", BOT_USER_ID]
    for i in range(CHANNELS):
        ws.model.add_channel(channel_id(i), f"bench-{i:02d}", members)
    ws.set_rate_limits(False)
    await ws.start()
    # The workspace creates its delivery session lazily; give it ours first (bench only).
    ws.callbacks._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    return ws


def _has_actions(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "actions" for b in message.get("blocks") or [])


# The bot shows a run's outcome as a section starting with one of these (bot/render/blocks.py,
# OUTCOME_EMOJI, the same in every version so far); the wording after it may change.
OUTCOMES = {"✅": "succeeded", "💥": "failed", "🚫": "rejected", "⏰": "timed_out", "ℹ️": "other"}


def _outcome(message: dict[str, Any]) -> str | None:
    for block in message.get("blocks") or []:
        if block.get("type") != "section":
            continue
        text = (block.get("text") or {}).get("text") or ""
        for emoji, outcome in OUTCOMES.items():
            if text.startswith(emoji + " "):
                return outcome
    return None


class Tracker:
    """Timestamps (``time.perf_counter``) of what each run made the workspace show, by run
    number ``n`` (the service is named ``svc<n>``), and futures to await them."""

    def __init__(self, ws: LocalSlack) -> None:
        self.ws = ws
        self.next_n = 0
        self.posted: dict[int, tuple[float, str, str]] = {}  # n -> (when, channel, ts)
        self.decided: dict[int, float] = {}  # first update without buttons
        self.done: dict[int, float] = {}  # the outcome is on the message
        self.failed: set[int] = set()
        self._by_ts: dict[str, int] = {}
        self._waiters: dict[tuple[str, Any], list[asyncio.Future[float]]] = {}
        ws.model.listeners.append(self._on_event)

    def new_run(self) -> int:
        self.next_n += 1
        return self.next_n

    # -- the workspace's change events (called synchronously by the model) ----------------
    def _on_event(self, event: dict[str, Any], to_user: str | None) -> None:
        now = time.perf_counter()
        kind = event.get("type")
        if kind == "message" and "thread_ts" not in event:
            message = self.ws.model.find_message(event["channel"], event["ts"])
            if not message or message.get("user") != BOT_USER_ID or not _has_actions(message):
                return
            found = SERVICE.search(message.get("text") or "") or SERVICE.search(
                json.dumps(message.get("blocks") or [])
            )
            if found:
                n = int(found.group(1))
                self._by_ts[event["ts"]] = n
                self.posted.setdefault(n, (now, event["channel"], event["ts"]))
                self._fire("posted", n, now)
        elif kind == "message_changed":
            n = self._by_ts.get(event["ts"])
            if n is None or n in self.done:
                return
            message = self.ws.model.find_message(event["channel"], event["ts"])
            if not message or _has_actions(message):
                return
            if n not in self.decided:
                self.decided[n] = now
                self._fire("decided", n, now)
            outcome = _outcome(message)
            if outcome:
                self.done[n] = now
                if outcome != "succeeded":
                    self.failed.add(n)
                self._fire("done", n, now)
        elif kind == "home" and to_user:
            self._fire("home", to_user, now)

    def _fire(self, kind: str, key: Any, when: float) -> None:
        for fut in self._waiters.pop((kind, key), []):
            if not fut.done():
                fut.set_result(when)

    # -- waiting -----------------------------------------------------------------------------
    def expect(self, kind: str, key: Any) -> asyncio.Future[float]:
        """A future for the next ``kind`` event of ``key`` (register before acting)."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((kind, key), []).append(fut)
        return fut

    async def when(self, kind: str, n: int, timeout: float) -> float:  # noqa: ASYNC109
        """When run ``n`` was posted / decided / done; waits up to ``timeout`` seconds."""
        seen: dict[int, Any] = {"posted": self.posted, "decided": self.decided, "done": self.done}[
            kind
        ]
        if n not in seen:
            try:
                await asyncio.wait_for(self.expect(kind, n), timeout)
            except TimeoutError:
                raise BenchError(f"run svc{n:07d} not {kind} after {timeout} s") from None
        value = seen[n]
        return value[0] if isinstance(value, tuple) else value

    def message(self, n: int) -> dict[str, Any]:
        _, channel, ts = self.posted[n]
        message = self.ws.model.find_message(channel, ts)
        if message is None:
            raise BenchError(f"message of svc{n:07d} is gone")
        return message


async def slash(ws: LocalSlack, n: int) -> Delivery:
    """``/deploy svc<n> 1.0.0 staging`` by the requester, in one of the 50 channels."""
    return await ws.slash(REQUESTER, "/deploy", f"svc{n:07d} 1.0.0 staging", channel_id(n))


async def click(ws: LocalSlack, tracker: Tracker, n: int) -> Delivery:
    """The approver clicks Approve on run ``n``'s approval message."""
    return await ws.click(APPROVER, tracker.message(n), "Approve")


def ack_ms(d: Delivery, what: str) -> float:
    if d.status != 200:
        raise BenchError(f"{what}: HTTP {d.status} {d.error or ''} {d.body[:200]}")
    return d.elapsed * 1000


async def gather_bounded(
    factories: list[Callable[[], Any]],
    timeout: float,  # noqa: ASYNC109
) -> list[Any]:
    """Run coroutines at once (one wave); fail (cancelling the rest) if they take over
    ``timeout``."""
    gc.freeze()  # see DriverGc
    tasks = [asyncio.ensure_future(f()) for f in factories]
    try:
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
