"""The "Reject with reason…" modal: an empty reason is answered inline; otherwise decide."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import REASON_BLOCK, REASON_CALLBACK
from bot.deps import Deps

log = logging.getLogger(__name__)

EMPTY_REASON = "Please say why you are rejecting this; the requester will see it."


def register(app: AsyncApp, deps: Deps) -> None:
    async def on_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = view.get("state", {}).get("values", {})
        reason = ((values.get(REASON_BLOCK) or {}).get(REASON_BLOCK) or {}).get("value") or ""
        if not reason.strip():
            await ack(response_action="errors", errors={REASON_BLOCK: EMPTY_REASON})
            return
        await ack()
        try:
            meta = json.loads(view.get("private_metadata") or "")
            interrupt_id, channel = str(meta["interrupt_id"]), str(meta["channel"])
        except (ValueError, KeyError, TypeError):
            log.warning(
                "reason modal with unreadable private_metadata from %s",
                body.get("user", {}).get("id"),
            )
            return
        deps.tasks.spawn(
            deps.engine.reject_with_reason(
                interrupt_id, body["user"]["id"], reason.strip(), channel
            ),
            f"reject with reason by {body['user']['id']}",
        )

    app.view(REASON_CALLBACK)(on_submit)
