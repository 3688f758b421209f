"""Delivers the outbox: every Slack side effect the engine decided on, durably.

Rows were written in the same transaction as the state change that caused them, so a crash or
a Slack outage can delay a message but never lose it. The sender:

- retries every transient failure (429 with its Retry-After, 5xx with any body, resets,
  timeouts) with capped exponential backoff, for ``retry_for`` seconds, not three tries;
- paces itself to Slack's limits (``Pacer``), so a burst queues instead of earning 429s;
- keeps order: a row waits for the message it refers to (an update for its post's ``ts``, a
  reply for its thread), and rows of one lane (a thread) go one at a time, oldest first;
- sends only the newest content of a message that was updated several times (the store
  coalesces by key);
- takes rows with a conditional UPDATE and a lease that names this process (and the version
  it took), so two processes never send one row. A row whose sender died is sent again as
  soon as that death is proven (leases.py: its lock is free), at once when it is still the
  version the dead sender had, and only after ``late_landing`` plus a call's timeout when it
  is a newer update, so the dead sender's older copy lands first, never on top of it; when
  the death cannot be proven, once the lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.config import OutboxOptions
from bot.db.outbox import REPLACES, FastPath
from bot.db.retry import error_name, is_transient
from bot.db.store import Store
from bot.model import Delivery, Sent
from bot.slack.client import SlackError, SlackPort
from bot.tasks import woken

log = logging.getLogger(__name__)

# Requests per minute (Slack's tiers); chat.postMessage is paced per channel instead.
TIER_PER_MINUTE = {2: 20, 3: 50, 4: 100}
METHOD_TIER = {
    "chat.update": 3,
    "chat.postEphemeral": 4,
    "conversations.open": 3,
    "views.publish": 4,
    "usergroups.users.list": 2,
}
POST_PER_SECOND = 1.0  # chat.postMessage, per channel
POST_BURST = 3

KIND_METHOD = {
    "post": "chat.postMessage",
    "update": "chat.update",
    "ephemeral": "chat.postEphemeral",
    "dm": "chat.postMessage",
    "publish": "views.publish",
    "respond": "",  # response_url: not a Web API method, not rate limited the same way
}


@dataclass
class _Bucket:
    """One method's token bucket, and how long Slack's Retry-After paused it."""

    capacity: float
    per_second: float
    tokens: float
    at: float
    paused_until: float = 0.0


@dataclass
class Pacer:
    """Token buckets per Slack method (per channel for chat.postMessage), on the injected
    clock. ``delay`` says how long a call must wait; ``take`` spends a token; ``pause`` stops a
    bucket after a 429 for the Retry-After Slack gave."""

    clock: Callable[[], float]
    enabled: bool = True
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _bucket(self, method: str, channel: str) -> _Bucket | None:
        if method == "chat.postMessage":
            key, capacity, rate = f"{method}:{channel}", float(POST_BURST), POST_PER_SECOND
        elif method in METHOD_TIER:
            per_minute = TIER_PER_MINUTE[METHOD_TIER[method]]
            key, capacity, rate = method, float(per_minute), per_minute / 60
        else:
            return None
        now = self.clock()
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = _Bucket(capacity, rate, capacity, now)
        b.tokens = min(b.capacity, b.tokens + max(0.0, now - b.at) * b.per_second)
        b.at = now
        return b

    def delay(self, method: str, channel: str = "") -> float:
        b = self._bucket(method, channel) if method else None
        if b is None:
            return 0.0
        wait = max(0.0, b.paused_until - self.clock())
        if not self.enabled:
            return wait
        return max(wait, 0.0 if b.tokens >= 1 else (1 - b.tokens) / b.per_second)

    def take(self, method: str, channel: str = "") -> None:
        b = self._bucket(method, channel) if method else None
        if b is not None:
            b.tokens -= 1

    def pause(self, method: str, channel: str, seconds: float) -> None:
        b = self._bucket(method, channel) if method else None
        if b is not None:
            b.paused_until = max(b.paused_until, self.clock() + seconds)
            b.tokens = min(b.tokens, 0.0)


FailureHandler = Callable[[Delivery, SlackError], Awaitable[None]]


class Outbox:
    """The sender of the outbox (see the module's notes): one loop per process, the rows in
    flight, and the deliveries Slack took but not yet recorded. It exists so that every
    Slack call the engine decided on is made once, in order per lane, whatever crashes or
    outages come between."""

    def __init__(
        self,
        store: Store,
        slack: SlackPort,
        on_failed: FailureHandler,
        *,
        clock: Callable[[], float] = time.time,
        stamp: Callable[[], float] | None = None,
        pacer: Pacer | None = None,
        options: OutboxOptions | None = None,
    ) -> None:
        self._store = store
        self._slack = slack
        self._on_failed = on_failed
        self._clock = clock  # Slack's time: pacing, backoff, leases
        self._stamp = stamp or clock  # the bot's time, for when a message landed
        self.pacer = pacer or Pacer(clock)
        self._options = options or OutboxOptions()
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Deliveries Slack took, recorded in one transaction at the next pass (one write per
        # pass, not one per message: the sender shares the database lock with every click).
        self._sent: list[Sent] = []
        self._idle = asyncio.Event()  # set after a pass with nothing in flight or due
        self._draining = False  # ``stop`` waits for ``_idle``
        self._dm_channels: dict[str, str] = {}  # user -> the bot's DM with them
        self._lanes: set[str] = set()
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None
        self._recorder: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Something was queued or delivered: look again now."""
        self._wake.set()

    def take(self, rows: list[Delivery]) -> None:
        """Rows a transaction just queued and claimed for this process: send them now."""
        if self._stopping or self._loop is None:
            return  # not sending any more: the next process takes them over (leases.py)
        for d in rows:
            method, channel = self._method(d)
            delay = self.pacer.delay(method, channel)
            self.pacer.take(method, channel)
            if d.lane is not None:
                self._lanes.add(d.lane)
            self._idle.clear()
            self._inflight[d.id] = asyncio.create_task(
                self._deliver(d, delay), name=f"outbox-{d.id}"
            )

    def fast_path(self) -> FastPath:
        return FastPath(self.take, self._running, self._clock, self._options.lease)

    def _running(self) -> bool:
        return self._loop is not None and not self._stopping

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="outbox")

    async def stop(self, grace: float) -> int:
        """Deliver what is due for up to ``grace`` seconds, then stop; returns how many
        deliveries were cut (the next process to look takes their rows over once this one's
        lock is free, bot/background/leases.py). Every delivery Slack took is recorded before this
        returns."""
        if self._loop is None:
            return 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._idle.clear()
        self._draining = True
        self._wake.set()
        try:  # until nothing is due (rows waiting for a later retry stay for the next start)
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            pass
        self._stopping = True
        self._wake.set()
        await asyncio.gather(self._loop, return_exceptions=True)  # starts nothing more
        if self._recorder is not None:
            await asyncio.gather(self._recorder, return_exceptions=True)
        self._loop = None
        if self._inflight:  # what the last pass started gets the rest of the grace period
            await asyncio.wait(
                set(self._inflight.values()), timeout=max(0.0, deadline - loop.time())
            )
        late = list(self._inflight.values())
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        await self._record_sent()
        return len(late)

    # -- the loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                wait = await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the DB away past its retry budget, or a bug: keep going
                log.error("outbox: dispatch failed: %s", error_name(exc))
                wait = 1.0
            if self._stopping:
                break
            if await woken(self._wake, wait):
                # A burst of commits wakes us hundreds of times: look once for all of them.
                await asyncio.sleep(self._options.coalesce)
        await self._record_sent()

    async def _record_sent(self) -> None:
        """Record what Slack took, and go straight on to the rows that waited for it."""
        if not self._sent:
            return
        done, self._sent = self._sent, []
        try:
            follow = not self._stopping
            taken, left = await self._store.outbox_sent_many(
                done, self._clock(), self._options.lease, follow
            )
        except BaseException:
            self._sent[:0] = done  # recorded by the next pass, never sent again
            raise
        self.take(taken)
        if left:
            self._wake.set()

    def _delivered(self, sent: Sent) -> None:
        self._sent.append(sent)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_soon(), name="outbox-record")

    async def _record_soon(self) -> None:
        """Record deliveries as they finish (those finishing together in one write) without a
        pass over the whole outbox. No pass follows when all is well: the rows behind these
        were claimed in the same write, and rows left for later wake the loop themselves.
        While ``stop`` waits, one pass when nothing is left in flight tells it the sender is
        idle."""
        try:
            while self._sent and not self._stopping:
                await asyncio.sleep(0)  # deliveries finishing in this tick join this write
                await self._record_sent()
        except Exception as exc:  # the DB went away: the loop's next pass records them
            log.error("outbox: recording deliveries failed: %s", error_name(exc))
            self._wake.set()
        if not self._inflight and self._draining:
            self._wake.set()

    async def _dispatch(self) -> float:
        """Start every delivery that may go now; returns how long to sleep at most."""
        await self._record_sent()
        now = self._clock()
        rows = await self._store.outbox_open(self._options.batch)
        blocked: set[str] = set(self._lanes)
        ready: list[Delivery] = []
        wait = self._options.idle_poll
        parents_failed: list[Delivery] = []
        due_but_paced = 0
        for d in rows:
            lane = d.lane
            if d.id in self._inflight or (lane is not None and lane in blocked):
                continue
            if lane is not None:
                blocked.add(lane)  # later rows of this lane wait for this one
            if d.status == "sending":
                if d.lease_until is not None and d.lease_until > now:
                    wait = min(wait, d.lease_until - now)
                    continue
            elif d.next_at > now:
                wait = min(wait, d.next_at - now)
                continue
            if d.ref is not None and d.ref_status == "failed":
                parents_failed.append(d)
                continue
            if d.ref is not None and d.ref_ts is None:
                continue  # its message is not in Slack yet; that post's success wakes us
            if len(self._inflight) + len(ready) >= self._options.concurrency:
                wait = min(wait, self._options.idle_poll)
                break
            method, channel = self._method(d)
            delay = self.pacer.delay(method, channel)
            if delay > 0:
                wait = min(wait, delay)
                due_but_paced += 1
                continue
            self.pacer.take(method, channel)
            ready.append(d)
        for d in parents_failed:
            await self._store.outbox_failed(d, now, "parent_failed")
            log.info("outbox: %s %s dropped: its message was never posted", d.kind, d.key)
        if not ready and not self._inflight and not self._sent and not due_but_paced:
            self._idle.set()
        else:
            self._idle.clear()
        if ready:
            taken = await self._store.outbox_claim([d.id for d in ready], now, self._options.lease)
            for d in ready:
                if d.id in taken:
                    version, payload = taken[d.id]
                    d = replace(d, version=version, payload=payload)
                    if d.lane is not None:
                        self._lanes.add(d.lane)
                    self._inflight[d.id] = asyncio.create_task(
                        self._deliver(d), name=f"outbox-{d.id}"
                    )
        return max(0.0, wait)

    def _method(self, d: Delivery) -> tuple[str, str]:
        method = KIND_METHOD.get(d.kind, "")
        if d.kind == "post":
            return method, str(d.channel or d.ref_channel or "")
        if d.kind == "dm":
            channel = d.channel or self._dm_channels.get(str(d.payload.get("user")))
            return ("chat.postMessage", channel) if channel else ("conversations.open", "")
        return method, ""

    async def _deliver(self, d: Delivery, delay: float = 0.0) -> None:
        try:
            await self._attempt(d, delay)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # The database did not answer for the whole retry budget: the row keeps its lease
            # and is taken again when it ends (no Slack call of it succeeded unrecorded).
            log.error(
                "outbox: %s row %s waits for the database (%s)", d.kind, d.id, error_name(exc)
            )
        finally:
            self._inflight.pop(d.id, None)
            if d.lane is not None:
                self._lanes.discard(d.lane)

    async def _attempt(self, d: Delivery, delay: float) -> None:
        try:
            if delay > 0:  # a fast-path row over the pace: wait its turn
                await asyncio.sleep(delay)
            channel, ts = await self._send(d)
        except asyncio.CancelledError:
            raise
        except SlackError as exc:
            await self._failed(d, exc)
            self._wake.set()  # its retry, or the rows behind it, need a pass
        except Exception as exc:  # a bug in a payload: do not retry it forever
            if is_transient(exc):
                raise
            log.error("outbox: %s row %s could not be sent: %r", d.kind, d.id, exc)
            await self._failed(d, SlackError(f"unexpected_{type(exc).__name__}"))
            self._wake.set()
        else:
            # Recorded in a moment, with the rows that waited for it: no pass needed.
            self._delivered(
                Sent(delivery=d, now=self._clock(), channel=channel, ts=ts, posted_at=self._stamp())
            )

    async def _send(self, d: Delivery) -> tuple[str | None, str | None]:
        """One delivery: the Web API call(s) its kind needs."""
        p: Mapping[str, Any] = d.payload
        text = str(p.get("text") or "")
        blocks: list[dict[str, Any]] | None = p.get("blocks")
        if d.kind == "post":
            channel = str(p.get("channel") or d.channel or d.ref_channel or "")
            thread_ts = d.ref_ts if d.ref else None
            return await self._slack.post(channel, text, blocks, thread_ts)
        if d.kind == "update":
            await self._slack.update(str(d.ref_channel), str(d.ref_ts), text, blocks)
            return None, None
        if d.kind == "ephemeral":
            thread = str(p["thread_ts"]) if p.get("thread_ts") else None
            await self._slack.ephemeral(str(p["channel"]), str(p["user"]), text, thread)
            return None, None
        if d.kind == "dm":
            user = str(p["user"])
            dm = d.channel or self._dm_channels.get(user)
            if dm is None:
                dm = await self._slack.open_dm(user)
                await self._store.outbox_note_channel(d, dm)
                self.pacer.take("chat.postMessage", dm)
            self._dm_channels[user] = dm  # a DM's id never changes: open it once
            return await self._slack.post(dm, text, blocks)
        if d.kind == "publish":
            await self._slack.publish_home(str(p["user"]), p["view"])
            return None, None
        if d.kind == "respond":
            await self._slack.respond(str(p["url"]), text)
            return None, None
        raise SlackError(f"unknown_kind_{d.kind}")

    async def _failed(self, d: Delivery, exc: SlackError) -> None:
        now = self._clock()
        method, channel = self._method(d)
        if exc.retry_after:
            self.pacer.pause(method, channel, exc.retry_after)
        failing_since = d.failing_since if d.failing_since is not None else now
        if exc.transient and now - failing_since < self._options.retry_for:
            backoff = min(
                self._options.backoff_max, self._options.backoff_first * 2 ** min(d.attempts, 20)
            )
            delay = max(exc.retry_after, backoff * random.uniform(0.8, 1.2))
            if exc.code == "timeout" and d.kind in REPLACES:
                delay = max(delay, self._options.late_landing)
            log.info(
                "outbox: %s for run %s failed (%s), attempt %d; again in %.1f s",
                d.kind,
                d.run_id,
                exc.code,
                d.attempts + 1,
                delay,
            )
            await self._store.outbox_retry(d, now, now + delay, exc.code)
            return
        await self._store.outbox_failed(d, now, exc.code)
        log.warning(
            "outbox: gave up on %s %s for run %s after %d attempt(s): %s",
            d.kind,
            d.key or d.id,
            d.run_id,
            d.attempts + 1,
            exc.code,
        )
        await self._on_failed(d, exc)
