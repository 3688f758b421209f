"""The HTTP endpoint (/slack/events) on aiohttp, via Bolt's aiohttp adapter."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)


def routes(app: AsyncApp, signing_secret: str, path: str = "/slack/events") -> list[web.RouteDef]:
    verifier = SignatureVerifier(signing_secret)

    async def events(request: web.Request) -> web.Response:
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Bolt parses the body before it checks the signature: answer what Slack would
            # expect of a well-behaved app, 401 for a forged request, 400 for garbage.
            body = await request.text()
            signed = verifier.is_valid(
                body,
                request.headers.get("X-Slack-Request-Timestamp", ""),
                request.headers.get("X-Slack-Signature", ""),
            )
            log.warning("unreadable request body (%s, signed=%s)", type(exc).__name__, signed)
            return web.Response(status=400 if signed else 401, text="bad request")
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "time": time.time()})

    return [web.post(path, events), web.get("/healthz", health)]
