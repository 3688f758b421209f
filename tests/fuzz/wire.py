"""Sending requests to the running bot as anyone could: signed or not, any headers, any body.

Shared by the regression and property tests in this folder; everything goes over HTTP to the
real bot, and the checks look only at status codes, log records and Web API calls."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.localslack.callbacks import Delivery
from tests.conftest import SECRET, Harness

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CANARY = "CANARY7q3x"  # put in request bodies; must never show up in a log line
INJECTION = "U0ALICE><!channel"


def form(fields: dict[str, Any]) -> str:
    """A form-encoded body (slash commands, and interactivity as ``payload=<json>``)."""
    return urlencode(fields)


def interactive(payload: Any) -> str:
    """Slack's interactivity body: the payload as JSON in a ``payload`` form field."""
    return form({"payload": json.dumps(payload)})


def signature(body: bytes, timestamp: str) -> str:
    """Slack's v0 signature over any timestamp text (``ws.sign`` takes only an int)."""
    base = b"v0:" + timestamp.encode("utf-8", "surrogatepass") + b":" + body
    return "v0=" + hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()


def slash_fields(**overrides: Any) -> dict[str, Any]:
    """A /deploy as localslack sends it, with the canary in the legacy token field."""
    fields = {
        "token": CANARY,
        "team_id": "T0LOCAL01",
        "team_domain": "local",
        "channel_id": "C0DEPLOYS",
        "channel_name": "deploys",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "command": "/deploy",
        "text": "api 1.4.2 staging",
        "api_app_id": "A0LOCALAPP",
        "is_enterprise_install": "false",
        "response_url": "http://127.0.0.1:9/response/none",
        "trigger_id": "1.2.none",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def click_payload(value: str = "no-such-interrupt", **overrides: Any) -> dict[str, Any]:
    """A block_actions click on an approval button, in Slack's shape."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0CAROL", "username": "carol", "name": "carol", "team_id": "T0LOCAL01"},
        "api_app_id": "A0LOCALAPP",
        "token": CANARY,
        "container": {
            "type": "message",
            "message_ts": "1700000000.000100",
            "channel_id": "C0DEPLOYS",
            "is_ephemeral": False,
        },
        "trigger_id": "1.2.none",
        "team": {"id": "T0LOCAL01", "domain": "local"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": "C0DEPLOYS", "name": "deploys"},
        "message": {"ts": "1700000000.000100", "text": "approval", "blocks": []},
        "response_url": "http://127.0.0.1:9/response/none",
        "state": {"values": {}},
        "actions": [
            {
                "action_id": "approval:choice:0",
                "block_id": "choices",
                "type": "button",
                "value": value,
                "action_ts": "1700000000.000200",
            }
        ],
    }
    payload.update(overrides)
    return payload


def submission_payload(**view_overrides: Any) -> dict[str, Any]:
    """A view_submission of the "Reject with reason…" modal, in Slack's shape."""
    view: dict[str, Any] = {
        "id": "V0001ABCDEF",
        "type": "modal",
        "callback_id": "approval_reason",
        "private_metadata": json.dumps({"interrupt_id": "no-such", "channel": "C0DEPLOYS"}),
        "state": {
            "values": {"reason": {"reason": {"type": "plain_text_input", "value": "not today"}}}
        },
        "blocks": [],
    }
    view.update(view_overrides)
    return {
        "type": "view_submission",
        "team": {"id": "T0LOCAL01", "domain": "local"},
        "user": {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": "T0LOCAL01"},
        "api_app_id": "A0LOCALAPP",
        "token": CANARY,
        "trigger_id": "1.2.none",
        "view": {k: v for k, v in view.items() if v is not None},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def home_event(user: Any = "U0ALICE") -> dict[str, Any]:
    """An Events API app_home_opened, in Slack's shape."""
    return {
        "token": CANARY,
        "team_id": "T0LOCAL01",
        "api_app_id": "A0LOCALAPP",
        "type": "event_callback",
        "event_id": "Ev0ABC",
        "event_time": 1700000000,
        "event": {"type": "app_home_opened", "user": user, "channel": "D0ALICE", "tab": "home"},
    }


@dataclass
class Wire:
    """Sends bodies to the bot; ``unique`` keeps a body from being a replay of an earlier one."""

    h: Harness
    serial: Iterator[int] = field(default_factory=itertools.count)

    def nonce(self) -> int:
        """A number not used before by this Wire."""
        return next(self.serial)

    def unique(self, body: str | bytes) -> bytes:
        """Append a never-seen form field, so a repeated example is not taken for a replay."""
        raw = body.encode() if isinstance(body, str) else body
        return raw + b"&_n=%d" % self.nonce()

    async def signed(self, body: str | bytes, content_type: str = FORM) -> Delivery:
        """Send ``body`` with Slack's signature headers for now."""
        raw = body.encode() if isinstance(body, str) else body
        headers = self.h.ws.sign(raw, int(time.time()))
        return await self.h.ws.deliver_raw(raw, content_type, headers)

    async def raw(self, body: str | bytes, content_type: str, headers: dict[str, str]) -> Delivery:
        """Send ``body`` with exactly these headers (plus the content type)."""
        return await self.h.ws.deliver_raw(body, content_type, headers)


def app_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records other than aiohttp's access lines (which carry no body)."""
    return [r for r in caplog.records if r.name != "aiohttp.access"]


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback, and no request body (the canary), in any log record."""
    for r in caplog.records:
        text = r.getMessage()
        assert r.exc_info is None, (r.name, text)
        assert "Traceback" not in text, (r.name, text)
        assert CANARY not in text, (r.name, text)
        assert INJECTION not in text, (r.name, text)


def web_api_text(h: Harness) -> str:
    """Everything the bot sent to the Web API, as one string to search."""
    return "\n".join(f"{c.method} {json.dumps(c.args, default=str)}" for c in h.ws.calls)
