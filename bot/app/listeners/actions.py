"""Button clicks on approval messages (in the channel or an escalation DM) and on lists of
standing grants (Revoke): ack at once, act in a task."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.app.deps import Deps
from bot.engine import Engine
from bot.render.blocks import (
    ACTION_CHOICE,
    ACTION_COMMENT,
    ACTION_DETAILS,
    ACTION_ESCALATE,
    ACTION_FORM,
    ACTION_GRANT,
    ACTION_REASON,
    ACTION_REVOKE,
    ACTION_WITHDRAW,
)
from bot.render.messages import NOT_RECORDED

CHOICE = re.compile(rf"^{re.escape(ACTION_CHOICE)}(\d+)$")
COMMENT = re.compile(rf"^{re.escape(ACTION_COMMENT)}(\d+)$")
FORM = re.compile(rf"^{re.escape(ACTION_FORM)}(\d+)$")


# What a click does, once acked: (engine, interrupt id, user, channel, body, action).
Work = Callable[[Engine, str, str, str | None, dict[str, Any], dict[str, Any]], Awaitable[None]]


def register(app: AsyncApp, deps: Deps) -> None:
    for matcher, name, work in (
        (CHOICE, "click", _choice),
        (COMMENT, "comment modal", _comment),
        (FORM, "form modal", _form),
        (ACTION_DETAILS, "details", _details),
        (ACTION_REASON, "reason modal", _reason),
        (ACTION_WITHDRAW, "withdraw", _withdraw),
        (ACTION_ESCALATE, "escalate now", _escalate),
        (ACTION_GRANT, "grant modal", _grant),
        (ACTION_REVOKE, "revoke grant", _revoke),
    ):
        app.action(matcher)(_listener(deps, name, work))


def _listener(deps: Deps, name: str, work: Work) -> Callable[..., Awaitable[None]]:
    """Ack, then do ``work`` in a task the app owns; a click made in the App Home is answered
    by drawing the Home again."""
    engine = deps.engine

    async def listener(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        interrupt_id, user = str(action.get("value", "")), body["user"]["id"]
        channel = _channel(body) or None  # None: clicked in the App Home

        async def act() -> None:
            clicked = work(engine, interrupt_id, user, channel, body, action)
            url = body.get("response_url")
            recorded = await engine.for_person(clicked, user, channel, url, NOT_RECORDED["click"])
            if recorded and channel is None:
                await engine.publish_home(user)  # the Home is the answer there

        deps.tasks.spawn(act(), f"{name} by {user}")

    return listener


def _index(pattern: re.Pattern[str], action: dict[str, Any]) -> int:
    """The choice's position in the action_id (the listener's matcher guarantees one)."""
    match = pattern.match(action["action_id"])
    assert match is not None
    return int(match.group(1))


async def _choice(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.click(iid, user, _index(CHOICE, action), channel, body.get("response_url"))


async def _comment(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.open_comment(iid, user, body["trigger_id"], channel, _index(COMMENT, action))


async def _form(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.open_comment(iid, user, body["trigger_id"], channel, _index(FORM, action))


async def _details(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.show_details(iid, user, channel)


async def _reason(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.open_comment(iid, user, body["trigger_id"], channel, None)


async def _withdraw(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.withdraw(iid, user, channel)


async def _escalate(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.escalate_now(iid, user, channel)


async def _grant(
    e: Engine, iid: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.open_grant(iid, user, body["trigger_id"], channel)


async def _revoke(
    e: Engine, grant_id: str, user: str, channel: str | None, body: Any, action: Any
) -> None:
    await e.revoke_grant(grant_id, user, channel, body.get("response_url"))


def _channel(body: dict[str, Any]) -> str:
    return (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
