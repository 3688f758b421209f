"""A TCP proxy in front of a LangGraph Server that can lose one request's answer.

The bot talks to the proxy, the proxy to the server. ``cut(marker, landed)`` arms it: the
next request whose bytes contain ``marker`` (say ``b"/runs/stream"``) loses its connection.
With ``landed`` the request reaches the server and only its answer is lost (the ambiguous
case: did the resume land?): its connection stays open, answering nothing, until the test
has seen the server take it and calls ``release``; without, it never leaves the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class _Cut:
    marker: bytes
    landed: bool


class CutProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._cut: _Cut | None = None
        self.port = 0
        self.cuts = 0
        self.marker = b""  # the last marker armed, and how many requests carried it since
        self.sent = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._released = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def cut(self, marker: bytes, *, landed: bool) -> None:
        self._cut = _Cut(marker, landed)
        self.marker, self.sent = marker, 0
        self._released.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        relay = asyncio.create_task(self._pipe(up_reader, writer))
        try:
            for _ in range(10_000_000):  # bounded; a connection ends long before
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if self.marker and self.marker in chunk:
                    self.sent += 1
                cut = self._cut
                if cut is not None and cut.marker in chunk:
                    self._cut = None
                    self.cuts += 1
                    relay.cancel()  # no answer reaches the client
                    if cut.landed:
                        await self._deliver(chunk, reader, up_writer)
                    break
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

    async def _deliver(
        self, chunk: bytes, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter
    ) -> None:
        """The whole request to the server (its body may follow its head), nothing back,
        until ``release`` (the test has seen the server take it) or 30 s."""
        up_writer.write(chunk)
        await up_writer.drain()
        forward = asyncio.create_task(self._pipe(reader, up_writer))
        try:
            async with asyncio.timeout(30):
                await self._released.wait()
        except TimeoutError:
            pass
        finally:
            forward.cancel()

    def release(self) -> None:
        """Let the armed request's connection drop now (its answer never sent)."""
        self._released.set()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Bytes one way until the end of them; cancelled, it leaves ``writer`` open (the
        connection is closed by ``_serve``, when the test means it to be)."""
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000_000):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
            writer.close()
