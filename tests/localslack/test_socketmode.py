"""slack_sdk's own aiohttp SocketModeClient connects, gets envelopes, and its acks count."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.localslack import LocalSlack

from .conftest import Receiver, approval_blocks


@pytest.fixture
async def socket_client(ws: LocalSlack) -> AsyncIterator[SocketModeClient]:
    client = SocketModeClient(
        app_token=ws.app_token or "",
        web_client=AsyncWebClient(token=ws.bot_token, base_url=ws.api_url),
        auto_reconnect_enabled=False,
    )
    seen: list[dict] = []

    async def record(_client: SocketModeClient, message: dict, _raw: str | None) -> None:
        seen.append(message)

    async def ack(client: SocketModeClient, req: SocketModeRequest) -> None:
        if req.payload.get("text") == "ignore me":
            return
        answer = {"text": "via socket"} if req.type == "slash_commands" else None
        await client.send_socket_mode_response(SocketModeResponse(req.envelope_id, answer))

    client.message_listeners.append(record)
    client.socket_mode_request_listeners.append(ack)
    client.seen = seen  # type: ignore[attr-defined]
    await client.connect()
    yield client
    await client.close()


async def test_socket_mode_slash_and_ack(
    ws: LocalSlack, socket_client: SocketModeClient, receiver: Receiver
) -> None:
    await ws.wait_for(lambda: ws.socket.connected)
    hello = await ws.wait_for(lambda: socket_client.seen)  # type: ignore[attr-defined]
    assert hello[0]["type"] == "hello"
    assert hello[0]["connection_info"] == {"app_id": "A0LOCALAPP"}
    assert ws.calls_to("apps.connections.open")[0].response["url"].startswith("ws://127.0.0.1:")

    delivery = await ws.slash("alice", "/deploy", "api 1.0")
    assert delivery.ok and delivery.via == "socket"
    assert receiver.requests == []
    envelope = ws.envelopes[-1]
    assert envelope["type"] == "slash_commands" and envelope["accepts_response_payload"]
    assert (
        envelope["payload"]["command"] == "/deploy" and envelope["payload"]["user_id"] == "U0ALICE"
    )
    assert ws.ephemerals("alice")[-1]["text"] == "via socket"


async def test_socket_mode_interactive_and_timeout(
    ws: LocalSlack, socket_client: SocketModeClient, client: AsyncWebClient
) -> None:
    await ws.wait_for(lambda: ws.socket.connected)
    await client.chat_postMessage(channel="#deploys", text="Deploy?", blocks=approval_blocks())
    delivery = await ws.click("dan", ws.messages("#deploys")[0], "Reject")
    assert delivery.ok and ws.envelopes[-1]["type"] == "interactive"
    assert ws.envelopes[-1]["payload"]["actions"][0]["action_id"] == "reject"

    unacked = await ws.slash("alice", "/deploy", "ignore me")
    assert unacked.status is None and unacked.error == "operation_timeout"
