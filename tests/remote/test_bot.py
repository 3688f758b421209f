"""The bot as the Slack face of a LangGraph Server: the real Bolt app on the local workspace,
a real SQLite file, and a real ``langgraph dev`` (tests/remote/server.py) serving the test
graphs. What the graphs really did is read from the server (its runs) and the served tools'
own log, never from what the bot says."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient

from bot.remote.runner import run_id_of
from tests.conftest import Harness
from tests.remote.conftest import SERVER_KEY
from tests.remote.cutproxy import CutProxy
from tests.remote.server import LangGraphServer
from tests.scenario.test_approval_loop import buttons, message_text
from tests.scenario.test_shapes import inputs

CHANNEL = "C0DEPLOYS"
POLL = "1s"
WAIT = 20.0  # a run on the server takes ~1 s to leave its queue; loaded CI hosts are slower


def policy(url: str, **extra: Any) -> dict[str, Any]:
    deployment = {
        "name": "support",
        "url": url,
        "api_key_env": "SUPPORT_LANGGRAPH_API_KEY",
        "channel": CHANNEL,
        "poll": POLL,
        "requester_metadata": "slack_user",
        **extra,
    }
    return {"deployments": [deployment]}


@pytest.fixture
async def server(langgraph_server: LangGraphServer) -> AsyncIterator[LangGraphServer]:
    """The session's server (behind SERVER_KEY), emptied first: the bot's inbox answers every
    thread a deployment holds, so the test's own threads must be all there is."""
    await empty(langgraph_server)
    yield langgraph_server


async def empty(server: LangGraphServer) -> None:
    """Delete every thread on ``server`` (an earlier test's, finished or not)."""
    sdk = server.client()
    try:
        for _ in range(100):
            threads = await sdk.threads.search(limit=100, select=["thread_id"])
            if not threads:
                return
            for thread in threads:
                await sdk.threads.delete(thread["thread_id"])
        raise AssertionError("threads keep coming back")
    finally:
        await sdk.aclose()


@pytest.fixture
async def client(server: LangGraphServer) -> AsyncIterator[LangGraphClient]:
    sdk = server.client()
    yield sdk
    await sdk.aclose()


@pytest.fixture
async def h(harness: Harness, server: LangGraphServer) -> AsyncIterator[Harness]:
    """The harness's bot restarted with the test's server as deployment "support"."""
    await harness.bots[0].stop()
    harness.bots.clear()
    await harness.start_bot(policy=policy(server.url), deployment_keys={"support": SERVER_KEY})
    yield harness


def approvals(h: Harness) -> list[dict[str, Any]]:
    """Every approval message in the channel, oldest first."""
    return [
        m
        for m in h.ws.messages(CHANNEL)
        if m.get("blocks") and m["blocks"][0].get("type") == "header"
    ]


def showing(h: Harness, words: str) -> list[dict[str, Any]]:
    return [m for m in approvals(h) if words in message_text(m)]


async def deployment_verdict(h: Harness) -> tuple[bool, dict[str, Any]]:
    """/readyz's verdict on "support", once its background probe has one."""
    deadline = time.monotonic() + WAIT
    for _ in range(1000):
        ready, body = await h.bot.runtime.health.ready()
        verdict = body["deployments"]["support"]
        if verdict.get("ok") is not None or time.monotonic() > deadline:
            return ready, verdict
        await asyncio.sleep(0.02)
    raise AssertionError("no verdict")


async def runs_on(client: LangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    return list(await client.runs.list(thread_id, limit=100))


async def sdk_thread(client: LangGraphClient, graph: str, **metadata: Any) -> str:
    """A thread started outside Slack (the SDK), left waiting at its interrupt."""
    thread = await client.threads.create(metadata={"test": uuid.uuid4().hex, **metadata})
    await client.runs.wait(thread["thread_id"], graph, input={"subject": "api 1.4.2"})
    return str(thread["thread_id"])


async def test_a_run_started_from_slack_is_approved_and_finishes(
    h: Harness, client: LangGraphClient, server: LangGraphServer
) -> None:
    ack = await h.ws.slash("alice", "/approvals", "run support/plain ship the release")
    assert ack.ok
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    assert "Ship it?" in message_text(msg) and "Approve" in buttons(msg)
    (run,) = await h.bot.runtime.store.runs_by("U0ALICE")
    tid = str(uuid.UUID(run.run_id))
    thread = await client.threads.get(tid)
    assert thread["metadata"]["slack_user"] == "U0ALICE"
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: showing(h, "Approved") and not buttons(approvals(h)[-1]), timeout=WAIT)
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    calls = server.tool_calls(tid)
    assert [c["name"] for c in calls] == ["ship"]
    assert calls[0]["args"]["answer"] not in (None, "")
    assert len(await runs_on(client, tid)) == 2  # the start and one resume
    metrics = (await h.bot.runtime.metrics.render()).decode()
    assert 'approvals_deployment_calls_total{deployment="support",outcome="ok"}' in metrics
    assert 'approvals_inbox_last_look_timestamp_seconds{deployment="support"}' in metrics
    ready, verdict = await deployment_verdict(h)
    assert ready and verdict["key_accepted"] is True


async def test_the_inbox_posts_a_thread_started_elsewhere_once_and_its_requester_holds(
    h: Harness, client: LangGraphClient, server: LangGraphServer
) -> None:
    tid = await sdk_thread(client, "plain", slack_user="U0ALICE")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    assert "<@U0ALICE>" in message_text(msg)
    # several polls later it is still one message
    looks = h.bot.runtime.inboxes[0].requests
    await h.wait(lambda: h.bot.runtime.inboxes[0].requests >= looks + 3, timeout=WAIT)
    assert len(approvals(h)) == 1
    refused = await h.ws.click("alice", msg, "Approve")  # her own request
    assert refused.ok
    assert (await client.threads.get(tid))["status"] == "interrupted"
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    assert [c["name"] for c in server.tool_calls(tid)] == ["ship"]
    assert len(await runs_on(client, tid)) == 2


async def test_a_thread_started_with_no_slack_user_says_so(
    h: Harness, client: LangGraphClient
) -> None:
    await sdk_thread(client, "plain")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    assert "Started outside Slack" in message_text(msg)


async def test_answered_elsewhere_closes_the_message_and_sends_nothing(
    h: Harness, client: LangGraphClient, server: LangGraphServer
) -> None:
    tid = await sdk_thread(client, "plain")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    state = await client.threads.get_state(tid)
    (asked,) = state["interrupts"]
    await client.runs.wait(tid, "plain", command={"resume": {asked["id"]: "from the web"}})
    await h.wait(lambda: showing(h, "Answered outside Slack"), timeout=WAIT)
    closed = showing(h, "Answered outside Slack")[-1]
    assert closed["ts"] == msg["ts"] and not buttons(closed)
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    calls = server.tool_calls(tid)
    assert [(c["name"], c["args"]) for c in calls] == [("ship", {"answer": "from the web"})]
    assert len(await runs_on(client, tid)) == 2  # the SDK's start and its resume only


async def test_twenty_racing_clicks_give_one_resume(
    h: Harness, client: LangGraphClient, server: LangGraphServer
) -> None:
    tid = await sdk_thread(client, "plain")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    people = ["bob", "carol", "dan"] * 7
    await asyncio.gather(*(h.ws.click(p, msg, "Approve") for p in people[:20]))
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    await h.idle()
    assert len(server.tool_calls(tid)) == 1
    assert len(await runs_on(client, tid)) == 2


async def test_a_form_is_answered_and_checked_before_it_is_sent(
    h: Harness, client: LangGraphClient, server: LangGraphServer
) -> None:
    tid = await sdk_thread(client, "form")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    before = {v["id"] for v in h.ws.open_views("bob")}
    await h.ws.click("bob", msg, "Answer…")
    view = await h.wait(
        lambda: next((v for v in h.ws.open_views("bob") if v["id"] not in before), None)
    )
    fields = {label: b["block_id"] for label, b in inputs(view).items()}
    assert {"Amount", "Reason"} <= set(fields), fields
    wrong = await h.ws.submit_modal(
        "bob", view, {fields["Amount"]: "900", fields["Reason"]: "late"}
    )
    assert wrong.errors  # refused in the form: nothing was claimed, nothing sent
    assert len(await runs_on(client, tid)) == 1
    done = await h.ws.submit_modal("bob", view, {fields["Amount"]: "90", fields["Reason"]: "late"})
    assert done.ok and not done.errors
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    calls = server.tool_calls(tid)
    assert [(c["name"], c["args"]["amount"], c["args"]["reason"]) for c in calls] == [
        ("refund", 90, "late")
    ]


async def test_a_thread_deleted_while_pending_ends_the_request_in_plain_words(
    h: Harness, client: LangGraphClient
) -> None:
    tid = await sdk_thread(client, "plain")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    await client.threads.delete(tid)
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("failed",)], timeout=WAIT)
    await h.wait(lambda: showing(h, "not on support any more"), timeout=WAIT)


async def test_a_wrong_key_ends_a_start_in_plain_words(
    harness: Harness, server: LangGraphServer
) -> None:
    await harness.bots[0].stop()
    harness.bots.clear()
    await harness.start_bot(
        policy=policy(server.url, watch=False),
        deployment_keys={"support": "not-the-key"},
    )
    await harness.ws.slash("alice", "/approvals", "run support/plain ship it")
    await harness.wait(
        lambda: harness.query("SELECT status FROM bot_runs") == [("failed",)], timeout=WAIT
    )
    (outcome,) = harness.query("SELECT outcome FROM bot_runs")
    assert "did not accept the bot's API key" in outcome[0]
    told = await harness.wait(  # the requester is told, through the command's response_url
        lambda: [
            m for m in harness.ws.messages(CHANNEL, user="alice") if "API key" in str(m.get("text"))
        ],
        timeout=WAIT,
    )
    assert "/approvals run support/plain" in told[0]["text"]
    # /readyz names the deployment's fault without making the bot unready
    ready, verdict = await deployment_verdict(harness)
    assert ready and verdict["key_accepted"] is False
    assert "not-the-key" not in str(verdict)


async def test_the_server_stopped_while_a_decision_waits_gets_one_resume_when_back(
    harness: Harness, own_server: LangGraphServer, tmp_path: Path
) -> None:
    await asyncio.to_thread(own_server.start)
    await harness.bots[0].stop()
    harness.bots.clear()
    await harness.start_bot(policy=policy(own_server.url), deployment_keys={"support": None})
    sdk = own_server.client()
    try:
        tid = await sdk_thread(sdk, "plain")
    finally:
        await sdk.aclose()
    msg = await harness.wait(lambda: (approvals(harness) or [None])[-1], timeout=WAIT)
    await asyncio.to_thread(own_server.stop)  # SIGTERM: the server keeps its threads
    await harness.ws.click("bob", msg, "Approve")
    # the decision is kept, and the message says what it waits for
    await harness.wait(lambda: showing(harness, "Waiting for support to answer"), timeout=WAIT)
    assert "Approved" in message_text(showing(harness, "Waiting for support")[-1])
    await harness.wait(
        lambda: any(
            "Waiting for support" in str(r.get("text"))
            for r in harness.ws.replies(CHANNEL, msg["ts"])
        ),
        timeout=WAIT,
    )
    assert own_server.tool_calls(tid) == []
    await asyncio.to_thread(own_server.start)
    await harness.wait(
        lambda: harness.query("SELECT status FROM bot_runs") == [("done",)], timeout=60
    )
    assert [c["name"] for c in own_server.tool_calls(tid)] == ["ship"]
    sdk = own_server.client()
    try:
        assert len(await runs_on(sdk, tid)) == 2
    finally:
        await sdk.aclose()
    assert run_id_of(tid)


@pytest.mark.parametrize("landed", [True, False], ids=["answer-lost", "request-lost"])
async def test_a_resume_whose_answer_is_lost_is_sent_again_only_if_it_did_not_land(
    harness: Harness, server: LangGraphServer, client: LangGraphClient, landed: bool
) -> None:
    """The resume's request reaches the server and its answer is lost (or the request is
    lost): the bot reads the thread before sending again, so the graph acts once either way."""
    proxy = CutProxy("127.0.0.1", server.port)
    await proxy.start()
    try:
        await harness.bots[0].stop()
        harness.bots.clear()
        await harness.start_bot(policy=policy(proxy.url), deployment_keys={"support": SERVER_KEY})
        tid = await sdk_thread(client, "plain")
        msg = await harness.wait(lambda: (approvals(harness) or [None])[-1], timeout=WAIT)
        proxy.cut(b"/runs/stream", landed=landed)
        await harness.ws.click("bob", msg, "Approve")
        if landed:  # the server has the resume; then its answer is lost
            await harness.wait(lambda: server.tool_calls(tid), timeout=WAIT)
            proxy.release()
        await harness.wait(
            lambda: harness.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT
        )
        assert proxy.cuts == 1
        assert proxy.sent == (1 if landed else 2)  # sent again only when it had not landed
        assert [c["name"] for c in server.tool_calls(tid)] == ["ship"]
        assert len(await runs_on(client, tid)) == 2
    finally:
        await harness.bots[0].stop()
        harness.bots.clear()
        await proxy.stop()


async def test_a_thread_answered_elsewhere_while_the_bot_was_away_is_closed_on_its_return(
    h: Harness, client: LangGraphClient, server: LangGraphServer
) -> None:
    tid = await sdk_thread(client, "plain")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    await h.bots[0].stop()
    h.bots.clear()
    (asked,) = (await client.threads.get_state(tid))["interrupts"]
    await client.runs.wait(tid, "plain", command={"resume": {asked["id"]: "while away"}})
    await h.start_bot(policy=policy(server.url), deployment_keys={"support": SERVER_KEY})
    await h.wait(lambda: showing(h, "Answered outside Slack"), timeout=WAIT)
    assert showing(h, "Answered outside Slack")[-1]["ts"] == msg["ts"]
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    assert [c["args"] for c in server.tool_calls(tid)] == [{"answer": "while away"}]
    assert len(await runs_on(client, tid)) == 2


async def test_a_quiet_deployment_costs_one_small_request_per_poll(
    h: Harness, client: LangGraphClient
) -> None:
    for _ in range(3):
        await sdk_thread(client, "plain")
    await h.wait(lambda: len(approvals(h)) == 3, timeout=WAIT)
    inbox = h.bot.runtime.inboxes[0]
    await h.wait(lambda: inbox.requests > 0 and inbox.cursor is not None, timeout=WAIT)
    await inbox.stop()  # its own looks, driven here one at a time
    before, looks = inbox.requests, 0
    for _ in range(3):  # three looks with nothing changed on the server
        looks += 1
        await inbox.look()
    assert inbox.requests - before == looks


async def test_a_click_that_loses_the_race_to_an_answer_given_elsewhere_is_not_sent(
    h: Harness, client: LangGraphClient, server: LangGraphServer
) -> None:
    """Someone answers from another client; before the inbox notices (stopped here), bob
    clicks Approve: the claim is made, but the resume finds the interrupt answered by a run
    that is not the bot's, so his decision is void, never sent, and the message says so."""
    tid = await sdk_thread(client, "plain")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    await h.bot.runtime.inboxes[0].stop()
    (asked,) = (await client.threads.get_state(tid))["interrupts"]
    await client.runs.wait(tid, "plain", command={"resume": {asked["id"]: "from the web"}})
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: showing(h, "Answered outside Slack"), timeout=WAIT)
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    assert [c["args"] for c in server.tool_calls(tid)] == [{"answer": "from the web"}]
    assert len(await runs_on(client, tid)) == 2  # the SDK's two: nothing from the bot
    events = [e for (e,) in h.query("SELECT event FROM bot_audit ORDER BY id")]
    assert "answered_elsewhere" in events and "resumed" not in events
