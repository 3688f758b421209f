"""Each request from the issue, over HTTP to the running bot: a malformed signed request is a
400 with one log line and no traceback, an unsigned or badly signed one a 401, a replay does
nothing, and nothing is ever a 5xx or puts a request body in a log line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from bot.localslack import LocalSlack
from bot.runtime import BotRuntime, serve
from tests.conftest import Harness, settings_for
from tests.fuzz.wire import (
    CANARY,
    FORM,
    INJECTION,
    JSON,
    Wire,
    app_records,
    assert_clean_logs,
    click_payload,
    form,
    home_event,
    interactive,
    signature,
    slash_fields,
    submission_payload,
    web_api_text,
)


@pytest.fixture
def wire(harness: Harness, caplog: pytest.LogCaptureFixture) -> Wire:
    caplog.set_level(logging.INFO)
    return Wire(harness)


def _without(d: dict[str, Any], *path: str) -> dict[str, Any]:
    """A deep copy of ``d`` without the key at ``path``."""
    copy = json.loads(json.dumps(d))
    node = copy
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return copy


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MALFORMED_SIGNED: dict[str, tuple[str | bytes, str]] = {
    "channel as a string": (interactive(click_payload(channel="C0DEPLOYS")), FORM),
    "no user.id": (interactive(_without(click_payload(), "user", "id")), FORM),
    "no action_id": (interactive(_without(click_payload(), "actions", 0, "action_id")), FORM),  # type: ignore[arg-type]
    "no trigger_id": (interactive(_without(click_payload(), "trigger_id")), FORM),
    "empty actions": (interactive(click_payload(actions=[])), FORM),
    "view without type": (interactive(submission_payload(type=None)), FORM),
    "payload not utf-8": (b"payload=\xff\xfe", FORM),
    "json 5000 deep (form)": (form({"payload": _nested(5000)}), FORM),
    "json 5000 deep (json)": (_nested(5000), JSON),
    "json 200 deep": (interactive(click_payload(message=json.loads(_nested(200)))), FORM),
    "list in view.state.values": (
        interactive(submission_payload(state={"values": {"reason": [1, 2]}})),
        FORM,
    ),
    "list as view.state": (interactive(submission_payload(state=[])), FORM),
    "payload=[]": ("payload=%5B%5D", FORM),
    "payload not json": ("payload=%7Bnot+json", FORM),
    "block_actions without actions": (interactive({"type": "block_actions"}), FORM),
    "string as user": (interactive(click_payload(user="U0CAROL><!here")), FORM),
    "number as user": (interactive(click_payload(user=5)), FORM),
    "action_id not a string": (
        interactive(click_payload(actions=[{"action_id": 7, "block_id": "b"}])),
        FORM,
    ),
    "action not a dict": (interactive(click_payload(actions=["approval:choice:0"])), FORM),
    "event not a dict": (json.dumps({**home_event(), "event": "app_home_opened"}), JSON),
    "home event without user": (json.dumps(home_event(user=None)), JSON),
    "body not json, json content type": ("{not json", JSON),
    "command without user_id": (form(slash_fields(user_id=None)), FORM),
    "command without channel_id": (form(slash_fields(channel_id=None)), FORM),
    "command without team_id": (form(slash_fields(team_id=None)), FORM),
    "no type at all": (form({"token": CANARY, "x": "1"}), FORM),
    "integer too long to convert": (
        form({"payload": '{"type": "block_actions", "n": ' + "9" * 5000 + "}"}),
        FORM,
    ),
}


@pytest.mark.parametrize("body", MALFORMED_SIGNED.values(), ids=MALFORMED_SIGNED.keys())
async def test_malformed_signed_request_is_a_400_with_one_clean_log_line(
    harness: Harness,
    wire: Wire,
    caplog: pytest.LogCaptureFixture,
    body: tuple[str | bytes, str],
) -> None:
    raw, content_type = body
    caplog.clear()
    resp = await wire.signed(raw, content_type)
    assert resp.status == 400, resp.body
    await harness.idle()
    records = app_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].getMessage().startswith("bad request: ")
    assert_clean_logs(caplog)
    assert not harness.ws.calls


ID_INJECTIONS: dict[str, tuple[str, str]] = {
    "slash user_id": (form(slash_fields(user_id=INJECTION)), FORM),
    "slash channel_id": (form(slash_fields(channel_id="C0DEPLOYS><!channel")), FORM),
    "slash team_id": (form(slash_fields(team_id="T0LOCAL01><!channel")), FORM),
    "slash user_id with newline": (form(slash_fields(user_id="U0ALICE\n")), FORM),
    "click user.id": (
        interactive(click_payload(user={"id": INJECTION, "team_id": "T0LOCAL01"})),
        FORM,
    ),
    "click channel.id": (interactive(click_payload(channel={"id": "C0DEPLOYS><!channel"})), FORM),
    "click container.channel_id": (
        interactive(click_payload(container={"type": "message", "channel_id": "C0X><!channel"})),
        FORM,
    ),
    "submission user.id": (
        interactive({**submission_payload(), "user": {"id": INJECTION}}),
        FORM,
    ),
    "home user": (json.dumps(home_event(user=INJECTION)), JSON),
    "fullwidth user id": (form(slash_fields(user_id="U0ＡLICE")), FORM),
}


@pytest.mark.parametrize("body", ID_INJECTIONS.values(), ids=ID_INJECTIONS.keys())
async def test_markup_in_an_id_field_never_reaches_slack(
    harness: Harness, wire: Wire, caplog: pytest.LogCaptureFixture, body: tuple[str, str]
) -> None:
    raw, content_type = body
    caplog.clear()
    resp = await wire.signed(raw, content_type)
    assert resp.status == 400
    await harness.idle()
    assert not harness.ws.calls
    assert "<!channel" not in web_api_text(harness)
    assert len(app_records(caplog)) == 1
    assert_clean_logs(caplog)


UNSIGNED: dict[str, dict[str, str]] = {
    "no headers": {},
    "timestamp abc": {"X-Slack-Request-Timestamp": "abc"},
    "timestamp empty": {"X-Slack-Request-Timestamp": ""},
    "timestamp 1e9": {"X-Slack-Request-Timestamp": "1e9"},
    "timestamp 123.5": {"X-Slack-Request-Timestamp": "123.5"},
    "timestamp negative": {"X-Slack-Request-Timestamp": "-5"},
    "timestamp with spaces": {"X-Slack-Request-Timestamp": " 1700000000 "},
    "timestamp 5000 digits": {"X-Slack-Request-Timestamp": "1" * 5000},
    "signature only": {"X-Slack-Signature": "v0=" + "0" * 64},
    "signature not hex": {"X-Slack-Signature": "v0=zz", "X-Slack-Request-Timestamp": "1"},
}


@pytest.mark.parametrize("headers", UNSIGNED.values(), ids=UNSIGNED.keys())
@pytest.mark.parametrize("body", ["payload=%7Bnot", b"payload=\xff\xfe", "", _nested(5000)])
async def test_unsigned_request_is_a_401_whatever_its_headers_and_body(
    harness: Harness,
    wire: Wire,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    body: str | bytes,
) -> None:
    caplog.clear()
    resp = await wire.raw(body, FORM, headers)
    assert resp.status == 401
    assert len(resp.body) < 40
    assert len(app_records(caplog)) == 1
    assert_clean_logs(caplog)


async def test_badly_signed_requests_are_401(
    harness: Harness, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    body = form(slash_fields()).encode()
    now = str(int(time.time()))
    cases = {
        "wrong secret": {"X-Slack-Signature": "v0=" + "0" * 64, "X-Slack-Request-Timestamp": now},
        "too old": {
            "X-Slack-Signature": signature(body, str(int(time.time()) - 301)),
            "X-Slack-Request-Timestamp": str(int(time.time()) - 301),
        },
        "from the future": {
            "X-Slack-Signature": signature(body, str(int(time.time()) + 400)),
            "X-Slack-Request-Timestamp": str(int(time.time()) + 400),
        },
        "signed over 1e9": {
            "X-Slack-Signature": signature(body, "1e9"),
            "X-Slack-Request-Timestamp": "1e9",
        },
        "uppercase hex": {
            "X-Slack-Signature": signature(body, now).upper().replace("V0=", "v0="),
            "X-Slack-Request-Timestamp": now,
        },
        "v1 scheme": {
            "X-Slack-Signature": signature(body, now).replace("v0=", "v1="),
            "X-Slack-Request-Timestamp": now,
        },
    }
    for name, headers in cases.items():
        caplog.clear()
        resp = await wire.raw(body, FORM, headers)
        assert resp.status == 401, name
        assert len(app_records(caplog)) == 1, name
        assert_clean_logs(caplog)
    await harness.idle()
    assert not harness.ws.calls


async def test_signature_over_a_different_body_is_401(
    harness: Harness, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    headers = harness.ws.sign(form(slash_fields(text="api 1.0.0 staging")).encode(), now)
    resp = await wire.raw(form(slash_fields(text="api 6.6.6 prod")), FORM, headers)
    assert resp.status == 401
    assert_clean_logs(caplog)
    assert not harness.ws.calls


async def test_repeated_signature_headers_are_401(harness: Harness) -> None:
    """A second timestamp header must not let Bolt and us read different ones."""
    body = form(slash_fields()).encode()
    good = harness.ws.sign(body, int(time.time()))
    headers = CIMultiDict({**good, "Content-Type": FORM})
    headers.add("X-Slack-Request-Timestamp", "1")
    async with (
        aiohttp.ClientSession() as session,
        session.post(harness.bot.url, data=body, headers=headers) as resp,
    ):
        assert resp.status == 401
    await harness.idle()
    assert not harness.ws.calls


async def test_a_replayed_request_does_nothing_the_second_time(
    harness: Harness, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    body = form(slash_fields(text="api 1.4.2 staging")).encode()
    headers = harness.ws.sign(body, int(time.time()))
    first = await wire.raw(body, FORM, headers)
    assert first.status == 200
    await harness.wait(lambda: harness.approval_message())
    await harness.idle()
    calls = len(harness.ws.calls)
    posts = len(harness.ws.calls_to("chat.postMessage"))
    caplog.clear()
    again = await wire.raw(body, FORM, headers)
    assert (again.status, again.body) == (200, "")
    await harness.idle()
    assert len(harness.ws.calls) == calls
    assert len(harness.ws.calls_to("chat.postMessage")) == posts
    assert len(app_records(caplog)) == 1
    assert_clean_logs(caplog)


async def test_a_replayed_malformed_request_is_not_logged_as_bad_twice(
    harness: Harness, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    body = interactive(click_payload(actions=[])).encode()
    headers = harness.ws.sign(body, int(time.time()))
    assert (await wire.raw(body, FORM, headers)).status == 400
    assert (await wire.raw(body, FORM, headers)).status == 200
    messages = [r.getMessage() for r in app_records(caplog)]
    assert messages == ["bad request: actions", "replayed request ignored"]


async def test_unicode_digits_in_a_version_are_a_usage_error(harness: Harness, wire: Wire) -> None:
    resp = await wire.signed(form(slash_fields(text="api 𝟏.𝟐.𝟑 prod")))
    assert resp.status == 200
    assert "version must look like" in json.loads(resp.body)["text"]
    await harness.idle()
    assert harness.approval_message() is None


async def test_a_well_formed_request_still_works(harness: Harness, wire: Wire) -> None:
    resp = await wire.signed(form(slash_fields(text="api 1.4.2 prod")))
    assert resp.status == 200
    msg = await harness.wait(lambda: harness.approval_message())
    assert msg is not None
    home = await wire.signed(json.dumps(home_event()), JSON)
    assert home.status == 200
    await harness.wait(lambda: harness.ws.calls_to("views.publish"))


async def test_healthz_still_answers(harness: Harness) -> None:
    url = harness.bot.url.replace("/slack/events", "/healthz")
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert (await resp.json())["ok"] is True


async def test_socket_mode_payloads_are_checked_too(
    ws: LocalSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws.request_url = None  # nothing over HTTP: the workspace must use the socket
    settings = dataclasses.replace(settings_for(ws, tmp_path / "a.db"), app_token=ws.app_token)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(await BotRuntime.open(settings), stop))
    try:
        await ws.wait_for(lambda: ws.socket.connected, timeout=10)
        payload = click_payload(user={"id": INJECTION, "team_id": "T0LOCAL01"})
        sending = asyncio.create_task(ws.socket.send("interactive", payload))
        await ws.wait_for(
            lambda: any(r.getMessage() == "bad request: user.id" for r in caplog.records)
        )
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)
    assert "<!channel" not in web_api_text_of(ws)
    assert not [r for r in caplog.records if r.exc_info]


def web_api_text_of(ws: LocalSlack) -> str:
    return "\n".join(f"{c.method} {json.dumps(c.args, default=str)}" for c in ws.calls)
