"""Decisions that carry data, through the full loop: edit, respond and reject-with-message for
LangChain's HumanInTheLoopMiddleware (per_call and batched, the real middleware under
``create_agent`` with a scripted model), forms from ``interrupt(value, response_schema=…)``,
Agent Inbox edit/respond, private fields with "Show details", and several interrupts of one
thread answered one by one. Each asserts the exact value the graph got (or the tool result
the agent saw)."""

from __future__ import annotations

import re
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from bot.model import Ballot
from tests.conftest import BACKENDS, Harness
from tests.reads import audit_events, runs_with_status
from tests.scenario.test_approval_loop import DEPLOYS, buttons, message_text
from tests.scenario.test_shapes import EVERY_DECISION, inputs, run, with_graphs

ENTRY = '''
import operator
from typing import Annotated, Any, Literal, TypedDict

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send, interrupt
from pydantic import BaseModel, Field, field_validator

from graphs import GraphSpec


@tool
def refund(order: str, amount: int, notify: bool = False) -> str:
    """Refund part of an order."""
    return f"Refunded {amount} on {order} (notify={notify})"


@tool
def lookup(customer: str) -> str:
    """Look a customer up."""
    return f"Looked up {customer}"


class Model(GenericFakeChatModel):
    """Calls the scripted tools once, then reports every tool result it got."""

    messages: Any = iter(())
    calls: list = []

    def bind_tools(self, tools, **_):
        return self

    def _generate(self, messages, *_, **__):
        if isinstance(messages[-1], ToolMessage):
            got = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
            reply = AIMessage(content="Done: " + " | ".join(got))
        else:
            calls = [
                {"name": n, "args": a, "id": f"call-{i}"} for i, (n, a) in enumerate(self.calls)
            ]
            reply = AIMessage(content="", tool_calls=calls)
        return ChatResult(generations=[ChatGeneration(message=reply)])


def agent(calls, interrupt_on, mode):
    def build(checkpointer):
        gate = HumanInTheLoopMiddleware(interrupt_on=interrupt_on, interrupt_mode=mode)
        return create_agent(
            Model(calls=calls), tools=[refund, lookup], middleware=[gate],
            checkpointer=checkpointer,
        )
    return build


def start(text):
    return {"messages": [{"role": "user", "content": text or "go"}]}


class Refund(BaseModel):
    """Refund details"""

    reason: str = Field(description="Why the customer gets money back")
    count: int = Field(ge=1, description="How many items")
    urgent: bool = False
    env: Literal["staging", "prod"] = "staging"

    @field_validator("reason")
    @classmethod
    def no_placeholder(cls, v):
        if "TODO" in v:
            raise ValueError("write the reason, not TODO")
        return v


class State(TypedDict, total=False):
    requested_by: str
    item: str
    answer: Any
    results: Annotated[list, operator.add]
    outcome: dict


def form():
    def ask(state):
        answer = interrupt({"order": "A-1", "card": "4111 1111"}, response_schema=Refund)
        get_stream_writer()({"progress": f"got {answer.reason}"})  # runs once per resume
        return {"outcome": {"status": "succeeded", "text": repr(answer.model_dump())}}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g


def parallel():
    def fan(state):
        return [Send("ask", {"item": x}) for x in ("api", "web")]

    def ask(state):
        decision = interrupt(f"Ship {state['item']}?")
        return {"results": [f"{state['item']}:{decision['choice']}"]}

    def done(state):
        return {"outcome": {"status": "succeeded", "text": ", ".join(sorted(state["results"]))}}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_node("done", done)
    g.add_conditional_edges(START, fan, ["ask"])
    g.add_edge("ask", "done")
    return g


def inbox():
    def ask(state):
        answer = interrupt({
            "action_request": {"action": "refund", "args": {"order": "A-1", "amount": 120}},
            "config": {"allow_accept": True, "allow_edit": True, "allow_respond": True,
                       "allow_ignore": True},
            "description": "Refund order A-1?",
        })
        return {"outcome": {"status": "succeeded", "text": repr(answer)}}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g


REFUND = [("refund", {"order": "A-1", "amount": 5})]
TWO = [("refund", {"order": "A-1", "amount": 5}), ("lookup", {"customer": "ACME"})]
CONFIGS = {"refund": True, "lookup": {"allowed_decisions": ["approve", "reject", "respond"]}}

specs = [
    GraphSpec("percall", "t", "<t>", start, agent(REFUND, {"refund": True}, "per_call")),
    GraphSpec("onebatch", "t", "<t>", start, agent(REFUND, {"refund": True}, "batched")),
    GraphSpec("twobatch", "t", "<t>", start, agent(TWO, CONFIGS, "batched")),
    GraphSpec("secret", "t", "<t>", start, agent(REFUND, {"refund": True}, "per_call"),
              private=("order", "card")),
    GraphSpec("form", "t", "<t>", lambda text: {}, form, private=("card",)),
    GraphSpec("parallel", "t", "<t>", lambda text: {}, parallel),
    GraphSpec("inbox2", "t", "<t>", lambda text: {}, inbox),
]
'''


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def installed(tmp_path: Path) -> Iterator[str]:
    """ENTRY as a user's module on the path; yields its entry point."""
    (tmp_path / "myteam_forms.py").write_text(textwrap.dedent(ENTRY))
    sys.path.insert(0, str(tmp_path))
    yield "myteam_forms:specs"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("myteam_forms", None)


@pytest.fixture
def forms_entry(tmp_path: Path) -> Iterator[str]:
    yield from installed(tmp_path)


@pytest.fixture
async def h(harness: Harness, forms_entry: str) -> Harness:
    await with_graphs(harness, forms_entry)
    return harness


async def open_view(h: Harness, user: str, msg: dict[str, Any], button: str) -> dict[str, Any]:
    before = {v["id"] for v in h.ws.open_views(user)}
    await h.ws.click(user, msg, button)
    return await h.wait(
        lambda: next((v for v in h.ws.open_views(user) if v["id"] not in before), None)
    )


async def finished(h: Harness, shows: str) -> Any:
    """Wait until the approval message shows ``shows`` (its outcome), then the run and its
    final graph state, read from the real checkpoint."""
    await h.wait(lambda: shows in message_text(h.approval_message() or {"blocks": []}))
    await h.idle()
    (done,) = await runs_with_status(h.bot.runtime.store, "done")
    graph = h.bot.runtime.engine.runner.local.graphs[done.command]  # type: ignore[attr-defined]
    state = await graph.aget_state({"configurable": {"thread_id": done.run_id}})
    return done, state.values


def tool_results(values: dict[str, Any]) -> list[str]:
    return [str(m.content) for m in values["messages"] if isinstance(m, ToolMessage)]


async def events(h: Harness) -> list[str]:
    return [e["event"] for e in await audit_events(h.bot.runtime.store)]


async def test_per_call_edit_is_typed_checked_and_runs_the_edited_call(h: Harness) -> None:
    msg = await run(h, "percall refund")
    assert buttons(msg) == EVERY_DECISION
    view = await open_view(h, "bob", msg, "Edit…")
    fields = inputs(view)
    assert fields["Order"]["element"]["type"] == "plain_text_input"
    assert fields["Order"]["element"]["initial_value"] == "A-1"
    assert not fields["Order"]["optional"] and not fields["Amount"]["optional"]
    amount = fields["Amount"]["element"]
    assert (amount["type"], amount["is_decimal_allowed"], amount["initial_value"]) == (
        "number_input",
        False,
        "5",
    )
    assert fields["Notify"]["element"]["type"] == "checkboxes" and fields["Notify"]["optional"]

    wrong = await h.ws.submit_modal("bob", view, {"f1": "five"})
    assert wrong.errors == {"f1": "Enter a whole number, like 3."}
    missing = await h.ws.submit_modal("bob", view, {"f0": ""})  # Slack refuses it itself
    assert missing.error == "required_fields" and set(missing.errors) == {"f0"}
    await h.idle()
    assert "decided" not in await events(h)  # nothing was claimed
    assert buttons(h.approval_message())  # still open

    done = await h.ws.submit_modal("bob", view, {"f1": "7", "f2": True})
    assert done.ok and not done.errors
    run_, values = await finished(h, "Done:")
    last = tool_results(values)[-1]
    assert last.endswith("Refunded 7 on A-1 (notify=True)")
    assert "Executed instead: refund with arguments" in last  # the middleware's own notice
    assert "Edited* by <@U0BOB>" in message_text(h.approval_message())
    (approval,) = await h.bot.runtime.store.approvals_of(run_.run_id)
    assert approval.answer == {"order": "A-1", "amount": 7, "notify": True}


async def test_per_call_respond_answers_in_place_of_the_tool(h: Harness) -> None:
    msg = await run(h, "percall refund")
    view = await open_view(h, "bob", msg, "Respond…")
    empty = await h.ws.submit_modal("bob", view, {"response": "   "})
    assert "response" in empty.errors
    await h.ws.submit_modal("bob", view, {"response": "Already refunded by hand"})
    _, values = await finished(h, "Done:")
    (result,) = [m for m in values["messages"] if isinstance(m, ToolMessage)]
    assert (result.content, result.status) == ("Already refunded by hand", "success")
    assert "Responded* by <@U0BOB>" in message_text(h.approval_message())


async def test_batched_single_call_edit(h: Harness) -> None:
    msg = await run(h, "onebatch refund")
    assert buttons(msg)[:4] == ["Approve", "Edit…", "Reject", "Respond…"]
    view = await open_view(h, "bob", msg, "Edit…")
    assert inputs(view)["amount"]["element"]["type"] == "number_input"  # typed from the value
    await h.ws.submit_modal("bob", view, {"f1": "11"})
    _, values = await finished(h, "Done:")
    assert tool_results(values)[-1].endswith("Refunded 11 on A-1 (notify=False)")


async def test_batched_calls_each_get_their_own_allowed_decision(h: Harness) -> None:
    msg = await run(h, "twobatch two things")
    assert buttons(msg) == [
        "Approve all",
        "Review each…",
        "Reject all",
        "Reject with reason…",
        "Withdraw",
    ]
    view = await open_view(h, "bob", msg, "Review each…")
    selects = {
        b["block_id"]: [o["value"] for o in b["element"]["options"]]
        for b in view["blocks"]
        if re.fullmatch(r"d\d+", b.get("block_id", ""))  # Slack gives other blocks random ids
    }
    assert selects == {
        "d0": ["approve", "edit", "reject", "respond"],
        "d1": ["approve", "reject", "respond"],
    }  # lookup may not be edited
    assert not any(b.get("block_id", "").startswith("a1.") for b in view["blocks"])

    # A response needs its text; an edit needs valid values: shown per input, nothing resumes.
    bad = await h.ws.submit_modal("bob", view, {"d0": "edit", "a0.1": "lots", "d1": "respond"})
    assert bad.errors == {
        "a0.1": "Enter a whole number, like 3.",
        "m1": "Say what the agent should get instead of the tool's result.",
    }
    await h.idle()
    assert "decided" not in await events(h)

    ok = await h.ws.submit_modal(
        "bob", view, {"d0": "edit", "a0.1": "9", "d1": "respond", "m1": "ACME is fine"}
    )
    assert ok.ok and not ok.errors
    run_, values = await finished(h, "Done:")
    results = tool_results(values)
    assert "ACME is fine" in results
    assert any(r.endswith("Refunded 9 on A-1 (notify=False)") for r in results)
    assert (await events(h)).count("resumed") == 1
    (approval,) = await h.bot.runtime.store.approvals_of(run_.run_id)
    assert approval.answer == [
        {
            "type": "edit",
            "edited_action": {"name": "refund", "args": {"order": "A-1", "amount": 9}},
        },
        {"type": "respond", "message": "ACME is fine"},
    ]


async def test_batched_reject_all_with_a_reason(h: Harness) -> None:
    msg = await run(h, "twobatch two things")
    view = await open_view(h, "bob", msg, "Reject with reason…")
    await h.ws.submit_modal("bob", view, {"reason": "not today"})
    _, values = await finished(h, "Done:")
    results = tool_results(values)
    assert len(results) == 2 and all("with reason: not today" in r for r in results)


async def test_a_response_schema_becomes_a_form_checked_before_and_after_the_claim(
    h: Harness,
) -> None:
    msg = await run(h, "form")
    text = message_text(msg)
    assert "Refund details" in text and "A-1" in text
    assert "4111" not in text and "🔒 hidden" in text  # the graph's private field
    assert buttons(msg) == ["Answer…", "Show details", "Withdraw"]
    view = await open_view(h, "bob", msg, "Answer…")
    fields = inputs(view)
    assert [b["element"]["type"] for b in fields.values()] == [
        "plain_text_input",
        "number_input",
        "checkboxes",
        "static_select",
    ]
    assert [b["optional"] for b in fields.values()] == [False, False, True, True]
    assert fields["Reason"]["hint"]["text"] == "Why the customer gets money back"
    assert fields["Count"]["element"]["min_value"] == "1"
    assert fields["Env"]["element"]["initial_option"]["text"]["text"] == "staging"

    # The JSON schema catches this before anything is claimed.
    low = await h.ws.submit_modal("bob", view, {"f0": "double charge", "f1": "0"})
    assert low.errors == {"f1": "Must be at least 1."}
    # This one only the graph's own validator refuses: the approval opens again.
    todo = await h.ws.submit_modal("bob", view, {"f0": "TODO", "f1": "2"})
    assert todo.ok and not todo.errors
    told = await h.wait(
        lambda: next((e for e in h.ws.ephemerals("bob") if "did not accept" in e["text"]), None)
    )
    assert "reason: write the reason, not TODO" in told["text"]
    again = await h.wait(lambda: (m := h.approval_message()) and "Answer…" in buttons(m) and m)
    await h.idle()
    (run_,) = await runs_with_status(h.bot.runtime.store, "waiting")
    (approval,) = await h.bot.runtime.store.approvals_of(run_.run_id)
    assert (approval.status, approval.answer, approval.choice) == ("pending", None, None)

    view = await open_view(h, "bob", again, "Answer…")
    await h.ws.submit_modal(
        "bob", view, {"f0": "double charge", "f1": "2", "f2": True, "f3": "prod"}
    )
    done, _ = await finished(h, "double charge")
    assert done.outcome == {
        "status": "succeeded",
        "text": repr({"reason": "double charge", "count": 2, "urgent": True, "env": "prod"}),
    }
    seen = await events(h)
    assert (seen.count("decided"), seen.count("resume_refused"), seen.count("resumed")) == (2, 1, 1)
    lines = [r.get("text", "") for r in h.ws.replies(DEPLOYS, msg["ts"])]
    assert sum("got " in line for line in lines) == 1  # the node ran past interrupt() once


async def test_private_values_are_shown_only_to_an_eligible_approver(h: Harness) -> None:
    msg = await run(h, "secret refund")
    assert "A-1" not in message_text(msg) and "A-1" not in msg["text"]
    assert "🔒 hidden" in message_text(msg)
    for user, words in [("carol", "Only <@U0BOB> can decide"), ("alice", "second pair of eyes")]:
        await h.ws.click(user, msg, "Show details")
        await h.wait(lambda u=user, w=words: any(w in e["text"] for e in h.ws.ephemerals(u)))
        assert not any("A-1" in e["text"] for e in h.ws.ephemerals(user))
    await h.ws.click("bob", msg, "Show details")
    shown = await h.wait(
        lambda: next((e for e in h.ws.ephemerals("bob") if "A-1" in e["text"]), None)
    )
    assert "only you can see this" in shown["text"]
    assert all("A-1" not in message_text(m) for m in h.ws.messages(DEPLOYS) if m.get("blocks"))
    await h.ws.click("bob", msg, "Approve")
    _, values = await finished(h, "Done:")
    assert tool_results(values) == ["Refunded 5 on A-1 (notify=False)"]
    assert "A-1" not in message_text(h.approval_message())


async def test_several_interrupts_of_one_thread_are_answered_one_by_one(h: Harness) -> None:
    d = await h.ws.slash("alice", "/approvals", "run parallel", channel=DEPLOYS)
    assert d.ok

    def asking(item: str) -> dict[str, Any] | None:
        return next((m for m in h.ws.messages(DEPLOYS) if f"Ship {item}?" in message_text(m)), None)

    api = await h.wait(lambda: asking("api"))
    web = await h.wait(lambda: asking("web"))
    await h.ws.click("bob", api, "Approve")
    await h.wait(lambda: "Approved* by <@U0BOB>" in message_text(asking("api") or {"blocks": []}))
    await h.idle()
    assert "Approve" in buttons(asking("web") or {"blocks": []})  # still open
    (waiting,) = await runs_with_status(h.bot.runtime.store, "waiting")
    await h.ws.click("bob", web, "Reject")
    await h.wait(lambda: "api:approve, web:reject" in message_text(asking("web") or {"blocks": []}))
    await h.idle()
    (done,) = await runs_with_status(h.bot.runtime.store, "done")
    assert done.run_id == waiting.run_id
    assert len([m for m in h.ws.messages(DEPLOYS) if m.get("blocks")]) == 2
    assert (await events(h)).count("resumed") == 2


@pytest.mark.parametrize(
    ("button", "values", "resumed"),
    [
        (
            "Edit…",
            {"f1": "99"},
            [
                {
                    "type": "edit",
                    "args": {"action": "refund", "args": {"order": "A-1", "amount": 99}},
                }
            ],
        ),
        (
            "Respond…",
            {"response": "call them first"},
            [{"type": "response", "args": "call them first"}],
        ),
    ],
)
async def test_agent_inbox_edit_and_respond(
    h: Harness, button: str, values: dict[str, Any], resumed: list[Any]
) -> None:
    msg = await run(h, "inbox2")
    assert buttons(msg) == ["Approve", "Edit…", "Respond…", "Ignore", "Withdraw"]
    view = await open_view(h, "bob", msg, button)
    await h.ws.submit_modal("bob", view, values)
    done, _ = await finished(h, repr(resumed)[:20])
    assert done.outcome == {"status": "succeeded", "text": repr(resumed)}


async def test_an_edit_claimed_before_a_crash_resumes_with_the_same_args(
    h: Harness, forms_entry: str
) -> None:
    msg = await run(h, "percall refund")
    iid = msg["blocks"][-1]["elements"][0]["value"]
    old = h.bot
    await old.runner.cleanup()
    args = {"order": "A-1", "amount": 42}
    result = await old.runtime.store.decide(
        iid,
        time.time(),
        lambda a, r: Ballot(
            user="U0BOB", choice="edit", approves=True, comment=None, required=1, answer=args
        ),
        lambda result: [],
        list,
    )
    assert result and result.claimed
    await old.runtime.close()
    h.bots.remove(old)
    await h.start_bot(
        policy={"graphs": [forms_entry], "policy": {"default": {"approvers": ["U0BOB"]}}}
    )
    _, values = await finished(h, "Done:")
    assert tool_results(values)[-1].endswith("Refunded 42 on A-1 (notify=False)")
    assert (await events(h)).count("resumed") == 1


async def test_a_withdrawn_form_ends_the_run_without_an_answer(h: Harness) -> None:
    msg = await run(h, "form")
    await h.ws.click("alice", msg, "Withdraw")
    await h.wait(lambda: "this graph takes only an answer" in message_text(h.approval_message()))
    await h.idle()
    (ended,) = await runs_with_status(h.bot.runtime.store, "done")
    assert ended.outcome is not None and ended.outcome["status"] == "cancelled"
    seen = await events(h)
    assert "resume_refused" not in seen and "run_failed" not in seen
