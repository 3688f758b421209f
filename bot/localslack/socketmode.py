"""The loopback Socket Mode websocket.

`apps.connections.open` hands out a single-use ticket URL; the app connects, gets `hello`,
and from then on commands and interactivity arrive as envelopes that must be acked with the
same `envelope_id` within 3 s, just like `wss://wss-primary.slack.com/link/?ticket=...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from typing import Any

from aiohttp import WSMsgType, web

ACK_TIMEOUT = 3.0


class SocketMode:
    """Tickets, live connections and the envelopes waiting for their acks."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.envelopes: list[dict[str, Any]] = []  # everything pushed, for tests

    @property
    def connected(self) -> bool:
        """Whether an app is connected (then callbacks go here instead of over HTTP)."""
        return any(not ws.closed for ws in self._sockets)

    def issue_url(self, host: str) -> str:
        """A one-time websocket URL for `apps.connections.open`."""
        ticket = secrets.token_hex(16)
        self._tickets.add(ticket)
        return f"ws://{host}/socket?ticket={ticket}&app_id={self.app_id}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /socket?ticket=...: the websocket itself (autoping answers the SDK's pings)."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {
                        "host": "localslack",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(msg.data)
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    def _on_text(self, data: str) -> None:
        """An ack: `{"envelope_id": ..., "payload": {...}?}`; anything else is ignored."""
        try:
            ack = json.loads(data)
        except ValueError:
            return
        future = self._pending.get(ack.get("envelope_id", "")) if isinstance(ack, dict) else None
        if future is not None and not future.done():
            future.set_result(ack)

    async def send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        ack_timeout: float = ACK_TIMEOUT,
        accepts_response_payload: bool = True,
        retry: tuple[int, str] | None = None,
    ) -> dict[str, Any]:
        """Push an envelope and wait for its ack; raises TimeoutError after `ack_timeout`."""
        live = [ws for ws in self._sockets if not ws.closed]
        if not live:
            raise ConnectionError("no socket mode connection")
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api":
            attempt, reason = retry or (0, "")
            envelope.update({"retry_attempt": attempt, "retry_reason": reason})
        self.envelopes.append(envelope)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = future
        try:
            await live[-1].send_json(envelope)
            return await asyncio.wait_for(future, ack_timeout)
        finally:
            self._pending.pop(envelope_id, None)

    async def close(self) -> None:
        """Close every connection (Slack would send `disconnect` first; we just go away)."""
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        for future in self._pending.values():
            future.cancel()
