"""Pure Block Kit builders. Everything user- or graph-supplied is escaped for mrkdwn (so
``<!channel>`` in a comment never pings anyone) and cut to Slack's limits (so Slack never
rejects a message we build)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.integrity import short
from bot.interrupts import ApprovalRequest, ChoiceSpec, needs_comment
from bot.model import DecisionRecord
from bot.policy.authz import EVERY_BUTTON, Offer
from graphs.deploy import COMMAND as DEPLOY

# Slack's limits (https://api.slack.com/reference/block-kit/blocks)
MAX_BLOCKS = 50
SECTION_TEXT = 3000
FIELD_TEXT = 2000
FIELDS_PER_SECTION = 10
HEADER_TEXT = 150
BUTTON_TEXT = 75
CONTEXT_TEXT = 3000
MODAL_TITLE = 24
INPUT_MAX = 3000
MAX_FIELDS = 40  # four sections of ten: leaves room for the rest under 50 blocks

ACTION_CHOICE = "approval:choice:"
ACTION_COMMENT = "approval:comment:"  # a choice that needs a comment: opens the modal
ACTION_REASON = "approval:reason"
ACTION_FORM = "approval:form:"  # a choice that carries data: opens its form (bot.render.forms)
ACTION_DETAILS = "approval:details"  # private values, shown to an eligible approver only
ACTION_WITHDRAW = "approval:withdraw"
ACTION_ESCALATE = "approval:escalate"
ACTION_GRANT = "approval:grant"  # "Approve & allow…": approve, and decide later ones too
ACTION_REVOKE = "grant:revoke"  # value: the grant's id
GRANT_CALLBACK = "approval_grant"
GRANT_SCOPE, GRANT_FOR, GRANT_EXACT = "grant_scope", "grant_for", "grant_exact"
REASON_CALLBACK = "approval_reason"
REASON_BLOCK = "reason"

OUTCOME_EMOJI = {
    "succeeded": "✅",
    "failed": "💥",
    "rejected": "🚫",
    "timed_out": "⏰",
    "cancelled": "↩️",
}

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control sequences."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """Shorten to ``limit`` characters with an ellipsis, never splitting an &entity;."""
    if len(text) <= limit:
        return text
    return _PARTIAL_ENTITY.sub("", text[: limit - 1]) + "…"


def mrkdwn(text: str, limit: int = SECTION_TEXT) -> str:
    return cut(escape(text), limit)


def plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": cut(text or " ", limit), "emoji": True}


def slack_date(epoch: float) -> str:
    """A date Slack renders in each reader's own time zone, with a UTC fallback."""
    fallback = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{{date_short_pretty}} at {{time}}|{fallback}>"


@dataclass(frozen=True)
class MessageState:
    """Everything that changes on an approval message after it is first posted."""

    decision: DecisionRecord | None = None
    voters: tuple[str, ...] = ()  # who approved so far, while more are needed
    outcome: dict[str, Any] | None = None
    superseded: bool = False  # the request changed before it was decided (a new one asks)
    elsewhere: bool = False  # answered outside Slack (a remote thread resumed by another client)
    waiting: str = ""  # decided, and waiting for where the graph runs (a LangGraph Server down)


@dataclass(frozen=True)
class Ask:
    """How the message asks for a decision: who may decide (mrkdwn), how many approvals,
    which kinds of choice need a comment, and whether it can be escalated."""

    who: str = ""
    needed: int = 1
    comment_on: frozenset[str] = frozenset()  # "approve", "reject"
    can_escalate: bool = False
    can_grant: bool = False  # the rule allows a standing grant for this request


def approval_message(
    request: ApprovalRequest,
    interrupt_id: str,
    requester: str,
    requested_at: float,
    state: MessageState = MessageState(),
    ask: Ask = Ask(),
    digest: str = "",
) -> tuple[str, list[dict[str, Any]]]:
    """The channel message for one approval (and each escalation DM's copy of it):
    (notification text, blocks). The context line ends with the short form of the request's
    ``digest``, which ties the message to the payload it showed (and to the audit export)."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": plain(request.title, HEADER_TEXT)}]
    if request.text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(request.text)}})
    blocks.extend(_field_sections(request.fields))
    who = f"Requested by <@{requester}>" if requester else "Started outside Slack"
    requested = f"{who} {slack_date(requested_at)}"
    if digest:
        requested += f" · request `{short(digest)}`"
    blocks.append(context(requested))
    if state.superseded or state.elsewhere:
        said = ELSEWHERE if state.elsewhere else CHANGED
        blocks.append(context(said))
        return cut(f"{request.title}: {said}", SECTION_TEXT), blocks[:MAX_BLOCKS]
    if state.decision is None:
        if ask.who:
            blocks.append(context(ask.who))
        if state.voters:
            voters = ", ".join(f"<@{v}>" for v in state.voters)
            blocks.append(context(f"{len(state.voters)} of {ask.needed} approvals: {voters}"))
        blocks.append(_actions(request, interrupt_id, ask))
    else:
        blocks.append(context(decision_line(request, state.decision)))
        if state.outcome:
            blocks.append(_outcome(state.outcome))
        elif state.waiting:
            blocks.append(context(state.waiting))
        elif state.decision.approved:
            blocks.append(context("⏳ Running…"))
    text = f"{request.title}: {decision_line(request, state.decision) if state.decision else ''}"
    return cut(text.rstrip(": "), SECTION_TEXT), blocks[:MAX_BLOCKS]


def context(text: str) -> dict[str, Any]:
    """A context block of one mrkdwn line."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(text, CONTEXT_TEXT)}]}


def _field_sections(fields: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    shown = list(fields[:MAX_FIELDS])
    texts = [cut(f"*{escape(k)}*\n{escape(v)}", FIELD_TEXT) for k, v in shown]
    if len(fields) > MAX_FIELDS:
        texts[-1] = f"_…and {len(fields) - MAX_FIELDS + 1} more fields_"
    return [
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": t} for t in texts[i : i + FIELDS_PER_SECTION]],
        }
        for i in range(0, len(texts), FIELDS_PER_SECTION)
    ]


def _button(choice: ChoiceSpec, action_id: str, interrupt_id: str) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": plain(choice.label, BUTTON_TEXT),
        "action_id": action_id,
        "value": interrupt_id,
    }
    if choice.style in ("primary", "danger"):
        button["style"] = choice.style
    return button


def _actions(
    request: ApprovalRequest,
    interrupt_id: str,
    ask: Ask,
    block_id: str = "approval_actions",
    offer: Offer = EVERY_BUTTON,
) -> dict[str, Any]:
    """One button per choice (action_id by position, value = interrupt id, so a click needs no
    lookup to find its approval); a choice that needs a comment opens the comment modal. Then
    "Reject with reason…", "Show details" when values are private, "Escalate now" when there
    is someone to escalate to, "Withdraw"; a choice that carries data opens its form. Only
    what ``offer`` allows."""
    elements = []
    for i, c in enumerate(request.choices[:20]):
        if not offer.choice(i):
            continue
        action = ACTION_COMMENT if needs_comment(ask.comment_on, c) else ACTION_CHOICE
        elements.append(_button(c, f"{ACTION_FORM if c.form else action}{i}", interrupt_id))
        if ask.can_grant and c is request.approve_choice and not c.form:
            allow = ChoiceSpec("grant", f"{c.label} & allow…")
            elements.append(_button(allow, ACTION_GRANT, interrupt_id))
    reject = request.reject_choice
    if (
        request.reject_with_reason
        and reject is not None
        and not needs_comment(ask.comment_on, reject)  # else its own button asks for one
        and offer.choice(request.choices.index(reject))
    ):
        elements.append(
            _button(ChoiceSpec("reason", "Reject with reason…"), ACTION_REASON, interrupt_id)
        )
    if request.hidden:  # the Home lists a request only for a viewer who may decide it
        elements.append(
            _button(ChoiceSpec("details", "Show details"), ACTION_DETAILS, interrupt_id)
        )
    if ask.can_escalate and offer.escalate:
        elements.append(
            _button(ChoiceSpec("escalate", "Escalate now"), ACTION_ESCALATE, interrupt_id)
        )
    if offer.withdraw:
        elements.append(_button(ChoiceSpec("withdraw", "Withdraw"), ACTION_WITHDRAW, interrupt_id))
    return {"type": "actions", "block_id": block_id, "elements": elements}


CHANGED = "🔄 *This request changed before it was decided*; see the new one."
ELSEWHERE = "↪️ *Answered outside Slack*; nothing was sent from here."
CANCELLED = "cancelled"  # the choice id of a request its requester (or an admin) withdrew
TIMEOUT = "timeout"


def decision_line(request: ApprovalRequest, d: DecisionRecord) -> str:
    if d.choice == TIMEOUT:
        verdict = "approved by policy" if d.approved else "rejected"
        return f"⏰ *Timed out* {slack_date(d.decided_at)}: nobody decided in time, so {verdict}"
    if d.choice == CANCELLED:
        who = f"<@{d.decided_by}>" if d.decided_by else "someone"
        return f"↩️ *Withdrawn* by {who} {slack_date(d.decided_at)}"
    emoji = "✅" if d.approved else "❌"
    label = _past_tense(request, d)
    who = f"<@{d.decided_by}>" if d.decided_by else "someone"
    line = f"{emoji} *{escape(label)}* by {who} {slack_date(d.decided_at)}"
    if d.comment:
        line += f": “{escape(d.comment)}”"
    return line


def _past_tense(request: ApprovalRequest, d: DecisionRecord) -> str:
    """ "Approved"/"Rejected" for the usual choices, the button's label for custom ones."""
    if d.choice in ("approve", "reject"):
        return "Approved" if d.choice == "approve" else "Rejected"
    choice = request.choice(d.choice)
    return (choice.past or choice.label) if choice else d.choice


def _outcome(outcome: dict[str, Any]) -> dict[str, Any]:
    emoji = OUTCOME_EMOJI.get(str(outcome.get("status")), "ℹ️")
    return {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": f"{emoji} {mrkdwn(str(outcome.get('text', '')), SECTION_TEXT - 4)}",
        },
    }


def already_decided(request: ApprovalRequest, d: DecisionRecord) -> str:
    """The ephemeral answer to a click on a decided approval."""
    if d.choice == TIMEOUT:
        return f"This request timed out {slack_date(d.decided_at)}; nothing was changed."
    if d.choice == CANCELLED:
        return f"<@{d.decided_by}> withdrew this request {slack_date(d.decided_at)}."
    verb = escape(_past_tense(request, d).lower())
    return f"Already {verb} by <@{d.decided_by}> {slack_date(d.decided_at)}."


def details_text(request: ApprovalRequest) -> str:
    """An approval's private values, for an eligible approver's eyes only (an ephemeral)."""
    lines = [f"*{escape(request.title)}* (only you can see this)"]
    if request.text:
        lines.append(escape(request.text))
    lines += [f"*{escape(k)}*: {escape(v)}" for k, v in request.fields]
    return cut("\n".join(lines), SECTION_TEXT)


def progress_reply(line: str) -> str:
    return mrkdwn(line, SECTION_TEXT)


def comment_modal(
    request: ApprovalRequest, interrupt_id: str, channel: str, choice: int
) -> dict[str, Any]:
    """The modal for a choice that takes a comment ("Reject with reason…", or any choice the
    policy wants a comment on); private_metadata carries what the submission needs."""
    picked = request.choices[choice]
    rejecting = not picked.approves
    metadata = json.dumps({"interrupt_id": interrupt_id, "channel": channel, "choice": choice})
    title = "Reject with reason" if rejecting else f"{picked.label} with comment"
    hint = "Why not? The requester will see this." if rejecting else "The requester will see this."
    return {
        "type": "modal",
        "callback_id": REASON_CALLBACK,
        "private_metadata": metadata,
        "title": plain(title, MODAL_TITLE),
        "submit": plain(picked.label, MODAL_TITLE),
        "close": plain("Cancel", MODAL_TITLE),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{mrkdwn(request.title, 2900)}*"},
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": plain("Reason" if rejecting else "Comment", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_BLOCK,
                    "multiline": True,
                    "max_length": INPUT_MAX,
                    "placeholder": plain(hint, 150),
                },
            },
        ],
    }


def grant_modal(
    request: ApprovalRequest,
    interrupt_id: str,
    channel: str,
    scopes: Sequence[tuple[str, str]],
    durations: Sequence[tuple[str, str]],
    exact: bool,
) -> dict[str, Any]:
    """ "Approve & allow…": approve this request and let matching later ones be decided by a
    standing grant; the approver picks its scope and how long (``scopes`` and ``durations``
    as (value, label), what the rule allows), and whether only these exact arguments."""
    metadata = json.dumps({"interrupt_id": interrupt_id, "channel": channel})

    def options(pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        return [{"text": plain(label, 75), "value": value} for value, label in pairs]

    scope_options, duration_options = options(scopes), options(durations)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{mrkdwn(request.title, 2900)}*"}},
        {
            "type": "input",
            "block_id": GRANT_SCOPE,
            "label": plain("Also approve, without asking", 2000),
            "element": {
                "type": "radio_buttons",
                "action_id": GRANT_SCOPE,
                "options": scope_options,
                "initial_option": scope_options[0],
            },
        },
        {
            "type": "input",
            "block_id": GRANT_FOR,
            "label": plain("For", 2000),
            "element": {
                "type": "static_select",
                "action_id": GRANT_FOR,
                "options": duration_options,
                "initial_option": duration_options[min(1, len(duration_options) - 1)],
            },
        },
    ]
    if exact:
        only = {"text": plain("Only with these exact arguments", 75), "value": "exact"}
        blocks.append(
            {
                "type": "input",
                "block_id": GRANT_EXACT,
                "optional": True,
                "label": plain("Arguments", 2000),
                "element": {"type": "checkboxes", "action_id": GRANT_EXACT, "options": [only]},
            }
        )
    blocks.append(
        context(
            "Each request decided this way is shown in the channel and audited under your name. "
            "You (or an admin) can revoke it any time: `/approvals grants`."
        )
    )
    return {
        "type": "modal",
        "callback_id": GRANT_CALLBACK,
        "private_metadata": metadata,
        "title": plain("Approve & allow", MODAL_TITLE),
        "submit": plain("Approve & allow", MODAL_TITLE),
        "close": plain("Cancel", MODAL_TITLE),
        "blocks": blocks,
    }


def granted_line(
    what: str, granted_by: Sequence[str], until: float
) -> tuple[str, list[dict[str, Any]]]:
    """A request decided by a standing grant: one compact line, no buttons (text, blocks)."""
    by = " and ".join(f"<@{u}>" for u in granted_by)
    grant = "grant" if len(granted_by) == 1 else "joint grant"
    line = f"✅ *{escape(what)}* approved under {by}'s {grant}, until {slack_date(until)}"
    text = f"{what} approved under a standing grant"
    return cut(text, SECTION_TEXT), [
        {"type": "section", "text": {"type": "mrkdwn", "text": cut(line, SECTION_TEXT)}}
    ]


@dataclass(frozen=True)
class GrantLine:
    """A standing grant as a list shows it: its words (mrkdwn), when it ends, how often it
    decided, and whether the viewer may revoke it."""

    grant_id: str
    words: str
    until: float
    uses: int
    revocable: bool


def grant_blocks(grants: Sequence[GrantLine], block_id: str = "grant") -> list[dict[str, Any]]:
    """Each grant as a section, with a Revoke button where the viewer may revoke it."""
    out: list[dict[str, Any]] = []
    for g in grants:
        times = "once" if g.uses == 1 else f"{g.uses} times"
        section: dict[str, Any] = {
            "type": "section",
            "block_id": f"{block_id}:{g.grant_id}"[:255],
            "text": {
                "type": "mrkdwn",
                "text": cut(f"{g.words}\nuntil {slack_date(g.until)} · used {times}", SECTION_TEXT),
            },
        }
        if g.revocable:
            section["accessory"] = _button(
                ChoiceSpec("revoke", "Revoke", "danger"), ACTION_REVOKE, g.grant_id
            )
        out.append(section)
    return out


RUN_EMOJI = {"running": "⏳", "waiting": "✋", **OUTCOME_EMOJI}
HOME_BLOCKS = 100
HOME_GRANTS = 10  # standing grants the Home lists (the rest: /approvals grants)


@dataclass(frozen=True)
class HomeItem:
    """One open approval as the Home tab lists it; ``ask`` is set when the viewer may decide
    it (then it gets working buttons: those ``offer`` allows this viewer)."""

    request: ApprovalRequest
    interrupt_id: str
    requester: str
    channel: str
    requested_at: float
    ask: Ask | None = None
    offer: Offer = EVERY_BUTTON


@dataclass(frozen=True)
class HomeCounts:
    """How many approvals are open, and how many of them the Home looked at for its viewer."""

    open: int  # pending approvals in all
    looked_at: int  # the newest ones checked for the viewer (the Home pages no further)


def home_view(
    items: Sequence[HomeItem],
    mine: Sequence[tuple[str, str, float]],
    recent: Sequence[str] = (),
    counts: HomeCounts = HomeCounts(0, 0),
    commands: Sequence[str] = (),
    grants: Sequence[GrantLine] = (),
) -> dict[str, Any]:
    """The App Home: what the viewer can decide (with buttons), then their recent requests
    as (command line, outcome or run status, started at), then recent decisions.
    ``commands`` are the registered graphs' (``/deploy``, ``agent``): how to start one."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Waiting for your decision", HEADER_TEXT)}
    ]
    yours = [i for i in items if i.ask is not None]
    blocks.append(
        context(
            f"{len(yours)} of the newest {counts.looked_at} open requests are yours to decide "
            f"({counts.open} open in all). `/approvals list` shows them too."
        )
    )
    for item in yours:
        assert item.ask is not None
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": cut(
                        f"*{escape(item.request.title)}*\nin <#{item.channel}> · requested by "
                        f"<@{item.requester}> {slack_date(item.requested_at)}",
                        SECTION_TEXT,
                    ),
                },
            }
        )
        # block_ids are unique within a view: one per approval
        blocks.append(
            _actions(item.request, item.interrupt_id, item.ask, item.interrupt_id, item.offer)
        )
    if not yours:
        blocks.append(context("Nothing is waiting for you. 🎉"))
    blocks += [{"type": "divider"}, {"type": "header", "text": plain("Your requests", 150)}]
    for line, status, at in mine:
        emoji = RUN_EMOJI.get(status, "•")
        label = status.replace("_", " ")
        blocks.append(context(f"{emoji} `{escape(line)}` {label} · {slack_date(at)}"))
    if not mine:
        blocks.append(context(f"You have not started anything yet. {_how_to_start(commands)}"))
    if grants:
        blocks += [{"type": "divider"}, {"type": "header", "text": plain("Standing grants", 150)}]
        blocks += grant_blocks(grants[:HOME_GRANTS], "home-grant")
        if len(grants) > HOME_GRANTS:
            more = len(grants) - HOME_GRANTS
            blocks.append(context(f"…and {more} more: `/approvals grants` lists them all."))
    if recent:
        blocks += [{"type": "divider"}, {"type": "header", "text": plain("Recent decisions", 150)}]
        blocks += [context(line) for line in recent]
    return {"type": "home", "blocks": blocks[:HOME_BLOCKS]}


def _how_to_start(commands: Sequence[str]) -> str:
    if DEPLOY in commands:
        return f"Try `{DEPLOY} api 1.4.2`."
    names = ", ".join(f"`{escape(c.lstrip('/'))}`" for c in commands)
    return "`/approvals run <graph> <text>` starts one" + (f": {names}." if names else ".")
