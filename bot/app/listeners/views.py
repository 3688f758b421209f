"""Submitted modals. The comment modal ("Reject with reason…", or a choice the policy wants a
comment on): an empty comment is answered inline; otherwise decide. A form (edit, respond,
answer, review): read against its schema before the ack, so a bad value is shown next to its
input (``response_action: errors``) and nothing is claimed; otherwise decide with the answer.
"Approve & allow…": approve, asking for the standing grant picked."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.app.deps import Deps
from bot.app.listeners import NotAnswered, read_before_ack
from bot.render.blocks import (
    GRANT_CALLBACK,
    GRANT_EXACT,
    GRANT_FOR,
    GRANT_SCOPE,
    REASON_BLOCK,
    REASON_CALLBACK,
)
from bot.render.forms import FORM_CALLBACK
from bot.render.messages import FORM_NOT_CHECKED, NOT_RECORDED

log = logging.getLogger(__name__)

EMPTY_REASON = "Please say why you are rejecting this; the requester will see it."
EMPTY_COMMENT = "Please add a comment; the requester will see it."


def register(app: AsyncApp, deps: Deps) -> None:
    async def on_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        try:
            meta = json.loads(view.get("private_metadata") or "")
            interrupt_id, channel = str(meta["interrupt_id"]), str(meta["channel"])
            choice = meta.get("choice")
            index = choice if isinstance(choice, int) else None
        except (ValueError, KeyError, TypeError):
            await ack()
            log.warning("comment modal with unreadable private_metadata from %s", user)
            return
        values = view.get("state", {}).get("values", {})
        comment = ((values.get(REASON_BLOCK) or {}).get(REASON_BLOCK) or {}).get("value") or ""
        if not comment.strip():
            rejecting = "Reject" in str((view.get("title") or {}).get("text", ""))
            error = EMPTY_REASON if rejecting or index is None else EMPTY_COMMENT
            await ack(response_action="errors", errors={REASON_BLOCK: error})
            return
        await ack()
        decided = deps.engine.decide_with_comment(
            interrupt_id, user, index, comment.strip(), channel or None
        )
        deps.tasks.spawn(
            deps.engine.for_person(decided, user, channel or None, None, NOT_RECORDED["form"]),
            f"decision with comment by {user}",
        )

    async def on_form(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        try:
            meta = json.loads(view.get("private_metadata") or "")
            interrupt_id, channel = str(meta["interrupt_id"]), str(meta["channel"])
            index = int(meta["choice"])
        except (ValueError, KeyError, TypeError):
            await ack()
            log.warning("form with unreadable private_metadata from %s", user)
            return
        values = view.get("state", {}).get("values", {})
        try:
            reading = await read_before_ack(deps.engine.read_form(interrupt_id, index, values))
        except NotAnswered:
            # The database is not answering: keep the modal and the person's input open.
            inputs = [b["block_id"] for b in view.get("blocks", []) if b.get("type") == "input"]
            if inputs:
                await ack(response_action="errors", errors={inputs[0]: FORM_NOT_CHECKED})
                return
            await ack()
            words = NOT_RECORDED["form"]
            task = deps.engine.tell_directly(user, channel or None, None, words)
            deps.tasks.spawn(task, f"form not recorded for {user}")
            return
        if reading is not None and reading.errors:
            await ack(response_action="errors", errors=reading.errors)
            return
        await ack()
        answer = reading.answer if reading is not None else None
        comment = reading.comment if reading is not None else None
        decided = deps.engine.decide_with_answer(
            interrupt_id, user, index, answer, comment, channel or None
        )
        deps.tasks.spawn(
            deps.engine.for_person(decided, user, channel or None, None, NOT_RECORDED["form"]),
            f"form decision by {user}",
        )

    app.view(REASON_CALLBACK)(on_submit)
    app.view(FORM_CALLBACK)(on_form)
    app.view(GRANT_CALLBACK)(_on_grant(deps))


def _on_grant(deps: Deps) -> Callable[..., Awaitable[None]]:
    """The submitted "Approve & allow…" modal: approve, asking for the grant picked."""

    async def on_grant(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        try:
            meta = json.loads(view.get("private_metadata") or "")
            interrupt_id, channel = str(meta["interrupt_id"]), str(meta["channel"])
            scope, seconds, exact = _grant_picked(view.get("state", {}).get("values", {}))
        except (ValueError, KeyError, TypeError):
            await ack()
            log.warning("grant modal with unreadable metadata or values from %s", user)
            return
        await ack()
        decided = deps.engine.approve_and_allow(
            interrupt_id, user, scope, seconds, exact, channel or None
        )
        deps.tasks.spawn(
            deps.engine.for_person(decided, user, channel or None, None, NOT_RECORDED["form"]),
            f"approve and allow by {user}",
        )

    return on_grant


def _grant_picked(values: dict[str, Any]) -> tuple[str, float, bool]:
    """The grant modal's scope, length in seconds and "exact arguments only" (the engine
    checks them against the rule again)."""
    scope = values[GRANT_SCOPE][GRANT_SCOPE]["selected_option"]["value"]
    seconds = float(values[GRANT_FOR][GRANT_FOR]["selected_option"]["value"])
    picked = ((values.get(GRANT_EXACT) or {}).get(GRANT_EXACT) or {}).get("selected_options")
    return str(scope), seconds, bool(picked)
