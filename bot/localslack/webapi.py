"""The Web API stand-in: `/api/<method>` with Slack's auth, shapes, errors and rate limits.

Handlers are small functions over the model. Every call is recorded (tests assert on them),
and failures can be injected per method to exercise the bot's retry paths: error answers
(JSON or a proxy's HTML page), dropped connections before or after the call is applied,
slow answers, and whole-workspace outages. Injected faults are marked on the recorded call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web

from bot.jsontypes import JSONObject

from .blockkit import normalize_blocks, validate_blocks, validate_view
from .callbacks import TriggerIds
from .model import (
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_ID,
    TEAM_NAME,
    Conversation,
    Workspace,
)
from .socketmode import SocketMode

MAX_TEXT = 40_000
Args = dict[str, Any]
OutageMode = Literal["hang", "error", "reset"]

# Requests per minute per tier; chat.postMessage is per channel (see RateLimiter).
TIERS = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIERS = {
    "auth.test": 4,
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "chat.getPermalink": 4,
    "views.open": 4,
    "views.update": 4,
    "views.push": 4,
    "views.publish": 4,
    "conversations.open": 3,
    "conversations.info": 3,
    "conversations.members": 4,
    "conversations.replies": 3,
    "conversations.history": 3,
    "users.info": 4,
    "users.list": 2,
    "usergroups.list": 2,
    "usergroups.users.list": 2,
}
POST_MESSAGE_PER_SECOND = 1.0
POST_MESSAGE_BURST = 5


class SlackError(Exception):
    """An `ok: false` answer with Slack's error code and any extra fields."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Call:
    """One recorded Web API call.

    `status` is the HTTP status the client got, 0 when the connection was dropped without an
    answer; `response` is the JSON that was (or, for a non-JSON body or a dropped answer,
    would have been) sent. `fault` names what was injected, None for an ordinary call:
    "answer" (fail_next's JSON answer), "non_json", "reset_before", "reset_after", "delay",
    "held" (parked by hold), "outage_hang", "outage_error", "outage_reset".
    """

    method: str
    args: Args
    response: dict[str, Any]
    status: int
    time: float
    fault: str | None = None


@dataclass
class _Failure:
    """One injected fault for the next `times` calls of a method.

    kind: "answer" (status + JSON or `body`), "reset" (drop the connection; `after` applies
    the call first), "delay" (answer after `seconds`)."""

    kind: Literal["answer", "reset", "delay"]
    times: int
    status: int = 200
    retry_after: int = 1
    error: str | None = None
    body: str | None = None  # not None: sent verbatim instead of JSON
    content_type: str = "text/html"
    after: bool = False
    rst: bool = True
    seconds: float = 0.0
    label: str | None = None  # the recorded fault marker, when not derived from kind


@dataclass
class _Outage:
    """Slack is down for every method until `over` is set (by a timer or release())."""

    mode: OutageMode
    over: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Bucket:
    """One token bucket: refilled by the time since ``updated``, so Slack's tiers (calls per
    minute, with a burst) are enforced without a timer."""

    capacity: float
    per_second: float
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token buckets per method (and per channel for chat.postMessage) on the workspace clock."""

    clock: Callable[[], float]
    enabled: bool = False
    methods: frozenset[str] | None = None  # None: every method with a tier
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, method: str, channel: str = "") -> int | None:
        """None when allowed, else the Retry-After seconds."""
        if not self.enabled or (self.methods is not None and method not in self.methods):
            return None
        if method == "chat.postMessage":
            key = f"{method}:{channel}"
            capacity, rate = POST_MESSAGE_BURST, POST_MESSAGE_PER_SECOND
        elif method in METHOD_TIERS:
            key = method
            per_minute = TIERS[METHOD_TIERS[method]]
            capacity, rate = per_minute, per_minute / 60
        else:
            return None
        now = self.clock()
        bucket = self.buckets.setdefault(key, _Bucket(capacity, rate, capacity, now))
        bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / rate))


class WebApi:
    """The `/api/<method>` endpoint."""

    def __init__(
        self,
        model: Workspace,
        triggers: TriggerIds,
        socket: SocketMode,
        bot_token: str,
        app_token: str | None,
        base_url: Callable[[], str],
    ) -> None:
        self.model = model
        self.triggers = triggers
        self.socket = socket
        self.bot_token = bot_token
        self.app_token = app_token
        self.base_url = base_url
        self.calls: list[Call] = []
        self.limiter = RateLimiter(model.clock)
        self._failures: dict[str, list[_Failure]] = {}
        self._held: dict[str, asyncio.Event] = {}
        self.holding: dict[str, int] = {}  # method -> calls parked (hold, outage, delay)
        self._outage: _Outage | None = None
        self._wake = asyncio.Event()  # set by close(): cut delays short on shutdown
        self._methods: dict[str, Callable[[Args], JSONObject]] = {
            "api.test": lambda args: {"args": args},
            "auth.test": self.auth_test,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.postEphemeral": self.chat_post_ephemeral,
            "chat.delete": self.chat_delete,
            "chat.getPermalink": self.chat_get_permalink,
            "views.open": self.views_open,
            "views.push": self.views_push,
            "views.update": self.views_update,
            "views.publish": self.views_publish,
            "conversations.open": self.conversations_open,
            "conversations.info": self.conversations_info,
            "conversations.members": self.conversations_members,
            "conversations.replies": self.conversations_replies,
            "conversations.history": self.conversations_history,
            "users.info": self.users_info,
            "users.list": self.users_list,
            "usergroups.list": self.usergroups_list,
            "usergroups.users.list": self.usergroups_users_list,
        }

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
        """Make the next `times` calls of `method` fail without being applied: 429 ratelimited
        (+Retry-After), a 5xx, or `status=200, error="message_not_found"` (any Slack error
        code as `ok: false`). `non_json` answers a proxy's HTML page instead of JSON
        (`<html><body>Bad Gateway</body></html>`); `body` sends that text verbatim with
        `content_type`."""
        if non_json and body is None:
            body = error_page(status)
        self._add(
            method,
            _Failure(
                "answer", times, status, retry_after, error, body=body, content_type=content_type
            ),
        )

    def reset_next(
        self, method: str, *, after: bool = False, times: int = 1, rst: bool = True
    ) -> None:
        """Drop the connection of the next `times` calls of `method` without an HTTP answer.
        `after=False`: before handling (nothing applied); `after=True`: the call IS applied and
        recorded, only the answer is lost. `rst` sends a TCP reset (the client sees
        ClientOSError ECONNRESET); `rst=False` closes cleanly (ServerDisconnectedError)."""
        self._add(method, _Failure("reset", times, after=after, rst=rst))

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next `times` calls of `method` after `seconds` (real time). The call is
        applied AFTER the delay, as a Slack slow to process would, even when the client gave
        up meanwhile; it is recorded then (and counted in `holding` while it waits)."""
        self._add(method, _Failure("delay", times, seconds=seconds))

    def _add(self, method: str, failure: _Failure) -> None:
        self._failures.setdefault(method, []).append(failure)

    def outage(self, seconds: float | None = None, mode: OutageMode = "hang") -> None:
        """Take every Web API method down for `seconds` of real time (None: until `release`).
        "hang" parks each call until the outage ends, then applies it; "error" answers a
        non-JSON 503 page, "reset" drops the connection; neither applies the call.
        Call from within the event loop (the end is a loop timer)."""
        current = self._outage
        if current is None or current.over.is_set():
            current = self._outage = _Outage(mode)
        current.mode = mode
        if current.timer is not None:
            current.timer.cancel()
            current.timer = None
        if seconds is not None:
            current.timer = asyncio.get_running_loop().call_later(seconds, self.end_outage)

    def end_outage(self) -> None:
        """Slack is back: calls parked by a "hang" outage go through."""
        current, self._outage = self._outage, None
        if current is not None:
            if current.timer is not None:
                current.timer.cancel()
            current.over.set()

    @property
    def in_outage(self) -> bool:
        """Whether an outage is on."""
        return self._outage is not None

    def close(self) -> None:
        """Shutdown: end the outage, let parked calls go and cut delays short."""
        self.release()
        self._wake.set()
        self._wake = asyncio.Event()

    # -- the endpoint ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """POST (or GET) /api/<method>: park (outage, hold), read, then either an injected
        fault or the real answer; every call is recorded, faults with their marker."""
        method = request.match_info["method"]
        marker = await self._park(method)
        args = await _read_args(request)
        token = _bearer(request) or args.pop("token", None)
        args.pop("token", None)
        failure = self._outage_failure() or self._take_failure(method)
        if failure is not None and failure.kind == "delay":
            await self._sleep(method, failure.seconds)
            failure, marker = None, "delay"
        if failure is not None and failure.kind == "answer":
            status, headers, response = _failure_answer(failure)
            self._record(method, args, response, status, failure.label or _label(failure))
            if failure.body is None:
                return web.json_response(response, status=status, headers=headers)
            return web.Response(
                status=status, headers=headers, text=failure.body, content_type=failure.content_type
            )
        if failure is not None and not failure.after:
            self._record(method, args, {}, 0, failure.label or "reset_before")
            return _drop(request, failure.rst)
        status, headers, response = self._answer(method, args, token, request.host)
        if failure is not None:
            self._record(method, args, response, 0, "reset_after")
            return _drop(request, failure.rst)
        self._record(method, args, response, status, marker)
        return web.json_response(response, status=status, headers=headers)

    def _record(
        self, method: str, args: Args, response: dict[str, Any], status: int, fault: str | None
    ) -> None:
        self.calls.append(Call(method, args, response, status, self.model.clock(), fault))

    async def _park(self, method: str) -> str | None:
        """Wait out a "hang" outage and then any hold() on the method; the marker, if parked."""
        marker = None
        outage = self._outage
        if outage is not None and outage.mode == "hang":
            await self._parked(method, outage.over.wait())
            marker = "outage_hang"
        if gate := self._held.get(method):
            await self._parked(method, gate.wait())
            marker = marker or "held"
        return marker

    async def _parked(self, method: str, waiting: Awaitable[object]) -> None:
        """Await `waiting`, counted in `holding[method]` meanwhile."""
        self.holding[method] = self.holding.get(method, 0) + 1
        try:
            await waiting
        finally:
            self.holding[method] -= 1

    async def _sleep(self, method: str, seconds: float) -> None:
        """A delay in real seconds, cut short only by close()."""
        with contextlib.suppress(TimeoutError):
            await self._parked(method, asyncio.wait_for(self._wake.wait(), seconds))

    def _outage_failure(self) -> _Failure | None:
        """The fault an "error" or "reset" outage injects into every call."""
        outage = self._outage
        if outage is None or outage.mode == "hang":
            return None
        if outage.mode == "reset":
            return _Failure("reset", 1, label="outage_reset")
        return _Failure("answer", 1, 503, body=error_page(503), label="outage_error")

    def hold(self, method: str) -> None:
        """Park every call of `method` until `release`: a slow Slack, or a window in which
        a test can kill the app mid-call."""
        self._held.setdefault(method, asyncio.Event())

    def release(self, method: str | None = None) -> None:
        """Let parked calls of `method` through; None: of every method, and end any outage."""
        if method is None:
            self.end_outage()
        for name in [method] if method else list(self._held):
            gate = self._held.pop(name, None)
            if gate:
                gate.set()

    def _answer(
        self, method: str, args: Args, token: str | None, host: str
    ) -> tuple[int, dict[str, str], JSONObject]:
        if method != "api.test" and (auth_error := self._auth_error(method, token)):
            return 200, {}, {"ok": False, "error": auth_error}
        if method not in self._methods and method != "apps.connections.open":
            return 200, {}, {"ok": False, "error": "unknown_method", "req_method": method}
        conv = self.model.conversation(args.get("channel"))
        retry_after = self.limiter.check(method, conv.id if conv else "")
        if retry_after is not None:
            return 429, {"Retry-After": str(retry_after)}, {"ok": False, "error": "ratelimited"}
        result: JSONObject
        try:
            if method == "apps.connections.open":
                result = {"url": self.socket.issue_url(host)}
            else:
                result = self._methods[method](args)
        except SlackError as e:
            return 200, {}, {"ok": False, "error": e.error, **e.extra}
        return 200, {}, {"ok": True, **result}

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if method == "apps.connections.open":
            if token.startswith("xapp-") and token == self.app_token:
                return None
            return "not_allowed_token_type" if token == self.bot_token else "invalid_auth"
        if token == self.bot_token:
            return None
        return "not_allowed_token_type" if token == self.app_token else "invalid_auth"

    # -- helpers ---------------------------------------------------------------------------

    def _conversation(self, args: Args, key: str = "channel") -> Conversation:
        conv = self.model.conversation(args.get(key))
        if conv is None:
            raise SlackError("channel_not_found")
        return conv

    def _member_conversation(self, args: Args) -> Conversation:
        conv = self._conversation(args)
        if BOT_USER_ID not in conv.members:
            raise SlackError("not_in_channel")
        return conv

    def _content(self, args: Args, required: bool = True) -> tuple[str | None, list[Any] | None]:
        """text and blocks, checked the way chat.postMessage/chat.update check them."""
        text = args.get("text")
        blocks = _json_arg(args, "blocks")
        if blocks is not None:
            errors = validate_blocks(blocks)
            if errors:
                raise SlackError(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )
            blocks = normalize_blocks(blocks)
        if required and not text and not blocks and not args.get("attachments"):
            raise SlackError("no_text")
        if text is not None and len(str(text)) > MAX_TEXT:
            raise SlackError("msg_too_long")
        return (None if text is None else str(text)), blocks

    def _view_arg(self, args: Args, kind: str | None = None) -> JSONObject:
        view = _json_arg(args, "view")
        if not isinstance(view, dict):
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] missing required field: view"]},
            )
        errors = validate_view(view)
        if kind and view.get("type") != kind:
            errors.insert(0, "must be a valid enum value [json-pointer:/view/type]")
        if errors:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
        return {**view, "blocks": normalize_blocks(view.get("blocks", []))}

    # -- methods ---------------------------------------------------------------------------

    def auth_test(self, args: Args) -> JSONObject:
        return {
            "url": f"{self.base_url()}/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "is_enterprise_install": False,
        }

    def chat_post_message(self, args: Args) -> JSONObject:
        conv = self._member_conversation(args)
        text, blocks = self._content(args)
        message = self.model.bot_message(text or "", blocks)
        message = self.model.post(
            conv.id, message, args.get("thread_ts") or None, _flag(args.get("reply_broadcast"))
        )
        return {"channel": conv.id, "ts": message["ts"], "message": message}

    def chat_update(self, args: Args) -> JSONObject:
        conv = self._conversation(args)
        text, blocks = self._content(args)
        message = self.model.find_message(conv.id, args.get("ts"))
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != BOT_ID:
            raise SlackError("cant_update_message")
        message = self.model.update(conv.id, message["ts"], text, blocks, BOT_USER_ID)
        return {
            "channel": conv.id,
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": message,
        }

    def chat_post_ephemeral(self, args: Args) -> JSONObject:
        conv = self._member_conversation(args)
        user = self.model.user(args.get("user"))
        if user is None:
            raise SlackError("user_not_found")
        if user.id not in conv.members:
            raise SlackError("user_not_in_channel")
        text, blocks = self._content(args)
        message = self.model.bot_message(text or "", blocks)
        message = self.model.post_ephemeral(conv.id, user.id, message, args.get("thread_ts"))
        return {"message_ts": message["ts"]}

    def chat_delete(self, args: Args) -> JSONObject:
        conv = self._conversation(args)
        message = self.model.find_message(conv.id, args.get("ts"))
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != BOT_ID:
            raise SlackError("cant_delete_message")
        self.model.delete(conv.id, message["ts"])
        return {"channel": conv.id, "ts": message["ts"]}

    def chat_get_permalink(self, args: Args) -> JSONObject:
        conv = self._conversation(args)
        ts = args.get("message_ts")
        if self.model.find_message(conv.id, ts) is None:
            raise SlackError("message_not_found")
        link = f"{self.base_url()}/archives/{conv.id}/p{str(ts).replace('.', '')}"
        return {"channel": conv.id, "permalink": link}

    def views_open(self, args: Args) -> JSONObject:
        view = self._view_arg(args, "modal")
        user_id, error = self.triggers.exchange(args.get("trigger_id"))
        if error:
            raise SlackError(error)
        return {"view": self.model.open_modal(user_id or "", view)}

    def views_push(self, args: Args) -> JSONObject:
        view = self._view_arg(args, "modal")
        user_id, error = self.triggers.exchange(args.get("trigger_id"))
        if error:
            raise SlackError(error)
        try:
            return {"view": self.model.push_modal(user_id or "", view)}
        except OverflowError as e:
            raise SlackError("push_limit_reached") from e

    def views_update(self, args: Args) -> JSONObject:
        if args.get("view_id"):
            current = self.model.views.get(args["view_id"])
        elif args.get("external_id"):
            current = self.model.view_by_external_id(args["external_id"])
        else:
            raise SlackError(
                "invalid_arguments",
                response_metadata={
                    "messages": ["[ERROR] either view_id or external_id is required"]
                },
            )
        if current is None:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._view_arg(args, current["type"])
        return {"view": self.model.replace_view(current["id"], view)}

    def views_publish(self, args: Args) -> JSONObject:
        user = self.model.user(args.get("user_id"))
        if user is None:
            raise SlackError("user_not_found")
        view = self._view_arg(args, "home")
        current = self.model.home(user.id)
        if args.get("hash") and current and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self.model.publish_home(user.id, view)}

    def conversations_open(self, args: Args) -> JSONObject:
        if args.get("channel"):
            conv = self._conversation(args)
        else:
            users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
            if not users:
                raise SlackError("users_list_not_supplied")
            if len(users) > 1:
                raise SlackError("not_supported")
            user = self.model.user(users[0])
            if user is None:
                raise SlackError("user_not_found")
            if user.is_bot:
                raise SlackError("cannot_dm_bot")
            dm = self.model.dm_with(user.id)
            if dm is None:
                raise SlackError("user_not_found")
            conv = dm
        if _flag(args.get("return_im")):
            return {"no_op": True, "already_open": True, "channel": conv.to_slack()}
        return {"no_op": True, "already_open": True, "channel": {"id": conv.id}}

    def conversations_info(self, args: Args) -> JSONObject:
        return {"channel": self._conversation(args).to_slack()}

    def conversations_members(self, args: Args) -> JSONObject:
        conv = self._conversation(args)
        return {"members": list(conv.members), "response_metadata": {"next_cursor": ""}}

    def conversations_replies(self, args: Args) -> JSONObject:
        conv = self._conversation(args)
        thread = self.model.thread(conv.id, str(args.get("ts") or ""))
        if not thread:
            raise SlackError("thread_not_found")
        return {
            "messages": list(thread),
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    def conversations_history(self, args: Args) -> JSONObject:
        conv = self._conversation(args)
        limit = int(args.get("limit") or 100)
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        inclusive = _flag(args.get("inclusive"))
        messages = [
            m
            for m in reversed(self.model.top_level(conv.id))
            if (oldest <= float(m["ts"]) <= latest)
            and (inclusive or float(m["ts"]) not in (oldest, latest))
        ]
        return {
            "messages": list(messages[:limit]),
            "has_more": len(messages) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def users_info(self, args: Args) -> JSONObject:
        user = self.model.user(args.get("user"))
        if user is None or user.id not in self.model.users:
            raise SlackError("user_not_found")
        return {"user": user.to_slack()}

    def users_list(self, args: Args) -> JSONObject:
        return {
            "members": [u.to_slack() for u in self.model.users.values()],
            "cache_ts": int(self.model.clock()),
            "response_metadata": {"next_cursor": ""},
        }

    def usergroups_list(self, args: Args) -> JSONObject:
        include = _flag(args.get("include_users"))
        return {"usergroups": [g.to_slack(include) for g in self.model.usergroups.values()]}

    def usergroups_users_list(self, args: Args) -> JSONObject:
        group = self.model.usergroups.get(str(args.get("usergroup") or ""))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group.users)}


def error_page(status: int) -> str:
    """The HTML a load balancer answers with, e.g. `<html><body>Bad Gateway</body></html>`."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"<html><body>{phrase}</body></html>"


def _label(failure: _Failure) -> str:
    return "answer" if failure.body is None else "non_json"


def _failure_answer(failure: _Failure) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and the JSON (also recorded for a non-JSON body) of an injected answer."""
    if failure.status == 429:
        headers = {"Retry-After": str(failure.retry_after)}
        return 429, headers, {"ok": False, "error": failure.error or "ratelimited"}
    if failure.status >= 500:
        return failure.status, {}, {"ok": False, "error": failure.error or "internal_error"}
    return failure.status, {}, {"ok": False, "error": failure.error or "fatal_error"}


def _drop(request: web.Request, rst: bool) -> web.Response:
    """Close the connection without an HTTP answer. With `rst`, SO_LINGER 0 makes the close a
    TCP reset. The returned response is never written (aiohttp ignores the closed transport)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if rst and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if rst:
            transport.abort()
        else:
            transport.close()
    return web.Response(status=204)


async def _read_args(request: web.Request) -> Args:
    """Query string plus a form or JSON body, like Slack accepts them."""
    args: Args = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            args.update(body)
    else:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() or None if header.startswith("Bearer ") else None


def _json_arg(args: Args, key: str) -> Any:
    """A structured argument that may arrive as a JSON string (form bodies)."""
    value = args.get(key)
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError as e:
            raise SlackError(
                "invalid_blocks_format" if key == "blocks" else "invalid_arguments"
            ) from e
    return value


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")
