"""The HTTP API on the bot's own server (in HTTP mode, the port of ``/slack/events``): pending
approvals, and deciding them from CI or any other tool, with bearer tokens from the policy.

- ``GET /api/approvals?limit=&cursor=`` (scope ``read``): pending approvals, oldest first.
- ``POST /api/approvals/{id}/decision`` (scope ``decide``), body ``{"choice": "approve",
  "as": "U0BOB", "comment": "…"}`` and an ``Idempotency-Key`` header.
- ``GET /api/openapi.json`` (no token): the OpenAPI 3.1 document (bot/web/openapi.py).

Tokens are ``[api] tokens`` in the policy file, stored as SHA-256 hashes (bot/policy/). A
decision goes through ``Engine.decide``: the same rules, the same exactly-once claim and the
same message updates as a click. Answers: 401 no or unknown token; 403 the token lacks the
scope or may not act as that user, or the policy refuses (the words say why); 404 no such
approval; 409 already decided, or an Idempotency-Key reused for another request; 422 a body
that is no decision for this approval; 400 no usable Idempotency-Key. Never a 5xx: anything
unexpected is one log line and a 400 asking for a retry with the same key. Logs name a
token by its name, never the token, and never show a body.

Also here, for every decider outside Slack (this API and bot/cli.py): ``plain``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.audit_export import iso_utc
from bot.engine import Answer, Engine
from bot.interrupts import normalise
from bot.model import Approval, Run
from bot.policy.rules import ApiToken
from bot.slackids import USER_ID
from bot.tasks import TaskSet
from bot.web import openapi

log = logging.getLogger(__name__)

MAX_BODY = 64 << 10  # a decision is a few hundred bytes
KEEP_KEYS = 24 * 3600.0  # how long an Idempotency-Key and its answer are remembered
STALE_KEY = 15 * 60.0  # a key still unanswered after this belonged to a process that stopped
PATIENCE = 30.0  # how long a request waits for its decision to be recorded
ID_RE = re.compile(openapi.ID_PATTERN[1:-1], re.ASCII)
KEY_RE = re.compile(openapi.KEY_PATTERN[1:-1], re.ASCII)
CURSOR_RE = re.compile(openapi.CURSOR_PATTERN[1:-1], re.ASCII)
LIMIT_RE = re.compile(r"[0-9]{1,3}", re.ASCII)
FIELDS = ("choice", "as", "comment")
STATUS = {"decided": 200, "voted": 200, "refused": 403, "closed": 409, "unknown": 404}
ERROR = {"refused": "refused", "closed": "already_decided", "unknown": "not_found"}
SCOPE_WORDS = {"read": "list approvals", "decide": "decide approvals"}
NOT_HANDLED = (
    "This request could not be handled; try again. A decision: send it again with the same "
    "Idempotency-Key to learn how it ended."
)
BODY_SHAPE = 'The body must be a JSON object like {"choice": "approve", "as": "U0123ABC"}.'


# -- plain words from Slack mrkdwn -----------------------------------------------------------

_PLAIN: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"<!date\^[^|>]*\|([^>]*)>"), r"\1"),
    (re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>"), r"@\1"),
    (re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>"), r"@\1"),
    (re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>"), lambda m: "#" + (m[2] or m[1])),
    (re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>"), r"@\1"),
    (re.compile(r"<[^|>]*\|([^>]*)>"), r"\1"),
    (re.compile(r"<([^>]*)>"), r"\1"),
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"(?<![\w*_~])([*_~])(?=\S)(.+?)(?<=\S)\1(?![\w*_~])"), r"\2"),
)


def plain(text: str) -> str:
    """Slack mrkdwn as words for a terminal or a JSON answer: ``✅ *Approved* by <@U0BOB>
    <!date^…|2026-01-01 10:00 UTC>`` -> ``✅ Approved by @U0BOB 2026-01-01 10:00 UTC``."""
    for pattern, replacement in _PLAIN:
        text = pattern.sub(replacement, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# -- the HTTP API ----------------------------------------------------------------------------


class Refusal(Exception):
    """An answer other than 2xx: ``error`` for programs, ``message`` in words for people."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.message, self.headers = status, error, message, headers

    def response(self) -> web.Response:
        body = {"error": self.error, "message": self.message}
        return _json(self.status, json.dumps(body, ensure_ascii=False), self.headers)


@dataclass(frozen=True)
class DecisionBody:
    """A decision request, checked, with its canonical form, so a reused Idempotency-Key is
    compared on meaning, not bytes."""

    choice: str
    as_user: str | None
    comment: str | None
    canonical: str  # the body as compared for Idempotency-Key reuse


def _json(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def _short(value: str, limit: int = 40) -> str:
    return json.dumps(value if len(value) <= limit else value[: limit - 1] + "…")


def _guarded(
    handler: Callable[[web.Request], Awaitable[web.Response]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Refusals become their answers; anything unexpected is one log line and a 400."""

    async def run(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal.response()
        except Exception as exc:
            log.warning(
                "api: %s %s not handled: %s", request.method, request.path, type(exc).__name__
            )
            return Refusal(400, "not_handled", NOT_HANDLED).response()

    return run


class Api:
    """The handlers; ``tokens`` are the policy's ``[api] tokens``."""

    def __init__(self, engine: Engine, tasks: TaskSet, tokens: Sequence[ApiToken]) -> None:
        self.engine = engine
        self.store = engine.store
        self.tasks = tasks
        self.tokens = tuple(tokens)

    def routes(self) -> list[web.RouteDef]:
        document = json.dumps(openapi.document(), ensure_ascii=False)

        async def spec(_: web.Request) -> web.Response:
            return _json(200, document)

        return [
            web.get("/api/approvals", _guarded(self.list_approvals)),
            web.post("/api/approvals/{id}/decision", _guarded(self.decision)),
            web.get("/api/openapi.json", spec),
        ]

    # -- who is asking ------------------------------------------------------------------------
    def authorise(self, request: web.Request, scope: str) -> ApiToken:
        token = self._token(request.headers.getall("Authorization", []))
        if token is None:
            log.info("api: %s %s refused: no valid token", request.method, request.path)
            raise Refusal(
                401,
                "unauthorized",
                "Send a valid API token: Authorization: Bearer <token>.",
                {"WWW-Authenticate": 'Bearer realm="approvals"'},
            )
        if scope not in token.scopes:
            log.info("api: token %s refused: no %s scope", token.name, scope)
            have = ", ".join(sorted(token.scopes))
            raise Refusal(
                403, "forbidden", f"This token may not {SCOPE_WORDS[scope]} (its scopes: {have})."
            )
        return token

    def _token(self, headers: list[str]) -> ApiToken | None:
        if len(headers) != 1:
            return None
        scheme, _, secret = headers[0].strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not 0 < len(secret) <= 512:
            return None
        digest = hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()
        found = None
        for token in self.tokens:  # every one compared, in constant time
            if hmac.compare_digest(token.token_sha256, digest):
                found = token
        return found

    # -- GET /api/approvals -------------------------------------------------------------------
    async def list_approvals(self, request: web.Request) -> web.Response:
        self.authorise(request, "read")
        limit = _limit(request.query.getall("limit", []))
        after = _cursor(request.query.getall("cursor", []))
        page = await self.store.pending_approvals(after, limit + 1)
        more = len(page) > limit
        page = page[:limit]
        last = page[-1][0] if page else None
        body = {
            "approvals": [_approval_json(a, run) for a, run in page],
            "next_cursor": _encode_cursor(last) if more and last else None,
        }
        return _json(200, json.dumps(body, ensure_ascii=False))

    # -- POST /api/approvals/{id}/decision ---------------------------------------------------
    async def decision(self, request: web.Request) -> web.Response:
        token = self.authorise(request, "decide")
        key = _idempotency_key(request.headers.getall("Idempotency-Key", []))
        body = _decision_body(await _read_body(request))
        user = _acting_user(token, body.as_user)
        interrupt_id = request.match_info["id"]
        found = (
            await self.store.approval_and_run(interrupt_id)
            if ID_RE.fullmatch(interrupt_id)
            else None
        )
        if found is None:
            raise Refusal(404, "not_found", "There is no approval with this id.")
        approval, run = found
        request_ = normalise(approval.request, approval.meta)
        if request_.choice(body.choice) is None:
            ids = ", ".join(c.id for c in request_.choices)
            raise Refusal(
                422,
                "unknown_choice",
                f"{_short(body.choice)} is not a choice of this approval (its choices: {ids}).",
            )
        fingerprint = hashlib.sha256(f"{interrupt_id}\n{body.canonical}".encode()).hexdigest()
        earlier = await self.store.api_request_begin(
            token.name, key, fingerprint, self.engine.clock(), KEEP_KEYS, STALE_KEY
        )
        if earlier is not None:
            return _replay(earlier, fingerprint)
        return await self._decide(token, key, approval, run, body, user)

    async def _decide(
        self,
        token: ApiToken,
        key: str,
        approval: Approval,
        run: Run,
        body: DecisionBody,
        user: str,
    ) -> web.Response:
        iid = approval.interrupt_id
        try:
            answer, work = await self._claim(iid, user, body.choice, body.comment)
        except Exception:
            await self.store.api_request_forget(token.name, key)
            raise
        if answer is not None:
            status, text = await self._settled(token, key, user, run, iid, body.choice, answer)
        else:  # not recorded yet (the database is that busy): answered later, under the key
            status = 202
            words = (
                "Your decision is being recorded. Send the same request again to see how it ended."
            )
            text = json.dumps(
                {"status": "accepted", "text": words, "id": iid, "run_id": run.run_id}
            )
        if answer is None and work is not None:
            follow = self._follow(work, token, key, user, run, iid, body.choice)
            self.tasks.spawn(follow, f"api-decision-{run.run_id}")
        return _json(status, text)

    async def _claim(
        self, iid: str, user: str, choice: str, comment: str | None
    ) -> tuple[Answer | None, asyncio.Task[Answer] | None]:
        """``Engine.decide``, which returns at the claim (the graph resumes in the
        background), as a task of its own: a client that goes away does not cut it. Returns
        its answer (None: not recorded within ``PATIENCE``, the database is that busy) and
        the task, still running then."""
        work = self.tasks.spawn(self.engine.decide(iid, user, choice, comment), f"decide-{user}")
        if work is None:  # shutting down: no new background work, so decide here
            return await self.engine.decide(iid, user, choice, comment), None
        done, _ = await asyncio.wait({work}, timeout=PATIENCE)
        return (work.result() if done else None), work

    async def _follow(
        self,
        work: asyncio.Task[Answer],
        token: ApiToken,
        key: str,
        user: str,
        run: Run,
        iid: str,
        choice: str,
    ) -> None:
        """Record the answer of a decision the request could not wait for, under its key,
        once the decision's task ends (its claim recorded, or refused)."""
        try:
            answer = await asyncio.shield(work)
        except Exception:  # the task logged its failure already; let the key be used again
            await self.store.api_request_forget(token.name, key)
            return
        await self._settled(token, key, user, run, iid, choice, answer)

    async def _settled(
        self,
        token: ApiToken,
        key: str,
        user: str,
        run: Run,
        iid: str,
        choice: str,
        answer: Answer,
    ) -> tuple[int, str]:
        """Record the answer under the key (the first recorded wins) and in the audit."""
        status = STATUS.get(answer.status, 409)
        words = plain(answer.text)
        if status == 200:
            payload: dict[str, Any] = {
                "status": answer.status,
                "text": words,
                "id": iid,
                "run_id": run.run_id,
            }
        else:
            payload = {"error": ERROR.get(answer.status, answer.status), "message": words}
        recorded = await self.store.api_request_end(
            token.name, key, status, json.dumps(payload, ensure_ascii=False)
        )
        await self.store.record(
            "api_decision",
            self.engine.clock(),
            user=user,
            run_id=run.run_id,
            interrupt_id=iid,
            detail={"token": token.name, "choice": choice, "answer": answer.status},
        )
        log.info("api: token %s: %s for run %s", token.name, answer.status, run.run_id)
        return recorded


# -- reading a request -----------------------------------------------------------------------


def _limit(values: list[str]) -> int:
    if not values:
        return openapi.DEFAULT_LIMIT
    if len(values) == 1 and LIMIT_RE.fullmatch(values[0]):
        n = int(values[0])
        if 1 <= n <= openapi.MAX_LIMIT:
            return n
    raise Refusal(422, "bad_limit", f"limit must be a whole number from 1 to {openapi.MAX_LIMIT}.")


def _encode_cursor(a: Approval) -> str:
    raw = json.dumps([a.created_at, a.interrupt_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(values: list[str]) -> tuple[float, str] | None:
    if not values:
        return None
    bad = Refusal(422, "bad_cursor", "cursor must be the next_cursor of an earlier page.")
    if len(values) != 1 or not CURSOR_RE.fullmatch(values[0]):
        raise bad
    try:
        decoded = json.loads(base64.urlsafe_b64decode(values[0] + "=" * (-len(values[0]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise bad from None
    if (
        isinstance(decoded, list)
        and len(decoded) == 2
        and isinstance(decoded[0], int | float)
        and not isinstance(decoded[0], bool)
        and isinstance(decoded[1], str)
    ):
        return float(decoded[0]), decoded[1]
    raise bad


def _idempotency_key(values: list[str]) -> str:
    if len(values) == 1 and KEY_RE.fullmatch(values[0]):
        return values[0]
    raise Refusal(
        400,
        "idempotency_key",
        "Send one Idempotency-Key header (1 to 200 printable characters, a UUID say), new for "
        "each decision, so that a retry can never decide twice.",
    )


async def _read_body(request: web.Request) -> bytes:
    too_large = Refusal(422, "too_large", f"The body is larger than {MAX_BODY} bytes.")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large
    kept = bytearray()
    try:
        async for chunk in request.content.iter_chunked(1 << 14):
            kept += chunk
            if len(kept) > MAX_BODY:
                raise too_large
    except Refusal:
        raise
    except Exception:  # the client went away, a broken chunk
        raise Refusal(400, "unreadable", "The request body could not be read.") from None
    return bytes(kept)


def _decision_body(raw: bytes) -> DecisionBody:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refusal(422, "bad_body", BODY_SHAPE) from None
    if not isinstance(data, dict):
        raise Refusal(422, "bad_body", BODY_SHAPE)
    unknown = sorted(k for k in data if k not in FIELDS)
    if unknown:
        names = ", ".join(_short(k, 20) for k in unknown[:3])
        raise Refusal(
            422, "bad_body", f"Unknown field {names}: a decision takes choice, as and comment."
        )
    choice = data.get("choice")
    if not isinstance(choice, str) or not 0 < len(choice) <= openapi.CHOICE_MAX:
        raise Refusal(
            422, "bad_body", "choice is required: the id of one of the approval's choices."
        )
    as_user = data.get("as")
    if "as" in data and (not isinstance(as_user, str) or not USER_ID.fullmatch(as_user)):
        raise Refusal(422, "bad_body", "as must be a Slack user id, like U0123ABC.")
    comment = data.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > openapi.COMMENT_MAX):
        raise Refusal(
            422, "bad_body", f"comment must be text of at most {openapi.COMMENT_MAX} characters."
        )
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return DecisionBody(choice, as_user, (comment or "").strip() or None, canonical)


def _acting_user(token: ApiToken, named: str | None) -> str:
    """Whom the token decides as: its fixed ``as``, or the body's ``as`` if it may."""
    if token.as_user is not None:
        if named not in (None, token.as_user):
            raise Refusal(403, "forbidden", f"This token decides as {token.as_user} only.")
        return token.as_user
    if named is None:
        raise Refusal(
            422, "bad_body", "Say whom you decide as: as, a Slack user id this token may act as."
        )
    if not token.may_act_as(named):
        raise Refusal(403, "forbidden", f"This token may not decide as {named}.")
    return named


def _replay(earlier: tuple[str, int | None, str | None], fingerprint: str) -> web.Response:
    first, status, text = earlier
    if not hmac.compare_digest(first, fingerprint):
        raise Refusal(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was used for a different request: use a new key for a new "
            "decision.",
        )
    if status is None or text is None:
        raise Refusal(
            409,
            "in_progress",
            "A request with this Idempotency-Key is still being answered; send it again in a "
            "moment.",
        )
    return _json(status, text, {"Idempotent-Replayed": "true"})


def _approval_json(a: Approval, run: Run) -> dict[str, Any]:
    request = normalise(a.request, a.meta)
    return {
        "id": a.interrupt_id,
        "run_id": a.run_id,
        "title": request.title,
        "text": request.text,
        "fields": [{"label": k, "value": v} for k, v in request.fields],
        "choices": [{"id": c.id, "label": c.label} for c in request.choices],
        "requester": run.requester,
        "created_at": iso_utc(a.created_at),
        "channel": a.channel or run.channel or None,
    }


def routes(engine: Engine, tasks: TaskSet, tokens: Sequence[ApiToken]) -> list[web.RouteDef]:
    """The API's routes, for ``BotRuntime.routes``."""
    return Api(engine, tasks, tokens).routes()
