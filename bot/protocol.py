"""Normalise whatever a graph passed to interrupt() into one ApprovalRequest, and turn a
human decision back into the resume value that shape expects.

Everything the bot renders goes through ``normalise``; new interrupt shapes are added here
and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from graphs.approval import KIND


@dataclass(frozen=True)
class ChoiceSpec:
    id: str
    label: str
    style: str | None = None
    approves: bool = False
    comment: str = "none"  # none | optional | required


@dataclass(frozen=True)
class ApprovalRequest:
    """The bot's view of one pending interrupt, whatever shape the graph used: what to show
    and which choices to offer. Who may decide is the policy's (``bot.policy.Rules``), merged
    with what the graph asked for when the approval opens."""

    title: str
    text: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    choices: tuple[ChoiceSpec, ...] = ()
    reject_with_reason: bool = True
    shape: str = KIND
    actions: int = 0  # how many tool calls a batched HITL request answers at once

    def choice(self, choice_id: str) -> ChoiceSpec | None:
        return next((c for c in self.choices if c.id == choice_id), None)

    @property
    def approve_choice(self) -> ChoiceSpec | None:
        """The first choice that counts as a yes."""
        return next((c for c in self.choices if c.approves), None)

    @property
    def reject_choice(self) -> ChoiceSpec | None:
        """The choice a "Reject with reason…" modal submits: the first that does not approve."""
        return next((c for c in self.choices if not c.approves), None)


APPROVE = ChoiceSpec("approve", "Approve", "primary", approves=True)
REJECT = ChoiceSpec("reject", "Reject", "danger")


JSON_SHOWN = 2000  # characters of a JSON value shown in its code block


def normalise(value: Any) -> ApprovalRequest:
    """Map an interrupt value to an ApprovalRequest; any other value becomes a plain
    question showing it, so no interrupt is ever left without buttons."""
    if isinstance(value, Mapping):
        if value.get("kind") == KIND:
            return _own(value)
        if value.get("type") == "tool_approval" and isinstance(value.get("args"), Mapping):
            return _tool_approval(value)
        if isinstance(value.get("action_requests"), list) and value["action_requests"]:
            return _hitl_batch(value)
        if isinstance(value.get("action_request"), Mapping):
            return _agent_inbox(value)
    if isinstance(value, str):
        return ApprovalRequest(
            title="Approval needed", text=value, choices=(APPROVE, REJECT), shape="text"
        )
    return ApprovalRequest(
        title="Approval needed", text=code(value), choices=(APPROVE, REJECT), shape="json"
    )


def code(value: Any) -> str:
    """A JSON value as a code block, cut to what a message can show."""
    shown = json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    if len(shown) > JSON_SHOWN:
        shown = shown[: JSON_SHOWN - 1] + "…"
    return f"```\n{shown}\n```"


def _arguments(args: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (str(k), v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=repr))
        for k, v in args.items()
    )


def _tool_approval(v: Mapping[str, Any]) -> ApprovalRequest:
    """LangChain's HumanInTheLoopMiddleware, ``per_call`` mode: one tool call."""
    name = str(v.get("name") or "a tool")
    return ApprovalRequest(
        title=f"Run {name}?",
        text=str(v.get("description") or ""),
        fields=(("Tool", name), *_arguments(v["args"])),
        choices=(APPROVE, REJECT),
        shape="tool_approval",
    )


def _hitl_batch(v: Mapping[str, Any]) -> ApprovalRequest:
    """LangChain's HumanInTheLoopMiddleware, ``batched`` mode: every gated call of one model
    turn; Approve / Reject answer each of them, in request order."""
    actions = [a for a in v["action_requests"] if isinstance(a, Mapping)]
    allowed = {
        str(c.get("action_name")): [str(d) for d in c.get("allowed_decisions") or ()]
        for c in v.get("review_configs") or ()
        if isinstance(c, Mapping)
    }
    fields: list[tuple[str, str]] = []
    for i, a in enumerate(actions, 1):
        name = str(a.get("name") or "a tool")
        args = a.get("args") if isinstance(a.get("args"), Mapping) else {}
        decisions = ", ".join(allowed.get(name, ())) or "any"
        fields.append((f"{i}. {name}", f"{json.dumps(args, ensure_ascii=False, default=repr)}"))
        fields.append((f"{i}. allowed", decisions))
    names = ", ".join(str(a.get("name")) for a in actions)
    described = "\n".join(str(a["description"]) for a in actions if a.get("description"))
    return ApprovalRequest(
        title=f"Run {names}?" if len(actions) == 1 else f"Run {len(actions)} tool calls?",
        text=described,
        fields=tuple(fields),
        choices=(APPROVE, REJECT),
        shape="hitl_batched",
        actions=len(actions),
    )


def _agent_inbox(v: Mapping[str, Any]) -> ApprovalRequest:
    """The deprecated Agent Inbox ``HumanInterrupt`` (still raised by older agents)."""
    action = v["action_request"]
    name = str(action.get("action") or "an action")
    args = action.get("args") if isinstance(action.get("args"), Mapping) else {}
    config = v.get("config") if isinstance(v.get("config"), Mapping) else {}
    approve = APPROVE if config.get("allow_accept", True) else None
    reject = ChoiceSpec("ignore", "Ignore", "danger") if config.get("allow_ignore", True) else None
    return ApprovalRequest(
        title=f"{name}?",
        text=str(v.get("description") or ""),
        fields=_arguments(args),
        choices=tuple(c for c in (approve, reject) if c is not None) or (APPROVE, REJECT),
        shape="agent_inbox",
        reject_with_reason=bool(config.get("allow_respond", False)),
    )


def _own(v: Mapping[str, Any]) -> ApprovalRequest:
    choices = tuple(
        ChoiceSpec(
            str(c["id"]),
            str(c["label"]),
            c.get("style"),
            bool(c.get("approves")),
            str(c.get("comment", "none")),
        )
        for c in v.get("choices", ())
    ) or (APPROVE, REJECT)
    return ApprovalRequest(
        title=str(v.get("title") or "Approval needed"),
        text=str(v.get("text") or ""),
        fields=tuple((str(k), str(val)) for k, val in v.get("fields", ())),
        choices=choices,
        reject_with_reason=bool(v.get("reject_with_reason", True)),
        shape=KIND,
    )


@dataclass(frozen=True)
class DecisionRecord:
    """A reached decision as stored and shown: who picked which choice, when, and why."""

    choice: str
    approved: bool
    decided_by: str | None
    comment: str | None
    decided_at: float


def resume_value(request: ApprovalRequest, d: DecisionRecord) -> Any:
    """The value ``Command(resume={interrupt_id: value})`` carries: exactly what the shape's
    producer expects (LangChain's HITL decisions, Agent Inbox responses, or our Decision)."""
    if request.shape in ("tool_approval", "hitl_batched"):
        decision: dict[str, Any] = {"type": "approve"} if d.approved else {"type": "reject"}
        if not d.approved and d.comment:
            decision["message"] = d.comment
        if request.shape == "tool_approval":
            return decision
        return {"decisions": [dict(decision) for _ in range(request.actions)]}
    if request.shape == "agent_inbox":
        if d.approved:
            return [{"type": "accept", "args": None}]
        if d.comment:
            return [{"type": "response", "args": d.comment}]
        return [{"type": "ignore", "args": None}]
    at = datetime.fromtimestamp(d.decided_at, UTC).isoformat()
    return {
        "choice": d.choice,
        "approved": d.approved,
        "decided_by": d.decided_by,
        "comment": d.comment,
        "decided_at": at,
    }
