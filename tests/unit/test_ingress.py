"""The ingress checks as pure functions: Slack IDs, payload shapes, JSON depth, replays, the
decoding of raw bodies, the Bolt middleware and the log filter."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.app import ingress
from bot.app.endpoint import Malformed, ReplayGuard, decode, parse_body
from graphs.deploy import UsageError, parse_args

# -- IDs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["U0ALICE", "W012AB3CD", "U0BOT", "UAB"])
def test_user_ids_accepted(value: str) -> None:
    assert ingress.is_user_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "U0ALICE><!channel",
        "U0ALICE|<!channel>",
        "U0ALICE\n",  # "$" would have let this through
        "U0ALICE ",
        "u0alice",
        "U0ＡLICE",  # fullwidth A
        "U0ALICE١",  # Arabic-Indic digit
        "U",
        "U1",
        "U" + "A" * 21,
        "C0DEPLOYS",
        "",
        None,
        7,
        ["U0ALICE"],
        {"id": "U0ALICE"},
    ],
)
def test_user_ids_refused(value: object) -> None:
    assert not ingress.is_user_id(value)


def test_other_id_kinds() -> None:
    assert ingress.is_channel_id("C0DEPLOYS")
    assert ingress.is_channel_id("D0ALICE")
    assert ingress.is_channel_id("G0PRIVATE")
    assert not ingress.is_channel_id("C0DEPLOYS><!here")
    assert not ingress.is_channel_id("U0ALICE")
    assert ingress.is_team_id("T0LOCAL01")
    assert ingress.is_team_id("E0GRID")
    assert not ingress.is_team_id("T0LOCAL01\n")
    assert ingress.is_view_id("V0001ABCDEF")
    assert not ingress.is_view_id("V0001abc")


def test_text_limits() -> None:
    assert ingress.is_text("a" * 255, 255)
    assert not ingress.is_text("a" * 256, 255)
    assert ingress.is_text("", 10)
    assert not ingress.is_text("", 10, empty=False)
    assert not ingress.is_text(b"abc", 10)


# -- JSON depth ----------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_depth() -> None:
    assert not ingress.too_deep({"a": [1, {"b": 2}]})
    assert not ingress.too_deep(_nested(64))
    assert ingress.too_deep(_nested(65))
    assert ingress.too_deep(_nested(100_000))  # iterative: no RecursionError here
    assert not ingress.too_deep("x" * 10)


# -- payload shapes ------------------------------------------------------------------------

COMMAND = {
    "command": "/deploy",
    "text": "api 1.4.2 prod",
    "user_id": "U0ALICE",
    "channel_id": "C0DEPLOYS",
    "team_id": "T0LOCAL01",
    "trigger_id": "1.2.3",
    "response_url": "https://hooks.slack.com/commands/1",
}
CLICK = {
    "type": "block_actions",
    "user": {"id": "U0BOB", "team_id": "T0LOCAL01"},
    "team": {"id": "T0LOCAL01"},
    "enterprise": None,
    "trigger_id": "1.2.3",
    "channel": {"id": "C0DEPLOYS", "name": "deploys"},
    "container": {"type": "message", "channel_id": "C0DEPLOYS", "message_ts": "1700000000.0001"},
    "message": {"ts": "1700000000.0001", "blocks": [{"type": "section"}]},
    "state": {"values": {}},
    "actions": [
        {"action_id": "approval:choice:0", "block_id": "b", "value": "x", "type": "button"}
    ],
}
SUBMISSION = {
    "type": "view_submission",
    "user": {"id": "U0BOB"},
    "team": {"id": "T0LOCAL01"},
    "trigger_id": "1.2.3",
    "response_urls": [],
    "view": {
        "id": "V0001ABCDEF",
        "type": "modal",
        "callback_id": "approval_reason",
        "private_metadata": "{}",
        "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": None}}}},
    },
}
HOME = {
    "type": "event_callback",
    "team_id": "T0LOCAL01",
    "authorizations": [{"team_id": "T0LOCAL01", "user_id": "U0BOT"}],
    "event": {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE", "tab": "home"},
}


def _with(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``path`` set to ``value`` (or deleted for ``...``)."""
    out = copy.deepcopy(base)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    "payload",
    [
        COMMAND,
        {**COMMAND, "text": "<!channel> ' \" \n anything at all"},
        CLICK,
        SUBMISSION,
        _with(SUBMISSION, ("view", "state", "values", "reason", "reason", "value"), "r" * 3000),
        HOME,
        {**HOME, "event": {**HOME["event"], "channel": ""}},
        {"type": "url_verification", "challenge": "abc"},
        {"ssl_check": "1", "token": "x"},
        {"type": "shortcut", "callback_id": "x", "user": {"id": "U0ALICE"}},
        {"type": "view_closed", "user": {"id": "U0ALICE"}, "view": {"type": "modal"}},
    ],
)
def test_well_formed_payloads_pass(payload: dict[str, Any]) -> None:
    assert ingress.problem(payload) is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "body"),
        ("x", "body"),
        ({}, "type"),
        ({"type": 5}, "type"),
        (_with(COMMAND, ("user_id",), "U0ALICE><!channel"), "user_id"),
        (_with(COMMAND, ("user_id",), ...), "user_id"),
        (_with(COMMAND, ("channel_id",), "U0ALICE"), "channel_id"),
        (_with(COMMAND, ("team_id",), ...), "team_id"),
        (_with(COMMAND, ("command",), "deploy"), "command"),
        (_with(COMMAND, ("text",), ["api"]), "text"),
        (_with(CLICK, ("user",), ...), "user"),
        (_with(CLICK, ("user",), "U0BOB"), "user"),
        (_with(CLICK, ("user", "id"), ...), "user.id"),
        (_with(CLICK, ("user", "id"), "U0BOB><!here"), "user.id"),
        (_with(CLICK, ("user", "team_id"), "x"), "user.team_id"),
        (_with(CLICK, ("channel",), "C0DEPLOYS"), "channel"),
        (_with(CLICK, ("channel", "id"), "C0X|<!channel>"), "channel.id"),
        (_with(CLICK, ("team",), {"id": 5}), "team.id"),
        (_with(CLICK, ("trigger_id",), ...), "trigger_id"),
        (_with(CLICK, ("trigger_id",), 5), "trigger_id"),
        (_with(CLICK, ("actions",), []), "actions"),
        (_with(CLICK, ("actions",), ...), "actions"),
        (_with(CLICK, ("actions",), {"action_id": "x"}), "actions"),
        (_with(CLICK, ("actions", 0), "x"), "actions[0]"),
        (_with(CLICK, ("actions", 0, "action_id"), ...), "actions[0].action_id"),
        (_with(CLICK, ("actions", 0, "action_id"), "a" * 256), "actions[0].action_id"),
        (_with(CLICK, ("actions", 0, "value"), 5), "actions[0].value"),
        (_with(CLICK, ("actions", 0, "value"), "v" * 3001), "actions[0].value"),
        (
            _with(CLICK, ("actions", 0, "selected_user"), "U0X><!channel"),
            "actions[0].selected_user",
        ),
        (_with(CLICK, ("container",), []), "container"),
        (_with(CLICK, ("container", "channel_id"), "C0X><!channel"), "container.channel_id"),
        (_with(CLICK, ("container", "message_ts"), 1.5), "container.message_ts"),
        (_with(CLICK, ("message",), "hi"), "message"),
        (_with(CLICK, ("state",), []), "state"),
        (_with(CLICK, ("state", "values"), {"b": []}), "state.values"),
        (_with(CLICK, ("view",), {"id": "V0001"}), "view.type"),
        (_with(SUBMISSION, ("view",), ...), "view"),
        (_with(SUBMISSION, ("view",), []), "view"),
        (_with(SUBMISSION, ("view", "type"), ...), "view.type"),
        (_with(SUBMISSION, ("view", "id"), ...), "view.id"),
        (_with(SUBMISSION, ("view", "state"), ...), "view.state"),
        (_with(SUBMISSION, ("view", "state"), [1]), "view.state"),
        (_with(SUBMISSION, ("view", "state", "values"), []), "view.state.values"),
        (_with(SUBMISSION, ("view", "state", "values", "reason"), [1]), "view.state.values"),
        (
            _with(SUBMISSION, ("view", "state", "values", "reason", "reason", "value"), 7),
            "view.state.values",
        ),
        (_with(SUBMISSION, ("view", "private_metadata"), "m" * 3001), "view.private_metadata"),
        (_with(SUBMISSION, ("response_urls",), [1]), "response_urls"),
        (_with(HOME, ("event",), "app_home_opened"), "event"),
        (_with(HOME, ("event", "type"), ...), "event.type"),
        (_with(HOME, ("event", "user"), ...), "event.user"),
        (_with(HOME, ("event", "user"), "U0ALICE><!channel"), "event.user"),
        (_with(HOME, ("event", "channel"), "D0X><!channel"), "event.channel"),
        (_with(HOME, ("event", "tab"), ["home"]), "event.tab"),
        (_with(HOME, ("authorizations",), [5]), "authorizations"),
        (_with(HOME, ("team_id",), "T0X><!channel"), "team_id"),
        ({"type": "url_verification"}, "challenge"),
    ],
)
def test_malformed_payloads_name_the_field(payload: Any, field: str) -> None:
    assert ingress.problem(payload) == field


# -- decoding raw bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type", "reason"),
    [
        (b"payload=\xff\xfe", "application/x-www-form-urlencoded", "not UTF-8"),
        (b"payload=%7Bnot", "application/x-www-form-urlencoded", "invalid JSON"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "too deep"),
        (b"payload=" + b"%5B" * 100 + b"%5D" * 100, None, "too deep"),
        (b'{"n": ' + b"9" * 5000 + b"}", "application/json", "invalid JSON"),
        (b"x" * (1 << 20) + b"x", None, "too large"),
    ],
)
def test_decode_refuses(raw: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        decode(raw, content_type)


def test_decode_parses_like_bolt() -> None:
    assert decode(b"command=%2Fdeploy&text=a+b", None)[1] == {"command": "/deploy", "text": "a b"}
    assert decode(b'payload={"type":"x"}', None)[1] == {"type": "x"}
    assert decode(b'{"type":"x"}', "application/json") == ('{"type":"x"}', {"type": "x"})


# -- replays -------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_replay_guard_remembers_within_the_window() -> None:
    clock = Clock(1_000_000)
    guard = ReplayGuard(clock)
    assert guard.first_time("v0=a", 1_000_000)
    assert not guard.first_time("v0=a", 1_000_000)
    clock.now += 300
    assert not guard.first_time("v0=a", 1_000_000)  # still inside the window
    clock.now += 1
    assert guard.first_time("v0=b", 1_000_301)  # prunes the expired entry
    assert len(guard) == 1
    assert guard.first_time("v0=a", 1_000_301)


def test_replay_guard_is_bounded() -> None:
    clock = Clock(1_000_000)
    guard = ReplayGuard(clock, max_entries=3)
    for i in range(10):
        assert guard.first_time(f"v0={i}", 1_000_000 + i)
        assert len(guard) <= 3
    assert not guard.first_time("v0=9", 1_000_009)  # the newest are kept
    assert guard.first_time("v0=0", 1_000_000)  # the one closest to expiry went first


# -- version patterns ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["𝟏.𝟐.𝟑", "١.٢.٣", "1.2.３", "1.2.3-ｒc"])
def test_versions_are_ascii_only(version: str) -> None:
    with pytest.raises(UsageError, match="version must look like"):
        parse_args(f"api {version} prod", ("staging", "prod"))


def test_service_names_are_ascii_only() -> None:
    with pytest.raises(UsageError, match="service name"):
        parse_args("аpi 1.2.3 prod", ("staging", "prod"))  # its first letter is Cyrillic


# -- Bolt middleware -----------------------------------------------------------------------


async def test_middleware_stops_a_malformed_payload_without_calling_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    called: list[bool] = []

    async def nxt() -> BoltResponse:
        called.append(True)
        return BoltResponse(status=200)

    bad = _with(CLICK, ("user", "id"), "U0BOB><!channel")
    req = AsyncBoltRequest(body=bad, mode="socket_mode")
    resp = await ingress.RejectMalformed().async_process(
        req=req, resp=BoltResponse(status=200), next=nxt
    )
    assert (resp.status, resp.body, called) == (400, "", [])
    assert [r.getMessage() for r in caplog.records] == ["bad request: user.id"]

    good = AsyncBoltRequest(body=copy.deepcopy(CLICK), mode="socket_mode")
    await ingress.RejectMalformed().async_process(req=good, resp=BoltResponse(status=200), next=nxt)
    assert called == [True]


# -- log filter ----------------------------------------------------------------------------


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args or None, None)


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (
            "Invalid request signature detected "
            "(signature: v0=ab, timestamp: 1, body: token=SECRET)",
            "Invalid request signature detected",
        ),
        (
            "Unhandled request ({'type': 'block_actions', 'action_id': 'SECRET'})",
            "Unhandled request",
        ),
        ("request body: {'token': 'SECRET'}", "request body"),
        (
            "A global middleware (x) skipped calling either `next()` or `next_()` "
            "without providing a response for the request ({'a': 'SECRET'})",
            "A global middleware",
        ),
    ],
)
def test_bolt_records_lose_their_request_data(message: str, kept: str) -> None:
    record = _record("slack_bolt.AsyncApp", "%s", message)
    assert ingress.RedactRequestBodies().filter(record)
    assert "SECRET" not in record.getMessage()
    assert record.getMessage().startswith(kept)


def test_other_records_pass_unchanged() -> None:
    record = _record("bot.engine", "request body: %s", "kept")
    assert ingress.RedactRequestBodies().filter(record)
    assert record.getMessage() == "request body: kept"
    plain = _record("slack_bolt.AsyncApp", "Applying middleware %s", "x")
    ingress.RedactRequestBodies().filter(plain)
    assert plain.getMessage() == "Applying middleware x"


def test_quiet_bolt_logs_covers_records_from_child_loggers() -> None:
    logger = logging.getLogger("test_ingress.parent")
    logger.propagate = False
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    try:
        ingress.quiet_bolt_logs(logger)
        child = _record("slack_bolt.RequestVerification", "x (body: %s)", json.dumps("SECRET"))
        logger.handle(child)  # as a propagated record reaches the parent's handlers
        assert seen and "SECRET" not in seen[0]
    finally:
        logger.removeHandler(handler)


_FORM_TEXT = st.text(alphabet=st.sampled_from("ab=&%+;2BF9zé\u00ff%C3A9 "), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_FORM_TEXT)
def test_form_bodies_parse_as_parse_qsl_does(text: str) -> None:
    """bot.app.endpoint parses forms with yarl's C unquoting: the same answer as the standard
    library's parse_qsl, for any text, escapes broken or not."""
    if text.startswith("{"):
        return  # read as JSON, not a form
    expected = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in expected:
        return
    assert parse_body(text, "application/x-www-form-urlencoded") == expected


def test_a_slash_command_form_parses_like_slack_sent_it() -> None:
    text = "command=%2Fdeploy&text=" + quote_plus("payload-api 1.2.3 prod") + "&text=last"
    assert parse_body(text, "application/x-www-form-urlencoded") == {
        "command": "/deploy",
        "text": "last",
    }
