"""Any graph, any interrupt shape, through the full loop: a graph registered from an entry point
(as a team would), started with ``/approvals run``, its interrupt rendered, a click resuming it
with exactly the value its producer expects. The producers are the real ones: LangChain's
HumanInTheLoopMiddleware in both modes, a plain JSON value, the Agent Inbox shape."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import SettingsError
from tests.conftest import Harness
from tests.reads import runs_with_status
from tests.scenario.test_approval_loop import DEPLOYS, buttons, message_text

ENTRY = """
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from graphs import GraphSpec
from graphs.agent import build as agent
from graphs.agent import parse as agent_parse


class State(TypedDict, total=False):
    requested_by: str
    answer: Any
    outcome: dict


def graph(value):
    def ask(state):
        answer = interrupt(value)
        return {{"answer": answer, "outcome": {{"status": "succeeded", "text": repr(answer)}}}}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g


def spec(command, build, parse=lambda text: {{}}):
    return GraphSpec(command, "test", "<text>", parse, build)


specs = [
    spec("batched", lambda checkpointer: agent(checkpointer, "batched"), agent_parse),
    spec("json", lambda: graph({{"rollout": [1, 2], "note": "<!channel> & co"}})),
    spec("inbox", lambda: graph({{
        "action_request": {{"action": "Refund", "args": {{"amount": 120}}}},
        "config": {{"allow_accept": True, "allow_ignore": True, "allow_respond": True,
                   "allow_edit": False}},
        "description": "Refund order 42?",
    }})),
]
"""


@pytest.fixture
def entry_point(tmp_path: Path) -> Iterator[str]:
    """A module of the user's own, importable from a temp dir."""
    (tmp_path / "myteam_graphs.py").write_text(textwrap.dedent(ENTRY.format()))
    sys.path.insert(0, str(tmp_path))
    yield "myteam_graphs:specs"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("myteam_graphs", None)


async def with_graphs(h: Harness, *entry_points: str) -> None:
    old = h.bots.pop()
    await old.stop()
    await h.start_bot(
        policy={"graphs": list(entry_points), "policy": {"default": {"approvers": ["U0BOB"]}}}
    )


async def run(h: Harness, text: str) -> dict[str, Any]:
    before = len(h.ws.messages(DEPLOYS))
    d = await h.ws.slash("alice", "/approvals", f"run {text}", channel=DEPLOYS)
    assert d.status == 200 and not (d.json or {}).get("text"), d.json
    return await h.wait(lambda: len(h.ws.messages(DEPLOYS)) > before and h.approval_message())


# What a tool call gated with every HITL decision offers, in this order.
EVERY_DECISION = ["Approve", "Edit…", "Reject", "Respond…", "Reject with reason…", "Withdraw"]


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The view's input blocks by label (without the required mark)."""
    return {
        b["label"]["text"].removesuffix(" *"): b for b in view["blocks"] if b["type"] == "input"
    }


async def outcome(h: Harness) -> dict[str, Any]:
    await h.wait(lambda: "Done" in message_text(h.approval_message()) or None)
    await h.idle()
    (done,) = await runs_with_status(h.bot.runtime.store, "done")
    assert done.outcome is not None
    return done.outcome


async def test_the_example_agent_per_call_approved(harness: Harness) -> None:
    h = harness
    await with_graphs(h, "graphs.agent:specs")
    msg = await run(h, "agent tell the team we ship today")
    text = message_text(msg)
    assert "Run send_email?" in text and "team@example.com" in text
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "Done: Sent to team@example.com" in message_text(h.approval_message()))


async def test_the_example_agent_offers_every_decision_and_sends_an_edited_email(
    harness: Harness,
) -> None:
    h = harness
    await with_graphs(h, "graphs.agent:specs")
    msg = await run(h, "agent tell the team we ship today")
    assert buttons(msg) == EVERY_DECISION
    await h.ws.click("bob", msg, "Edit…")
    view = await h.wait(lambda: next(iter(h.ws.open_views("bob")), None))
    assert list(inputs(view)) == ["To", "Subject", "Body", "Comment"]  # typed from the tool
    subject = inputs(view)["Subject"]["block_id"]
    await h.ws.submit_modal("bob", view, {subject: "We ship today, for real"})
    await h.wait(
        lambda: (
            "Sent to team@example.com: 'We ship today, for real'"
            in message_text(h.approval_message())
        )
    )


async def test_the_example_agent_per_call_rejected_with_a_reason(harness: Harness) -> None:
    h = harness
    await with_graphs(h, "graphs.agent:specs")
    msg = await run(h, "agent tell the team we ship today")
    await h.ws.click("bob", msg, "Reject with reason…")
    view = await h.wait(lambda: next(iter(h.ws.open_views("bob")), None))
    await h.ws.submit_modal("bob", view, {"reason": "not before the review"})
    await h.wait(lambda: "Rejected* by <@U0BOB>" in message_text(h.approval_message()))
    await h.idle()
    (done,) = await runs_with_status(h.bot.runtime.store, "done")
    # The middleware told the model; the scripted model reports the tool's (refused) answer.
    assert done.outcome and "not before the review" in done.outcome["text"]


async def test_batched_hitl_resumes_with_decisions_in_order(
    harness: Harness, entry_point: str
) -> None:
    h = harness
    await with_graphs(h, entry_point)
    msg = await run(h, "batched ship it")
    text = message_text(msg)
    assert "1. send_email" in text and "approve, edit, reject, respond" in text
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "Done: Sent to" in message_text(h.approval_message()))


async def test_a_json_value_is_shown_as_code_and_resumed_with_our_decision(
    harness: Harness, entry_point: str
) -> None:
    h = harness
    await with_graphs(h, entry_point)
    msg = await run(h, "json")
    text = message_text(msg)
    assert "```" in text and '\\"rollout\\"' in text
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; co" in text
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "'approved': True" in message_text(h.approval_message()))
    assert "'decided_by': 'U0BOB'" in message_text(h.approval_message())


@pytest.mark.parametrize(
    ("button", "resumed"),
    [("Approve", "[{'type': 'accept', 'args': None}]"), ("Ignore", "[{'type': 'ignore'")],
)
async def test_the_agent_inbox_shape(
    harness: Harness, entry_point: str, button: str, resumed: str
) -> None:
    h = harness
    await with_graphs(h, entry_point)
    msg = await run(h, "inbox")
    assert "Refund?" in message_text(msg) and "Refund order 42?" in message_text(msg)
    assert button in buttons(msg)
    await h.ws.click("bob", msg, button)
    await h.wait(lambda: resumed in message_text(h.approval_message()))


async def test_a_broken_entry_point_stops_the_bot_with_one_line(harness: Harness) -> None:
    h = harness
    for ref, fault in [
        ("no_such_module_here:specs", "cannot import no_such_module_here"),
        ("graphs.agent:nothing", "has no attribute 'nothing'"),
        ("graphs.agent:send_email", "must be a list of graphs.GraphSpec"),
        ("graphs.agent:specs,graphs.agent:specs", "registered twice"),
    ]:
        with pytest.raises(SettingsError, match=fault):
            await with_graphs(h, *ref.split(","))
        await h.start_bot()  # back to a working bot for the next case


async def test_unknown_graph_names_the_known_ones(harness: Harness) -> None:
    h = harness
    d = await h.ws.slash("alice", "/approvals", "run nosuch thing", channel=DEPLOYS)
    assert "I don't know a graph `nosuch`" in d.json["text"] and "`deploy`" in d.json["text"]
