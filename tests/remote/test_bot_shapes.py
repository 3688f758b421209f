"""Every interrupt shape, rendered and answered for a graph on a LangGraph Server as for one in
the bot's process (tests/scenario/test_forms.py and test_shapes.py do it for local graphs):
LangChain HITL per_call (two calls pending at once: two messages, one edited, one responded
to) and batched (one message, a decision per call), the Agent Inbox request (as documented,
a list of one; and as one dict, the form the bot knows), the project's own request (its
Reject needs a comment) and a plain string.

Threads are started with the SDK (the inbox posts them) and from Slack (``/approvals run``).
What the graphs really did is read from the server (its runs, the thread's state) and the
served tools' own log, never from what the bot says."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langgraph_sdk.client import LangGraphClient

from tests.conftest import Harness
from tests.remote import test_bot
from tests.remote.conftest import SERVER_KEY
from tests.remote.server import SERVED, LangGraphServer, server_executable
from tests.remote.test_bot import CHANNEL, WAIT, approvals, runs_on
from tests.scenario.test_approval_loop import buttons, message_text
from tests.scenario.test_shapes import EVERY_DECISION, inputs

EMAIL = "tell the team we ship today"
STATUS = "status: shipping today"
TO = "team@example.com"

# test_bot's fixtures: an SDK client of the test's server, the bot answering it
client, h = test_bot.client, test_bot.h


class ShapesServer(LangGraphServer):
    """The test graphs and ``served/shapes.py``'s."""

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["graphs"] = {**config["graphs"], "inbox_one": f"{SERVED}.shapes:inbox_one"}
        return config


@pytest.fixture(scope="module")
def shapes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """This module's server, behind SERVER_KEY (as test_bot's, with one graph more)."""
    own = ShapesServer(server_executable(), tmp_path_factory.mktemp("server"), api_key=SERVER_KEY)
    try:
        own.start()
        yield own
    finally:
        own.kill()


@pytest.fixture
async def server(shapes_server: LangGraphServer) -> AsyncIterator[LangGraphServer]:
    """Emptied before each test, as test_bot's."""
    await test_bot.empty(shapes_server)
    yield shapes_server


async def agent_thread(sdk: LangGraphClient, graph: str, *lines: str) -> str:
    """A thread of a served agent started with the SDK and left at its interrupts: one gated
    tool call per line of its task."""
    thread = await sdk.threads.create(metadata={"test": uuid.uuid4().hex})
    task = {"messages": [{"role": "user", "content": "\n".join(lines)}]}
    await sdk.runs.wait(thread["thread_id"], graph, input=task)
    return str(thread["thread_id"])


async def node_thread(sdk: LangGraphClient, graph: str) -> str:
    """A thread of a served one-node graph started with the SDK, left at its interrupt."""
    thread = await sdk.threads.create(metadata={"test": uuid.uuid4().hex})
    await sdk.runs.wait(thread["thread_id"], graph, input={"subject": "api 1.4.2"})
    return str(thread["thread_id"])


async def open_view(h: Harness, user: str, msg: dict[str, Any], button: str) -> dict[str, Any]:
    """Click ``button`` on ``msg``; the modal it opened."""
    before = {v["id"] for v in h.ws.open_views(user)}
    await h.ws.click(user, msg, button)
    return await h.wait(
        lambda: next((v for v in h.ws.open_views(user) if v["id"] not in before), None),
        timeout=WAIT,
    )


def titled(h: Harness, title: str) -> dict[str, Any] | None:
    """The approval message whose header is ``title`` (None: not posted yet)."""
    found = [m for m in approvals(h) if m["blocks"][0]["text"]["text"] == title]
    assert len(found) <= 1, f"{len(found)} messages titled {title!r}"
    return found[0] if found else None


def shown(h: Harness, title: str) -> str:
    """What the approval message titled ``title`` shows ("" before it is posted)."""
    found = titled(h, title)
    return message_text(found) if found else ""


async def ended(h: Harness, sdk: LangGraphClient, tid: str) -> dict[str, Any]:
    """Wait until the bot's run is done; the server's thread state, its run then over."""
    await h.wait(lambda: h.query("SELECT status FROM bot_runs") == [("done",)], timeout=WAIT)
    await h.idle()
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "idle", thread["status"]
    return dict(await sdk.threads.get_state(tid))


def tool_results(state: dict[str, Any]) -> dict[str, str]:
    """What the agent got back for each tool call (by tool name), from the thread's state."""
    return {
        str(m.get("name")): str(m.get("content"))
        for m in state["values"]["messages"]
        if m.get("type") == "tool"
    }


def last_words(state: dict[str, Any]) -> str:
    return str(state["values"]["messages"][-1]["content"])


async def test_per_call_two_pending_calls_are_two_messages_one_edited_one_responded(
    h: Harness,
    client: LangGraphClient,
    server: LangGraphServer,
) -> None:
    tid = await agent_thread(client, "hitl_per_call", EMAIL, STATUS)
    email = await h.wait(lambda: titled(h, "Run send_email?"), timeout=WAIT)
    status = await h.wait(lambda: titled(h, "Run post_status?"), timeout=WAIT)
    assert len(approvals(h)) == 2
    assert buttons(email) == buttons(status) == EVERY_DECISION
    assert "team@example.com" in message_text(email) and "shipping today" in message_text(status)

    view = await open_view(h, "bob", email, "Edit…")
    fields = {label: b["block_id"] for label, b in inputs(view).items()}
    assert list(fields) == ["To", "Subject", "Body", "Comment"]  # typed from the tool's schema
    edited = await h.ws.submit_modal("bob", view, {fields["Subject"]: "We ship tomorrow"})
    assert edited.ok and not edited.errors
    await h.wait(
        lambda: "Edited* by <@U0BOB>" in shown(h, "Run send_email?"),
        timeout=WAIT,
    )
    assert "Respond…" in buttons(titled(h, "Run post_status?") or {"blocks": []})  # still open

    view = await open_view(h, "carol", status, "Respond…")
    empty = await h.ws.submit_modal("carol", view, {"response": "   "})
    assert "response" in empty.errors  # an empty answer is refused in the form
    answered = await h.ws.submit_modal("carol", view, {"response": "Posted by hand"})
    assert answered.ok and not answered.errors

    state = await ended(h, client, tid)
    assert [(c["name"], c["args"]) for c in server.tool_calls(tid)] == [
        ("send_email", {"to": TO, "subject": "We ship tomorrow", "body": EMAIL})
    ]  # post_status never ran: its answer came from Slack
    results = tool_results(state)
    assert results["post_status"] == "Posted by hand"
    assert "Sent to team@example.com: 'We ship tomorrow'" in results["send_email"]
    assert last_words(state).startswith("Done:")
    assert len(await runs_on(client, tid)) == 3  # the start and one resume per call
    assert "Responded* by <@U0CAROL>" in shown(h, "Run post_status?")
    assert len(approvals(h)) == 2


async def test_per_call_started_from_slack_sends_the_text_and_runs_the_edited_call(
    h: Harness,
    client: LangGraphClient,
    server: LangGraphServer,
) -> None:
    ack = await h.ws.slash("alice", "/approvals", f"run support/hitl_per_call {EMAIL}", CHANNEL)
    assert ack.ok and not (ack.json or {}).get("text"), ack.json
    msg = await h.wait(lambda: titled(h, "Run send_email?"), timeout=WAIT)
    assert buttons(msg) == EVERY_DECISION
    (run,) = await h.bot.runtime.store.runs_by("U0ALICE")
    tid = str(uuid.UUID(run.run_id))
    thread = await client.threads.get(tid)
    assert thread["metadata"]["slack_user"] == "U0ALICE"
    assert thread["metadata"]["graph_id"] == "hitl_per_call"
    state = await client.threads.get_state(tid)
    first = state["values"]["messages"][0]  # type: ignore[index,call-overload]
    assert (first["type"], first["content"]) == ("human", EMAIL)

    view = await open_view(h, "bob", msg, "Edit…")
    fields = {label: b["block_id"] for label, b in inputs(view).items()}
    await h.ws.submit_modal("bob", view, {fields["To"]: "ops@example.com"})
    state = await ended(h, client, tid)
    assert [(c["name"], c["args"]["to"]) for c in server.tool_calls(tid)] == [
        ("send_email", "ops@example.com")
    ]
    assert "Sent to ops@example.com" in tool_results(state)["send_email"]
    assert len(await runs_on(client, tid)) == 2
    assert "Edited* by <@U0BOB>" in shown(h, "Run send_email?")


async def test_batched_is_one_message_with_a_decision_per_call(
    h: Harness,
    client: LangGraphClient,
    server: LangGraphServer,
) -> None:
    tid = await agent_thread(client, "hitl_batched", EMAIL, STATUS)
    msg = await h.wait(lambda: titled(h, "Run 2 tool calls?"), timeout=WAIT)
    assert buttons(msg) == [
        "Approve all",
        "Review each…",
        "Reject all",
        "Reject with reason…",
        "Withdraw",
    ]
    text = message_text(msg)
    assert "1. send_email" in text and "2. post_status" in text
    view = await open_view(h, "dan", msg, "Review each…")
    selects = {
        b["block_id"]: [o["value"] for o in b["element"]["options"]]
        for b in view["blocks"]
        if re.fullmatch(r"d\d+", b.get("block_id", ""))
    }
    every = ["approve", "edit", "reject", "respond"]
    assert selects == {"d0": every, "d1": every}
    bad = await h.ws.submit_modal("dan", view, {"d0": "edit", "d1": "respond"})
    assert "m1" in bad.errors  # a response needs its text: nothing is claimed or sent
    assert len(await runs_on(client, tid)) == 1
    ok = await h.ws.submit_modal(
        "dan", view, {"d0": "edit", "a0.1": "Shipped", "d1": "reject", "m1": "not yet"}
    )
    assert ok.ok and not ok.errors

    state = await ended(h, client, tid)
    assert [(c["name"], c["args"]) for c in server.tool_calls(tid)] == [
        ("send_email", {"to": TO, "subject": "Shipped", "body": EMAIL})
    ]
    results = tool_results(state)
    assert "Sent to team@example.com: 'Shipped'" in results["send_email"]
    assert "not yet" in results["post_status"]
    assert len(await runs_on(client, tid)) == 2  # the start and one resume for both calls
    assert len(approvals(h)) == 1


async def test_the_agent_inbox_request_is_answered_with_a_response(
    h: Harness,
    client: LangGraphClient,
    server: LangGraphServer,
) -> None:
    tid = await node_thread(client, "inbox")
    msg = await h.wait(lambda: (approvals(h) or [None])[-1], timeout=WAIT)
    assert "Send the weekly email?" in message_text(msg)
    assert buttons(msg) == ["Approve", "Edit…", "Respond…", "Ignore", "Withdraw"]
    view = await open_view(h, "bob", msg, "Respond…")
    await h.ws.submit_modal("bob", view, {"response": "call them first"})
    await ended(h, client, tid)
    assert server.tool_calls(tid) == [
        {
            "name": "inbox",
            "args": {"response": [{"type": "response", "args": "call them first"}]},
            "thread_id": tid,
        }
    ]
    assert len(await runs_on(client, tid)) == 2


@pytest.mark.parametrize(
    ("button", "values", "resumed"),
    [
        (
            "Respond…",
            {"response": "call them first"},
            {"type": "response", "args": "call them first"},
        ),
        (
            "Edit…",
            {"f0": "ops@example.com"},
            {"type": "edit", "args": {"action": "send_email", "args": {"to": "ops@example.com"}}},
        ),
    ],
)
async def test_the_agent_inbox_request_as_one_dict_is_answered(
    h: Harness,
    client: LangGraphClient,
    server: LangGraphServer,
    button: str,
    values: dict[str, str],
    resumed: dict[str, Any],
) -> None:
    tid = await node_thread(client, "inbox_one")
    msg = await h.wait(lambda: titled(h, "send_email?"), timeout=WAIT)
    assert "Send the weekly email?" in message_text(msg)
    assert buttons(msg) == ["Approve", "Edit…", "Respond…", "Ignore", "Withdraw"]
    view = await open_view(h, "bob", msg, button)
    done = await h.ws.submit_modal("bob", view, values)
    assert done.ok and not done.errors
    await ended(h, client, tid)
    assert [(c["name"], c["args"]) for c in server.tool_calls(tid)] == [
        ("inbox", {"response": [resumed]})
    ]
    assert len(await runs_on(client, tid)) == 2


async def test_the_projects_own_reject_asks_for_its_required_comment(
    h: Harness,
    client: LangGraphClient,
    server: LangGraphServer,
) -> None:
    """``Choice("reject", …, comment="required")``: its own button opens the comment form
    (no "Reject with reason…" beside it), an empty reason is refused, nothing is sent until
    one is given."""
    tid = await node_thread(client, "approval")
    msg = await h.wait(lambda: titled(h, "Deploy api 1.4.2?"), timeout=WAIT)
    text = message_text(msg)
    assert "Asked by the served test graph." in text and "*Env*\\nprod" in text
    assert buttons(msg) == ["Approve", "Reject", "Withdraw"]
    view = await open_view(h, "bob", msg, "Reject")
    (reason,) = [b for b in view["blocks"] if b["type"] == "input"]
    assert not reason.get("optional")
    empty = await h.ws.submit_modal("bob", view, {reason["block_id"]: ""})
    assert not empty.ok or empty.errors  # a reason is required
    await h.idle()
    assert len(await runs_on(client, tid)) == 1 and server.tool_calls(tid) == []
    done = await h.ws.submit_modal("bob", view, {reason["block_id"]: "not on a Friday"})
    assert done.ok and not done.errors
    state = await ended(h, client, tid)
    assert [(c["name"], c["args"]) for c in server.tool_calls(tid)] == [
        ("deploy", {"choice": "reject", "approved": False, "by": "U0BOB"})
    ]
    assert state["values"]["answer"]["choice"] == "reject"
    assert len(await runs_on(client, tid)) == 2
    final = shown(h, "Deploy api 1.4.2?")
    assert "Rejected* by <@U0BOB>" in final and "not on a Friday" in final


async def test_a_plain_string_is_rejected(
    h: Harness,
    client: LangGraphClient,
    server: LangGraphServer,
) -> None:
    tid = await node_thread(client, "plain")
    msg = await h.wait(lambda: titled(h, "Approval needed"), timeout=WAIT)
    assert "Ship it?" in message_text(msg)
    assert buttons(msg)[:2] == ["Approve", "Reject"]
    await h.ws.click("bob", msg, "Reject")
    state = await ended(h, client, tid)
    (call,) = server.tool_calls(tid)
    answer = call["args"]["answer"]
    assert (answer["choice"], answer["approved"], answer["decided_by"]) == (
        "reject",
        False,
        "U0BOB",
    )
    assert state["values"]["answer"] == answer
    assert len(await runs_on(client, tid)) == 2
    assert "Rejected* by <@U0BOB>" in shown(h, "Approval needed")
