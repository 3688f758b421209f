"""Keeps this process's run leases and takes over the runs nobody holds.

A run being driven is leased to one process (``bot_runs.owner`` and ``lease_until``, see
``bot.store.RunLease``). This loop renews the leases of the runs this process is driving,
every third of the lease, and takes over runs left 'running' by a process that stopped (it
let them go) or died (its lease ended): ``Engine.recover``. It looks at start-up, then every
third of the lease (never more often than once a second), and at once when woken (a run was
let go here, or another process said so through PostgreSQL's NOTIFY).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.dbretry import error_name
from bot.store import Store
from bot.tasks import Loop, woken

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        recover: Callable[[], Awaitable[int]],
        driving: Callable[[], Sequence[str]],
    ) -> None:
        self._store = store
        self._recover = recover
        self._driving = driving
        self._every = max(1.0, store.lease.seconds / 3)
        self._wake = asyncio.Event()
        self._loop = Loop("lease-keeper", self._run)
        self.start, self.stop = self._loop.start, self._loop.stop
        self.taken = 0  # runs this process took over (tests, logs)

    def wake(self) -> None:
        self._wake.set()

    async def look(self) -> int:
        """Renew what this process drives; take over what nobody holds. Returns how many
        runs were taken."""
        driving = self._driving()
        if driving:
            # Fewer renewed than driven is normal: a run that just finished or paused is not
            # 'running' any more while its task is still unwinding.
            await self._store.runs_renew(driving)
        taken = await self._recover()
        if taken:
            log.info("took over %d run(s) that no running process held", taken)
        self.taken += taken
        return taken

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the DB away past its retry budget, or a bug: keep going
                log.error("run leases: %s", error_name(exc))
            await woken(self._wake, self._every)
            await asyncio.sleep(0.05)  # a burst of wake-ups is looked at once
