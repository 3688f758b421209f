"""Fires stored deadlines (reminders, escalations, timeouts), each once.

Deadlines live in the database, so a restart loses none: one that passed while the bot was
down fires once, at start-up. The scheduler sleeps until the next one is due and is woken
early when one is added or moved. Each due deadline is taken with a conditional UPDATE under a
lease that names this process, and fired only by the process that holds it, so it fires once
even with two processes on one database. One that a process died while firing is due again as
soon as its death is proven (its lock is free, see leases.py), and the scheduler is woken;
when it cannot be proven, when the lease runs out.

Time comes from the injected clock. Sleeping uses the event loop's timer, so a test that moves
a fake clock forward calls ``wake()`` to make the scheduler look again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot.db.retry import error_name, is_transient
from bot.db.store import Store
from bot.model import Deadline
from bot.tasks import Loop, woken

log = logging.getLogger(__name__)

Fire = Callable[[Deadline], Awaitable[None]]


class Scheduler:
    """Fires the deadlines kept in the database (reminders, escalations, timeouts) when they
    fall due: one loop per process that sleeps until the next one, or until woken by a new
    deadline here or (PostgreSQL) another replica's. Each deadline is claimed under a lease
    before it fires, so it fires once across processes."""

    def __init__(
        self,
        store: Store,
        fire: Fire,
        *,
        clock: Callable[[], float] = time.time,
        lease: float = 60.0,
        batch: int = 200,
        idle_poll: float = 30.0,
        observe_lag: Callable[[str, float], None] = lambda kind, seconds: None,
    ) -> None:
        self._store = store
        self._fire = fire
        self._clock = clock
        self._lease = lease
        self._batch = batch
        self._idle_poll = idle_poll  # deadlines another process added are seen this often
        self._wake = asyncio.Event()
        self._loop = Loop("scheduler", self._run)
        self.fired = 0  # deadlines this process fired (metrics, tests)
        self._observe_lag = observe_lag  # how late each fired (metrics)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the DB away past its retry budget, or a bug: keep going
                log.error("scheduler: %s", error_name(exc))
                wait = 1.0
            await woken(self._wake, wait)

    async def run_due(self) -> float:
        """Fire everything due now; returns how long until the next deadline (capped). The
        next deadline is read first: a wake-up with nothing due (every new request wakes the
        scheduler) costs one read, not a write transaction and a read."""
        next_at = await self._store.next_deadline()
        if next_at is None or next_at > self._clock():
            return self._wait(next_at)
        for _ in range(1000):  # bounded: 1000 batches is 200,000 deadlines in one go
            now = self._clock()
            due = await self._store.deadlines_claim(now, self._lease, self._batch)
            for deadline in due:
                self._observe_lag(deadline.kind, now - deadline.due_at)
                try:
                    await self._fire(deadline)
                    self.fired += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    what = (deadline.kind, deadline.id)
                    if is_transient(exc):  # still 'firing' under its lease: fired when it ends
                        log.error("scheduler: %s deadline %s waits for the database", *what)
                    else:
                        log.exception("scheduler: %s deadline %s failed", *what)
            if len(due) < self._batch:
                break
        return self._wait(await self._store.next_deadline())

    def _wait(self, next_at: float | None) -> float:
        if next_at is None:
            return self._idle_poll
        return max(0.0, min(self._idle_poll, next_at - self._clock()))
