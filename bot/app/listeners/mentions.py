"""``@approvals approve …`` typed in an approval's thread (the ``app_mention`` event, HTTP or
Socket Mode): Bolt acks the event itself; the text is read here (bot/mentions.py) and the
engine decides in a task the app owns. A retried event (same ``event_id``) is handed on too:
the engine acts once per event id, on every replica and across restarts.

Slack never sends ``app_mention`` for a DM with the app, so a decision typed in an
escalation DM's thread comes as ``message.im`` (scope ``im:history``); there the whole DM is
addressed to the bot, so ``approve ship it`` needs no mention."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.app.deps import Deps
from bot.app.ingress import TS, is_channel_id, is_user_id
from bot.mentions import Heard, parse

NOT_RECORDED = (
    "I couldn't record that: the database is not answering. Nothing was decided; "
    "please mention me again in a minute."
)


def register(app: AsyncApp, deps: Deps) -> None:
    async def on_mention(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        heard = _heard(body, event, context.bot_user_id)
        if heard is None:
            return
        work = deps.engine.mention(heard)
        user, channel = heard.user, heard.channel
        deps.tasks.spawn(
            deps.engine.for_person(work, user, channel, None, NOT_RECORDED), f"mention by {user}"
        )

    async def on_direct_message(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if event.get("channel_type") != "im" or not context.bot_user_id:
            return
        text = event.get("text")
        me = f"<@{context.bot_user_id}"
        if isinstance(text, str) and not text.lstrip().startswith((f"{me}>", f"{me}|")):
            event = {**event, "text": f"<@{context.bot_user_id}> {text}"}
        await on_mention(body, event, context)

    app.event("app_mention")(on_mention)
    app.event("message")(on_direct_message)


def _heard(body: dict[str, Any], event: dict[str, Any], bot: str | None) -> Heard | None:
    """The mention as the engine takes it; None for one nobody is to be answered for (an
    edit, another bot, or a payload missing what is needed)."""
    event_id, user, channel = body.get("event_id"), event.get("user"), event.get("channel")
    if event.get("subtype") or event.get("bot_id") or event.get("edited") or not bot:
        return None  # an edit comes again as app_mention, with a new event id: not a new vote
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        return None
    if not is_user_id(user) or not is_channel_id(channel):
        return None
    thread_ts = event.get("thread_ts")
    text = event.get("text")
    return Heard(
        event_id=event_id,
        user=user,
        channel=channel,
        thread_ts=thread_ts if isinstance(thread_ts, str) and TS.fullmatch(thread_ts) else None,
        said=parse(text, bot) if isinstance(text, str) else None,
        bot=bot,
    )
