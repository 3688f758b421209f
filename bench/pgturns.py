"""MEASUREMENT-ONLY: PostgreSQL round trips, counted on the wire.

A TCP proxy between the bot and PostgreSQL, run on a thread of the benchmark's own process
(never imported by the bot). A round trip is a *turn*: the client sends after the server last
spoke (or first on its connection), and waits for the answer. Statements sent together (one
``BEGIN; SELECT …``, a pipeline up to its sync) are one turn; a statement's answer read in
several packets is still one. Counting on the wire needs nothing from the driver, so it
measures any checkout of the bot alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from urllib.parse import urlsplit, urlunsplit

from bench.procs import free_port


class TurnProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; ``turns`` and ``connections`` count."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.turns = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._serve, name="pg-turns", daemon=True)

    def start(self) -> TurnProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, url: str) -> str:
        """``url`` with its host and port pointing at this proxy."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        state = {"server_spoke": True}  # the client's first send is a turn

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            try:
                while data := await src.read(65536):
                    if client:
                        if state["server_spoke"]:
                            self.turns += 1
                            state["server_spoke"] = False
                    else:
                        state["server_spoke"] = True
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, True), pipe(up_reader, writer, False), return_exceptions=True
        )


def proxy_for(url: str) -> TurnProxy:
    """A started proxy in front of the server ``url`` names."""
    parts = urlsplit(url)
    return TurnProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
