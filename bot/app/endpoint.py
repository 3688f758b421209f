"""The HTTP endpoint (/slack/events): authenticate, decode and check each request ourselves
before Bolt parses anything, so forged or malformed requests never reach a listener.

Answers: 401 for anything not signed with our secret within 5 minutes (whatever its headers
and body), 200 with an empty body for a replay of a request already seen, 400 for a signed
request we cannot read or whose shape is wrong, and never a 5xx. Each refusal is one log
line naming the reason, never the body.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import build_normalized_headers, extract_content_type
from yarl import URL

from bot.app import ingress

log = logging.getLogger(__name__)

MAX_SKEW = 300  # seconds either side of our clock, as Slack recommends
MAX_BODY = 1 << 20  # bytes kept and decoded; Slack's payloads are far smaller
MAX_READ = 8 << 20  # bytes authenticated before we stop reading (then: not verified, 401)
CHUNK = 1 << 16
TIMESTAMP = re.compile(r"[0-9]{1,12}")  # epoch seconds: not "1e9", "-5" or non-ASCII digits
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
UNAUTHORIZED = "invalid request"
BAD_REQUEST = "bad request"


class Unverified(Exception):
    """The request is not proven to come from Slack; the message is the reason, never data."""


@dataclass
class ReplayGuard:
    """Signatures seen within the replay window: Slack's signature covers the timestamp and the
    body, so the same signature twice is the same request sent twice.

    Bounded: entries leave when their timestamp falls out of the window (then the timestamp
    check refuses the request anyway); when full, the entry closest to expiry goes first.
    """

    clock: Callable[[], float]
    window: float = MAX_SKEW
    max_entries: int = 100_000
    _expiry: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _heap: list[tuple[float, str]] = field(default_factory=list, init=False, repr=False)

    def first_time(self, signature: str, timestamp: int) -> bool:
        """Record ``signature``; False if it was already recorded and has not expired."""
        now = self.clock()
        self._prune(now)
        if signature in self._expiry:
            return False
        while len(self._expiry) >= self.max_entries:
            self._evict()
        expires = timestamp + self.window
        self._expiry[signature] = expires
        heapq.heappush(self._heap, (expires, signature))
        return True

    def __len__(self) -> int:
        return len(self._expiry)

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            self._evict()

    def _evict(self) -> None:
        _, signature = heapq.heappop(self._heap)
        self._expiry.pop(signature, None)


@dataclass(frozen=True)
class Authenticator:
    """Checks Slack's v0 request signature over the raw bytes, streaming, with our clock."""

    signing_secret: str
    clock: Callable[[], float]

    def headers(self, request: web.Request) -> tuple[str, str]:
        """The timestamp and signature, if both are present once, well formed and fresh."""
        timestamps = request.headers.getall("X-Slack-Request-Timestamp", [])
        signatures = request.headers.getall("X-Slack-Signature", [])
        if len(timestamps) != 1 or len(signatures) != 1:
            raise Unverified("missing or repeated signature headers")
        if not TIMESTAMP.fullmatch(timestamps[0]) or not SIGNATURE.fullmatch(signatures[0]):
            raise Unverified("malformed signature headers")
        if abs(self.clock() - int(timestamps[0])) > MAX_SKEW:
            raise Unverified("timestamp outside the 5-minute window")
        return timestamps[0], signatures[0]

    async def body(self, request: web.Request, timestamp: str, signature: str) -> bytes:
        """The raw body (at most MAX_BODY + 1 bytes kept), once its signature checks out.
        The signed text is the timestamp header as sent (leading zeros and all)."""
        base = b"v0:" + timestamp.encode("ascii") + b":"
        mac = hmac.new(self.signing_secret.encode(), base, hashlib.sha256)
        kept = bytearray()
        read = 0
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                read += len(chunk)
                if read > MAX_READ:
                    raise Unverified("body too large to verify")
                mac.update(chunk)
                if len(kept) <= MAX_BODY:
                    kept += chunk[: MAX_BODY + 1 - len(kept)]
        except Unverified:
            raise
        except Exception as exc:  # the client went away, a broken chunk, a bad encoding
            raise Unverified(f"unreadable body ({type(exc).__name__})") from None
        expected = "v0=" + mac.hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise Unverified("signature mismatch")
        return bytes(kept)


class Malformed(Exception):
    """A signed request we will not pass on; the message names the reason, never data."""


def parse_body(text: str, content_type: str | None) -> dict[str, Any]:
    """Slack's two body shapes: JSON (Events API), or a form whose ``payload`` field holds
    JSON (interactivity) or whose fields are the payload (slash commands). Bolt's own parser
    takes any form containing the text "payload" for the second kind, so it reads
    ``/deploy payload-api 1.2.3`` as an empty payload; this one looks for the field."""
    if not text:
        return {}
    if content_type == "application/json" or text.startswith("{"):
        parsed = json.loads(text)
        return parsed if isinstance(parsed, dict) else {"": parsed}
    # yarl's unquoting is in C: parse_qsl's takes a third of a click's handling time on an
    # interactive payload, where every brace and quote is %-escaped. Same result, last
    # value of a repeated field wins (tests/unit/test_ingress.py compares the two).
    form = dict(URL.build(query_string=text, encoded=True).query.items())
    if "payload" in form:
        parsed = json.loads(form["payload"])
        return parsed if isinstance(parsed, dict) else {"": parsed}
    return form


def decode(raw: bytes, content_type: str | None) -> tuple[str, dict[str, Any]]:
    """The body as text and as a dict."""
    if len(raw) > MAX_BODY:
        raise Malformed("body too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("body is not UTF-8") from None
    try:
        parsed = parse_body(text, content_type)
    except RecursionError:
        raise Malformed("JSON too deep") from None
    except ValueError:  # invalid JSON, or an integer too long to convert
        raise Malformed("invalid JSON") from None
    if ingress.too_deep(parsed):
        raise Malformed("JSON too deep")
    return text, parsed


def routes(
    app: AsyncApp,
    signing_secret: str,
    path: str = "/slack/events",
    *,
    clock: Callable[[], float] = time.time,
) -> list[web.RouteDef]:
    """The Slack endpoint. ``clock`` decides the 5-minute window (the
    app is built with Bolt's own verification off: this is the only check)."""
    auth = Authenticator(signing_secret, clock)
    replays = ReplayGuard(clock)

    async def events(request: web.Request) -> web.Response:
        try:
            timestamp, signature = auth.headers(request)
            raw = await auth.body(request, timestamp, signature)
        except Unverified as exc:
            log.warning("unauthenticated request refused: %s", exc)
            return web.Response(status=401, text=UNAUTHORIZED)
        if not replays.first_time(signature, int(timestamp)):
            log.info("replayed request ignored")
            return web.Response(status=200)
        try:
            return await _dispatch(app, request, raw)
        except Malformed as exc:
            log.warning("bad request: %s", exc)
        except Exception as exc:  # anything Bolt or a listener raises: the request's fault
            log.warning("bad request: %s", type(exc).__name__)
        return web.Response(status=400, text=BAD_REQUEST)

    return [web.post(path, events)]


async def _dispatch(app: AsyncApp, request: web.Request, raw: bytes) -> web.Response:
    """Decode and check a verified body, then hand it to Bolt; a 5xx from Bolt becomes 400."""
    # Bolt's own header normalisation and content-type rule, so it parses what we checked.
    headers = build_normalized_headers(dict(request.headers))
    text, parsed = decode(raw, extract_content_type(headers))
    field_name = ingress.problem(parsed)
    if field_name is not None:
        raise Malformed(field_name)
    # Bolt parses an HTTP body itself (and misreads a form mentioning "payload"): give it an
    # empty one, then the body we parsed and checked, and the context built from it.
    bolt_request = AsyncBoltRequest(body="", query=request.query_string, headers=headers)
    bolt_request.raw_body = text
    bolt_request.body = parsed
    bolt_request.context = build_async_context(AsyncBoltContext({}), parsed)
    response = await app.async_dispatch(bolt_request)
    if response.status >= 500:
        # Bolt has already logged the listener's failure (our app.error handler: one line).
        log.debug("Bolt answered %d; answering 400", response.status)
        return web.Response(status=400, text=BAD_REQUEST)
    return await to_aiohttp_response(response)
