"""The engine's port to Slack, and its Web API implementation.

The engine depends on ``SlackPort`` only, which keeps it readable and lets the same engine
drive Slack or the local workspace (both through the real Web API client).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient


class SlackError(Exception):
    """Slack refused a call; ``code`` is Slack's error string (``not_in_channel``, …)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SlackPort(Protocol):
    """What the engine needs from Slack. Implementations raise SlackError when refused."""

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        """Post a message; returns (channel id, ts)."""
        ...

    async def update(
        self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]
    ) -> None: ...

    async def ephemeral(self, channel: str, user: str, text: str) -> None: ...

    async def open_modal(self, trigger_id: str, view: dict[str, Any]) -> None: ...

    async def publish_home(self, user: str, view: dict[str, Any]) -> None: ...


def web_client(token: str, base_url: str) -> AsyncWebClient:
    """The Web API client with slack-sdk's own retry handlers: 429 honours Retry-After; 5xx
    and connection errors back off. (The async client has none of these by default.)"""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=10,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
        ],
    )


@contextmanager
def _refusals() -> Iterator[None]:
    """Translate slack-sdk's exception into the port's, so the engine needs no slack_sdk."""
    try:
        yield
    except SlackApiError as exc:
        raise SlackError(str(exc.response.get("error", "unknown_error"))) from exc


class WebApiPort:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        with _refusals():
            resp = await self._client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, unfurl_links=False
            )
        return resp["channel"], resp["ts"]

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        with _refusals():
            await self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    async def ephemeral(self, channel: str, user: str, text: str) -> None:
        with _refusals():
            await self._client.chat_postEphemeral(channel=channel, user=user, text=text)

    async def open_modal(self, trigger_id: str, view: dict[str, Any]) -> None:
        with _refusals():
            await self._client.views_open(trigger_id=trigger_id, view=view)

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        with _refusals():
            await self._client.views_publish(user_id=user, view=view)
