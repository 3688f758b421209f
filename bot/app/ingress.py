"""What a Slack payload must look like before any listener sees it.

Listeners index into payloads and put IDs into mrkdwn (``<@U…>``); a payload of the wrong
shape would crash them, and an "ID" such as ``U0ALICE><!channel`` would become markup. So every
field a listener (or Bolt's own routing) reads is checked here first: pure functions that name
the first bad field (never its value), and a Bolt middleware that answers 400 on one, for HTTP
and Socket Mode alike. Plus a log filter that keeps request bodies out of Bolt's log lines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeGuard

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.slackids import APP_ID, CONVERSATION_ID, ENTERPRISE_ID, TEAM_ID, USER_ID, VIEW_ID

log = logging.getLogger(__name__)

# Always used with fullmatch, like the ids: "$" would accept a trailing newline.
COMMAND = re.compile(r"/[^\s/]{1,31}")
TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,8}")  # message timestamps: "1700000000.000100"

MAX_ID_TEXT = 255  # action_id, block_id, callback_id (Slack's limit)
MAX_VALUE = 3000  # a text input's value (a button's is at most 2000)
MAX_METADATA = 3000  # a view's private_metadata (Slack's limit)
MAX_TOKEN = 255  # trigger_id, the legacy verification token
MAX_URL = 2048  # response_url
MAX_ACTIONS = 25
MAX_DEPTH = 64  # Slack's deepest payloads (rich text in a message in a view) are ~20

Check = Callable[[dict[str, object]], str | None]


# -- pure validators -----------------------------------------------------------------------


def is_user_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and USER_ID.fullmatch(value) is not None


def is_channel_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and CONVERSATION_ID.fullmatch(value) is not None


def is_team_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and TEAM_ID.fullmatch(value) is not None


def is_view_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and VIEW_ID.fullmatch(value) is not None


def is_text(value: object, limit: int, *, empty: bool = True) -> TypeGuard[str]:
    """A string of at most ``limit`` characters (and not empty unless allowed)."""
    return isinstance(value, str) and len(value) <= limit and (empty or value != "")


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON-like data nests lists/dicts more than ``limit`` deep (iterative, so a
    deep value cannot exhaust the stack here)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def problem(body: object) -> str | None:
    """The first missing or malformed field of a parsed Slack payload, as a path such as
    ``actions[0].action_id``; None when the payload is fit for our listeners and Bolt."""
    if not isinstance(body, dict):
        return "body"
    if body.get("ssl_check") == "1":
        return None  # Slack's SSL check: Bolt answers it, nothing else reads it
    if "command" in body:
        return _command(body)
    kind = body.get("type")
    if not is_text(kind, MAX_ID_TEXT, empty=False):
        return "type"
    return _common(body) or _BY_TYPE.get(str(kind), _nothing_more)(body)


# -- per payload type ----------------------------------------------------------------------


def _command(body: dict[str, object]) -> str | None:
    if not isinstance(body["command"], str) or not COMMAND.fullmatch(body["command"]):
        return "command"
    for name, ok in (("user_id", is_user_id), ("channel_id", is_channel_id)):
        if not ok(body.get(name)):
            return name
    if not is_team_id(body.get("team_id")):
        return "team_id"
    for name in ("text", "trigger_id", "response_url", "user_name", "channel_name"):
        if name in body and not isinstance(body[name], str):
            return name
    if body.get("enterprise_id") and not _matches(ENTERPRISE_ID, body["enterprise_id"]):
        return "enterprise_id"
    return _optional(body, "api_app_id", lambda v: _matches(APP_ID, v))


def _common(body: dict[str, object]) -> str | None:
    """Fields Bolt reads from any payload to build its context and route it, checked in this
    order (the first bad one is named)."""
    for check in (_who, _where, _shapes, _container, _nested, _parts):
        bad = check(body)
        if bad is not None:
            return bad
    return _optional(body, "api_app_id", lambda v: _matches(APP_ID, v))


def _who(body: dict[str, object]) -> str | None:
    """The user, team and enterprise: bare ids or ``{"id": …}``."""
    for name, ok in (
        ("user", is_user_id),
        ("team", is_team_id),
        ("enterprise", lambda v: _matches(ENTERPRISE_ID, v)),
    ):
        if body.get(name) is not None and not _entity(body[name], ok):
            return f"{name}.id" if isinstance(body[name], dict) else name
    user = body.get("user")
    if isinstance(user, dict):
        bad = _optional(user, "team_id", is_team_id)
        if bad is not None:
            return f"user.{bad}"
    return None


def _where(body: dict[str, object]) -> str | None:
    """The channel (always a dict in interactive payloads) and the top-level ids."""
    if body.get("channel") is not None:
        if not isinstance(body["channel"], dict):
            return "channel"
        if not is_channel_id(body["channel"].get("id")):
            return "channel.id"
    for name, ok in (("user_id", is_user_id), ("channel_id", is_channel_id)):
        if name in body and not ok(body[name]):
            return name
    for name in ("team_id", "context_team_id"):
        if body.get(name) is not None and not is_team_id(body[name]):
            return name
    return None


def _shapes(body: dict[str, object]) -> str | None:
    """Texts within Slack's limits, and lists and dicts where Bolt indexes into them."""
    for name, limit in (
        ("trigger_id", MAX_TOKEN),
        ("token", MAX_TOKEN),
        ("callback_id", MAX_ID_TEXT),
        ("action_id", MAX_ID_TEXT),
        ("response_url", MAX_URL),
    ):
        if name in body and not is_text(body[name], limit):
            return name
    for name in ("authorizations", "response_urls"):
        if name in body and not _list_of_dicts(body[name]):
            return name
    for name in ("container", "message", "event"):
        if name in body and not isinstance(body[name], dict):
            return name
    return None


def _container(body: dict[str, object]) -> str | None:
    container = body.get("container")  # a dict when there (checked by _shapes)
    for name, ok in (
        ("channel_id", is_channel_id),
        ("view_id", is_view_id),
        ("message_ts", lambda v: _matches(TS, v)),
    ):
        if isinstance(container, dict) and name in container and not ok(container[name]):
            return f"container.{name}"
    return None


def _nested(body: dict[str, object]) -> str | None:
    for path in (("message",), ("event",), *(("event", part) for part in _EVENT_PARTS)):
        bad = _nested_ids(body, path)
        if bad is not None:
            return bad
    return None


def _parts(body: dict[str, object]) -> str | None:
    """The view, the actions and the state, each checked by its own reader."""
    for name, check in (("view", _view), ("actions", _actions), ("state", _state)):
        if name in body:
            bad = check(body[name])
            if bad is not None:
                return f"{name}{bad}"
    return None


def _block_actions(body: dict[str, object]) -> str | None:
    if not isinstance(body.get("user"), dict):
        return "user"
    if "actions" not in body:
        return "actions"
    if not is_text(body.get("trigger_id"), MAX_TOKEN, empty=False):
        return "trigger_id"
    message = body.get("message")  # a dict when there (checked by _common)
    if isinstance(message, dict) and "ts" in message and not _matches(TS, message["ts"]):
        return "message.ts"
    return None


def _view_submission(body: dict[str, object]) -> str | None:
    if not isinstance(body.get("user"), dict):
        return "user"
    view = body.get("view")
    if not isinstance(view, dict):
        return "view"
    if not is_view_id(view.get("id")):
        return "view.id"
    if "state" not in view:
        return "view.state"
    return None


def _view_closed(body: dict[str, object]) -> str | None:
    if not isinstance(body.get("user"), dict):
        return "user"
    return None if isinstance(body.get("view"), dict) else "view"


def _event_callback(body: dict[str, object]) -> str | None:
    event = body.get("event")
    if not isinstance(event, dict):
        return "event"
    if not is_text(event.get("type"), MAX_ID_TEXT, empty=False):
        return "event.type"
    if event["type"] == "app_home_opened" and not is_user_id(event.get("user")):
        return "event.user"
    for name in ("tab", "channel_type", "subtype", "text", "ts", "thread_ts"):
        if name in event and not isinstance(event[name], str):
            return f"event.{name}"
    for name in _EVENT_PARTS:
        if name in event and not isinstance(event[name], dict):
            return f"event.{name}"
    if "view" in event:
        bad = _view(event["view"])
        if bad is not None:
            return f"event.view{bad}"
    return None


def _url_verification(body: dict[str, object]) -> str | None:
    return None if is_text(body.get("challenge"), MAX_ID_TEXT) else "challenge"


def _nothing_more(body: dict[str, object]) -> str | None:
    return None


_BY_TYPE: Mapping[str, Check] = {
    "block_actions": _block_actions,
    "view_submission": _view_submission,
    "view_closed": _view_closed,
    "event_callback": _event_callback,
    "url_verification": _url_verification,
}


# -- parts ---------------------------------------------------------------------------------

# Where Bolt looks for the user, channel and team of a request (besides the top level).
_EVENT_PARTS = ("item", "message", "previous_message", "assistant_thread")
_ID_FIELDS: tuple[tuple[str, Callable[[object], bool]], ...] = (
    ("user", is_user_id),
    ("user_id", is_user_id),
    ("channel", is_channel_id),
    ("channel_id", is_channel_id),
    ("team", is_team_id),
    ("team_id", is_team_id),
    ("user_team", is_team_id),
)


def _nested_ids(body: dict[str, object], path: tuple[str, ...]) -> str | None:
    """Check the IDs in the dict at ``path`` (if there is one); bare or ``{"id": …}``, and
    an empty string is allowed (Slack sends ``"channel": ""`` in some events)."""
    part: object = body
    for key in path:
        part = part.get(key) if isinstance(part, dict) else None
    if not isinstance(part, dict):
        return None
    for name, ok in _ID_FIELDS:
        value = part.get(name)
        if value is not None and value != "" and not _entity(value, ok):
            return ".".join((*path, name))
    return None


def _view(view: object) -> str | None:
    """A view as it arrives in payloads: its suffix path of the first bad field, or None."""
    if not isinstance(view, dict):
        return ""
    if not is_text(view.get("type"), MAX_ID_TEXT, empty=False):
        return ".type"
    if "id" in view and not is_view_id(view["id"]):
        return ".id"
    bad = _view_fields(view)
    if bad is not None:
        return bad
    if "blocks" in view and not isinstance(view["blocks"], list):
        return ".blocks"
    if "state" in view:
        bad = _state(view["state"])
        if bad is not None:
            return f".state{bad}"
    return None


def _view_fields(view: dict[str, object]) -> str | None:
    """A view's texts within Slack's limits, and its team ids."""
    for name, limit in (
        ("callback_id", MAX_ID_TEXT),
        ("private_metadata", MAX_METADATA),
        ("hash", MAX_ID_TEXT),
        ("external_id", MAX_ID_TEXT),
    ):
        if name in view and not is_text(view[name], limit):
            return f".{name}"
    for name in ("team_id", "app_installed_team_id"):
        if view.get(name) is not None and not is_team_id(view[name]):
            return f".{name}"
    return None


def _state(state: object) -> str | None:
    """``{"values": {block_id: {action_id: element state}}}``."""
    if not isinstance(state, dict):
        return ""
    values = state.get("values", {})
    if not isinstance(values, dict):
        return ".values"
    for block_id, block in values.items():
        if not is_text(block_id, MAX_ID_TEXT) or not isinstance(block, dict):
            return ".values"
        for action_id, element in block.items():
            if not is_text(action_id, MAX_ID_TEXT) or _element(element) is not None:
                return ".values"
    return None


def _actions(actions: object) -> str | None:
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_ACTIONS:
        return ""
    for i, action in enumerate(actions):
        if not isinstance(action, dict):
            return f"[{i}]"
        if not is_text(action.get("action_id"), MAX_ID_TEXT, empty=False):
            return f"[{i}].action_id"
        bad = _element(action)
        if bad is not None:
            return f"[{i}]{bad}"
    return None


def _element(element: object) -> str | None:
    """An interactive element's state (in ``actions[]`` or ``state.values``)."""
    if not isinstance(element, dict):
        return ""
    checks: tuple[tuple[str, Callable[[object], bool]], ...] = (
        ("type", lambda v: is_text(v, MAX_ID_TEXT)),
        ("block_id", lambda v: is_text(v, MAX_ID_TEXT)),
        ("value", lambda v: v is None or is_text(v, MAX_VALUE)),
        ("action_ts", lambda v: isinstance(v, str)),
        ("selected_option", lambda v: v is None or isinstance(v, dict)),
        ("selected_options", _list_of_dicts),
        ("selected_user", lambda v: v is None or is_user_id(v)),
        ("selected_users", lambda v: isinstance(v, list) and all(map(is_user_id, v))),
        ("selected_channel", lambda v: v is None or is_channel_id(v)),
        ("selected_conversation", lambda v: v is None or is_channel_id(v)),
        ("selected_channels", lambda v: isinstance(v, list) and all(map(is_channel_id, v))),
        (
            "selected_conversations",
            lambda v: isinstance(v, list) and all(map(is_channel_id, v)),
        ),
    )
    for name, ok in checks:
        if name in element and not ok(element[name]):
            return f".{name}"
    return None


def _entity(value: object, ok: Callable[[object], bool]) -> bool:
    """An ID given bare or as ``{"id": …}`` (Slack uses both for users, teams, channels)."""
    return ok(value.get("id")) if isinstance(value, dict) else ok(value)


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _list_of_dicts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _optional(body: dict[str, object], name: str, ok: Callable[[object], bool]) -> str | None:
    return name if name in body and not ok(body[name]) else None


# -- Bolt middleware -----------------------------------------------------------------------


class RejectMalformed(AsyncMiddleware):
    """Answers 400 (no listener runs) when ``problem`` finds a bad field in a Socket Mode
    envelope, logging the field's name only. A class, not a function: Bolt builds a function
    middleware's arguments from the payload first, which itself can fail on a malformed one."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],  # Bolt passes it by this name
    ) -> BoltResponse:
        if req.mode == "http":
            return (
                await next()
            )  # bot/app/endpoint.py checked it before Bolt saw it: not twice per ack
        bad = problem(req.body)
        if bad is None:
            return await next()
        log.warning("bad request: %s", bad)
        return BoltResponse(status=400, body="")


# -- log hygiene ---------------------------------------------------------------------------

_BODY_MARKERS = (
    "body",
    "payload",
    "unhandled request",
    "for the request",
    "skipped self event",
    "message:",
    "{",  # a dict's repr: Bolt logs parts of payloads that way
)
_NOISY = ("slack_bolt", "slack_sdk.socket_mode")


class RedactRequestBodies(logging.Filter):
    """Cuts what follows the first "(" or ":" from slack_bolt / Socket Mode records that
    carry request data, e.g. Bolt's "Invalid request signature detected (…, body: …)" and
    "Unhandled request ({…})". Other records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_NOISY):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: drop its arguments rather than guess
            message = str(record.msg)
        lowered = message.lower()
        if not any(marker in lowered for marker in _BODY_MARKERS):
            return True
        cuts = [i for i in (message.find("("), message.find(":")) if i >= 0]
        head = message[: min(cuts)].rstrip() if cuts else "(message)"
        record.msg, record.args = f"{head} (request details not logged)", None
        return True


def quiet_bolt_logs(target: logging.Logger | logging.Handler) -> RedactRequestBodies:
    """Install ``RedactRequestBodies`` on a handler, or on a logger and all its handlers.

    Logger filters do not apply to records propagated from child loggers (Bolt logs on
    ``slack_bolt.<Class>``), so install it on the handlers that write: after
    ``logging.basicConfig(...)``, call ``quiet_bolt_logs(logging.getLogger())``."""
    redact = RedactRequestBodies()
    target.addFilter(redact)
    if isinstance(target, logging.Logger):
        for handler in target.handlers:
            handler.addFilter(redact)
    return redact
