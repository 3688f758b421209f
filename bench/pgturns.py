"""MEASUREMENT-ONLY: PostgreSQL round trips, counted on the wire.

A TCP proxy between the bot and PostgreSQL, run on a thread of the benchmark's own process
(never imported by the bot). A round trip is a packet the client then waits on: one ending in
a Sync, a Flush or a simple Query (the frontend protocol's messages are followed across
packets). A statement outside a pipeline is one (Parse/Bind/Execute/Sync); statements sent
together (one ``BEGIN; SELECT …``, a pipeline up to its sync or flush) are one. Counting on
the wire needs nothing from the driver, so it measures any checkout of the bot alike. Two
such packets with no answer between are one wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
        # PGTURNS_LOG=path: what each turn sent (the printable runs of its first packet)
        where = os.environ.get("PGTURNS_LOG")
        self.log = open(where, "a", buffering=1) if where else None  # noqa: SIM115
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
        named: dict[str, str] = {}  # prepared statement -> its text (for the log)

        reader_state = _Messages()
        spoke = [True]  # the server answered since the client's last wait

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            try:
                while data := await src.read(65536):
                    if not client:
                        spoke[0] = True
                    elif reader_state.waits_after(data) and spoke[0]:
                        spoke[0] = False  # a second Sync before any answer waits no longer
                        self.turns += 1
                        if self.log is not None:  # what the turn sent, to read by hand
                            self.log.write(" | ".join(_said(data, named)) + "\n")
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


class _Messages:
    """Follows the client's side of one connection message by message (frontend protocol),
    across packets. A round trip is a packet that ends with a message the client then waits
    on: Sync, Flush or a simple Query (or the start-up message)."""

    def __init__(self) -> None:
        self.started = False
        self.left = 0  # bytes of the current message still to come
        self.buffer = b""

    def waits_after(self, data: bytes) -> bool:
        data = self.buffer + data
        self.buffer = b""
        at = 0
        last = ""
        if not self.started:
            if len(data) < 4:
                self.buffer = data
                return False
            size = int.from_bytes(data[:4], "big")
            at = size
            self.started = size != 8 or data[4:8] != b"\x04\xd2\x16\x2f"  # not SSLRequest
            last = "startup"
        elif self.left:
            step = min(self.left, len(data))
            self.left -= step
            at = step
        while at < len(data):
            if len(data) - at < 5:
                self.buffer = data[at:]
                return False
            kind = chr(data[at])
            size = int.from_bytes(data[at + 1 : at + 5], "big")
            end = at + 1 + size
            if end > len(data):
                self.left = end - len(data)
                return False
            last = kind
            at = end
        return self.left == 0 and last in ("S", "H", "Q", "startup", "p")


def _said(data: bytes, named: dict[str, str]) -> list[str]:
    """The statements in a client packet (frontend protocol: Parse, Bind, Query), shortened."""
    out = []
    at = 0
    while at + 5 <= len(data):
        kind = chr(data[at])
        size = int.from_bytes(data[at + 1 : at + 5], "big")
        body = data[at + 5 : at + 1 + size]
        at += 1 + size
        if kind == "Q":
            out.append(body.split(b"\0")[0].decode(errors="replace")[:90])
        elif kind == "P":
            name, query = body.split(b"\0")[:2]
            text = " ".join(query.decode(errors="replace").split())[:90]
            if name:
                named[name.decode()] = text
            out.append(text)
        elif kind == "B":
            stmt = body.split(b"\0")[1].decode(errors="replace")
            if stmt:
                out.append(named.get(stmt, stmt))
        elif kind == "S":
            out.append("<sync>")
        elif kind == "H":
            out.append("<flush>")
    return out


def proxy_for(url: str) -> TurnProxy:
    """A started proxy in front of the server ``url`` names."""
    parts = urlsplit(url)
    return TurnProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
