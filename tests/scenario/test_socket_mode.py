"""Socket Mode: `serve()` with an app token connects through apps.connections.open (on
SLACK_API_URL) to the workspace's websocket; commands and clicks arrive as envelopes."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bot.localslack import LocalSlack
from bot.runtime import BotRuntime, serve
from tests.conftest import settings_for
from tests.scenario.test_approval_loop import buttons, message_text


async def test_approval_loop_over_socket_mode(ws: LocalSlack, tmp_path: Path) -> None:
    ws.request_url = None  # nothing over HTTP: the workspace must use the socket
    settings = dataclasses.replace(settings_for(ws, tmp_path / "a.db"), app_token=ws.app_token)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(await BotRuntime.open(settings), stop))
    try:
        await ws.wait_for(lambda: ws.socket.connected, timeout=10)
        assert ws.calls_to("apps.connections.open")
        slash = await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel="#deploys")
        assert slash.via == "socket" and slash.status == 200
        msg = await ws.wait_for(
            lambda: next(
                (m for m in ws.messages("#deploys") if m.get("blocks") and buttons(m)), None
            )
        )
        click = await ws.click("bob", msg, "Approve")
        assert click.via == "socket"
        await ws.wait_for(lambda: "✅ Deployed" in message_text(ws.messages("#deploys")[-1]))
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)


async def test_stop_works_while_slack_is_down(ws: LocalSlack, tmp_path: Path) -> None:
    """slack-sdk retries the connection forever; SIGTERM must still stop the bot."""
    ws.fail_next("apps.connections.open", status=503, times=1000)
    settings = dataclasses.replace(settings_for(ws, tmp_path / "a.db"), app_token=ws.app_token)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(await BotRuntime.open(settings), stop))
    await ws.wait_for(lambda: len(ws.calls_to("apps.connections.open")) >= 1, timeout=10)
    stop.set()
    await asyncio.wait_for(server, 10)
    assert not ws.socket.connected
