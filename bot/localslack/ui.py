"""The JSON + server-sent-events API the browser page uses (`/ui/...`, see README).

The page acts as one person at a time (`user`); everything it may see is filtered here the
way Slack's client would show it: ephemerals and views only to their person, channel
events only to members.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .callbacks import Callbacks, Delivery
from .model import (
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    TEAM_NAME,
    Conversation,
    Event,
    User,
    Workspace,
)

HEARTBEAT_SECONDS = 15.0
STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class _Subscriber:
    """One open event stream of the browser UI: whose eyes it is for (ephemerals and modals
    are one person's) and the events queued for it until the stream sends them."""

    user: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


class UiApi:
    """Routes under /ui/ and the fan-out of workspace events to open streams."""

    def __init__(
        self,
        model: Workspace,
        callbacks: Callbacks,
        commands: Callable[[], list[dict[str, str]]],
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.model = model
        self.callbacks = callbacks
        self.commands = commands
        self.heartbeat = heartbeat
        self._subscribers: list[_Subscriber] = []
        self._closing = False
        model.listeners.append(self._on_event)

    def routes(self) -> list[web.AbstractRouteDef]:
        """The page itself (`/`, `/static/...`) and the README's table."""
        page: list[web.AbstractRouteDef] = []
        if STATIC_DIR.is_dir():
            page = [web.get("/", self.index), web.static("/static", STATIC_DIR)]
        return [
            *page,
            web.get("/ui/bootstrap", self.bootstrap),
            web.get("/ui/history", self.history),
            web.get("/ui/replies", self.replies),
            web.get("/ui/home", self.home),
            web.get("/ui/events", self.events),
            web.post("/ui/message", self.message),
            web.post("/ui/action", self.action),
            web.post("/ui/submit", self.submit),
            web.post("/ui/close", self.close_view),
        ]

    def open(self) -> None:
        """Accept streams again (a workspace restarted after `close`)."""
        self._closing = False

    async def close(self) -> None:
        """End every open stream so the server can stop without waiting on them."""
        self._closing = True
        for sub in self._subscribers:
            sub.queue.put_nowait(None)

    # -- fan-out ---------------------------------------------------------------------------

    def _visible(self, event: Event, to_user: str | None, user: str) -> bool:
        if to_user is not None:
            return to_user == user
        conv = self.model.conversations.get(event.get("channel", ""))
        return conv is None or user in conv.members

    def _on_event(self, event: Event, to_user: str | None) -> None:
        for sub in self._subscribers:
            if self._visible(event, to_user, sub.user):
                sub.queue.put_nowait(event)

    # -- helpers ---------------------------------------------------------------------------

    def _user(self, ref: Any) -> User:
        user = self.model.user(str(ref or ""))
        if user is None or user.is_bot:
            raise web.HTTPNotFound(
                text=json.dumps({"ok": False, "error": "user_not_found"}),
                content_type="application/json",
            )
        return user

    def _conversation(self, ref: Any, user: User) -> Conversation:
        conv = self.model.conversation(str(ref or ""))
        if conv is None or user.id not in conv.members:
            raise web.HTTPNotFound(
                text=json.dumps({"ok": False, "error": "channel_not_found"}),
                content_type="application/json",
            )
        return conv

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"ok": False, "error": "invalid_json"}),
                content_type="application/json",
            )
        return body

    # -- reads -----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.FileResponse:
        """The browser page."""
        return web.FileResponse(STATIC_DIR / "index.html")

    async def bootstrap(self, request: web.Request) -> web.Response:
        """Who is here, what commands exist, which conversations there are."""
        conversations = []
        for conv in self.model.conversations.values():
            entry: dict[str, Any] = {
                "id": conv.id,
                "name": conv.name,
                "is_im": conv.is_im,
                "is_channel": not conv.is_im,
                "members": list(conv.members),
            }
            if conv.is_im:
                entry["user"] = conv.user
            conversations.append(entry)
        return web.json_response(
            {
                "team": {"id": TEAM_ID, "name": TEAM_NAME, "domain": TEAM_DOMAIN},
                "bot_user_id": BOT_USER_ID,
                "users": [
                    {"id": u.id, "name": u.name, "real_name": u.real_name, "is_bot": u.is_bot}
                    for u in self.model.users.values()
                ],
                "commands": self.commands(),
                "conversations": conversations,
            }
        )

    async def history(self, request: web.Request) -> web.Response:
        """Top-level messages of a channel plus that person's ephemerals, oldest first."""
        user = self._user(request.query.get("user"))
        conv = self._conversation(request.query.get("channel"), user)
        messages = self.model.top_level(conv.id) + [
            m for m in self.model.ephemerals_for(user.id, conv.id) if not m.get("thread_ts")
        ]
        messages.sort(key=lambda m: m["ts"])
        return web.json_response({"messages": messages})

    async def replies(self, request: web.Request) -> web.Response:
        """The parent then its replies (and that person's ephemerals in the thread)."""
        user = self._user(request.query.get("user"))
        conv = self._conversation(request.query.get("channel"), user)
        ts = request.query.get("ts", "")
        thread = self.model.thread(conv.id, ts)
        if thread:
            thread += [
                m for m in self.model.ephemerals_for(user.id, conv.id) if m.get("thread_ts") == ts
            ]
            thread = [thread[0], *sorted(thread[1:], key=lambda m: m["ts"])]
        return web.json_response({"messages": thread})

    async def home(self, request: web.Request) -> web.Response:
        """That person's published App Home, or null. Opening the tab is also what makes
        Slack send `app_home_opened`, so the app hears of it here (skip with `opened=0`)."""
        user = self._user(request.query.get("user"))
        if request.query.get("opened", "1") != "0" and self.callbacks.can_deliver:
            await self.callbacks.home_opened(user)
        return web.json_response({"view": self.model.home(user.id)})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """text/event-stream of workspace changes that person can see; comment heartbeats."""
        user = self._user(request.query.get("user"))
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        sub = _Subscriber(user.id)
        self._subscribers.append(sub)
        try:
            await resp.write(b": connected\n\n")
            while not self._closing:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), self.heartbeat)
                except TimeoutError:
                    await resp.write(b": heartbeat\n\n")
                    continue
                if event is None:
                    break
                await resp.write(f"data: {json.dumps(event)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.remove(sub)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    # -- actions ---------------------------------------------------------------------------

    async def message(self, request: web.Request) -> web.Response:
        """A typed message, or a slash command when it starts with `/`."""
        body = await self._body(request)
        user = self._user(body.get("user"))
        conv = self._conversation(body.get("channel"), user)
        text = str(body.get("text") or "")
        if text.startswith("/"):
            command, _, args = text.partition(" ")
            known = {c["command"] for c in self.commands()}
            if command not in known:
                self.model.notice(user.id, f"{command} is not a valid command.")
                return web.json_response({"ok": False, "error": "invalid_command"})
            delivery = await self.callbacks.command(user, conv, command, args.strip())
            return web.json_response(_result(delivery))
        if not text.strip():
            return web.json_response({"ok": False, "error": "no_text"})
        thread_ts = body.get("thread_ts") or None
        message = self.model.post(conv.id, self.model.user_message(user.id, text), thread_ts)
        if self.callbacks.can_deliver:  # an `app_mention` when it mentions the bot
            await self.callbacks.mentioned(user, conv, message)
        return web.json_response({"ok": True})

    async def action(self, request: web.Request) -> web.Response:
        """A click on a button (or a choice in a select) in a message or a view."""
        body = await self._body(request)
        user = self._user(body.get("user"))
        try:
            delivery = await self.callbacks.action(
                user,
                block_id=str(body.get("block_id") or ""),
                action_id=str(body.get("action_id") or ""),
                channel=body.get("channel"),
                message_ts=body.get("message_ts"),
                view_id=body.get("view_id"),
                value=body.get("value"),
                state_values=body.get("values"),
            )
        except LookupError as e:
            return web.json_response({"ok": False, "error": "not_found", "detail": str(e)})
        return web.json_response(_result(delivery))

    async def submit(self, request: web.Request) -> web.Response:
        """A modal's Submit: `{ok, errors?}` with the app's (or Slack's) field errors."""
        body = await self._body(request)
        user = self._user(body.get("user"))
        try:
            delivery = await self.callbacks.submit(
                user, str(body.get("view_id") or ""), body.get("values") or {}
            )
        except LookupError as e:
            return web.json_response({"ok": False, "error": "not_found", "detail": str(e)})
        result = _result(delivery)
        if delivery.errors:
            result["errors"] = delivery.errors
        return web.json_response(result)

    async def close_view(self, request: web.Request) -> web.Response:
        """A modal's Close (or the X)."""
        body = await self._body(request)
        user = self._user(body.get("user"))
        try:
            await self.callbacks.close_view(user, str(body.get("view_id") or ""))
        except LookupError as e:
            return web.json_response({"ok": False, "error": "not_found", "detail": str(e)})
        return web.json_response({"ok": True})


def _result(delivery: Delivery) -> dict[str, Any]:
    """`{ok}` when the app acked in time, else `{ok: false, error}` as Slack would word it."""
    if delivery.ok:
        return {"ok": True}
    return {"ok": False, "error": delivery.error or "http_service_error"}
