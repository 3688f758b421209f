"""A stand-in for the ``langchain-openai`` package, put first on the path of the bot process
that tests/scenario/test_readme_graph.py starts. The README's example agent names the model
``"openai:gpt-4.1"``, which LangChain builds as ``langchain_openai.ChatOpenAI``; a test must
need neither an API key nor the network, so this ``ChatOpenAI`` plays a script instead:
asked anything, it calls ``refund`` once; given the tool's answer, it reports it. Everything
else (the README's module, the bot, LangChain's agent and its HITL middleware) is real."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

REFUND = {"order": "ACME-1042", "amount": 1200.0}


class ChatOpenAI(GenericFakeChatModel):
    model: str = ""  # "gpt-4.1": what init_chat_model passes
    messages: Any = iter(())  # unused: each answer follows from the conversation

    def bind_tools(self, tools: Any, **_: Any) -> ChatOpenAI:
        return self

    def _generate(self, messages: list[BaseMessage], *_: Any, **__: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(content=f"Done: {last.content}")
        else:
            call = {"name": "refund", "args": dict(REFUND), "id": "call-refund-1"}
            reply = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])
