"""What the engine wants Slack to show, as outbox items. Pure: Block Kit comes from ``blocks``,
wording for people from here, and nothing is sent until the outbox sends it.

Message keys name Slack messages before they exist: ``approval:<interrupt id>`` is an
approval's channel message, ``run:<run id>`` a run's own first message when it has progress
before any approval, ``progress:<run>:<task>:<n>`` one progress reply.
"""

from __future__ import annotations

from typing import Any

from bot.interrupts import ApprovalRequest
from bot.model import Approval, Grant, Item, Run, grant_note
from bot.render import blocks

INVITE = "I can't post in <#{channel}>: invite me with `/invite @approvals`, then run it again."
CHANNEL_GONE = "I can't find <#{channel}> any more, so I could not post your request there."
TOKEN_REFUSED = (
    "Slack refused my credentials, so I could not post your request. "
    "Whoever runs this bot needs to check its token."
)
SLACK_DOWN = (
    "Slack kept failing while I tried to post your request, so I gave up. "
    "Nothing was started; please run it again."
)
REFUSED_OTHER = "Slack would not let me post your request, so nothing was started."
GROUPS_UNKNOWN = (
    "I couldn't check who is in the user group that decides this, so I can't take your "
    "decision right now. Please try again in a minute."
)
MODAL_LATE = (
    "Slack took too long to pass on your click, so the form could not open. Please click again."
)
MODAL_SLACK_DOWN = (
    "Slack is having trouble right now, so the form could not open. Please try again in a minute."
)
MODAL_TOKEN = (
    "Slack refused my credentials, so the form could not open. "
    "Whoever runs this bot needs to check its token."
)
MODAL_OTHER = "Slack would not open the form. Please try again, or ask whoever runs this bot."
ANSWER_REFUSED = (
    "The graph did not accept your answer, so nothing was saved and the request is open "
    "again. What it said: {why}. Please answer it again."
)
CHANGED = (
    "This request changed before it was decided, so nothing was decided: the new request has "
    "a message (and an id) of its own."
)
RUN_FAILED = (
    "The run stopped with an internal error. Nothing more will happen; "
    "the operator's log has the details (run {run_id})."
)
# Told straight through Slack (the outbox is in the database) when the database did not
# answer for APPROVALS_DB_RETRY_SECONDS: what the person did is not recorded, so they do it
# again. UNSURE: the database went away while saving it, so whether it landed is unknown.
NOT_RECORDED = {
    "click": (
        "I couldn't record your click: the database is not answering. Nothing was decided; "
        "please click again in a minute."
    ),
    "form": (
        "I couldn't record your answer: the database is not answering. Nothing was decided; "
        "please submit it again in a minute."
    ),
    "command": (
        "I couldn't start {command}: the database is not answering. Nothing was started; "
        "please run it again in a minute."
    ),
    "cancel": (
        "I couldn't withdraw it: the database is not answering. Nothing was changed; "
        "please try again in a minute."
    ),
}
NO_LOOKUP = (
    "The database is not answering right now, so I can't look that up. "
    "Please try again in a minute."
)
FORM_NOT_CHECKED = (
    "The database is not answering, so I couldn't check your answer. Nothing was decided; "
    "please submit it again in a minute."
)
NOT_RECORDED_UNSURE = (
    "The database stopped answering while I was saving that, so I can't tell whether it went "
    "through. Look again in a minute; if nothing changed, please do it again."
)


WAITING_FOR = "⏳ Waiting for {deployment} to answer; nothing is lost, this goes on when it does."


def approval_key(interrupt_id: str) -> str:
    return f"approval:{interrupt_id}"


def approval_post(run: Run, approval: Approval, request: ApprovalRequest, ask: blocks.Ask) -> Item:
    text, blks = blocks.approval_message(
        request,
        approval.interrupt_id,
        run.requester,
        approval.created_at,
        ask=ask,
        digest=approval.digest,
    )
    return _posted(run, approval, text, blks)


def _posted(run: Run, approval: Approval, text: str, blks: list[dict[str, Any]]) -> Item:
    """The approval's channel message, keyed so its later updates find it."""
    return Item(
        kind="post",
        payload={"channel": run.channel, "text": text, "blocks": blks},
        key=approval_key(approval.interrupt_id),
        run_id=run.run_id,
        interrupt_id=approval.interrupt_id,
    )


def granted_what(request: ApprovalRequest) -> str:
    """What a grant-decided request is called on its compact line: its tools, or its title."""
    return ", ".join(dict.fromkeys(a.name for a in request.actions)) or request.title


def granted_post(run: Run, approval: Approval, request: ApprovalRequest, grant: Grant) -> Item:
    """A request a standing grant decided: one compact line in the channel, no buttons."""
    text, blks = blocks.granted_line(granted_what(request), grant.granted_by, grant.expires_at)
    return _posted(run, approval, text, blks)


def approval_update(
    run: Run,
    approval: Approval,
    request: ApprovalRequest,
    state: blocks.MessageState,
    ask: blocks.Ask,
) -> Item:
    """The message's newest content; later updates of the same message replace this one. The
    store copies it to every escalation DM of the same approval. A request a standing grant
    decided keeps its compact line."""
    note = grant_note(approval)
    if note is not None:
        text, blks = blocks.granted_line(
            granted_what(request), tuple(note.get("by") or ()), float(note.get("until") or 0)
        )
    else:
        text, blks = blocks.approval_message(
            request,
            approval.interrupt_id,
            run.requester,
            approval.created_at,
            state,
            ask,
            approval.digest,
        )
    key = approval_key(approval.interrupt_id)
    return Item(
        kind="update",
        payload={"text": text, "blocks": blks},
        key=f"update:{key}",
        ref=key,
        replace=True,
        run_id=run.run_id,
        interrupt_id=approval.interrupt_id,
    )


def copy_key(interrupt_id: str, target: str) -> str:
    """An escalation's copy of the approval message, in ``target``'s DM (or channel)."""
    return f"copy:{interrupt_id}:{target}"


def approval_copy(
    run: Run, approval: Approval, request: ApprovalRequest, ask: blocks.Ask, target: str
) -> Item:
    """The approval message, with working buttons, sent to a person by DM (or to a channel)."""
    text, blks = blocks.approval_message(
        request,
        approval.interrupt_id,
        run.requester,
        approval.created_at,
        ask=ask,
        digest=approval.digest,
    )
    payload = {"text": text, "blocks": blks}
    if target.startswith(("C", "G")):
        kind, payload = "post", {**payload, "channel": target}
    else:
        kind, payload = "dm", {**payload, "user": target}
    return Item(
        kind=kind,
        payload=payload,
        key=copy_key(approval.interrupt_id, target),
        run_id=run.run_id,
        interrupt_id=approval.interrupt_id,
    )


def thread_note(run: Run, approval: Approval, key: str, text: str) -> Item:
    """A line in the approval's thread (reminders, escalations, timeouts)."""
    thread = run.thread_key or approval_key(approval.interrupt_id)
    return Item(kind="post", payload={"text": text}, key=key, ref=thread, run_id=run.run_id)


def ephemeral(
    channel: str,
    user: str,
    text: str,
    run_id: str | None = None,
    fallback: str | None = None,
    thread_ts: str | None = None,
) -> Item:
    """An ephemeral. ``fallback`` is the click's response_url: if Slack refuses the ephemeral
    for good, the words go that way instead. ``thread_ts``: shown in that thread (the answer
    to a mention typed there)."""
    payload = {"channel": channel, "user": user, "text": text}
    if fallback:
        payload["fallback_url"] = fallback
    if thread_ts:
        payload["thread_ts"] = thread_ts
    return Item(kind="ephemeral", payload=payload, run_id=run_id)


def outcome_unseen(run: Run, outcome: dict[str, object]) -> str:
    """The requester's news when the message itself could not be updated."""
    return (
        f"I couldn't update your request's message in <#{run.channel}>, so here is how it "
        f"went: {blocks.escape(str(outcome.get('text', '')))}"
    )


def run_thread(run: Run, command_line: str) -> Item:
    """A run's own first message, for progress that comes before any approval."""
    text = f"⏳ `{blocks.escape(command_line)}` started by <@{run.requester}>"
    return Item(
        kind="post",
        payload={"channel": run.channel, "text": text},
        key=f"run:{run.run_id}",
        run_id=run.run_id,
    )


def progress(run_id: str, thread_key: str, key: str, line: str) -> tuple[Item, Item]:
    """A progress reply, and the edit that replaces it when its step re-runs (after a crash,
    or an outage past the retry budget: the thread's note says which)."""
    text = blocks.progress_reply(line)
    reply = Item(kind="post", payload={"text": text}, key=key, ref=thread_key, run_id=run_id)
    retried = Item(
        kind="update",
        payload={"text": blocks.progress_reply(line + " (retried)")},
        key=f"update:{key}",
        ref=key,
        replace=True,
        run_id=run_id,
    )
    return reply, retried


def tell_requester(run: Run, text: str) -> Item:
    """Reach the requester privately: through their command's response_url while it lives,
    else by DM."""
    if run.response_url:
        return Item(
            kind="respond", payload={"url": run.response_url, "text": text}, run_id=run.run_id
        )
    return Item(kind="dm", payload={"user": run.requester, "text": text}, run_id=run.run_id)


def post_refused(run: Run, code: str, transient: bool) -> str:
    """Plain words for an approval message Slack will never take (``code``: Slack's error;
    ``transient``: it failed below Slack, and kept failing)."""
    if code in ("not_in_channel", "is_archived", "restricted_action"):
        return INVITE.format(channel=run.channel)
    if code == "channel_not_found":
        return CHANNEL_GONE.format(channel=run.channel)
    if code in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
        return TOKEN_REFUSED
    if transient:
        return SLACK_DOWN
    return REFUSED_OTHER


def modal_refused(code: str, transient: bool) -> str:
    """Plain words for a modal Slack would not open (``code`` and ``transient`` as above)."""
    if code in ("expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id"):
        return MODAL_LATE
    if transient:
        return MODAL_SLACK_DOWN
    if code in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
        return MODAL_TOKEN
    return MODAL_OTHER
