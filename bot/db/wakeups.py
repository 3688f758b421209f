"""Wake-ups across replicas: PostgreSQL's LISTEN/NOTIFY.

A transaction that leaves work for others (outbox rows it could not send itself, deadlines it
added or moved, a run it let go) notifies ``bot_wake`` with ``<what>:<owner>`` at commit (see
``bot.db.postgres.PgDb.notify``). Each process listens on one connection of its own and wakes
its outbox sender, scheduler or run-lease keeper; its own notifications are ignored (it woke
itself already). Nothing polls faster than the loops' idle polls. When the listening
connection drops (a failover, a restart), the listener connects again through the database's
retry policy (bot/db/retry.py: backoff up to a second, one log line per outage) and, once it
listens again, wakes every loop: whatever was notified meanwhile is looked at at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from bot.db.postgres import WAKE_CHANNEL, connect_kwargs
from bot.db.retry import Retry, error_name
from bot.tasks import Loop

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0  # after the retry policy gave up, or an error that is not transient


class Listener:
    """The one LISTEN connection of a process: it reconnects through the retry policy and wakes
    every loop after each reconnect."""

    def __init__(
        self,
        url: str,
        owner: str,
        wakes: Mapping[str, Callable[[], None]],
        retry: Retry | None = None,
    ) -> None:
        self._url = url
        self._owner = owner
        self._wakes = wakes
        self._retry = retry or Retry()
        self._loop = Loop("pg-listener", self._run)
        self.start, self.stop = self._loop.start, self._loop.stop
        self.connected = asyncio.Event()  # tests wait for it before counting on a wake-up
        self.received = 0

    async def _run(self) -> None:
        while True:
            try:
                conn = await self._retry.run(self._connect, "listening for wake-ups")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the class only: a driver's message may name the host
                log.warning("wake-ups: cannot listen (%s); again in 1 s", error_name(exc))
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            try:
                await self._listen(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("wake-ups: the listening connection was lost (%s)", error_name(exc))
            finally:
                self.connected.clear()
                await conn.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._url, **connect_kwargs(self._url, autocommit=True)
        )
        try:
            await conn.execute(f"LISTEN {WAKE_CHANNEL}")
        except BaseException:
            await conn.close()
            raise
        self.connected.set()
        for wake in self._wakes.values():  # whatever was notified while not listening: look now
            wake()
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for note in conn.notifies():
            what, _, owner = note.payload.partition(":")
            if owner == self._owner:
                continue
            wake = self._wakes.get(what)
            if wake is not None:
                self.received += 1
                wake()
