"""Callbacks to the app: Slack's payloads, signing, delivery, trigger ids and response_urls.

Everything that goes from the workspace to the app (slash commands, block_actions,
view_submission, view_closed) is built here in Slack's exact shape, signed with the signing
secret, and delivered over HTTP to the request URL or, when the app is connected, as a
Socket Mode envelope. What the app acks with is applied the way Slack applies it.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bot.jsontypes import JSONObject

from .blockkit import normalize_blocks, validate_blocks, validate_view
from .model import (
    APP_ID,
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    Block,
    Conversation,
    Message,
    User,
    View,
    Workspace,
)
from .socketmode import SocketMode

ACK_TIMEOUT = 3.0
TRIGGER_TTL = 3.0
RESPONSE_URL_TTL = 30 * 60.0
RESPONSE_URL_USES = 5
# Slack sends an event again when the app did not answer 200 within 3 s: at once, after a
# minute, after five (X-Slack-Retry-Num 1..3; Socket Mode: the envelope's retry_attempt).
EVENT_RETRY_DELAYS = (0.0, 60.0, 300.0)
# The message events the app subscribes to (manifest.yml's bot_events; app_home_opened is
# always sent).
BOT_EVENTS = frozenset({"app_mention", "message.im"})
VERIFICATION_TOKEN = "localverificationtoken"


@dataclass
class Delivery:
    """What happened to one callback: the app's HTTP answer (or ack) and the ids it carried."""

    status: int | None
    body: str = ""
    elapsed: float = 0.0
    trigger_id: str | None = None
    response_url: str | None = None
    error: str | None = None  # "operation_timeout", "dispatch_failed", "required_fields"
    via: str = "http"  # "http" or "socket"
    payload: dict[str, Any] | None = None  # what the app was sent
    client_errors: dict[str, str] = field(default_factory=dict)  # required inputs left empty

    @property
    def ok(self) -> bool:
        """The app acked in time with HTTP 200."""
        return self.status == 200 and self.error is None

    @property
    def json(self) -> Any:  # json.loads's
        """The ack body parsed as JSON, or None when empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def errors(self) -> dict[str, str]:
        """`response_action: errors` from the ack, or the inputs Slack itself refused."""
        ack = self.json
        if isinstance(ack, dict) and ack.get("response_action") == "errors":
            return dict(ack.get("errors") or {})
        return dict(self.client_errors)


def sign(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Slack's request signature headers for a raw body."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


@dataclass
class _Trigger:
    """One issued trigger_id: whose it is, when it was issued, and whether it was used (Slack
    refuses a second use and one older than 3 s)."""

    user: str
    issued_at: float
    used: bool = False


class TriggerIds:
    """trigger_ids: issued per delivery, valid 3 s on the workspace clock, single use."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._triggers: dict[str, _Trigger] = {}
        self._count = 0

    def issue(self, user_id: str) -> str:
        """A fresh trigger_id for a delivery on behalf of `user_id`."""
        self._count += 1
        trigger_id = f"{self._count}{int(self.clock())}.{TEAM_ID[1:]}.{secrets.token_hex(16)}"
        self._triggers[trigger_id] = _Trigger(user_id, self.clock())
        return trigger_id

    def exchange(self, trigger_id: str | None) -> tuple[str | None, str | None]:
        """Use a trigger: (user id, None) or (None, Slack's error code)."""
        trigger = self._triggers.get(trigger_id or "")
        if trigger is None:
            return None, "invalid_trigger_id"
        if trigger.used:
            return None, "exchanged_trigger_id"
        if self.clock() - trigger.issued_at > TRIGGER_TTL:
            return None, "expired_trigger_id"
        trigger.used = True
        return trigger.user, None


@dataclass
class _ResponseUrl:
    """One issued response_url: where its posts go, and how often it was used (Slack allows
    5 uses in 30 minutes)."""

    user: str
    channel: str
    issued_at: float
    message_ts: str | None = None  # the message whose button was clicked
    is_ephemeral: bool = False
    uses: int = 0


class Callbacks:
    """Builds, signs and delivers callbacks; applies acks and response_url posts."""

    def __init__(
        self,
        model: Workspace,
        signing_secret: str,
        socket: SocketMode,
        triggers: TriggerIds,
        request_url: Callable[[], str | None],
        base_url: Callable[[], str],
        ack_timeout: float = ACK_TIMEOUT,
        event_retry_delays: tuple[float, ...] = EVENT_RETRY_DELAYS,
    ) -> None:
        self.model = model
        self.ack_timeout = ack_timeout
        self.event_retry_delays = event_retry_delays
        self.bot_events = BOT_EVENTS
        self._retries: set[asyncio.Task[None]] = set()  # events being sent again
        self.signing_secret = signing_secret
        self.socket = socket
        self.triggers = triggers
        self.request_url = request_url
        self.base_url = base_url
        self._response_urls: dict[str, _ResponseUrl] = {}
        self.event_retries: list[Delivery] = []  # what each retry of an event got (tests)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Stop sending events again, then close the HTTP client session."""
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def can_deliver(self) -> bool:
        """Whether an app is there to hear callbacks (Socket Mode or a request URL)."""
        return self.socket.connected or bool(self.request_url())

    # -- common pieces ---------------------------------------------------------------------

    def _issue_response_url(
        self, user: str, channel: str, message_ts: str | None = None, is_ephemeral: bool = False
    ) -> str:
        url_id = f"{TEAM_ID}/{secrets.token_hex(6)}/{secrets.token_hex(12)}"
        self._response_urls[url_id] = _ResponseUrl(
            user, channel, self.model.clock(), message_ts, is_ephemeral
        )
        return f"{self.base_url()}/response/{url_id}"

    @staticmethod
    def _user(user: User) -> JSONObject:
        return {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID}

    @staticmethod
    def _team() -> JSONObject:
        return {"id": TEAM_ID, "domain": TEAM_DOMAIN}

    @staticmethod
    def _channel_name(conv: Conversation) -> str:
        return "directmessage" if conv.is_im else conv.name

    # -- transport -------------------------------------------------------------------------

    async def deliver_raw(
        self, body: bytes | str, content_type: str, headers: dict[str, str] | None = None
    ) -> Delivery:
        """POST a body to the request URL; `headers=None` signs it, a dict is sent as is."""
        raw = body.encode() if isinstance(body, str) else body
        if headers is None:
            headers = sign(self.signing_secret, raw, int(self.model.clock()))
        url = self.request_url()
        if not url:
            return Delivery(None, error="dispatch_failed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        started = time.perf_counter()
        try:
            async with self._session.post(
                url,
                data=raw,
                headers={**headers, "Content-Type": content_type},
                timeout=aiohttp.ClientTimeout(total=self.ack_timeout),
            ) as resp:
                text = await resp.text()
                return Delivery(resp.status, text, time.perf_counter() - started)
        except TimeoutError:
            return Delivery(None, elapsed=time.perf_counter() - started, error="operation_timeout")
        except aiohttp.ClientError:
            return Delivery(None, elapsed=time.perf_counter() - started, error="dispatch_failed")

    async def _deliver(
        self, kind: str, payload: dict[str, Any], retry: tuple[int, str] | None = None
    ) -> Delivery:
        """Socket Mode when connected, else HTTP: slash commands as form fields,
        interactivity as `payload=<json>`, events as JSON. `retry`: an event sent again
        (attempt number, reason), as Slack marks it."""
        if self.socket.connected:
            started = time.perf_counter()
            try:
                ack = await self.socket.send(
                    kind,
                    payload,
                    self.ack_timeout,
                    accepts_response_payload=kind != "events_api",
                    retry=(retry[0], "timeout") if retry else None,
                )
            except TimeoutError:
                delivery = Delivery(None, error="operation_timeout", via="socket")
            except ConnectionError:
                delivery = Delivery(None, error="dispatch_failed", via="socket")
            else:
                body = ack.get("payload")
                text = json.dumps(body) if body else ""
                delivery = Delivery(200, text, via="socket")
            delivery.elapsed = time.perf_counter() - started
        elif kind == "slash_commands":
            form = {k: str(v) for k, v in payload.items()}
            delivery = await self.deliver_raw(urlencode(form), "application/x-www-form-urlencoded")
        elif kind == "events_api":
            raw = json.dumps(payload).encode()
            headers = sign(self.signing_secret, raw, int(self.model.clock()))
            if retry:
                headers["X-Slack-Retry-Num"], headers["X-Slack-Retry-Reason"] = map(str, retry)
            delivery = await self.deliver_raw(raw, "application/json", headers)
        else:
            body = urlencode({"payload": json.dumps(payload)})
            delivery = await self.deliver_raw(body, "application/x-www-form-urlencoded")
        delivery.payload = payload
        delivery.trigger_id = payload.get("trigger_id")
        delivery.response_url = payload.get("response_url")
        return delivery

    def _complain(self, user_id: str, what: str, delivery: Delivery) -> None:
        """The grey line Slack shows when the app did not answer properly."""
        if delivery.error:
            self.model.notice(user_id, f'{what} failed with the error "{delivery.error}"')
        elif delivery.status != 200:
            self.model.notice(user_id, f'{what} failed with the error "http_service_error"')

    # -- slash commands --------------------------------------------------------------------

    async def command(self, user: User, conv: Conversation, command: str, text: str) -> Delivery:
        """Run a slash command: deliver it, then show the ack's text as Slack does."""
        fields = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": conv.id,
            "channel_name": self._channel_name(conv),
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._issue_response_url(user.id, conv.id),
            "trigger_id": self.triggers.issue(user.id),
        }
        delivery = await self._deliver("slash_commands", fields)
        self._complain(user.id, command, delivery)
        if delivery.ok and delivery.body:
            ack = delivery.json
            if not isinstance(ack, dict):
                ack = {"text": delivery.body}
            self._show(user, conv, ack, f"{command} {text}".strip())
        return delivery

    def _show(
        self, user: User, conv: Conversation, reply: dict[str, Any], invocation: str | None
    ) -> None:
        """Show a command reply: ephemeral unless `response_type: in_channel`."""
        blocks = reply.get("blocks")
        if blocks is not None and (not isinstance(blocks, list) or validate_blocks(blocks)):
            self.model.notice(user.id, "The app's reply had invalid blocks")
            return
        text = str(reply.get("text") or "")
        if not text and not blocks:
            return
        message = self.model.bot_message(text, normalize_blocks(blocks) if blocks else None)
        thread_ts = reply.get("thread_ts")
        if reply.get("response_type") == "in_channel":
            if invocation:
                self.model.post(conv.id, self.model.user_message(user.id, invocation))
            self.model.post(conv.id, message, thread_ts=thread_ts)
        else:
            self.model.post_ephemeral(conv.id, user.id, message, thread_ts)

    # -- block_actions ---------------------------------------------------------------------

    async def action(
        self,
        user: User,
        *,
        block_id: str,
        action_id: str,
        channel: str | None = None,
        message_ts: str | None = None,
        view_id: str | None = None,
        value: str | None = None,
        state_values: dict[str, Any] | None = None,
        shown: dict[str, Any] | None = None,
    ) -> Delivery:
        """A click (or selection) on an element of a message, ephemeral or view. ``shown`` is
        the copy of the message the user's client displays, when it is older than ours."""
        source, container, extra = self._action_source(user, channel, message_ts, view_id)
        if shown is not None:
            source = extra["message"] = copy.deepcopy(shown)
        element = _find_element(source.get("blocks", []), block_id, action_id)
        if element is None:
            raise LookupError(f"no element {block_id}/{action_id}")
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": container,
            "trigger_id": self.triggers.issue(user.id),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            **extra,
            "state": {"values": copy.deepcopy(state_values or {})},
            "actions": [_action(element, block_id, value, self.model.next_ts())],
        }
        if "view" in extra:
            extra["view"]["state"] = payload["state"]
        delivery = await self._deliver("interactive", payload)
        self._complain(user.id, "This action", delivery)
        return delivery

    def _action_source(
        self, user: User, channel: str | None, message_ts: str | None, view_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The clicked message or view, the payload's `container`, and its other parts."""
        container: dict[str, Any]
        if view_id:
            view = self.model.views.get(view_id)
            if view is None or self.model.view_owner.get(view_id) != user.id:
                raise LookupError(f"no view {view_id} for {user.name}")
            container = {"type": "view", "view_id": view_id}
            return view, container, {"view": copy.deepcopy(view)}
        eph = self.model.find_ephemeral(message_ts or "")
        if eph is not None and eph.user == user.id:
            conv = self.model.conversations[eph.channel]
            container = {
                "type": "message",
                "message_ts": eph.message["ts"],
                "channel_id": conv.id,
                "is_ephemeral": True,
            }
            extra = {
                "channel": {"id": conv.id, "name": self._channel_name(conv)},
                "response_url": self._issue_response_url(user.id, conv.id, eph.message["ts"], True),
            }
            return eph.message, container, extra
        channel = channel or self.model.channel_of(message_ts or "")
        found = self.model.conversations.get(channel or "")
        message = self.model.find_message(found.id, message_ts) if found else None
        if found is None or message is None:
            raise LookupError(f"no message {message_ts} in {channel}")
        container = {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": found.id,
            "is_ephemeral": False,
        }
        extra = {
            "channel": {"id": found.id, "name": self._channel_name(found)},
            "message": copy.deepcopy(message),
            "response_url": self._issue_response_url(user.id, found.id, message["ts"]),
        }
        return message, container, extra

    # -- views -----------------------------------------------------------------------------

    async def submit(self, user: User, view_id: str, values: dict[str, Any]) -> Delivery:
        """Submit a modal; the ack decides whether it closes, shows errors, updates or pushes."""
        view = self.model.views.get(view_id)
        if view is None or self.model.view_owner.get(view_id) != user.id:
            raise LookupError(f"no open view {view_id} for {user.name}")
        view["state"] = {"values": copy.deepcopy(values)}
        missing = _missing_inputs(view)
        if missing:
            return Delivery(None, error="required_fields", client_errors=missing)
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self.triggers.issue(user.id),
            "view": copy.deepcopy(view),
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        delivery = await self._deliver("interactive", payload)
        if not delivery.ok:
            self.model.notice(user.id, "We had some trouble connecting. Try again?")
            return delivery
        self._apply_view_ack(user, view_id, delivery.json)
        return delivery

    def _apply_view_ack(self, user: User, view_id: str, ack: Any) -> None:  # the app's JSON
        action = ack.get("response_action") if isinstance(ack, dict) else None
        if action == "errors":
            return
        if action in ("update", "push"):
            new_view = ack.get("view")
            problems = validate_view(new_view)
            if problems:
                self.model.notice(user.id, "The app answered with an invalid view")
                return
            new_view = {**new_view, "blocks": normalize_blocks(new_view.get("blocks", []))}
            if action == "update":
                self.model.replace_view(view_id, new_view)
            else:
                try:
                    self.model.push_modal(user.id, new_view)
                except OverflowError:
                    self.model.notice(user.id, "Too many views are open")
            return
        self.model.close_modal(view_id, clear=action == "clear")

    async def close_view(self, user: User, view_id: str) -> Delivery | None:
        """The person pressed Close; `view_closed` goes out only when the view asked for it."""
        view = self.model.views.get(view_id)
        if view is None or self.model.view_owner.get(view_id) != user.id:
            raise LookupError(f"no open view {view_id} for {user.name}")
        snapshot = copy.deepcopy(view)
        clear = bool(view.get("clear_on_close"))
        self.model.close_modal(view_id, clear=clear)
        if not snapshot.get("notify_on_close"):
            return None
        payload = {
            "type": "view_closed",
            "team": self._team(),
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "view": snapshot,
            "is_cleared": clear,
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return await self._deliver("interactive", payload)

    # -- Events API ------------------------------------------------------------------------

    async def event(self, event: dict[str, Any]) -> Delivery:
        """Deliver an Events API `event_callback` wrapping `event`."""
        body = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(self.model.clock()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        delivery = await self._deliver("events_api", body)
        if not delivery.ok and self.event_retry_delays:
            task = asyncio.create_task(self._send_again(body, delivery))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
        return delivery

    async def _send_again(self, body: dict[str, Any], first: Delivery) -> None:
        """Slack's retries of an event the app did not answer 200 in time: the same body
        (same `event_id`), freshly signed, marked as the n-th retry, until one is answered."""
        last = first
        for attempt, delay in enumerate(self.event_retry_delays, 1):
            await asyncio.sleep(delay)
            reason = "http_timeout" if last.error == "operation_timeout" else "http_error"
            last = await self._deliver("events_api", body, (attempt, reason))
            self.event_retries.append(last)
            if last.ok:
                return

    async def mentioned(self, user: User, conv: Conversation, message: Message) -> Delivery | None:
        """The event Slack sends the app for a message a person posted (None: none): in the
        bot's DM, `message` with channel_type `im` (to an app subscribed to `message.im`;
        never `app_mention` there); elsewhere `app_mention` when it mentions the bot in a
        conversation the bot is a member of."""
        text = str(message.get("text") or "")
        event: dict[str, Any] = {"user": user.id, "text": text, "ts": message["ts"]}
        if conv.is_im and BOT_USER_ID in conv.members:
            if "message.im" not in self.bot_events:
                return None
            event = {"type": "message", "channel": conv.id, **event, "channel_type": "im"}
        elif f"<@{BOT_USER_ID}>" in text or f"<@{BOT_USER_ID}|" in text:
            if (
                conv.is_im
                or BOT_USER_ID not in conv.members
                or "app_mention" not in self.bot_events
            ):
                return None
            event = {"type": "app_mention", **event, "channel": conv.id}
        else:
            return None
        event.update({"team": TEAM_ID, "event_ts": message["ts"]})
        if message.get("thread_ts"):
            event["thread_ts"] = message["thread_ts"]
            event["parent_user_id"] = message.get("parent_user_id", "")
        if message.get("client_msg_id"):
            event["client_msg_id"] = message["client_msg_id"]
        return await self.event(event)

    async def home_opened(self, user: User) -> Delivery:
        """`app_home_opened`: Slack sends it each time a person opens the app's Home tab."""
        dm = self.model.dm_with(user.id)
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user.id,
            "channel": dm.id if dm else "",
            "tab": "home",
            "event_ts": self.model.next_ts(),
        }
        home = self.model.home(user.id)
        if home is not None:
            event["view"] = copy.deepcopy(home)
        return await self.event(event)

    # -- response_url ----------------------------------------------------------------------

    async def handle_response_url(self, request: web.Request) -> web.Response:
        """POST /response/...: 5 uses within 30 minutes, then 404 `expired_url`."""
        url = self._response_urls.get(request.match_info["url_id"])
        if url is None:
            return web.json_response({"ok": False, "error": "invalid_url"}, status=404)
        if url.uses >= RESPONSE_URL_USES or self.model.clock() - url.issued_at > RESPONSE_URL_TTL:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        blocks = body.get("blocks")
        if blocks is not None and (not isinstance(blocks, list) or validate_blocks(blocks)):
            return web.json_response({"ok": False, "error": "invalid_blocks"}, status=400)
        url.uses += 1
        error = self._respond(url, body)
        if error:
            return web.json_response({"ok": False, "error": error}, status=404)
        return web.json_response({"ok": True})

    def _respond(self, url: _ResponseUrl, body: dict[str, Any]) -> str | None:
        """Apply a response_url post: delete, replace, or a new (ephemeral) message."""
        if _truthy(body.get("delete_original")) or _truthy(body.get("replace_original")):
            if not url.message_ts:
                return "message_not_found"
            if _truthy(body.get("delete_original")):
                return self._delete_original(url)
            return self._replace_original(url, body)
        user = self.model.users[url.user]
        conv = self.model.conversations[url.channel]
        self._show(user, conv, body, None)
        return None

    def _delete_original(self, url: _ResponseUrl) -> str | None:
        try:
            if url.is_ephemeral:
                self.model.replace_ephemeral(url.message_ts or "", None)
            else:
                self.model.delete(url.channel, url.message_ts or "")
        except KeyError:
            return "message_not_found"
        return None

    def _replace_original(self, url: _ResponseUrl, body: dict[str, Any]) -> str | None:
        blocks = body.get("blocks")
        text = str(body.get("text") or "")
        stored_blocks = normalize_blocks(blocks) if blocks else None
        try:
            if url.is_ephemeral:
                self.model.replace_ephemeral(
                    url.message_ts or "", self.model.bot_message(text, stored_blocks)
                )
            else:
                self.model.update(
                    url.channel, url.message_ts or "", text, stored_blocks or [], BOT_USER_ID
                )
        except KeyError:
            return "message_not_found"
        return None


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _elements(block: Block) -> list[dict[str, Any]]:
    """The interactive elements a block holds."""
    found = [e for e in block.get("elements") or [] if isinstance(e, dict)]
    found += [block[k] for k in ("accessory", "element") if isinstance(block.get(k), dict)]
    return found if block.get("type") in ("actions", "section", "input") else []


def _find_element(blocks: list[Block], block_id: str, action_id: str) -> dict[str, Any] | None:
    for block in blocks:
        if block.get("block_id") != block_id:
            continue
        for element in _elements(block):
            if element.get("action_id") == action_id:
                return element
    return None


def find_button(blocks: list[Block], label: str) -> tuple[str, str] | None:
    """(block_id, action_id) of the element whose visible text or action_id is `label`."""
    for block in blocks:
        for element in _elements(block):
            text = (element.get("text") or {}).get("text")
            if label in (text, element.get("action_id")):
                return block.get("block_id", ""), element.get("action_id", "")
    return None


def _action(element: dict[str, Any], block_id: str, value: str | None, ts: str) -> dict[str, Any]:
    """One entry of `actions[]` as Slack sends it for this element type."""
    kind = element.get("type")
    action: dict[str, Any] = {"action_id": element.get("action_id"), "block_id": block_id}
    if kind == "button":
        action["text"] = copy.deepcopy(element.get("text"))
        if element.get("value") is not None:
            action["value"] = element["value"]
        if element.get("style"):
            action["style"] = element["style"]
        if element.get("url"):
            action["url"] = element["url"]
    elif kind in ("static_select", "overflow", "radio_buttons"):
        option = next((o for o in element.get("options", []) if o.get("value") == value), None)
        action["selected_option"] = copy.deepcopy(option)
        if kind == "static_select" and element.get("placeholder"):
            action["placeholder"] = copy.deepcopy(element["placeholder"])
    else:
        action["value"] = value
    action["type"] = kind
    action["action_ts"] = ts
    return action


def _missing_inputs(view: View) -> dict[str, str]:
    """Required input blocks left empty: Slack refuses these before the app hears of them."""
    values = view.get("state", {}).get("values", {})
    missing: dict[str, str] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input" or block.get("optional"):
            continue
        element = block.get("element") or {}
        state = values.get(block.get("block_id"), {}).get(element.get("action_id"), {})
        filled = [v for k, v in state.items() if k != "type" and v not in (None, "", [])]
        if not filled:
            missing[block.get("block_id", "")] = "Please complete this required field."
    return missing
