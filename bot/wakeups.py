"""Wake-ups across replicas: PostgreSQL's LISTEN/NOTIFY.

A transaction that leaves work for others (outbox rows it could not send itself, deadlines it
added or moved, a run it let go) notifies ``bot_wake`` with ``<what>:<owner>`` at commit (see
``bot.postgres.PgDb.notify``). Each process listens on one connection of its own and wakes
its outbox sender, scheduler or run-lease keeper; its own notifications are ignored (it woke
itself already). Nothing polls faster than the loops' idle polls: a lost notification (the
listening connection dropped) costs at most one idle period, and the listener reconnects
after a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import psycopg

from bot.postgres import WAKE_CHANNEL
from bot.tasks import Loop

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0


class Listener:
    def __init__(self, url: str, owner: str, wakes: Mapping[str, Callable[[], None]]) -> None:
        self._url = url
        self._owner = owner
        self._wakes = wakes
        self._loop = Loop("pg-listener", self._run)
        self.start, self.stop = self._loop.start, self._loop.stop
        self.connected = asyncio.Event()  # tests wait for it before counting on a wake-up
        self.received = 0

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the class only: a driver's message may name the host
                log.warning("wake-ups: listening failed (%s); again in 1 s", type(exc).__name__)
            self.connected.clear()
            for wake in self._wakes.values():  # whatever was missed meanwhile: look now
                wake()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {WAKE_CHANNEL}")
            self.connected.set()
            async for note in conn.notifies():
                what, _, owner = note.payload.partition(":")
                if owner == self._owner:
                    continue
                wake = self._wakes.get(what)
                if wake is not None:
                    self.received += 1
                    wake()
