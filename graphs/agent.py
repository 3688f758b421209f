"""An example agent that needs no API key: LangChain's ``create_agent`` on a scripted chat
model, with ``HumanInTheLoopMiddleware`` gating its one tool. The bot knows nothing about it:
it is registered through an entry point (``graphs = ["graphs.agent:specs"]``), as a team's own
agent would be, and started with ``/approvals run agent <task>``.

The model is scripted: asked to do something, it calls ``send_email`` with the task as the
body, once for each address the task names (one after the other: each call is its own
approval), or once to the team when it names none; when the last one is answered, it reports
back.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain.agents.middleware.human_in_the_loop import InterruptMode
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from graphs import GraphSpec, UsageError


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email (pretend: nothing leaves this machine)."""
    return f"Sent to {to}: {subject!r} ({len(body)} characters)"


ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


class ScriptedModel(GenericFakeChatModel):
    """A chat model that plays one script: call the tool, then summarise its answer."""

    messages: Iterator[AIMessage | str] = iter(
        ()
    )  # unused: each answer is derived from the conversation

    def bind_tools(self, tools: Sequence[Any], **_: Any) -> ScriptedModel:  # LangChain's types
        return self

    def _generate(self, messages: list[BaseMessage], *_: Any, **__: Any) -> ChatResult:
        task = str(next(m for m in messages if m.type == "human").content)
        to = ADDRESS.findall(task) or ["team@example.com"]
        answered = [m for m in messages if isinstance(m, ToolMessage)]
        if len(answered) >= len(to):
            reply = AIMessage(content=f"Done: {answered[-1].content}")
        else:
            n = len(answered)
            call = {
                "name": "send_email",
                "args": {"to": to[n], "subject": task[:60], "body": task},
                # the same after a restart
                "id": f"call-{zlib.crc32(task.encode()):08x}" + (f"-{n}" if n else ""),
            }
            reply = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])


def build(
    checkpointer: BaseCheckpointSaver[Any] | None, interrupt_mode: InterruptMode = "per_call"
) -> CompiledStateGraph[Any]:
    """The compiled agent (``create_agent`` takes the checkpointer itself)."""
    gate = HumanInTheLoopMiddleware(
        interrupt_on={"send_email": True},  # approve, edit, reject or respond
        interrupt_mode=interrupt_mode,
    )
    return create_agent(
        ScriptedModel(), tools=[send_email], middleware=[gate], checkpointer=checkpointer
    )


def parse(text: str) -> dict[str, Any]:
    task = text.strip()
    if not task:
        raise UsageError("Tell the agent what to do: `/approvals run agent <task>`.")
    return {"messages": [{"role": "user", "content": task[:2000]}]}


specs = [
    GraphSpec(
        command="agent",
        description="An example agent whose email tool needs approval",
        usage="<task>",
        parse=parse,
        build=build,
    )
]


def served() -> CompiledStateGraph[Any]:
    """The same agent for a LangGraph Server (``graphs/langgraph.json``): the server brings
    its own checkpointer. Called by the server; nothing is built at import."""
    return build(None)
