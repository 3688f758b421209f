"""Small graphs with one interrupt each, served beside the agents:

- ``form``: ``interrupt(value, response_schema=Refund)``, a form whose answer LangGraph checks;
- ``plain``: ``interrupt("Ship it?")`` with custom progress events before and after (the
  "before" one comes again on resume: LangGraph re-runs the node from its start); given
  ``hold`` (a file path), the resumed run stays in its step until that file exists, so a test
  knows a run is active while it sends another;
- ``approval``: the project's own request, ``graphs.approval.request_approval(...)``;
- ``inbox``: an Agent Inbox ``HumanInterrupt``-shaped value (a list of one request).

What each did after its interrupt is recorded (``effects``) and returned in its state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel, Field

from graphs.approval import Choice, request_approval
from tests.remote.served.effects import record

HOLD_SECONDS = 30.0


class State(TypedDict, total=False):
    subject: str
    hold: str
    answer: Any


class Refund(BaseModel):
    """The form: how much to refund, and why."""

    amount: int = Field(ge=1, le=500, description="Euros to refund")
    reason: Literal["damaged", "late", "other"]
    note: str = Field(default="", max_length=200)


def _single(name: str, node: Any) -> Any:
    graph = StateGraph(State)
    graph.add_node(name, node)
    graph.add_edge(START, name)
    graph.add_edge(name, END)
    return graph.compile()


def ask_form(state: State) -> State:
    answer = interrupt({"order": state.get("subject", "A-1")}, response_schema=Refund)
    record("refund", answer.model_dump())
    return {"answer": answer.model_dump()}


def ask_plain(state: State) -> State:
    write = get_stream_writer()
    write({"progress": "checking"})
    answer = interrupt("Ship it?")
    record("ship", {"answer": answer})
    if "hold" in state:
        _hold(Path(state["hold"]))
    write({"progress": "shipped" if answer is True or answer == "approve" else "not shipped"})
    return {"answer": answer}


def _hold(released: Path) -> None:
    """Stay in the step until ``released`` exists (at most HOLD_SECONDS)."""
    deadline = time.monotonic() + HOLD_SECONDS
    for _ in range(int(HOLD_SECONDS / 0.02)):
        if released.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def ask_approval(state: State) -> State:
    subject = state.get("subject", "api 1.4.2")
    decision = request_approval(
        title=f"Deploy {subject}?",
        text="Asked by the served test graph.",
        fields={"Service": subject.split()[0], "Env": "prod"},
        choices=(
            Choice("approve", "Approve", "primary", approves=True),
            Choice("reject", "Reject", "danger", comment="required"),
        ),
        min_approvals=1,
    )
    answer = {"choice": decision.choice, "approved": decision.approved, "by": decision.decided_by}
    record("deploy", answer)
    return {"answer": answer}


def ask_inbox(state: State) -> State:
    request = {
        "action_request": {"action": "send_email", "args": {"to": "team@example.com"}},
        "config": {
            "allow_accept": True,
            "allow_edit": True,
            "allow_respond": True,
            "allow_ignore": True,
        },
        "description": "Send the weekly email?",
    }
    answer = interrupt([request])
    record("inbox", {"response": answer})
    return {"answer": answer}


def form() -> Any:
    """Graph factory (the server calls it; nothing is built at import)."""
    return _single("ask_form", ask_form)


def plain() -> Any:
    """Graph factory."""
    return _single("ask_plain", ask_plain)


def approval() -> Any:
    """Graph factory."""
    return _single("ask_approval", ask_approval)


def inbox() -> Any:
    """Graph factory."""
    return _single("ask_inbox", ask_inbox)
