"""The interrupt protocol for graph authors: ask a human, get a typed Decision back.

A graph never talks to Slack. It calls ``request_approval(...)``, which raises LangGraph's
``interrupt()`` with a plain, JSON-serialisable payload; the bot renders that payload as a
Block Kit message and resumes the thread with the human's answer. Because LangGraph re-runs a
node from its start on resume, put side effects *after* this call (or make them idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from langgraph.types import interrupt

KIND = "slack_approval"
"""Marks a payload as this project's own approval request (see ``bot.protocol``)."""

Style = Literal["primary", "danger"] | None


@dataclass(frozen=True)
class Choice:
    """One button. ``approves`` says whether picking it counts as a yes."""

    id: str
    label: str
    style: Style = None
    approves: bool = False
    comment: Literal["none", "optional", "required"] = "none"


APPROVE = Choice("approve", "Approve", "primary", approves=True)
REJECT = Choice("reject", "Reject", "danger")
DEFAULT_CHOICES = (APPROVE, REJECT)


@dataclass(frozen=True)
class Decision:
    """What the human decided. ``choice`` is the Choice id, or "timeout" when nobody did."""

    choice: str
    approved: bool
    decided_by: str | None
    comment: str | None
    decided_at: str | None

    @classmethod
    def from_resume(cls, value: object) -> Decision:
        """Accept the bot's resume map, and bare values for graphs driven by hand in tests."""
        if isinstance(value, Mapping):
            return cls(
                choice=str(value.get("choice", "reject")),
                approved=bool(value.get("approved", False)),
                decided_by=value.get("decided_by"),
                comment=value.get("comment"),
                decided_at=value.get("decided_at"),
            )
        if isinstance(value, bool):
            return cls("approve" if value else "reject", value, None, None, None)
        choice = str(value)
        return cls(choice, choice == APPROVE.id, None, None, None)


class ChoicePayload(TypedDict):
    """A Choice as the payload carries it."""

    id: str
    label: str
    style: Style
    approves: bool
    comment: Literal["none", "optional", "required"]


class ApprovalPayload(TypedDict):
    """What ``request_approval`` passes to ``interrupt()``: plain JSON, so the checkpointer
    stores it and the bot (``bot.protocol``, which recognises it by ``kind``) reads it."""

    kind: str  # KIND
    version: int
    title: str
    text: str
    fields: list[list[str]]  # [name, value] pairs, in order
    choices: list[ChoicePayload]
    approvers: list[str]
    min_approvals: int
    allow_self_approval: bool
    reject_with_reason: bool
    timeout_seconds: float | None
    escalate_after_seconds: float | None
    escalate_to: list[str]
    private: NotRequired[list[str]]


def approval_payload(
    *,
    title: str,
    text: str = "",
    fields: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    choices: Sequence[Choice] = DEFAULT_CHOICES,
    approvers: Sequence[str] = (),
    min_approvals: int = 1,
    allow_self_approval: bool = False,
    reject_with_reason: bool = True,
    timeout_seconds: float | None = None,
    escalate_after_seconds: float | None = None,
    escalate_to: Sequence[str] = (),
    private: Sequence[str] = (),
) -> ApprovalPayload:
    """Build the interrupt payload without raising, so it can be unit-tested and inspected.

    ``private`` names fields whose values stay out of the channel message: it shows
    "hidden", and an eligible approver sees them with "Show details"."""
    if len(choices) < 2:
        raise ValueError("an approval needs at least two choices")
    if min_approvals < 1:
        raise ValueError("min_approvals must be at least 1")
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    payload: ApprovalPayload = {
        "kind": KIND,
        "version": 1,
        "title": title,
        "text": text,
        "fields": [[str(k), str(v)] for k, v in pairs],
        "choices": [
            {
                "id": c.id,
                "label": c.label,
                "style": c.style,
                "approves": c.approves,
                "comment": c.comment,
            }
            for c in choices
        ],
        "approvers": list(approvers),
        "min_approvals": min_approvals,
        "allow_self_approval": allow_self_approval,
        "reject_with_reason": reject_with_reason,
        "timeout_seconds": timeout_seconds,
        "escalate_after_seconds": escalate_after_seconds,
        "escalate_to": list(escalate_to),
    }
    if private:
        payload["private"] = [str(p) for p in private]
    return payload


def request_approval(**kwargs: Any) -> Decision:
    """Pause the graph until a person decides; see ``approval_payload`` for the arguments."""
    return Decision.from_resume(interrupt(approval_payload(**kwargs)))
