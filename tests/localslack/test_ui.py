"""The page's /ui API: bootstrap, history, actions and the event stream."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.localslack import LocalSlack

from .conftest import SECRET, Receiver, approval_blocks, modal


async def get(ws: LocalSlack, path: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(ws.url + path) as resp:
        return await resp.json()


async def post(ws: LocalSlack, path: str, body: dict) -> dict:
    async with aiohttp.ClientSession() as session, session.post(ws.url + path, json=body) as resp:
        return await resp.json()


async def next_event(stream: aiohttp.ClientResponse) -> dict:
    while True:
        line = (await stream.content.readline()).decode()
        if line.startswith("data: "):
            return json.loads(line[6:])


async def test_bootstrap(ws: LocalSlack) -> None:
    boot = await get(ws, "/ui/bootstrap")
    assert boot["bot_user_id"] == "U0BOT" and boot["team"]["id"] == "T0LOCAL01"
    names = {u["name"] for u in boot["users"]}
    assert names == {"alice", "bob", "dan", "carol", "approvals"}
    assert {"command", "description", "usage_hint"} <= set(boot["commands"][0])
    deploys = next(c for c in boot["conversations"] if c["name"] == "deploys")
    assert deploys["is_channel"] and not deploys["is_im"]
    dms = [c for c in boot["conversations"] if c["is_im"]]
    assert {c["user"] for c in dms} == {"U0ALICE", "U0BOB", "U0DAN", "U0CAROL"}


async def test_event_stream_and_history(ws: LocalSlack, client: AsyncWebClient) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(ws.url + "/ui/events?user=U0BOB") as stream,
    ):
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert (await stream.content.readline()).startswith(b":")  # subscribed
        posted = await client.chat_postMessage(channel="#deploys", text="hello")
        event = await next_event(stream)
        assert event == {"type": "message", "channel": "C0DEPLOYS", "ts": posted["ts"]}
        await client.chat_postEphemeral(channel="#deploys", user="U0ALICE", text="not bob's")
        await client.chat_postEphemeral(channel="#deploys", user="U0BOB", text="bob's")
        event = await next_event(stream)
        assert event["ephemeral"] is True
        history = await get(ws, "/ui/history?user=U0BOB&channel=C0DEPLOYS")
        assert [m["text"] for m in history["messages"]] == ["hello", "bob's"]


async def test_typed_message_and_slash(ws: LocalSlack, receiver: Receiver) -> None:
    assert await post(ws, "/ui/message", {"user": "U0ALICE", "channel": "C0DEPLOYS", "text": "hi"})
    receiver.reply = lambda r: web.json_response({"text": "On it"})
    result = await post(
        ws, "/ui/message", {"user": "U0ALICE", "channel": "C0DEPLOYS", "text": "/deploy api"}
    )
    assert result == {"ok": True}
    assert receiver.requests[-1].fields["text"] == "api"
    history = await get(ws, "/ui/history?user=U0ALICE&channel=C0DEPLOYS")
    assert [(m["text"], m.get("ephemeral", False)) for m in history["messages"]] == [
        ("hi", False),
        ("On it", True),
    ]
    unknown = await post(
        ws, "/ui/message", {"user": "U0ALICE", "channel": "C0DEPLOYS", "text": "/x"}
    )
    assert unknown == {"ok": False, "error": "invalid_command"}


async def test_action_submit_close(
    ws: LocalSlack, client: AsyncWebClient, receiver: Receiver
) -> None:
    posted = await client.chat_postMessage(channel="#deploys", text="Q", blocks=approval_blocks())
    body = {
        "user": "U0BOB",
        "channel": "C0DEPLOYS",
        "message_ts": posted["ts"],
        "action_id": "reject",
        "block_id": "decide",
    }
    assert await post(ws, "/ui/action", body) == {"ok": True}
    trigger = receiver.requests[-1].payload["trigger_id"]
    view = (await client.views_open(trigger_id=trigger, view=modal(notify_on_close=True)))["view"]
    receiver.reply = lambda r: web.json_response(
        {"response_action": "errors", "errors": {"reason": "Too short"}}
    )
    values = {"reason": {"text": {"type": "plain_text_input", "value": "x"}}}
    result = await post(
        ws, "/ui/submit", {"user": "U0BOB", "view_id": view["id"], "values": values}
    )
    assert result == {"ok": True, "errors": {"reason": "Too short"}}
    receiver.reply = None
    assert await post(ws, "/ui/close", {"user": "U0BOB", "view_id": view["id"]}) == {"ok": True}
    assert receiver.requests[-1].payload["type"] == "view_closed"
    assert ws.open_views("bob") == []


async def test_heartbeat_and_stop_with_open_stream() -> None:
    ws = LocalSlack(SECRET, sse_heartbeat=0.05)
    await ws.start()
    async with (
        aiohttp.ClientSession() as session,
        session.get(ws.url + "/ui/events?user=U0DAN") as stream,
    ):
        await stream.content.readline()  # ": connected"
        await stream.content.readline()  # blank
        assert await stream.content.readline() == b": heartbeat\n"
        async with asyncio.timeout(3):
            await ws.stop()


async def test_home_tab_sends_app_home_opened(ws: LocalSlack, receiver: Receiver) -> None:
    assert await get(ws, "/ui/home?user=U0ALICE") == {"view": None}
    received = receiver.requests[-1]
    assert received.headers["Content-Type"] == "application/json"
    body = json.loads(received.body)
    assert body["type"] == "event_callback" and body["event"]["type"] == "app_home_opened"
    assert body["event"]["user"] == "U0ALICE" and body["event"]["tab"] == "home"
    assert SignatureVerifier(SECRET).is_valid_request(received.body, received.headers)


async def test_page_is_served(ws: LocalSlack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(ws.url + "/") as resp:
            assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
        async with session.get(ws.url + "/static/app.js") as resp:
            assert resp.status == 200
