"""Normalise whatever a graph passed to interrupt() into one ApprovalRequest, and turn a
human decision back into the resume value that shape expects.

Everything the bot renders goes through ``normalise``; new interrupt shapes are added here
and nowhere else.
"""

from __future__ import annotations

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


def normalise(value: Any) -> ApprovalRequest:
    """Map an interrupt value to an ApprovalRequest; unknown shapes become a plain question
    showing the value, so no interrupt is ever left without buttons."""
    if isinstance(value, Mapping) and value.get("kind") == KIND:
        return _own(value)
    if isinstance(value, str):
        return ApprovalRequest(
            title="Approval needed", text=value, choices=(APPROVE, REJECT), shape="text"
        )
    return ApprovalRequest(
        title="Approval needed",
        text=repr(value)[:2000],
        choices=(APPROVE, REJECT),
        shape="unknown",
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
    """The value ``Command(resume={interrupt_id: value})`` carries for this request's shape."""
    at = datetime.fromtimestamp(d.decided_at, UTC).isoformat()
    return {
        "choice": d.choice,
        "approved": d.approved,
        "decided_by": d.decided_by,
        "comment": d.comment,
        "decided_at": at,
    }
