"""`LocalSlack`: the aiohttp application, start/stop, and the programmatic API for tests.

One object owns one workspace: the Web API, callbacks, Socket Mode and the page's API are
all mounted on `web_app`, which exists from construction so a caller (the demo) can mount
the bot's own routes on the same port before `start()`.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from .callbacks import (
    ACK_TIMEOUT,
    EVENT_RETRY_DELAYS,
    Callbacks,
    Delivery,
    TriggerIds,
    find_button,
    sign,
)
from .model import APP_ID, Block, Conversation, Message, User, View, Workspace
from .persist import Persistence
from .socketmode import SocketMode
from .ui import HEARTBEAT_SECONDS, UiApi
from .webapi import Call, OutageMode, WebApi

T = TypeVar("T")

DEFAULT_COMMANDS = [
    {
        "command": "/deploy",
        "description": "Start a deploy that needs approval",
        "usage_hint": "[service] [version] [environment]",
    },
]


class LocalSlack:
    """A local Slack workspace the bot cannot tell from Slack (see README.md)."""

    def __init__(
        self,
        signing_secret: str,
        bot_token: str = "xoxb-local-0000000000-bottoken",
        app_token: str | None = "xapp-local-0000000000-apptoken",
        request_url: str | None = None,
        clock: Callable[[], float] = time.time,
        seed: bool = True,
        commands: list[dict[str, str]] | None = None,
        sse_heartbeat: float = HEARTBEAT_SECONDS,
        ack_timeout: float = ACK_TIMEOUT,
        state_path: Path | None = None,
        event_retry_delays: tuple[float, ...] = EVENT_RETRY_DELAYS,
    ) -> None:
        self.signing_secret = signing_secret
        self.bot_token = bot_token
        self.app_token = app_token
        self.request_url = request_url
        self.clock = clock
        self.commands: list[dict[str, str]] = list(
            DEFAULT_COMMANDS if commands is None else commands
        )
        self.model = Workspace(clock)
        if seed:
            self.model.seed()
        self.socket = SocketMode(APP_ID)
        self.triggers = TriggerIds(clock)
        self.callbacks = Callbacks(
            self.model,
            signing_secret,
            self.socket,
            self.triggers,
            request_url=lambda: self.request_url,
            base_url=lambda: self.url,
            ack_timeout=ack_timeout,
            event_retry_delays=event_retry_delays,
        )
        self.api = WebApi(
            self.model, self.triggers, self.socket, bot_token, app_token, lambda: self.url
        )
        self.ui = UiApi(self.model, self.callbacks, lambda: self.commands, sse_heartbeat)
        self.web_app = web.Application()
        self.web_app.add_routes(
            [
                web.route("*", "/api/{method}", self.api.handle),
                web.post("/response/{url_id:.+}", self.callbacks.handle_response_url),
                web.get("/socket", self.socket.handle),
                *self.ui.routes(),
            ]
        )
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._persistence = Persistence(self.model, state_path) if state_path else None
        self._loaded = False  # persistence loads once, not on every restart

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        """The aiohttp application (same object as `web_app`)."""
        return self.web_app

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (only after start())."""
        if self._url is None:
            raise RuntimeError("LocalSlack is not started")
        return self._url

    @property
    def api_url(self) -> str:
        """What AsyncWebClient(base_url=...) gets."""
        return self.url + "/api/"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = ephemeral) and return the base URL. After `stop` it may
        start again (the same port: a restart the page and the bot must ride out); the
        workspace state is kept."""
        if self._persistence:
            if not self._loaded:
                self._persistence.load()
                self._loaded = True
            self._persistence.start()
        self.ui.open()
        self._runner = web.AppRunner(self.web_app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self._url = f"http://{host}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Close streams, sockets and the server; never hangs on open connections."""
        self.api.close()
        if self._persistence and self._runner is not None:
            await self._persistence.stop()
        await self.ui.close()
        await self.socket.close()
        await self.callbacks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- lookups ---------------------------------------------------------------------------

    def user(self, ref: str) -> User:
        """A user by name or id; raises KeyError with the known names."""
        user = self.model.user(ref)
        if user is None:
            raise KeyError(
                f"no user {ref!r}; known: {sorted(u.name for u in self.model.users.values())}"
            )
        return user

    def conversation(self, ref: str) -> Conversation:
        """A conversation by `#name`, name, id, or a person (their DM)."""
        conv = self.model.conversation(ref)
        if conv is None:
            raise KeyError(f"no conversation {ref!r}")
        return conv

    # -- acting as people ------------------------------------------------------------------

    async def slash(
        self, user: str, command: str, text: str = "", channel: str = "#deploys"
    ) -> Delivery:
        """Run `/command text` as `user` in `channel`."""
        return await self.callbacks.command(
            self.user(user), self.conversation(channel), command, text
        )

    async def click(
        self,
        user: str,
        message_or_view: Message | View | str,
        button: str,
        value: str | None = None,
    ) -> Delivery:
        """Click a button (by visible text or action_id) on a message dict, a view or view id.
        `value` picks an option for selects."""
        person = self.user(user)
        target = message_or_view
        if isinstance(target, str) or "ts" not in target:
            view_id = target if isinstance(target, str) else target["id"]
            view = self.model.views.get(view_id)
            if view is None:
                raise KeyError(f"no view {view_id}")
            block_id, action_id = self._find(view.get("blocks", []), button)
            return await self.callbacks.action(
                person,
                block_id=block_id,
                action_id=action_id,
                view_id=view_id,
                value=value,
                state_values=view.get("state", {}).get("values"),
            )
        ts = target["ts"]
        eph = self.model.find_ephemeral(ts)
        current = (
            eph.message if eph else self.model.find_message(self.model.channel_of(ts) or "", ts)
        )
        if current is None:
            raise KeyError(f"no message {ts}")
        # Click the copy the caller holds: a stale client sends what it shows.
        shown = target if target.get("blocks") else current
        block_id, action_id = self._find(shown.get("blocks", []), button)
        return await self.callbacks.action(
            person,
            block_id=block_id,
            action_id=action_id,
            message_ts=ts,
            value=value,
            channel=eph.channel if eph else None,
            shown=shown,
        )

    @staticmethod
    def _find(blocks: list[Block], button: str) -> tuple[str, str]:
        found = find_button(blocks, button)
        if found is None:
            labels = [
                e["text"].get("text") if isinstance(e.get("text"), dict) else e.get("action_id")
                for b in blocks
                for e in [*(b.get("elements") or []), b.get("accessory") or {}]
                if isinstance(e, dict) and e.get("type")
            ]
            raise KeyError(f"no button {button!r}; there are {labels}")
        return found

    async def submit_modal(
        self, user: str, view_or_view_id: View | str, values: dict[str, Any]
    ) -> Delivery:
        """Submit a modal. `values` maps a block_id or action_id to text (or, already in
        Slack's `state.values` shape, block_id -> {action_id: {...}})."""
        person = self.user(user)
        view_id = view_or_view_id if isinstance(view_or_view_id, str) else view_or_view_id["id"]
        view = self.model.views.get(view_id)
        if view is None:
            raise KeyError(f"no open view {view_id}")
        return await self.callbacks.submit(person, view_id, _state_values(view, values))

    async def close_modal(self, user: str, view_or_view_id: View | str) -> Delivery | None:
        """Press Close on a modal (delivers view_closed if it asked for notify_on_close)."""
        view_id = view_or_view_id if isinstance(view_or_view_id, str) else view_or_view_id["id"]
        return await self.callbacks.close_view(self.user(user), view_id)

    async def open_home(self, user: str) -> Delivery:
        """Open the app's Home tab as a person: delivers `app_home_opened`."""
        return await self.callbacks.home_opened(self.user(user))

    def say(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> Message:
        """Post a plain message as a person (what typing in the page does)."""
        conv = self.conversation(channel)
        person = self.user(user)
        return copy.deepcopy(
            self.model.post(conv.id, self.model.user_message(person.id, text), thread_ts)
        )

    async def type_message(
        self, user: str, channel: str, text: str, thread_ts: str | None = None
    ) -> tuple[Message, Delivery | None]:
        """Post a message as a person, as the page does (``text`` as Slack's client sends
        it: ``<@U0BOT> approve``), and deliver the event Slack sends the app for it: an
        `app_mention` when it mentions the bot where the bot is a member (None: no event)."""
        conv = self.conversation(channel)
        person = self.user(user)
        message = self.model.post(conv.id, self.model.user_message(person.id, text), thread_ts)
        delivery = await self.callbacks.mentioned(person, conv, message)
        return copy.deepcopy(message), delivery

    async def deliver_raw(
        self, body: bytes | str, content_type: str, headers: dict[str, str] | None = None
    ) -> Delivery:
        """POST any body to the request URL; `headers=None` signs it, a dict is used as is."""
        return await self.callbacks.deliver_raw(body, content_type, headers)

    def sign(self, body: bytes, timestamp: int) -> dict[str, str]:
        """Slack's signature headers for a body."""
        return sign(self.signing_secret, body, timestamp)

    # -- reading state ---------------------------------------------------------------------

    def messages(self, channel: str, *, user: str | None = None) -> list[Message]:
        """Top-level messages, oldest first; with `user`, their ephemerals too."""
        conv = self.conversation(channel)
        found = list(self.model.top_level(conv.id))
        if user is not None:
            found += [
                m
                for m in self.model.ephemerals_for(self.user(user).id, conv.id)
                if not m.get("thread_ts")
            ]
            found.sort(key=lambda m: m["ts"])
        return copy.deepcopy(found)

    def replies(self, channel: str, ts: str) -> list[Message]:
        """The parent then its replies."""
        return copy.deepcopy(self.model.thread(self.conversation(channel).id, ts))

    def ephemerals(self, user: str, channel: str | None = None) -> list[Message]:
        """Ephemerals shown to a person (each carries `channel`)."""
        conv_id = self.conversation(channel).id if channel else None
        return copy.deepcopy(self.model.ephemerals_for(self.user(user).id, conv_id))

    def open_views(self, user: str) -> list[View]:
        """A person's open modals, root first."""
        return copy.deepcopy(self.model.open_views(self.user(user).id))

    def home(self, user: str) -> View | None:
        """A person's published App Home view."""
        return copy.deepcopy(self.model.home(self.user(user).id))

    @property
    def calls(self) -> list[Call]:
        """Every Web API call, in order."""
        return self.api.calls

    def calls_to(self, method: str) -> list[Call]:
        """Recorded calls of one method."""
        return [c for c in self.api.calls if c.method == method]

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        """Every Socket Mode envelope pushed."""
        return self.socket.envelopes

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109 (the tests' API; polling, not I/O)
        interval: float = 0.01,
        message: str | None = None,
    ) -> T:
        """Poll a sync predicate until it returns something truthy, and return that."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if loop.time() >= deadline:
                name = getattr(predicate, "__name__", repr(predicate))
                recent = [f"{c.method}->{c.response.get('error') or 'ok'}" for c in self.calls[-5:]]
                raise TimeoutError(
                    f"{message or name} still false after {timeout}s "
                    f"(last value {value!r}; last Web API calls {recent})"
                )
            await asyncio.sleep(interval)

    # -- failure injection -----------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        error: str | None = None,
        *,
        non_json: bool = False,
        body: str | None = None,
        content_type: str = "text/html",
    ) -> None:
        """The next `times` calls to `method` fail, not applied: 429 ratelimited
        (+Retry-After), 5xx, or `status=200, error="message_not_found"` for any Slack error
        code as `ok: false`. `non_json=True` answers a load balancer's HTML page instead of
        JSON; `body` sends that text verbatim as `content_type`."""
        self.api.fail_next(
            method,
            status,
            retry_after,
            times,
            error,
            non_json=non_json,
            body=body,
            content_type=content_type,
        )

    def reset_next(
        self, method: str, *, after: bool = False, times: int = 1, rst: bool = True
    ) -> None:
        """The next `times` calls to `method` get no answer: the connection is reset.
        `after=True` applies the call first (the answer is lost; a retry duplicates it).
        `rst=False` closes the connection cleanly instead of a TCP reset."""
        self.api.reset_next(method, after=after, times=times, rst=rst)

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls to `method` are answered after `seconds` of real time and
        applied only then, even when the client timed out meanwhile (see WebApi.delay_next)."""
        self.api.delay_next(method, seconds, times=times)

    def outage(self, seconds: float | None = None, mode: OutageMode = "hang") -> None:
        """Every Web API method is down for `seconds` (None: until `release()`/`end_outage()`).
        mode "hang": calls wait, then go through when it ends; "error": a non-JSON 503;
        "reset": the connection is dropped. Error and reset calls are not applied."""
        self.api.outage(seconds, mode)

    def hold_all(self, seconds: float | None = None) -> None:
        """Park every Web API call for `seconds` or until `release()`: `outage(mode="hang")`."""
        self.api.outage(seconds, "hang")

    def end_outage(self) -> None:
        """End an outage now (parked calls go through)."""
        self.api.end_outage()

    @property
    def in_outage(self) -> bool:
        """Whether an outage is on (it ends by its timer, `end_outage` or `release()`)."""
        return self.api.in_outage

    def hold(self, method: str) -> None:
        """Park calls of a Web API method until `release` (see WebApi.hold)."""
        self.api.hold(method)

    def release(self, method: str | None = None) -> None:
        """Let parked calls of `method` through; None: every method, and end any outage."""
        self.api.release(method)

    def holding(self, method: str) -> int:
        """How many calls of `method` are parked right now (hold, outage, delay_next)."""
        return self.api.holding.get(method, 0)

    def faults(self, method: str | None = None) -> list[Call]:
        """Recorded calls that got an injected fault (see Call.fault), of one method or all."""
        return [c for c in self.api.calls if c.fault and method in (None, c.method)]

    def set_rate_limits(self, enabled: bool, methods: Iterable[str] | None = None) -> None:
        """Turn Slack's per-method tier limits on or off (off by default), for every method
        or only the ones named."""
        self.api.limiter.enabled = enabled
        self.api.limiter.methods = None if methods is None else frozenset(methods)
        self.api.limiter.buckets.clear()


def _state_values(view: View, values: dict[str, Any]) -> dict[str, Any]:
    """Turn `{block_id_or_action_id: "text"}` into Slack's `state.values` for this view. As
    in Slack, every input the person did not touch is there too, holding its initial value
    (or nothing)."""
    state: dict[str, Any] = {}
    for block in view.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") == "input" and block.get("block_id"):
            state.setdefault(block["block_id"], {})[element.get("action_id")] = _initial_state(
                element
            )
    for key, value in values.items():
        if isinstance(value, dict):
            state[key] = value
            continue
        for block in view.get("blocks", []):
            element = block.get("element") or {}
            if block.get("type") == "input" and key in (
                block.get("block_id"),
                element.get("action_id"),
            ):
                state.setdefault(block["block_id"], {})[element.get("action_id")] = _element_state(
                    element, value
                )
                break
        else:
            raise KeyError(f"no input {key!r} in view {view['id']}")
    return state


def _initial_state(element: dict[str, Any]) -> dict[str, Any]:
    """An untouched input's state: what it was opened with."""
    kind = element.get("type", "plain_text_input")
    if kind in ("static_select", "radio_buttons"):
        return {"type": kind, "selected_option": element.get("initial_option")}
    if kind in ("checkboxes", "multi_static_select"):
        return {"type": kind, "selected_options": list(element.get("initial_options") or [])}
    return {"type": kind, "value": element.get("initial_value")}


def _element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    """One input's state as Slack sends it. A select or radio takes an option's value (or its
    visible text); checkboxes take a list of those (or a bool for a single box); a number
    input's value is the text typed, as Slack sends it."""
    kind = element.get("type", "plain_text_input")
    options = element.get("options", [])

    def option(v: Any) -> dict[str, Any] | None:
        return next(
            (o for o in options if v in (o.get("value"), (o.get("text") or {}).get("text"))), None
        )

    if kind in ("static_select", "radio_buttons"):
        return {"type": kind, "selected_option": option(value)}
    if kind == "checkboxes":
        picked = options[:1] if value is True else [] if value is False else value
        chosen = [o for o in (option(v) if not isinstance(v, dict) else v for v in picked) if o]
        return {"type": kind, "selected_options": chosen}
    if kind == "number_input" and value is not None:
        return {"type": kind, "value": str(value)}
    return {"type": kind, "value": value}
