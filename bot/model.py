"""The records the bot keeps: runs, approvals, outbox items and deliveries, deadlines, votes.

Plain frozen dataclasses with no behaviour and no database or Slack imports, so that the pure
builders (messages, blocks) and the engine can share them without importing the SQL module.
The store's aggregates (bot/db/runs.py, approvals.py, …) read and write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The statuses the tables hold (bot/db/migrations.py), named once.
RunStatus = Literal["running", "waiting", "done", "failed"]
ApprovalStatus = Literal["pending", "decided", "resumed", "failed", "superseded"]
DeliveryStatus = Literal["pending", "sending", "sent", "failed"]
DeadlineKind = Literal["remind", "escalate", "timeout"]
GrantStatus = Literal["proposed", "active", "revoked", "lapsed"]


@dataclass(frozen=True, kw_only=True)
class Run:
    """One start of a graph: who asked for what, where, and how it is going (``status``)."""

    run_id: str
    command: str
    input: dict[str, Any]
    requester: str
    channel: str
    status: RunStatus
    thread_key: str | None
    outcome: dict[str, Any] | None
    created_at: float
    response_url: str | None = None
    attempt: int = 1


@dataclass(frozen=True, kw_only=True)
class Approval:
    """One interrupt shown to people: the request, where it was posted, and once claimed
    the decision (``choice``, who, when, the comment and the data it carries)."""

    interrupt_id: str
    run_id: str
    request: Any
    status: ApprovalStatus
    channel: str | None
    ts: str | None
    choice: str | None
    approved: bool | None
    decided_by: str | None
    comment: str | None
    decided_at: float | None
    created_at: float
    rules: dict[str, Any] | None = (
        None  # the policy it was opened with (bot.policy.rules.Rules, as JSON)
    )
    meta: dict[str, Any] | None = None  # {"response_schema": …, "private": […]} (bot.interrupts)
    answer: Any = None  # the data the claimed decision carries (edited args, a text, a form)
    digest: str = ""  # SHA-256 of the request it shows (bot.integrity.request_digest)
    # LangGraph's id for the interrupt it answers: ``interrupt_id`` itself, except for a
    # request that changed under its id and was asked again (``<interrupt id>-<n>``)
    graph_interrupt_id: str = ""


@dataclass(frozen=True, kw_only=True)
class Grant:
    """A standing grant: requests of ``command`` for ``tools`` within ``scope`` (this run,
    this requester's runs, this channel), with exactly these arguments when ``args_digest``
    is set, are decided by it (approved) until ``expires_at``, unless revoked. Made on the
    approval ``source`` by ``granted_by`` (as many approvers as that rule needed: until then
    it is only ``proposed``)."""

    grant_id: str
    source: str  # the interrupt id of the approval it was made on
    command: str
    rule: str  # the policy rule it was made under ("deploy.staging"): it decides only there
    tools: tuple[str, ...]
    scope: str  # run | requester | channel
    scope_value: str  # the run id, the requester's user id or the channel id
    args_digest: str | None
    granted_by: tuple[str, ...]
    needed: int
    status: GrantStatus
    created_at: float
    expires_at: float
    revoked_by: str | None = None
    revoked_at: float | None = None
    uses: int = 0


@dataclass(frozen=True, kw_only=True)
class GrantAsk:
    """What an approver asked for with "Approve & allow…": a grant of ``scope`` for
    ``seconds``, for exactly these arguments when ``args_digest`` is set."""

    scope: str
    scope_value: str  # the run id, the requester or the channel it is bound to
    rule: str  # the policy rule it is made under (``Rules.scope``)
    seconds: float
    tools: tuple[str, ...]
    args_digest: str | None
    needed: int  # approvers who must ask for the same grant (the rule's min_approvals)


@dataclass(frozen=True, kw_only=True)
class Granted:
    """An approval opened already decided by a standing grant: the grant (checked again in
    the opening transaction), the decision it records, and the compact line that shows it."""

    grant: Grant
    choice: str
    items: list[Item]


@dataclass(frozen=True, kw_only=True)
class Item:
    """A Slack side effect to write to the outbox.

    ``key`` names a message (a second row with the same key is ignored, unless ``replace``: then
    the newer content replaces the older, which is how repeated updates coalesce). ``ref`` is
    the key of the message the row needs first: the update's target, or the reply's thread.
    """

    kind: str
    payload: dict[str, Any]
    key: str | None = None
    ref: str | None = None
    replace: bool = False
    run_id: str | None = None
    interrupt_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """An outbox row as the sender sees it, with the message it refers to resolved."""

    id: int
    key: str | None
    kind: str
    ref: str | None
    lane: str | None
    run_id: str | None
    interrupt_id: str | None
    payload: dict[str, Any]
    version: int
    status: DeliveryStatus
    attempts: int
    next_at: float
    lease_until: float | None
    failing_since: float | None
    channel: str | None
    ref_channel: str | None
    ref_ts: str | None
    ref_status: str | None


@dataclass(frozen=True, kw_only=True)
class VoteResult:
    """``claimed`` is true for exactly one caller per approval: the one that must resume."""

    claimed: bool
    approval: Approval
    run: Run
    approvals: int
    voters: tuple[str, ...] = ()
    # The claimer also took the run's lease (else another process is driving the run: it
    # resumes this decision once it lets the run go, see ``Store.pause``).
    drive: bool = True
    grant: Grant | None = None  # the grant this vote asked for (active once made)


@dataclass(frozen=True, kw_only=True)
class Ballot:
    """A vote the engine found acceptable; ``required`` distinct people picking this choice
    decide the request (1 for a reject that ends it)."""

    user: str
    choice: str
    approves: bool
    comment: str | None
    required: int
    answer: Any = None  # stored with the claim: the resume sends exactly this
    grant: GrantAsk | None = None  # "Approve & allow…": a standing grant asked for with it


@dataclass(frozen=True, kw_only=True)
class Refused:
    """A click the engine turned down: audited, and answered with ``items``."""

    user: str
    items: list[Item]
    detail: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # the answer in words (what ``items`` tell the person in Slack)


@dataclass(frozen=True, kw_only=True)
class Opening:
    """What opening one approval writes besides its row: the rules it is held to, the
    messages that show it, and its deadlines as (kind, level, due_at)."""

    items: list[Item]
    rules: dict[str, Any] | None = None
    deadlines: list[tuple[str, int, float]] = field(default_factory=list)
    granted: Granted | None = None  # decided by a standing grant, if it still holds


@dataclass(frozen=True, kw_only=True)
class Deadline:
    """A reminder, an escalation level or the timeout of one approval, due at ``due_at``."""

    id: int
    interrupt_id: str
    run_id: str
    kind: DeadlineKind
    level: int
    due_at: float


@dataclass(frozen=True, kw_only=True)
class Firing:
    """What a due deadline does: messages, later deadlines, and for a timeout the decision
    it claims (choice, approved)."""

    items: list[Item] = field(default_factory=list)
    deadlines: list[tuple[str, int, float]] = field(default_factory=list)
    decision: tuple[str, bool] | None = None
    event: str = "deadline"
    rules: dict[str, Any] | None = None  # the approval's rules from now on (who may decide)


@dataclass(frozen=True, kw_only=True)
class Released:
    """What ``release_dead`` let go of: the dead owners it reaped, and their runs, outbox
    rows and deadlines."""

    runs: int = 0
    outbox: int = 0
    deadlines: int = 0
    owners: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Sent:
    """A delivery Slack took: when (sender's clock), where, and when on the bot's clock."""

    delivery: Delivery
    now: float
    channel: str | None
    ts: str | None
    posted_at: float


@dataclass(frozen=True, kw_only=True)
class DecisionRecord:
    """A reached decision as stored and shown: who picked which choice, when, and why;
    ``answer`` is the data it carries (edited arguments, a response, a form's answer, a
    batch's decisions)."""

    choice: str
    approved: bool
    decided_by: str | None
    comment: str | None
    decided_at: float
    answer: Any = None


def decision_of(approval: Approval) -> DecisionRecord | None:
    """The decision a claimed approval records, or None while it is undecided."""
    if approval.choice is None or approval.decided_at is None:
        return None
    return DecisionRecord(
        choice=approval.choice,
        approved=bool(approval.approved),
        decided_by=approval.decided_by,
        comment=approval.comment,
        decided_at=approval.decided_at,
        answer=approval.answer,
    )


def grant_note(approval: Approval) -> dict[str, Any] | None:
    """The standing grant that decided ``approval``, as the approval records it
    (``{"id", "by", "until"}``; its message is then one compact line), or None."""
    note = (approval.meta or {}).get("grant")
    return note if isinstance(note, dict) else None
