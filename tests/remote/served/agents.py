"""``create_agent`` with ``HumanInTheLoopMiddleware`` on a scripted model, served as two graph
ids: ``hitl_per_call`` (one interrupt per gated tool call, each with a ``response_schema``)
and ``hitl_batched`` (one interrupt per model turn listing every gated call).

The model plays a script derived from the task, so no API key is needed and a run is the same
after a restart: each non-empty line of the task becomes one tool call, ``post_status`` for a
line starting ``status:``, ``send_email`` for any other. When the tools have answered, it
says "Done:" and their answers. Both tools are gated and record each real call (``effects``).
"""

from __future__ import annotations

import zlib
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from graphs.agent import ScriptedModel
from tests.remote.served.effects import record


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email (pretend: the call is only recorded)."""
    record("send_email", {"to": to, "subject": subject, "body": body})
    return f"Sent to {to}: {subject!r}"


@tool
def post_status(text: str) -> str:
    """Post a status update (pretend: the call is only recorded)."""
    record("post_status", {"text": text})
    return f"Posted {text!r}"


def script(task: str) -> list[dict[str, Any]]:
    """The tool calls a task asks for, with ids derived from it (the same after a restart)."""
    calls = []
    for n, line in enumerate(x.strip() for x in task.splitlines()):
        if not line:
            continue
        if line.startswith("status:"):
            name, args = "post_status", {"text": line.removeprefix("status:").strip()}
        else:
            name, args = (
                "send_email",
                {"to": "team@example.com", "subject": line[:60], "body": line},
            )
        call_id = f"call-{n}-{zlib.crc32(line.encode()):08x}"
        calls.append({"name": name, "args": args, "id": call_id})
    return calls


class ManyCallsModel(ScriptedModel):
    """graphs/agent.py's scripted model, with one tool call per line of the task."""

    def _generate(self, messages: list[BaseMessage], *_: Any, **__: Any) -> ChatResult:
        if isinstance(messages[-1], ToolMessage):
            answers = [m.content for m in messages if isinstance(m, ToolMessage)]
            reply = AIMessage(content="Done: " + "; ".join(str(a) for a in answers))
        else:
            task = next(m for m in reversed(messages) if isinstance(m, HumanMessage))
            reply = AIMessage(content="", tool_calls=script(str(task.content)))
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _agent(mode: str) -> Any:
    gate = HumanInTheLoopMiddleware(
        interrupt_on={"send_email": True, "post_status": True},
        interrupt_mode=mode,  # type: ignore[arg-type]
    )
    return create_agent(ManyCallsModel(), tools=[send_email, post_status], middleware=[gate])


def per_call() -> Any:
    """Graph factory (the server calls it; nothing is built at import)."""
    return _agent("per_call")


def batched() -> Any:
    """Graph factory."""
    return _agent("batched")
