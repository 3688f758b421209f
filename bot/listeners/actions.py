"""Button clicks on approval messages (in the channel or an escalation DM): ack at once, act
in a task."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import (
    ACTION_CHOICE,
    ACTION_COMMENT,
    ACTION_DETAILS,
    ACTION_ESCALATE,
    ACTION_FORM,
    ACTION_REASON,
    ACTION_WITHDRAW,
)
from bot.deps import Deps
from bot.messages import NOT_RECORDED

CHOICE = re.compile(rf"^{re.escape(ACTION_CHOICE)}(\d+)$")
COMMENT = re.compile(rf"^{re.escape(ACTION_COMMENT)}(\d+)$")
FORM = re.compile(rf"^{re.escape(ACTION_FORM)}(\d+)$")


def register(app: AsyncApp, deps: Deps) -> None:
    engine = deps.engine

    def on(
        name: str,
        work: Callable[[str, str, str | None, dict[str, Any], dict[str, Any]], Awaitable[None]],
    ) -> Callable[..., Awaitable[None]]:
        async def listener(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            interrupt_id, user = str(action.get("value", "")), body["user"]["id"]
            channel = _channel(body) or None  # None: clicked in the App Home

            async def act() -> None:
                clicked = work(interrupt_id, user, channel, body, action)
                url = body.get("response_url")
                recorded = await engine.for_person(
                    clicked, user, channel, url, NOT_RECORDED["click"]
                )
                if recorded and channel is None:
                    await engine.publish_home(user)  # the Home is the answer there

            deps.tasks.spawn(act(), f"{name} by {user}")

        return listener

    async def choice(iid: str, user: str, channel: str | None, body: Any, action: Any) -> None:
        match = CHOICE.match(action["action_id"])
        assert match is not None  # the listener's matcher guarantees it
        await engine.click(iid, user, int(match.group(1)), channel, body.get("response_url"))

    async def comment(iid: str, user: str, channel: str | None, body: Any, action: Any) -> None:
        match = COMMENT.match(action["action_id"])
        assert match is not None
        await engine.open_comment(iid, user, body["trigger_id"], channel, int(match.group(1)))

    async def form(iid: str, user: str, channel: str | None, body: Any, action: Any) -> None:
        match = FORM.match(action["action_id"])
        assert match is not None
        await engine.open_comment(iid, user, body["trigger_id"], channel, int(match.group(1)))

    async def details(iid: str, user: str, channel: str | None, body: Any, action: Any) -> None:
        await engine.show_details(iid, user, channel)

    async def reason(iid: str, user: str, channel: str | None, body: Any, action: Any) -> None:
        await engine.open_comment(iid, user, body["trigger_id"], channel, None)

    async def withdraw(iid: str, user: str, channel: str | None, body: Any, action: Any) -> None:
        await engine.withdraw(iid, user, channel)

    async def escalate(iid: str, user: str, channel: str | None, body: Any, action: Any) -> None:
        await engine.escalate_now(iid, user, channel)

    app.action(CHOICE)(on("click", choice))
    app.action(COMMENT)(on("comment modal", comment))
    app.action(FORM)(on("form modal", form))
    app.action(ACTION_DETAILS)(on("details", details))
    app.action(ACTION_REASON)(on("reason modal", reason))
    app.action(ACTION_WITHDRAW)(on("withdraw", withdraw))
    app.action(ACTION_ESCALATE)(on("escalate now", escalate))


def _channel(body: dict[str, Any]) -> str:
    return (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
