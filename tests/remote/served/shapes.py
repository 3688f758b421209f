"""A graph served beside ``nodes.py``'s for tests/remote/test_bot_shapes.py: ``inbox_one``, the
Agent Inbox request raised as one ``HumanInterrupt`` dict (the form the bot renders for local
graphs; ``nodes.inbox`` raises the documented list of one). What it got is recorded."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from tests.remote.served.effects import record
from tests.remote.served.nodes import State, _single


def ask_inbox_one(state: State) -> State:
    answer = interrupt(
        {
            "action_request": {"action": "send_email", "args": {"to": "team@example.com"}},
            "config": {
                "allow_accept": True,
                "allow_edit": True,
                "allow_respond": True,
                "allow_ignore": True,
            },
            "description": "Send the weekly email?",
        }
    )
    record("inbox", {"response": answer})
    return {"answer": answer}


def inbox_one() -> Any:
    """Graph factory (the server calls it; nothing is built at import)."""
    return _single("ask_inbox_one", ask_inbox_one)
