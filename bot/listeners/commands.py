"""Slash commands: parse, ack (with usage help when the arguments are wrong), start the run."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.deps import Deps
from bot.slack import SlackError
from graphs import GraphSpec, UsageError

log = logging.getLogger(__name__)

NOT_IN_CHANNEL = (
    "I can't post in this channel yet. Invite me with `/invite @approvals` "
    "and run the command again."
)


def register(app: AsyncApp, deps: Deps) -> None:
    for spec in deps.specs.values():
        app.command(spec.command)(_listener(spec, deps))


def _listener(spec: GraphSpec, deps: Deps) -> Callable[..., Awaitable[None]]:
    async def on_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        try:
            args = spec.parse(command.get("text") or "")
        except UsageError as exc:
            await ack(text=str(exc), response_type="ephemeral")
            return
        await ack()
        deps.tasks.spawn(
            _start(deps, spec, args, command, respond),
            f"start {spec.command} by {command.get('user_id')}",
        )

    return on_command


async def _start(
    deps: Deps,
    spec: GraphSpec,
    args: dict[str, Any],
    command: dict[str, Any],
    respond: AsyncRespond,
) -> None:
    try:
        await deps.engine.start(spec.command, args, command["user_id"], command["channel_id"])
    except SlackError as exc:
        log.warning("%s in %s: Slack said %s", spec.command, command["channel_id"], exc.code)
        text = (
            NOT_IN_CHANNEL
            if exc.code in ("not_in_channel", "channel_not_found")
            else f"Sorry, Slack refused my message ({exc.code}). Nothing was started."
        )
        await respond(text=text, response_type="ephemeral")
