"""Is the owner of a lease alive? Each process proves it is by holding, for its whole life, a
lock that the kernel or the database lets go of when the process dies, however it dies.

A lease (``bot_runs.owner``, an outbox row being sent, a deadline being fired) names its
owner, ``host:pid:random`` (``bot.db.base.process_id``). When the owner's lock is free, the owner
is dead and its leases are taken over at once, not when their time runs out (see
background/leases.py). A pid alone proves nothing: pid 1 in every container, and pids are reused.

- SQLite (``FileLocks``): an ``flock`` on ``<db>.owners/<owner>``, beside the database. The
  kernel drops it when the process dies. A file that is not there proves nothing (an owner
  from an earlier release, or one already reaped): its leases wait for their time.
- PostgreSQL (``AdvisoryLocks``): a session advisory lock, keyed by a hash of the owner, held
  on a connection of its own. The database drops it when the session ends, which it does when
  the process dies, but also when only that connection breaks (a network blip, a terminated
  backend, a failover) while the process lives. So the lock is taken again at once on a new
  connection (and every 0.2 s while the database is away), and an owner is dead only when its
  lock was seen free on two looks at least ``CONFIRM`` seconds apart, on one connection of the
  judge's, with no look between them seeing it held. The same connection looks at
  every owner's lock once a second (one read of ``pg_locks``) and wakes the lease keeper when
  an owner's lock has been free that long: a replica's death is noticed within about two
  seconds without anyone polling the bot's tables faster.

Only owners registered in ``bot_owners`` are judged (a process registers after taking its
lock): an unregistered owner, such as a replica of an earlier release during a rolling
upgrade, keeps its leases until their time runs out.

A PostgreSQL replica cut off from the database for longer than that (a partition, its lock
connection cut again and again) is alive but looks dead, and its runs are taken over. It must
then never write for them again, so:

- the reap is atomic with the proof: the judge's transaction takes the owner's key as a
  transaction advisory lock (``pg_try_advisory_xact_lock``; it and the session lock exclude
  each other) and, holding it, lets go of the owner's leases and deletes its ``bot_owners``
  row. An owner that holds its lock again is not reaped; one reaped cannot take its lock again
  before the reap is committed;
- the owner knows when its lock was not held without a break (its lock connection failed):
  from then on its ``Fence`` (bot/db/retry.py) is closed, and every write of this process
  (the store's and the checkpointer's) waits, until it holds the lock again and has read that
  its ``bot_owners`` row is still there. While the lock is held without interruption the fence
  costs one attribute read per write, no round trip;
- a reaped owner stops driving its runs at once, before its fence opens (their tasks are
  cancelled: the runs are neither finished nor failed, their new owner continues them), and
  registers again under the same owner id (background/leases.py): its lock, held again, proves it
  alive from then on. Whatever it wrote under that id before the reap was let go of by the
  reap; whatever it writes after is its own again.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.db.retry import Fence, error_name, is_transient
from bot.tasks import Loop

if TYPE_CHECKING:  # a SQLite deployment never loads psycopg
    import psycopg

log = logging.getLogger(__name__)

# An owner id as a file name: nothing that could leave the folder or hide in it.
_OWNER = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


class Liveness(Protocol):
    """This process's proof of life, and the judge of others'."""

    owner: str

    async def hold(self) -> None:
        """Take this process's lock; held until ``close``."""
        ...

    async def dead(self, owners: Collection[str]) -> set[str]:
        """The owners among these that are provably dead (never this process)."""
        ...

    def forget(self, owners: Collection[str]) -> None:
        """Their leases were taken over: drop what is kept about them."""
        ...

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when an owner may have died (PostgreSQL; SQLite never calls it)."""
        ...

    def set_proof(
        self, registered: Callable[[], Awaitable[bool]], reaped: Callable[[], None]
    ) -> None:
        """After this process's lock was lost and taken again, ask ``registered`` whether it
        is still known (not reaped meanwhile); if not, call ``reaped`` (it stops driving its
        runs and registers again) before its writes go on. SQLite's lock is never lost."""
        ...

    async def close(self) -> None:
        """Let the lock go: this process holds no lease any more."""
        ...


def lock_folder(db_path: Path) -> Path:
    """Where the processes on this SQLite file keep their lock files."""
    return db_path.with_name(db_path.name + ".owners")


class FileLocks:
    """SQLite: ``<db>.owners/<owner>``, flocked by its owner for its whole life. Checking
    takes a shared lock without waiting: it fails while the owner lives, and two checkers
    never get in each other's way."""

    def __init__(self, db_path: Path, owner: str) -> None:
        self.owner = owner
        self.folder = lock_folder(db_path)
        self._fd: int | None = None

    async def hold(self) -> None:
        if not _OWNER.fullmatch(self.owner):
            raise ValueError("this process's owner id cannot name a file")
        self.folder.mkdir(exist_ok=True)
        # Locked before it has its name: nobody ever sees this owner's file unlocked.
        new = self.folder / f".new-{self.owner}"
        fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)  # not inherited
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(new, self.folder / self.owner)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    async def dead(self, owners: Collection[str]) -> set[str]:
        return {o for o in owners if o != self.owner and self._dead(o)}

    def _dead(self, owner: str) -> bool:
        if not _OWNER.fullmatch(owner) or owner.startswith("."):
            return False
        try:
            fd = os.open(self.folder / owner, os.O_RDONLY)
        except FileNotFoundError:
            return False  # never had one here (another release), or already reaped
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner holds it: alive
        finally:
            os.close(fd)
        return True

    def forget(self, owners: Collection[str]) -> None:
        for owner in owners:
            if _OWNER.fullmatch(owner) and not owner.startswith("."):
                (self.folder / owner).unlink(missing_ok=True)

    def set_wake(self, wake: Callable[[], None]) -> None:
        pass  # one process per file is the rule: a death is seen at the next look

    def set_proof(
        self, registered: Callable[[], Awaitable[bool]], reaped: Callable[[], None]
    ) -> None:
        pass  # the kernel holds the flock for as long as the process lives

    async def close(self) -> None:
        # The file stays: the next process to look finds it unlocked and takes over whatever
        # this one still held (Slack calls cut by the stop), then removes it.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


LOCK_CLASS = 0x6C697665  # the first half of every owner's advisory lock key: "live"
WATCH = 1.0  # seconds between looks at pg_locks
CONFIRM = 1.0  # an owner is dead when its lock was free on two looks this far apart
# Waits before each try to take the lock again, the last one repeated: well under CONFIRM, so
# once the database is back a live process holds its lock again before anyone can judge it.
RECONNECT = (0.0, 0.05, 0.1, 0.2)
_HELD = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s "
    "AND objsubid = 2 AND granted AND database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database())"
)


def lock_key(owner: str) -> int:
    """The second half of the owner's advisory lock key (31 bits: ``pg_locks`` shows it as an
    oid). Two owners sharing one is harmless: a dead one then looks alive, and its leases wait
    for their time."""
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:4], "big") & 0x7FFFFFFF


class AdvisoryLocks:
    """PostgreSQL: this process's advisory lock, held on a connection of its own that also
    watches everyone else's (see the module's notes)."""

    def __init__(self, url: str, owner: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.owner = owner
        self._url = url
        self._key = lock_key(owner)
        self._clock = clock
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._loop = Loop("liveness", self._run)
        self._wake: Callable[[], None] = lambda: None
        self._held: set[int] = set()  # keys held at the last look
        self._looked: float | None = None  # when the last look began
        self._looked_end = 0.0  # and when it ended
        self._free: dict[int, float] = {}  # key -> when a look first saw it free (end)
        self._told: set[int] = set()  # keys whose death the lease keeper was woken for
        self.fence = Fence()  # this process's writes wait on it (bot/db/postgres.py)
        self._registered: Callable[[], Awaitable[bool]] | None = None
        self._reaped: Callable[[], None] = lambda: None
        self.retaken = 0  # times the lock was taken again after its connection broke (tests)
        self.reborn = 0  # times this process found it had been reaped (tests, logs)

    def set_wake(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def set_proof(
        self, registered: Callable[[], Awaitable[bool]], reaped: Callable[[], None]
    ) -> None:
        self._registered, self._reaped = registered, reaped

    async def hold(self) -> None:
        await self._connect()
        self._loop.start()

    async def close(self) -> None:
        await self._loop.stop()
        if self._conn is not None:
            await self._conn.close()  # the session ends: the lock goes with it
            self._conn = None

    async def dead(self, owners: Collection[str]) -> set[str]:
        if self._looked is None:
            return set()
        found = set()
        for owner in owners:
            key = lock_key(owner)
            if owner == self.owner or key in self._held:
                continue
            since = self._free.setdefault(key, self._looked_end)
            if self._looked - since >= CONFIRM:
                found.add(owner)
        return found

    def forget(self, owners: Collection[str]) -> None:
        for owner in owners:
            key = lock_key(owner)
            self._free.pop(key, None)
            self._told.discard(key)

    async def _connect(self) -> None:
        import psycopg

        from bot.db.postgres import connect_kwargs

        conn = await psycopg.AsyncConnection.connect(
            self._url, **connect_kwargs(self._url, autocommit=True)
        )
        try:
            for _ in range(50):  # a session of ours that just broke may still hold it
                cur = await conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, self._key)
                )
                row = await cur.fetchone()
                if row and row[0]:
                    break
                await asyncio.sleep(0.02)
            else:
                raise TimeoutError("another session holds this process's liveness lock")
            await self._look(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _look(self, conn: psycopg.AsyncConnection[Any]) -> None:
        began = self._clock()
        cur = await conn.execute(_HELD, (LOCK_CLASS,))
        held = {int(r[0]) for r in await cur.fetchall()}
        ended = self._clock()
        for key in self._held - held:  # held at the last look, free now
            self._free.setdefault(key, ended)
        for key in held:
            self._free.pop(key, None)
            self._told.discard(key)
        self._held, self._looked, self._looked_end = held, began, ended
        confirmed = {k for k, since in self._free.items() if began - since >= CONFIRM}
        if confirmed - self._told:
            self._told |= confirmed
            self._wake()

    async def _run(self) -> None:
        import psycopg

        while True:
            conn = self._conn
            try:
                if conn is None:
                    await self._reconnect()
                    continue
                # Waits WATCH seconds, or raises at once if the connection breaks.
                async for _ in conn.notifies(timeout=WATCH):
                    pass
                await self._look(conn)
            except (psycopg.Error, OSError) as exc:
                # From here the lock may be free: nothing of this process is written until it
                # is held again and this process is known not to have been reaped meanwhile.
                self.fence.close()
                # Its name only: a driver's message may name the host.
                log.warning("liveness lock lost (%s); taking it again", error_name(exc))
                self._conn = None
                if conn is not None:
                    await conn.close()

    async def _reconnect(self) -> None:
        """Take the lock again on a new connection, at once, then a little later each try."""
        import psycopg

        lost = self._clock()
        # What was seen free before this connection broke does not count with what is seen
        # after: the others may be reconnecting too (a failover cuts every connection).
        self._free.clear()
        self._told.clear()
        for attempt in range(100_000):  # bounded: hours of tries
            await asyncio.sleep(RECONNECT[min(attempt, len(RECONNECT) - 1)])
            try:
                await self._connect()
                known = self._registered is None or await self._registered()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                if attempt == 0:
                    log.warning("liveness lock: cannot take it again yet (%s)", error_name(exc))
                await self._drop()
                continue
            except Exception as exc:  # the store's read past its retry budget
                if not is_transient(exc):
                    raise
                await self._drop()
                continue
            self.retaken += 1
            gap = self._clock() - lost
            if not known:
                self.reborn += 1
                log.warning(
                    "liveness lock: held again after %.1f s without it, but another replica "
                    "had judged this one dead and taken over its runs; they are left to it",
                    gap,
                )
                self._reaped()  # before any write of this process goes on
            elif gap >= CONFIRM:
                log.warning("liveness lock: held again after %.1f s without it", gap)
            self.fence.open()
            return
        raise TimeoutError("could not take the liveness lock again")

    async def _drop(self) -> None:
        """Let go of a lock connection whose proof is not complete: try again from scratch."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
