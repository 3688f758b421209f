"""A real slack-bolt AsyncApp cannot tell the workspace from Slack (HTTP and Socket Mode)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.localslack import LocalSlack

from .conftest import SECRET, approval_blocks, modal


def bolt_app(ws: LocalSlack) -> AsyncApp:
    app = AsyncApp(
        signing_secret=SECRET,
        client=AsyncWebClient(token=ws.bot_token, base_url=ws.api_url),
    )

    @app.command("/deploy")
    async def deploy(ack: Any, say: Any, command: dict) -> None:
        await ack(f"Deploying {command['text']}")
        await say(text="Approve?", blocks=approval_blocks())

    @app.action("approve")
    async def approve(ack: Any, respond: Any, body: dict) -> None:
        await ack()
        await respond(replace_original=True, text=f"Approved by <@{body['user']['id']}>")

    @app.action("reject")
    async def reject(ack: Any, client: AsyncWebClient, body: dict) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=modal())

    @app.view("reject_reason")
    async def reason(ack: Any, view: dict) -> None:
        text = view["state"]["values"]["reason"]["text"]["value"]
        if len(text) < 5:
            await ack(response_action="errors", errors={"reason": "Too short"})
        else:
            await ack()

    @app.event("app_home_opened")
    async def home(client: AsyncWebClient, event: dict) -> None:
        view = {
            "type": "home",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"Hello <@{event['user']}>"}}
            ],
        }
        await client.views_publish(user_id=event["user"], view=view)

    return app


async def run_flow(ws: LocalSlack) -> None:
    delivery = await ws.slash("alice", "/deploy", "api 1.4.2")
    assert delivery.ok, delivery
    assert ws.ephemerals("alice")[-1]["text"] == "Deploying api 1.4.2"
    [message] = await ws.wait_for(lambda: ws.messages("#deploys"))
    assert (await ws.click("bob", message, "Approve")).ok
    await ws.wait_for(lambda: ws.messages("#deploys")[0]["text"].startswith("Approved by"))

    second = await ws.slash("alice", "/deploy", "web 2")
    assert second.ok
    latest = await ws.wait_for(lambda: ws.messages("#deploys")[1:])
    assert (await ws.click("dan", latest[0], "Reject")).ok
    [view] = await ws.wait_for(lambda: ws.open_views("dan"))
    assert (await ws.submit_modal("dan", view, {"reason": "no"})).errors == {"reason": "Too short"}
    assert (await ws.submit_modal("dan", view, {"reason": "tests are red"})).ok
    assert ws.open_views("dan") == []

    assert (await ws.open_home("carol")).ok
    home = await ws.wait_for(lambda: ws.home("carol"))
    assert home["blocks"][0]["text"]["text"] == "Hello <@U0CAROL>"


async def test_bolt_over_http_on_the_same_port() -> None:
    ws = LocalSlack(SECRET)
    apps: list[AsyncApp] = []  # the bot needs ws.api_url, known only after start()

    async def events(request: web.Request) -> web.Response:
        bolt_response = await apps[0].async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    ws.web_app.router.add_post("/slack/events", events)
    await ws.start()
    apps.append(bolt_app(ws))
    ws.request_url = ws.url + "/slack/events"
    try:
        await run_flow(ws)
    finally:
        await ws.stop()


async def test_bolt_over_socket_mode() -> None:
    ws = LocalSlack(SECRET)
    await ws.start()
    handler = AsyncSocketModeHandler(bolt_app(ws), ws.app_token)
    handler.client.web_client = AsyncWebClient(base_url=ws.api_url)
    handler.client.auto_reconnect_enabled = False
    try:
        await handler.connect_async()
        await ws.wait_for(lambda: ws.socket.connected)
        await run_flow(ws)
        assert ws.envelopes and all(c.status == 200 for c in ws.calls)
    finally:
        await handler.close_async()
        async with asyncio.timeout(3):
            await ws.stop()
