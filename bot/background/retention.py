"""Retention: finished runs and their LangGraph checkpoints are deleted once they are older
than ``APPROVALS_RETENTION_DAYS``; the audit table keeps every row.

Nothing else ever deletes a thread (a pending one costs a few KB of SQLite and stays until it
is decided), so without this the file only grows. Pruning runs in passes at most once per
``every`` seconds of the injected clock, each bounded (``batches`` * ``batch`` runs), one
short transaction per batch, so clicks interleave with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from bot.db.ops import OpsStore, Pruned
from bot.tasks import Loop, woken

log = logging.getLogger(__name__)

DAY = 86_400.0


class ThreadDeleter(Protocol):
    """The checkpointer's public way to forget a thread (LangGraph's ``adelete_thread``)."""

    async def adelete_thread(self, thread_id: str) -> None: ...


class Pruner:
    """The pruning loop: it remembers when the last pass ran (passes are at most ``every``
    seconds apart on the injected clock) and deletes the checkpoints of the runs it pruned
    through the saver, since the store cannot reach LangGraph's tables."""

    def __init__(
        self,
        ops: OpsStore,
        saver: ThreadDeleter,
        retention_days: float,
        *,
        clock: Callable[[], float] = time.time,
        every: float = 3600.0,
        batch: int = 100,
        batches: int = 10,
        first_after: float = 60.0,
        on_pruned: Callable[[Pruned], None] = lambda pruned: None,
    ) -> None:
        self._ops = ops
        self._saver = saver
        self._keep = retention_days * DAY
        self._clock = clock
        self._every = every
        self._batch = batch
        self._batches = batches
        self._first_after = first_after  # start-up is busy enough (recovery, catching up)
        self._on_pruned = on_pruned
        self._last: float | None = None  # when the last pass ran, on the injected clock
        self._wake = asyncio.Event()
        self._loop = Loop("pruner", self._run)
        self.passes = 0  # passes this process finished, their metrics counted (tests and logs)

    @property
    def enabled(self) -> bool:
        return self._keep > 0

    def wake(self) -> None:
        """Look at the clock again now (a test that moved its clock calls this)."""
        self._wake.set()

    def start(self) -> None:
        if self.enabled:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        await woken(self._wake, self._first_after)
        while True:
            self._wake.clear()
            now = self._clock()
            if self._last is None or now - self._last >= self._every:
                self._last = now
                try:
                    await self.prune(now)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the DB went away mid-shutdown, or a bug: next pass
                    log.error("pruning failed: %r", exc)
            # The loop's timer, not the injected clock: a test moves its clock and wakes us.
            await woken(self._wake, max(1.0, self._last + self._every - self._clock()))

    async def prune(self, now: float) -> Pruned:
        """One pass: delete up to ``batches`` * ``batch`` runs that finished before
        ``now`` minus the retention, checkpoints first (a crash in between leaves rows
        that the next pass deletes, with their already-deleted checkpoints)."""
        if not self.enabled:
            return Pruned(0, 0)
        cutoff = now - self._keep
        runs = rows = 0
        for _ in range(self._batches):
            ids = await self._ops.prunable_runs(cutoff, self._batch)
            for run_id in ids:
                await self._saver.adelete_thread(run_id)
            done = await self._ops.forget_runs(ids, cutoff) if ids else Pruned(0, 0)
            runs, rows = runs + done.runs, rows + done.outbox_rows
            if len(ids) < self._batch:
                break
            await asyncio.sleep(0)  # let waiting clicks take the lock between batches
        rows += await self._ops.forget_loose_outbox(cutoff, self._batch * self._batches)
        pruned = Pruned(runs, rows)
        if runs or rows:
            log.info("pruned %d finished run(s) and %d delivered Slack message row(s)", runs, rows)
        self._on_pruned(pruned)
        self.passes += 1
        return pruned
