"""Button clicks on approval messages: ack at once, decide in a task."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import ACTION_CHOICE, ACTION_REASON
from bot.deps import Deps

CHOICE = re.compile(rf"^{re.escape(ACTION_CHOICE)}(\d+)$")


def register(app: AsyncApp, deps: Deps) -> None:
    async def on_choice(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        match = CHOICE.match(action["action_id"])
        assert match is not None  # the listener's matcher guarantees it
        deps.tasks.spawn(
            deps.engine.click(
                str(action.get("value", "")),
                body["user"]["id"],
                int(match.group(1)),
                _channel(body),
            ),
            f"click {action['action_id']} by {body['user']['id']}",
        )

    async def on_reason(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        deps.tasks.spawn(
            deps.engine.open_reason(
                str(action.get("value", "")), body["user"]["id"], body["trigger_id"], _channel(body)
            ),
            f"reason modal for {body['user']['id']}",
        )

    app.action(CHOICE)(on_choice)
    app.action(ACTION_REASON)(on_reason)


def _channel(body: dict[str, Any]) -> str:
    return (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
