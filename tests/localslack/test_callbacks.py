"""Callbacks reach the app signed and shaped like Slack's; acks, triggers, response_urls."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.localslack import LocalSlack

from .conftest import SECRET, ManualClock, Receiver, approval_blocks, modal


def assert_signed(received) -> None:
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(received.body, received.headers)


async def test_slash_command_fields_and_signature(ws: LocalSlack, receiver: Receiver) -> None:
    delivery = await ws.slash("alice", "/deploy", "api 1.4.2 prod")
    assert delivery.ok and delivery.status == 200
    [received] = receiver.requests
    assert_signed(received)
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert received.fields == {
        "token": received.fields["token"],
        "team_id": "T0LOCAL01",
        "team_domain": "local-workspace",
        "channel_id": "C0DEPLOYS",
        "channel_name": "deploys",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "command": "/deploy",
        "text": "api 1.4.2 prod",
        "api_app_id": "A0LOCALAPP",
        "is_enterprise_install": "false",
        "response_url": delivery.response_url,
        "trigger_id": delivery.trigger_id,
    }


async def test_slash_ack_text_is_ephemeral(ws: LocalSlack, receiver: Receiver) -> None:
    receiver.reply = lambda r: web.json_response({"text": "Starting deploy…"})
    await ws.slash("alice", "/deploy", "api")
    assert [m["text"] for m in ws.ephemerals("alice", "#deploys")] == ["Starting deploy…"]
    assert ws.messages("#deploys") == []
    receiver.reply = lambda r: web.Response(text="plain ack")
    await ws.slash("alice", "/deploy", "api")
    assert ws.ephemerals("alice")[-1]["text"] == "plain ack"
    receiver.reply = lambda r: web.json_response({"text": "public", "response_type": "in_channel"})
    await ws.slash("alice", "/deploy", "api")
    assert [m["text"] for m in ws.messages("#deploys")] == ["/deploy api", "public"]


async def test_slow_ack_is_operation_timeout(ws: LocalSlack, receiver: Receiver) -> None:
    receiver.hold = asyncio.Event()
    events: list = []
    ws.model.listeners.append(lambda event, to: events.append((event, to)))
    delivery = await ws.slash("alice", "/deploy", "api")
    assert delivery.status is None and delivery.error == "operation_timeout"
    assert (
        {"type": "notice", "text": '/deploy failed with the error "operation_timeout"'},
        "U0ALICE",
    ) in events


async def test_trigger_ids_single_use_and_expire(
    ws: LocalSlack, client: AsyncWebClient, clock: ManualClock
) -> None:
    first = await ws.slash("bob", "/deploy", "")
    opened = await client.views_open(trigger_id=first.trigger_id, view=modal())
    view = opened["view"]
    assert view["id"].startswith("V") and view["callback_id"] == "reject_reason"
    assert view["state"] == {"values": {}} and view["private_metadata"] == "run-1"
    assert ws.open_views("bob")[0]["id"] == view["id"]

    async def error_of(trigger_id: str) -> str:
        with pytest.raises(SlackApiError) as err:
            await client.views_open(trigger_id=trigger_id, view=modal())
        return err.value.response["error"]

    assert await error_of(first.trigger_id) == "exchanged_trigger_id"
    second = await ws.slash("bob", "/deploy", "")
    clock.advance(3.1)
    assert await error_of(second.trigger_id) == "expired_trigger_id"
    assert await error_of("123.456.abc") == "invalid_trigger_id"


async def test_views_open_validation(ws: LocalSlack, client: AsyncWebClient) -> None:
    trigger = (await ws.slash("bob", "/deploy", "")).trigger_id
    bad = modal(title={"type": "plain_text", "text": "t" * 25}, private_metadata="m" * 3001)
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=trigger, view=bad)
    assert err.value.response["error"] == "invalid_arguments"
    messages = err.value.response["response_metadata"]["messages"]
    assert "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]" in messages
    assert any("/view/private_metadata" in m for m in messages)


async def test_click_builds_block_actions(
    ws: LocalSlack, client: AsyncWebClient, receiver: Receiver
) -> None:
    await client.chat_postMessage(channel="#deploys", text="Deploy?", blocks=approval_blocks())
    [message] = ws.messages("#deploys")
    delivery = await ws.click("bob", message, "Approve")
    assert delivery.ok
    received = receiver.requests[-1]
    assert_signed(received)
    payload = received.payload
    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": "U0BOB",
        "username": "bob",
        "name": "bob",
        "team_id": "T0LOCAL01",
    }
    assert payload["container"] == {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": "C0DEPLOYS",
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": "C0DEPLOYS", "name": "deploys"}
    assert payload["message"]["blocks"] == message["blocks"]
    assert payload["enterprise"] is None and payload["is_enterprise_install"] is False
    assert payload["state"] == {"values": {}}
    [action] = payload["actions"]
    assert action["action_id"] == "approve" and action["block_id"] == "decide"
    assert action["value"] == "yes" and action["style"] == "primary"
    assert action["type"] == "button" and action["text"]["text"] == "Approve"
    assert "action_ts" in action
    assert payload["trigger_id"] == delivery.trigger_id
    assert payload["response_url"] == delivery.response_url
    # by action_id too
    assert (await ws.click("bob", message, "reject")).payload["actions"][0]["value"] == "no"


async def test_response_url_uses_and_replace(ws: LocalSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="#deploys", text="Deploy?", blocks=approval_blocks())
    [message] = ws.messages("#deploys")
    url = (await ws.click("bob", message, "Approve")).response_url
    async with aiohttp.ClientSession() as session:

        async def post(body: dict) -> tuple[int, dict]:
            async with session.post(url, json=body) as resp:
                return resp.status, json.loads(await resp.text())

        assert await post({"replace_original": True, "text": "Approved by bob"}) == (
            200,
            {"ok": True},
        )
        [updated] = ws.messages("#deploys")
        assert updated["text"] == "Approved by bob" and "blocks" not in updated
        for i in range(4):
            assert (await post({"text": f"note {i}"}))[0] == 200
        assert len(ws.ephemerals("bob")) == 4
        status, body = await post({"text": "sixth"})
        assert (status, body["error"]) == (404, "expired_url")


async def test_modal_submit_errors_then_close(
    ws: LocalSlack, client: AsyncWebClient, receiver: Receiver
) -> None:
    trigger = (await ws.slash("bob", "/deploy", "")).trigger_id
    view = (await client.views_open(trigger_id=trigger, view=modal()))["view"]
    receiver.reply = lambda r: web.json_response(
        {"response_action": "errors", "errors": {"reason": "Say more"}}
    )
    delivery = await ws.submit_modal("bob", view, {"reason": "meh"})
    assert delivery.errors == {"reason": "Say more"}
    assert ws.open_views("bob")[0]["id"] == view["id"]
    payload = receiver.requests[-1].payload
    assert_signed(receiver.requests[-1])
    assert payload["type"] == "view_submission" and payload["response_urls"] == []
    assert payload["view"]["state"]["values"] == {
        "reason": {"text": {"type": "plain_text_input", "value": "meh"}}
    }
    assert payload["view"]["private_metadata"] == "run-1"
    receiver.reply = None
    delivery = await ws.submit_modal("bob", view["id"], {"text": "broken build"})
    assert delivery.ok and delivery.errors == {}
    assert ws.open_views("bob") == []


async def test_required_input_is_refused_before_the_app(
    ws: LocalSlack, client: AsyncWebClient, receiver: Receiver
) -> None:
    trigger = (await ws.slash("bob", "/deploy", "")).trigger_id
    view = (await client.views_open(trigger_id=trigger, view=modal()))["view"]
    before = len(receiver.requests)
    delivery = await ws.submit_modal("bob", view, {"reason": ""})
    assert delivery.error == "required_fields" and "reason" in delivery.errors
    assert len(receiver.requests) == before


async def test_deliver_raw_signed_and_unsigned(ws: LocalSlack, receiver: Receiver) -> None:
    await ws.deliver_raw("payload=%7B%7D", "application/x-www-form-urlencoded")
    assert_signed(receiver.requests[-1])
    await ws.deliver_raw(b"garbage", "text/plain", headers={})
    assert "X-Slack-Signature" not in receiver.requests[-1].headers
    headers = ws.sign(b"x=1", 1234)
    assert headers["X-Slack-Request-Timestamp"] == "1234"
    assert headers["X-Slack-Signature"].startswith("v0=")
