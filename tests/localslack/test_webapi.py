"""The Web API answers like Slack: auth, shapes, errors, Block Kit limits, 429s."""

from __future__ import annotations

import json

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.localslack import LocalSlack

from .conftest import ManualClock, approval_blocks, button


async def raw_call(ws: LocalSlack, method: str, token: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(ws.api_url + method, headers=headers, **kwargs) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json()


async def test_auth_errors(ws: LocalSlack) -> None:
    assert (await raw_call(ws, "auth.test"))[2] == {"ok": False, "error": "not_authed"}
    status, _, body = await raw_call(ws, "auth.test", "xoxb-wrong")
    assert (status, body["error"]) == (200, "invalid_auth")
    body = (await raw_call(ws, "chat.postMessage", ws.app_token, data={"channel": "x"}))[2]
    assert body["error"] == "not_allowed_token_type"
    body = (await raw_call(ws, "apps.connections.open", ws.bot_token))[2]
    assert body["error"] == "not_allowed_token_type"
    body = (await raw_call(ws, "nope.nothing", ws.bot_token))[2]
    assert body == {"ok": False, "error": "unknown_method", "req_method": "nope.nothing"}


async def test_auth_test_shape(client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["user_id"] == "U0BOT"
    assert resp["bot_id"] == "B0BOT"
    assert resp["team_id"] == "T0LOCAL01"
    assert {"url", "team", "user", "is_enterprise_install"} <= set(resp.data)


async def test_post_message_shape_and_ts(ws: LocalSlack, client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel="#deploys", text="hi", blocks=approval_blocks())
    second = await client.chat_postMessage(channel="C0DEPLOYS", text="again")
    assert first["channel"] == "C0DEPLOYS"
    assert float(second["ts"]) > float(first["ts"])
    message = first["message"]
    assert message["bot_id"] == "B0BOT" and message["user"] == "U0BOT"
    assert message["ts"] == first["ts"] and message["text"] == "hi"
    assert message["blocks"][1]["elements"][0]["text"]["emoji"] is True
    # Form-encoded bodies with blocks as a JSON string work too.
    _, _, body = await raw_call(
        ws,
        "chat.postMessage",
        ws.bot_token,
        data={"channel": "C0DEPLOYS", "text": "form", "blocks": json.dumps(approval_blocks())},
    )
    assert body["ok"] and body["message"]["blocks"][0]["block_id"] == "q"
    assert [m["text"] for m in ws.messages("#deploys")] == ["hi", "again", "form"]
    assert [c.method for c in ws.calls_to("chat.postMessage")] == ["chat.postMessage"] * 3


async def test_post_to_user_id_lands_in_dm(ws: LocalSlack, client: AsyncWebClient) -> None:
    resp = await client.chat_postMessage(channel="U0CAROL", text="escalation")
    assert resp["channel"].startswith("D")
    opened = await client.conversations_open(users="U0CAROL")
    assert opened["channel"]["id"] == resp["channel"]
    assert ws.messages("carol")[0]["text"] == "escalation"


async def test_threads(ws: LocalSlack, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="#deploys", text="parent")
    await client.chat_postMessage(channel="#deploys", text="r1", thread_ts=parent["ts"])
    thread = ws.replies("#deploys", parent["ts"])
    assert [m["text"] for m in thread] == ["parent", "r1"]
    assert thread[0]["reply_count"] == 1 and thread[1]["thread_ts"] == parent["ts"]
    assert [m["text"] for m in ws.messages("#deploys")] == ["parent"]
    replies = await client.conversations_replies(channel="C0DEPLOYS", ts=parent["ts"])
    assert len(replies["messages"]) == 2


async def test_update_and_errors(ws: LocalSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="#deploys", text="v1", blocks=approval_blocks())
    updated = await client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="v2", blocks=[])
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C0DEPLOYS", posted["ts"], "v2")
    assert "blocks" not in updated["message"] and updated["message"]["edited"]["user"] == "U0BOT"
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C0DEPLOYS", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"
    mine = ws.say("alice", "#deploys", "human words")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C0DEPLOYS", ts=mine["ts"], text="x")
    assert err.value.response["error"] == "cant_update_message"


async def test_post_errors(ws: LocalSlack, client: AsyncWebClient) -> None:
    ws.model.add_channel("C0RANDOM", "random", ["U0ALICE"])

    async def error_of(**kwargs) -> str:
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(**kwargs)
        return err.value.response["error"]

    assert await error_of(channel="#nowhere", text="x") == "channel_not_found"
    assert await error_of(channel="#random", text="x") == "not_in_channel"
    with pytest.warns(UserWarning):
        assert await error_of(channel="#deploys") == "no_text"
    assert await error_of(channel="#deploys", text="x" * 40_001) == "msg_too_long"


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        (
            [{"type": "actions", "elements": [button("x" * 76, "a")]}],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        ),
        (
            [{"type": "actions", "elements": [button("ok", "a", value="v" * 2001)]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
        ),
        (
            [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}],
            "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "divider"}] * 51,
            "no more than 50 items allowed [json-pointer:/blocks]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
    ],
    ids=["button-text-76", "button-value-2001", "section-3001", "51-blocks", "header-151"],
)
async def test_invalid_blocks(client: AsyncWebClient, blocks: list, expected: str) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="#deploys", text="x", blocks=blocks)
    assert err.value.response["error"] == "invalid_blocks"
    assert expected in err.value.response["errors"]


async def test_post_ephemeral(ws: LocalSlack, client: AsyncWebClient) -> None:
    resp = await client.chat_postEphemeral(channel="#deploys", user="U0BOB", text="only bob")
    assert set(resp.data) >= {"ok", "message_ts"}
    assert [m["text"] for m in ws.ephemerals("bob")] == ["only bob"]
    assert ws.messages("#deploys") == []
    assert ws.messages("#deploys", user="bob")[0]["ephemeral"] is True
    assert ws.messages("#deploys", user="alice") == []
    ws.model.add_channel("C0OPS", "ops", ["U0BOT", "U0ALICE"])
    with pytest.raises(SlackApiError) as err:
        await client.chat_postEphemeral(channel="#ops", user="U0BOB", text="x")
    assert err.value.response["error"] == "user_not_in_channel"


async def test_lookups(client: AsyncWebClient) -> None:
    user = (await client.users_info(user="U0BOB"))["user"]
    assert user["name"] == "bob" and user["profile"]["display_name"] == "bob"
    assert {"real_name", "tz", "is_bot", "team_id"} <= set(user)
    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="U0NOBODY")
    assert err.value.response["error"] == "user_not_found"
    group = await client.usergroups_users_list(usergroup="S0APPROVERS")
    assert group["users"] == ["U0BOB", "U0DAN"]
    groups = await client.usergroups_list()
    assert groups["usergroups"][0]["handle"] == "deploy-approvers"
    info = await client.conversations_info(channel="C0DEPLOYS")
    assert info["channel"]["name"] == "deploys"
    members = await client.conversations_members(channel="C0DEPLOYS")
    assert "U0ALICE" in members["members"]


async def test_fail_next(ws: LocalSlack) -> None:
    ws.fail_next("chat.postMessage", status=429, retry_after=7)
    args = {"data": {"channel": "C0DEPLOYS", "text": "x"}}
    status, headers, body = await raw_call(ws, "chat.postMessage", ws.bot_token, **args)
    assert (status, headers["Retry-After"], body) == (
        429,
        "7",
        {"ok": False, "error": "ratelimited"},
    )
    ws.fail_next("chat.postMessage", status=500, times=2)
    assert (await raw_call(ws, "chat.postMessage", ws.bot_token, **args))[0] == 500
    assert (await raw_call(ws, "chat.postMessage", ws.bot_token, **args))[0] == 500
    assert (await raw_call(ws, "chat.postMessage", ws.bot_token, **args))[2]["ok"] is True
    assert [c.status for c in ws.calls] == [429, 500, 500, 200]


async def test_rate_limits(ws: LocalSlack, clock: ManualClock) -> None:
    ws.set_rate_limits(True)
    args = {"data": {"channel": "C0DEPLOYS", "text": "x"}}
    statuses = [(await raw_call(ws, "chat.postMessage", ws.bot_token, **args))[0] for _ in range(6)]
    assert statuses[:5] == [200] * 5 and statuses[5] == 429
    status, headers, body = await raw_call(ws, "chat.postMessage", ws.bot_token, **args)
    assert status == 429 and int(headers["Retry-After"]) >= 1 and body["error"] == "ratelimited"
    # Another channel has its own budget; time refills the first.
    other = {"data": {"channel": "U0ALICE", "text": "x"}}
    assert (await raw_call(ws, "chat.postMessage", ws.bot_token, **other))[0] == 200
    clock.advance(1.0)
    assert (await raw_call(ws, "chat.postMessage", ws.bot_token, **args))[0] == 200
    # Tier 2: 20 per minute.
    group = {"params": {"usergroup": "S0APPROVERS"}}
    codes = [
        (await raw_call(ws, "usergroups.users.list", ws.bot_token, **group))[0] for _ in range(21)
    ]
    assert codes.count(429) == 1 and codes[-1] == 429
    ws.set_rate_limits(False)
    assert (await raw_call(ws, "usergroups.users.list", ws.bot_token, **group))[0] == 200
    # Per method: only the named ones are limited.
    ws.set_rate_limits(True, methods=["usergroups.users.list"])
    posts = [(await raw_call(ws, "chat.postMessage", ws.bot_token, **args))[0] for _ in range(8)]
    assert posts == [200] * 8
    codes = [
        (await raw_call(ws, "usergroups.users.list", ws.bot_token, **group))[0] for _ in range(21)
    ]
    assert codes.count(429) == 1
