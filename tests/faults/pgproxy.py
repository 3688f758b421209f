"""A TCP proxy in front of PostgreSQL that can cut a connection at its COMMIT.

The bot connects to the proxy, the proxy to the real server, and bytes pass through both
ways. ``cut_commit(marker, landed)`` arms it: the next transaction whose statements contain
``marker`` (say ``b"INSERT INTO bot_votes"``) loses its connection at COMMIT. With ``landed``
the COMMIT reaches the server first (the transaction is committed, its answer never reaches
the bot: the ambiguous case); without, it never leaves the proxy (the server aborts it).

``partition()`` cuts every connection through it and refuses new ones until ``heal()``: the
process behind it is cut off from the database (the server sees its sessions end).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class _Cut:
    marker: bytes
    landed: bool


class PgProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._cut: _Cut | None = None
        self.port = 0
        self.cuts = 0  # connections cut at their COMMIT
        self.partitioned = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut_commit(self, marker: bytes, *, landed: bool) -> None:
        self._cut = _Cut(marker, landed)

    async def partition(self) -> None:
        """Cut every connection now and refuse new ones until ``heal``."""
        self.partitioned = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def heal(self) -> None:
        self.partitioned = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.partitioned:
            writer.close()
            return
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except (OSError, asyncio.CancelledError):
            writer.close()
            self._tasks.discard(task)
            return
        relay = asyncio.create_task(self._pipe(up_reader, writer))
        seen = b""  # this connection's statements since its last COMMIT (the tail of them)
        marked = False
        try:
            for _ in range(10_000_000):  # bounded; a connection ends long before
                chunk = await reader.read(65536)
                if not chunk:
                    break
                seen = (seen + chunk)[-4096:]
                cut = self._cut
                if cut is not None and cut.marker in seen:
                    marked = True
                if b"COMMIT" in chunk and marked and cut is not None:
                    self._cut = None
                    self.cuts += 1
                    relay.cancel()  # the answer never reaches the client
                    if cut.landed:
                        up_writer.write(chunk)
                        await up_writer.drain()
                        await asyncio.sleep(0.3)  # the server commits meanwhile
                    break
                if b"COMMIT" in chunk:
                    seen, marked = b"", False
                up_writer.write(chunk)
                await up_writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            relay.cancel()
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            for _ in range(10_000_000):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        writer.close()
