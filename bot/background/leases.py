"""Keeps this process's run leases and takes over what dead or stopped processes held.

A run being driven is leased to one process (``bot_runs.owner`` and ``lease_until``, see
``bot.db.base.RunLease``); so are the outbox rows a process is sending and the deadlines it is
firing. This loop renews the leases of the runs this process is driving, every third of the
lease, and takes over:

- everything a process held whose death is proven by its lock (bot/db/liveness.py: an flock on
  SQLite, an advisory lock on PostgreSQL): its runs, the outbox rows it was sending (sent
  again at once, except a newer version of an update, which waits until the dead process's
  older copy can no longer land) and the deadlines it was firing, at once, not when their
  leases end;
- runs left 'running' by a process that stopped (it let them go) or whose lease ended (its
  death could not be proven, say another host that stopped answering): ``Engine.recover``,
  which also continues the runs this process stopped driving while the database was away
  past the retry budget (they are still its own: nobody else would before their leases end).

A PostgreSQL process judged dead while it lived (bot/db/liveness.py) learns it when it holds its
lock again: it stops driving its runs at once (``abandon``) and registers again at the next
look, which follows at once.

It looks at start-up (so a process restarted after a crash takes over at once), then every
third of the lease (never more often than once a second; a second after a look the database
did not answer), and at once when woken: a run was let go or cut here, another process said so
through PostgreSQL's NOTIFY, or the liveness watch saw a replica's lock stay free
(PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.db.liveness import Liveness
from bot.db.retry import error_name
from bot.db.store import Store
from bot.tasks import Loop, woken

log = logging.getLogger(__name__)


class LeaseKeeper:
    """The loop described above, as one object: it holds what the loop must remember between
    looks (whether this process was reaped and must register again, the wake-up event) and
    counts what it took over, for tests and logs."""

    def __init__(
        self,
        store: Store,
        liveness: Liveness,
        recover: Callable[[], Awaitable[int]],
        driving: Callable[[], Sequence[str]],
        *,
        released: Sequence[Callable[[], None]] = (),
        hold: float = 20.0,
        abandon: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._liveness = liveness
        self._recover = recover
        self._driving = driving
        self._released = released  # woken when dead owners' rows are due again (outbox, …)
        self._hold = hold  # how long a newer version of an update waits (see release_dead)
        self._every = max(1.0, store.lease.seconds / 3)
        self._abandon = abandon  # stop driving every run (this process was judged dead)
        self._unregistered = False  # reaped meanwhile: register again at the next look
        self._wake = asyncio.Event()
        self._loop = Loop("lease-keeper", self._run)
        self.start, self.stop = self._loop.start, self._loop.stop
        self.taken = 0  # runs this process took over (tests, logs)
        self.reaped = 0  # dead processes whose leases this process let go (tests, logs)
        liveness.set_wake(self.wake)
        liveness.set_proof(store.owner_registered, self._reaped)

    def wake(self) -> None:
        self._wake.set()

    def _reaped(self) -> None:
        """Another process took this one for dead and took over its leases (its lock, held
        again now, proves it alive): drive none of those runs any more, register again."""
        self._abandon()
        self._unregistered = True
        self.wake()

    async def look(self) -> int:
        """Renew what this process drives; let go of what dead processes held; take over
        the runs nobody holds. Returns how many runs were taken."""
        if self._unregistered:
            await self._store.owner_started(self._store.lease.clock())
            self._unregistered = False
            log.info("registered again: this process's leases are judged by its lock again")
        driving = self._driving()
        if driving:
            # Fewer renewed than driven is normal: a run that just finished or paused is not
            # 'running' any more while its task is still unwinding.
            await self._store.runs_renew(driving)
        dead = await self._liveness.dead(await self._store.owners())
        if dead:
            # Only the owners whose locks are still free in the reap's transaction are reaped.
            released = await self._store.release_dead(sorted(dead), self._hold)
            self._liveness.forget(released.owners)
            self.reaped += len(released.owners)
            if released.runs or released.outbox or released.deadlines:
                log.info(
                    "%d process(es) gone (their locks are free); let go of their %d run(s), "
                    "%d Slack call(s) and %d deadline(s)",
                    len(released.owners),
                    released.runs,
                    released.outbox,
                    released.deadlines,
                )
            if released.outbox or released.deadlines:
                for wake in self._released:
                    wake()
        taken = await self._recover()
        if taken:
            log.info("took over %d run(s) that no running process held", taken)
        self.taken += taken
        return taken

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self._every
            try:
                await self.look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the DB away past its retry budget, or a bug: keep going
                log.error("run leases: %s", error_name(exc))
                wait = 1.0  # runs cut meanwhile continue as soon as it answers
            await woken(self._wake, wait)
            await asyncio.sleep(0.05)  # a burst of wake-ups is looked at once
