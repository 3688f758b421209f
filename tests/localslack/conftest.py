"""Fixtures: a workspace on a loopback port, a manual clock, and a tiny app that acks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.localslack import LocalSlack

SECRET = "test-signing-secret"


class ManualClock:
    """Starts at real time (so signatures stay fresh) and moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    fields: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.fields["payload"])


Reply = Callable[[Received], "web.Response | None"]


@dataclass
class Receiver:
    """The app side: records every callback and answers with `reply` (default: empty ack)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    reply: Reply | None = None
    hold: asyncio.Event | None = None  # when set to an unset Event, the ack waits on it

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        received = Received(dict(request.headers), body, fields)
        self.requests.append(received)
        if self.hold is not None:
            await self.hold.wait()
        answer = self.reply(received) if self.reply else None
        return answer if answer is not None else web.Response(status=200)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/slack/events", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield rec
    if rec.hold is not None:
        rec.hold.set()
    await runner.cleanup()


@pytest.fixture
async def ws(clock: ManualClock, receiver: Receiver) -> AsyncIterator[LocalSlack]:
    slack = LocalSlack(SECRET, clock=clock, request_url=receiver.url, ack_timeout=0.5)
    await slack.start()
    yield slack
    await slack.stop()


@pytest.fixture
async def client(ws: LocalSlack) -> AsyncIterator[AsyncWebClient]:
    web_client = AsyncWebClient(token=ws.bot_token, base_url=ws.api_url)
    yield web_client
    if web_client.session is not None:
        await web_client.session.close()


def button(text: str, action_id: str, value: str = "v", **extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
        **extra,
    }


def approval_blocks() -> list[dict[str, Any]]:
    return [
        {"type": "section", "block_id": "q", "text": {"type": "mrkdwn", "text": "Deploy?"}},
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [
                button("Approve", "approve", "yes", style="primary"),
                button("Reject", "reject", "no", style="danger"),
            ],
        },
    ]


def modal(**extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "reject_reason",
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "private_metadata": "run-1",
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why?"},
                "element": {"type": "plain_text_input", "action_id": "text"},
            }
        ],
        **extra,
    }
