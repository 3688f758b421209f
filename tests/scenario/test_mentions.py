"""Deciding by mentioning the bot in an approval's thread (``@approvals approve ship it``):
the local workspace sends the signed ``app_mention`` event a person's message causes (over
HTTP, and as a Socket Mode envelope); the same rules, claim, audit and message updates as a
click; refusals and the usage line as ephemerals in the thread; a retried event (same
``event_id``, ``X-Slack-Retry-Num``) acts once. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bot.localslack import LocalSlack
from bot.localslack.callbacks import Delivery
from bot.localslack.model import APP_ID, BOT_USER_ID, TEAM_ID
from bot.mentions import usage
from bot.runtime import BotRuntime, serve
from tests.conftest import BACKENDS, FakeClock, Harness, settings_for
from tests.reads import audit_events, runs_with_status
from tests.scenario.test_approval_loop import DEPLOYS, buttons, message_text
from tests.scenario.test_approval_loop import deploy as post_deploy

ME = f"<@{BOT_USER_ID}>"
POLICY = {
    "policy": {
        "deploy": {
            "prod": {"approvers": ["U0BOB", "U0DAN"], "comment_required": ["reject"]},
            "staging": {"min_approvals": 2},
        }
    }
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def h(harness: Harness) -> Harness:
    """The harness's bot, restarted with a policy: bob or dan approve prod, and a reject
    there needs a comment; staging needs two approvals (anyone but the requester)."""
    old = harness.bots.pop()
    await old.stop()
    await harness.start_bot(policy=POLICY)
    return harness


async def deploy(h: Harness, text: str = "api 1.4.2 prod") -> dict[str, Any]:
    """A request's message, once the bot has recorded where it is (a person cannot mention
    the bot in its thread sooner than that; a test can)."""
    msg = await post_deploy(h, text)
    await h.wait(lambda: h.query("SELECT COUNT(*) FROM bot_approvals WHERE ts IS NULL") == [(0,)])
    return msg


def copies_recorded(h: Harness) -> int:
    """Escalation copies the bot knows the ts of (a mention in a copy's thread before that
    is a race only a test can run)."""
    sql = "SELECT COUNT(*) FROM bot_outbox WHERE key LIKE 'copy:%' AND ts IS NOT NULL"
    return int(h.query(sql)[0][0])


async def say(h: Harness, user: str, msg: dict[str, Any] | None, text: str) -> Delivery:
    """``user`` types ``text`` in ``msg``'s thread (None: at the top of #deploys); the
    workspace delivers the app_mention it causes."""
    thread_ts = msg["ts"] if msg else None
    _, delivery = await h.ws.type_message(user, DEPLOYS, text, thread_ts)
    assert delivery is not None and delivery.ok, delivery
    return delivery


async def told(h: Harness, user: str, count: int = 1) -> list[dict[str, Any]]:
    """``user``'s ephemerals, once there are ``count`` of them."""
    return await h.wait(lambda: (e := h.ws.ephemerals(user)) and len(e) >= count and e)


async def audit(h: Harness) -> list[dict[str, Any]]:
    await h.idle()
    return await audit_events(h.bot.runtime.store)


def resend(h: Harness, payload: dict[str, Any], attempt: int) -> Any:
    """Slack's retry of an event: the same body, a fresh signature (one second on, so it is
    not the same request replayed), marked with X-Slack-Retry-Num."""
    raw = json.dumps(payload).encode()
    headers = h.ws.sign(raw, int(time.time()) + attempt)
    headers["X-Slack-Retry-Num"] = str(attempt)
    headers["X-Slack-Retry-Reason"] = "http_timeout"
    return h.ws.deliver_raw(raw, "application/json", headers)


async def test_approve_with_a_comment_decides_as_a_click_does(h: Harness) -> None:
    msg = await deploy(h)
    delivery = await say(h, "bob", msg, f"{ME} approve ship it")
    assert delivery.via == "http"
    assert delivery.payload is not None and delivery.payload["event"]["type"] == "app_mention"
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    final = h.approval_message()
    assert buttons(final) == []
    assert "*Approved* by <@U0BOB>" in message_text(final)
    assert "ship it" in message_text(final)
    rows = await audit(h)
    assert [r["event"] for r in rows] == [
        "run_started",
        "requested",
        "decided",
        "resumed",
        "run_done",
    ]
    decided = next(r for r in rows if r["event"] == "decided")
    assert decided["user_id"] == "U0BOB"
    assert json.loads(decided["detail"]) == {"choice": "approve", "comment": "ship it"}
    assert h.query("SELECT comment FROM bot_approvals") == [("ship it",)]
    # resumed once: each progress line once, and nobody was told anything privately
    replies = [r["text"] for r in h.ws.replies(DEPLOYS, final["ts"])[1:]]
    assert sum("(1/3)" in r for r in replies) == 1
    assert h.ws.ephemerals("bob") == []


async def test_reject_with_a_reason_and_the_comment_escaped(h: Harness) -> None:
    msg = await deploy(h)
    # as Slack's client sends "reject: too risky on a Friday <!channel> & co"
    await say(h, "dan", msg, f"{ME} Reject: too risky on a Friday &lt;!channel&gt; &amp; co")
    await h.wait(lambda: "❌" in message_text(h.approval_message()))
    await h.idle()
    final = message_text(h.approval_message())
    assert "Rejected* by <@U0DAN>" in final
    assert "too risky on a Friday &lt;!channel&gt; &amp; co" in final
    assert "<!channel>" not in final
    assert h.query("SELECT comment FROM bot_approvals") == [
        ("too risky on a Friday <!channel> & co",)
    ]
    run = (await runs_with_status(h.bot.runtime.store, "done"))[0]
    assert run.outcome is not None and run.outcome["status"] == "rejected"


async def test_refusals_are_told_in_the_thread_and_decide_nothing(h: Harness) -> None:
    msg = await deploy(h)
    # not an approver
    await say(h, "carol", msg, f"{ME} approve")
    note = (await told(h, "carol"))[-1]
    assert note["text"] == "Only <@U0BOB> or <@U0DAN> can decide this request."
    assert note["thread_ts"] == msg["ts"]
    # a reject without the comment the policy requires
    await say(h, "bob", msg, f"{ME} reject")
    note = (await told(h, "bob"))[-1]
    assert "needs a comment" in note["text"] and "`reject because …`" in note["text"]
    assert note["thread_ts"] == msg["ts"]
    # the requester (staging: anyone else may approve)
    staging = await deploy(h, "api 1.4.2 staging")
    await say(h, "alice", staging, f"{ME} lgtm")
    note = (await told(h, "alice"))[-1]
    assert "second pair of eyes" in note["text"]
    assert note["thread_ts"] == staging["ts"]
    rows = await audit(h)
    assert [r["event"] for r in rows].count("refused") == 3
    assert "decided" not in [r["event"] for r in rows]
    assert h.query("SELECT COUNT(*) FROM bot_votes") == [(0,)]
    assert buttons(h.approval_message()) and buttons(msg)


async def test_anything_else_gets_the_usage_line(h: Harness) -> None:
    msg = await deploy(h)
    await say(h, "bob", msg, f"{ME} what does this do?")
    note = (await told(h, "bob"))[-1]
    assert note["text"] == usage(BOT_USER_ID)
    assert note["thread_ts"] == msg["ts"]
    await say(h, "bob", None, f"{ME} approve")  # not in a thread: which request?
    note = (await told(h, "bob", 2))[-1]
    assert note["text"] == usage(BOT_USER_ID) and not note.get("thread_ts")
    # a message that does not mention the bot: no event at all
    _, none = await h.ws.type_message("bob", DEPLOYS, "approve", msg["ts"])
    assert none is None
    await h.idle()
    assert buttons(h.approval_message())
    assert len(h.ws.ephemerals("bob")) == 2


async def test_a_mention_after_the_decision_is_told_who_decided(h: Harness) -> None:
    msg = await deploy(h)
    await say(h, "bob", msg, f"{ME} approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await say(h, "dan", msg, f"{ME} reject too late")
    note = (await told(h, "dan"))[-1]
    assert "<@U0BOB>" in note["text"] and note["thread_ts"] == msg["ts"]


async def test_a_retried_event_acts_once(h: Harness) -> None:
    # a vote that does not decide (staging needs two): the retry must not answer again
    staging = await deploy(h, "api 1.4.2 staging")
    first = await say(h, "bob", staging, f"{ME} approve")
    assert first.payload is not None
    await told(h, "bob")
    again = await resend(h, first.payload, 1)
    assert again.status == 200
    await h.idle()
    assert len(h.ws.ephemerals("bob")) == 1
    assert h.query("SELECT user_id FROM bot_votes") == [("U0BOB",)]
    # a refusal retried: told once
    refused = await say(h, "alice", staging, f"{ME} approve")
    await told(h, "alice")
    assert refused.payload is not None
    assert (await resend(h, refused.payload, 1)).status == 200
    assert (await resend(h, refused.payload, 2)).status == 200
    await h.idle()
    assert len(h.ws.ephemerals("alice")) == 1
    # the usage line retried: told once
    usage_line = await say(h, "carol", staging, f"{ME} hello")
    await told(h, "carol")
    assert usage_line.payload is not None
    assert (await resend(h, usage_line.payload, 1)).status == 200
    await h.idle()
    assert len(h.ws.ephemerals("carol")) == 1
    events = [r["event"] for r in await audit(h)]
    assert events.count("vote") == 1 and events.count("refused") == 1


async def test_a_retry_racing_the_first_attempt_decides_once(h: Harness) -> None:
    msg = await deploy(h)
    message = h.ws.say("bob", DEPLOYS, f"{ME} approve", msg["ts"])  # no event sent yet
    payload = {
        "token": "localverificationtoken",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event_id": "Ev0RACE",
        "event_time": int(time.time()),
        "event": {
            "type": "app_mention",
            "user": "U0BOB",
            "text": message["text"],
            "ts": message["ts"],
            "channel": h.ws.conversation(DEPLOYS).id,
            "event_ts": message["ts"],
            "thread_ts": msg["ts"],
        },
    }
    answers = await asyncio.gather(*(resend(h, payload, n) for n in range(4)))
    assert [a.status for a in answers] == [200] * 4
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    events = [r["event"] for r in await audit(h)]
    assert events.count("decided") == 1 and events.count("resumed") == 1
    assert "vote" not in events and "refused" not in events
    assert h.ws.ephemerals("bob") == []
    assert h.query("SELECT event_id FROM bot_slack_events") == [("Ev0RACE",)]


async def test_the_workspace_retries_an_event_not_answered_in_time(h: Harness) -> None:
    """The app answered too slowly (as Slack sees it): Slack sends the event again with
    X-Slack-Retry-Num, the first attempt may still be on its way; one decision."""
    msg = await deploy(h)
    h.ws.callbacks.event_retry_delays = (0.2,)
    h.ws.callbacks.ack_timeout = 0.0005  # nothing answers this fast
    _, first = await h.ws.type_message("bob", DEPLOYS, f"{ME} approve fine", msg["ts"])
    h.ws.callbacks.ack_timeout = 3.0
    assert first is not None and not first.ok
    retry = await h.wait(lambda: h.ws.callbacks.event_retries)
    assert retry[0].ok
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    events = [r["event"] for r in await audit(h)]
    assert events.count("decided") == 1 and events.count("resumed") == 1


async def test_a_mention_in_an_escalated_copy_decides(
    ws: LocalSlack, tmp_path: Path, database_url: str | None
) -> None:
    """An escalation that copies the request to another channel (#ops): a mention in the
    copy's thread decides, and both messages show it."""
    ws.model.add_channel("C0OPS", "ops", ["U0BOB", "U0DAN", "U0CAROL", BOT_USER_ID])
    h = Harness(ws, tmp_path / "a.db", database_url)
    clock = FakeClock()
    policy = {
        "policy": {
            "deploy": {
                "prod": {
                    "approvers": ["U0BOB"],
                    "escalation": [{"after": "30m", "notify": ["C0OPS", "U0DAN"]}],
                }
            }
        }
    }
    await h.start_bot(clock=clock, policy=policy)
    try:
        await deploy(h)
        await h.wait(
            lambda: h.query("SELECT COUNT(*) FROM bot_approvals WHERE posted_at IS NULL") == [(0,)]
        )
        await clock.advance(31 * 60, h.bot)
        copy = await h.wait(lambda: next((m for m in ws.messages("#ops") if m.get("blocks")), None))
        await h.wait(lambda: copies_recorded(h) == 2)
        _, delivery = await ws.type_message("dan", "#ops", f"{ME} approve from ops", copy["ts"])
        assert delivery is not None and delivery.ok
        await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
        await h.wait(
            lambda: (
                "Approved* by <@U0DAN>" in message_text(ws.messages("#ops")[-1])
                and not buttons(ws.messages("#ops")[-1])
            )
        )
        assert "from ops" in message_text(h.approval_message())
    finally:
        for bot in h.bots:
            await bot.stop()


async def test_an_answer_in_an_escalation_dm_thread_decides(
    ws: LocalSlack, tmp_path: Path, database_url: str | None
) -> None:
    """Slack sends no app_mention in a DM with the app: a reply in the thread of the DM copy
    comes as message.im, and needs no mention there."""
    h = Harness(ws, tmp_path / "a.db", database_url)
    clock = FakeClock()
    escalation = [{"after": "30m", "notify": ["U0DAN"]}]
    policy = {"policy": {"deploy": {"prod": {"approvers": ["U0BOB"], "escalation": escalation}}}}
    await h.start_bot(clock=clock, policy=policy)
    try:
        await deploy(h)
        await clock.advance(31 * 60, h.bot)
        copy = await h.wait(lambda: next((m for m in ws.messages("dan") if m.get("blocks")), None))
        await h.wait(lambda: copies_recorded(h) == 1)
        _, hello = await ws.type_message("dan", "dan", "hello?")  # top level: which request?
        assert hello is not None and hello.ok
        assert hello.payload is not None and hello.payload["event"]["channel_type"] == "im"
        note = await h.wait(lambda: ws.ephemerals("dan"))
        assert note[-1]["text"] == usage(BOT_USER_ID)
        _, delivery = await ws.type_message("dan", "dan", "Reject not this week", copy["ts"])
        assert delivery is not None and delivery.ok
        await h.wait(lambda: "❌" in message_text(h.approval_message()))
        assert "Rejected* by <@U0DAN>" in message_text(h.approval_message())
        assert "not this week" in message_text(h.approval_message())
        await h.wait(lambda: not buttons(next(m for m in ws.messages("dan") if m.get("blocks"))))
    finally:
        for bot in h.bots:
            await bot.stop()


async def test_mentions_over_socket_mode(ws: LocalSlack, tmp_path: Path) -> None:
    """The same over Socket Mode: the app_mention comes as an events_api envelope; a retried
    envelope (retry_attempt 1) acts once."""
    ws.request_url = None
    settings = settings_for(ws, tmp_path / "a.db", policy=POLICY)
    settings = dataclasses.replace(settings, app_token=ws.app_token)
    stop = asyncio.Event()
    runtime = await BotRuntime.open(settings)
    server = asyncio.create_task(serve(runtime, stop))
    try:
        await ws.wait_for(lambda: ws.socket.connected, timeout=10)
        await ws.slash("alice", "/deploy", "api 1.4.2 staging", channel=DEPLOYS)
        msg = await ws.wait_for(
            lambda: next((m for m in ws.messages(DEPLOYS) if m.get("blocks") and buttons(m)), None)
        )
        _, vote = await ws.type_message("bob", DEPLOYS, f"{ME} approve", msg["ts"])
        assert vote is not None and vote.via == "socket" and vote.ok
        assert ws.envelopes[-1]["type"] == "events_api"
        await ws.wait_for(lambda: ws.ephemerals("bob"))
        assert vote.payload is not None
        ack = await ws.socket.send("events_api", vote.payload, retry=(1, "timeout"))
        assert ack["envelope_id"]
        _, second = await ws.type_message("carol", DEPLOYS, f"{ME} approve", msg["ts"])
        assert second is not None and second.ok
        await ws.wait_for(lambda: "✅ Deployed" in message_text(ws.messages(DEPLOYS)[-1]))
        await runtime.tasks.idle()
        assert len(ws.ephemerals("bob")) == 1  # "your vote is in", once
        events = [e["event"] for e in await audit_events(runtime.store)]
        assert events.count("vote") == 1 and events.count("decided") == 1
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)
