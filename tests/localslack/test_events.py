"""Events a person's message causes, as Slack sends them: `app_mention` where the bot is a
member (never in its DM), `message` with channel_type `im` in its DM; and Slack's retries of
an event the app did not answer 200 in time (same event_id, X-Slack-Retry-Num)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.localslack import LocalSlack

from .conftest import SECRET, Receiver


def events(receiver: Receiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.requests]


async def test_a_mention_in_a_thread_is_an_app_mention(ws: LocalSlack, receiver: Receiver) -> None:
    parent = ws.say("alice", "#deploys", "the request")
    message, delivery = await ws.type_message("bob", "#deploys", "<@U0BOT> approve", parent["ts"])
    assert delivery is not None and delivery.ok
    [received] = receiver.requests
    assert SignatureVerifier(SECRET).is_valid_request(received.body, received.headers)
    assert received.headers["Content-Type"] == "application/json"
    assert "X-Slack-Retry-Num" not in received.headers
    body = json.loads(received.body)
    assert body["type"] == "event_callback" and body["event_id"].startswith("Ev")
    assert body["event"] == {
        "type": "app_mention",
        "user": "U0BOB",
        "text": "<@U0BOT> approve",
        "ts": message["ts"],
        "channel": "C0DEPLOYS",
        "team": "T0LOCAL01",
        "event_ts": message["ts"],
        "thread_ts": parent["ts"],
        "parent_user_id": "U0ALICE",
    }


async def test_no_event_without_a_mention_or_where_the_bot_is_not(
    ws: LocalSlack, receiver: Receiver
) -> None:
    _, none = await ws.type_message("bob", "#deploys", "approve")
    assert none is None
    ws.model.add_channel("C0QUIET", "quiet", ["U0BOB"])
    _, absent = await ws.type_message("bob", "#quiet", "<@U0BOT> approve")
    assert absent is None
    assert receiver.requests == []


async def test_the_bots_dm_sends_message_im(ws: LocalSlack, receiver: Receiver) -> None:
    message, delivery = await ws.type_message("dan", "dan", "<@U0BOT> approve")
    assert delivery is not None and delivery.ok
    [body] = events(receiver)
    assert body["event"]["type"] == "message" and body["event"]["channel_type"] == "im"
    assert body["event"]["channel"] == "D0DAN" and body["event"]["ts"] == message["ts"]
    ws.callbacks.bot_events = frozenset({"app_mention"})  # an app not subscribed to message.im
    _, none = await ws.type_message("dan", "dan", "<@U0BOT> approve")
    assert none is None


async def test_an_event_answered_with_an_error_is_sent_again(
    ws: LocalSlack, receiver: Receiver
) -> None:
    ws.callbacks.event_retry_delays = (0.0, 0.0, 0.0)
    receiver.reply = lambda r: web.Response(status=500)
    _, first = await ws.type_message("bob", "#deploys", "<@U0BOT> approve")
    assert first is not None and first.status == 500
    await ws.wait_for(lambda: len(ws.callbacks.event_retries) == 3)
    assert [r.headers.get("X-Slack-Retry-Num") for r in receiver.requests] == [None, "1", "2", "3"]
    assert {r.headers.get("X-Slack-Retry-Reason") for r in receiver.requests[1:]} == {"http_error"}
    assert len({b["event_id"] for b in events(receiver)}) == 1
    verifier = SignatureVerifier(SECRET)
    assert all(verifier.is_valid_request(r.body, r.headers) for r in receiver.requests)


async def test_a_timed_out_event_is_sent_again_until_answered(
    ws: LocalSlack, receiver: Receiver
) -> None:
    ws.callbacks.event_retry_delays = (0.0, 0.0, 0.0)
    receiver.hold = asyncio.Event()  # the first request waits past the ack timeout
    _, first = await ws.type_message("bob", "#deploys", "<@U0BOT> approve")
    assert first is not None and first.error == "operation_timeout"
    receiver.hold.set()
    await ws.wait_for(lambda: ws.callbacks.event_retries and ws.callbacks.event_retries[-1].ok)
    assert len(ws.callbacks.event_retries) == 1
    assert receiver.requests[1].headers["X-Slack-Retry-Num"] == "1"
    assert receiver.requests[1].headers["X-Slack-Retry-Reason"] == "http_timeout"
