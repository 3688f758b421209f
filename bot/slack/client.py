"""The bot's port to Slack, and its Web API implementation.

Every failure a call can meet (Slack's own ``ok: false``, a 429, a 5xx with an HTML body, a
reset, a timeout) becomes one ``SlackError`` that says whether trying again can help. The
outbox decides what to do with it; nothing else needs to know slack_sdk's exceptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.jsontypes import JSONObject

# Slack's own error codes that mean "try again later", not "never".
TRANSIENT_CODES = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackError(Exception):
    """A Slack call that did not succeed. ``code`` is Slack's error string (``not_in_channel``)
    or ours for failures below Slack (``http_503``, ``connection_reset``, ``timeout``)."""

    def __init__(self, code: str, *, transient: bool = False, retry_after: float = 0.0) -> None:
        super().__init__(code)
        self.code = code
        self.transient = transient
        self.retry_after = retry_after


class SlackPort(Protocol):
    """What the bot needs from Slack. Every method raises SlackError, and only that."""

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[JSONObject] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        """Post a message; returns (channel id, ts)."""
        ...

    async def update(
        self, channel: str, ts: str, text: str, blocks: list[JSONObject] | None
    ) -> None: ...

    async def ephemeral(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> None: ...

    async def open_dm(self, user: str) -> str:
        """The id of the bot's DM with ``user``."""
        ...

    async def open_modal(self, trigger_id: str, view: JSONObject) -> None: ...

    async def publish_home(self, user: str, view: JSONObject) -> None: ...

    async def respond(self, response_url: str, text: str) -> None:
        """An ephemeral answer through a command's ``response_url``."""
        ...

    async def group_members(self, group: str) -> list[str]:
        """The members of a user group (``usergroups.users.list``)."""
        ...

    async def workspace_url(self) -> str:
        """The workspace's URL (``auth.test``), for permalinks."""
        ...


def web_client(token: str, base_url: str, session: aiohttp.ClientSession) -> AsyncWebClient:
    """The Web API client on one shared HTTP session (slack_sdk opens a new session, and a new
    TCP connection, per call otherwise). No retry handlers, not even slack_sdk's default one
    for resets: the outbox retries durably, for minutes, and paces itself from
    ``Retry-After``; an inline retry would hide both."""
    return AsyncWebClient(token=token, base_url=base_url, session=session, retry_handlers=[])


def http_session(timeout: float) -> aiohttp.ClientSession:
    """One session for every Slack call; with a shared session slack_sdk no longer applies its
    own timeout, so the session carries it."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def classify(exc: BaseException) -> SlackError:
    """Map anything a Slack call raised to a SlackError; see the module docstring."""
    if isinstance(exc, SlackError):
        return exc
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 0) or getattr(response, "status", 0) or 0)
        data = getattr(response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        headers = getattr(response, "headers", None) or {}
        if status == 429:
            return SlackError(code or "ratelimited", transient=True, retry_after=_seconds(headers))
        if status >= 500:
            return SlackError(code or f"http_{status}", transient=True)
        if code:
            return SlackError(str(code), transient=code in TRANSIENT_CODES)
        return SlackError(f"http_{status or 'unknown'}", transient=status == 0 or status >= 500)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return SlackError("timeout", transient=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return SlackError("connection_error", transient=True)
    return SlackError(f"unexpected_{type(exc).__name__}", transient=True)


def _seconds(headers: Mapping[str, Any]) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0


# Told of every call as it ends: (method, None) or (method, the SlackError's code). Metrics.
CallObserver = Callable[[str, str | None], None]


def _unobserved(method: str, error: str | None) -> None:
    pass


class WebApiPort:
    """SlackPort over slack_sdk's async clients."""

    def __init__(
        self,
        client: AsyncWebClient,
        session: aiohttp.ClientSession,
        observe: CallObserver = _unobserved,
    ) -> None:
        self._client = client
        self._session = session
        self._observe = observe

    @contextmanager
    def _translated(self, method: str) -> Iterator[None]:
        """Count the call, and turn whatever it raised into a SlackError."""
        try:
            yield
        except SlackError as exc:
            self._observe(method, exc.code)
            raise
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = classify(exc)
            self._observe(method, error.code)
            raise error from exc
        self._observe(method, None)

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[JSONObject] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        with self._translated("chat.postMessage"):
            resp = await self._client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, unfurl_links=False
            )
        return str(resp["channel"]), str(resp["ts"])

    async def update(
        self, channel: str, ts: str, text: str, blocks: list[JSONObject] | None
    ) -> None:
        with self._translated("chat.update"):
            await self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    async def ephemeral(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> None:
        with self._translated("chat.postEphemeral"):
            await self._client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts
            )

    async def open_dm(self, user: str) -> str:
        with self._translated("conversations.open"):
            resp = await self._client.conversations_open(users=user)
        return str(resp["channel"]["id"])

    async def open_modal(self, trigger_id: str, view: JSONObject) -> None:
        with self._translated("views.open"):
            await self._client.views_open(trigger_id=trigger_id, view=view)

    async def publish_home(self, user: str, view: JSONObject) -> None:
        with self._translated("views.publish"):
            await self._client.views_publish(user_id=user, view=view)

    async def group_members(self, group: str) -> list[str]:
        with self._translated("usergroups.users.list"):
            resp = await self._client.usergroups_users_list(usergroup=group)
        return [str(u) for u in resp.get("users") or []]

    async def workspace_url(self) -> str:
        with self._translated("auth.test"):
            resp = await self._client.auth_test()
        return str(resp.get("url") or "")

    async def respond(self, response_url: str, text: str) -> None:
        hook = AsyncWebhookClient(response_url, session=self._session)
        with self._translated("response_url"):
            resp = await hook.send(text=text, response_type="ephemeral", replace_original=False)
            if resp.status_code == 429 or resp.status_code >= 500:
                raise SlackError(f"http_{resp.status_code}", transient=True)
            if resp.status_code >= 400:
                raise SlackError(str(resp.body or f"http_{resp.status_code}")[:100])
