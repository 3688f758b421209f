"""The served API's key check (langgraph.json ``"auth"``): a ``langgraph dev`` server accepts
every request unless an ``Auth`` handler refuses it. This one wants the header ``x-api-key``
equal to ``TEST_SERVER_API_KEY``, which the fixture sets when it serves with a key."""

from __future__ import annotations

import hmac
import os

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(headers: dict[bytes, bytes]) -> str:
    """The caller's identity, or 401 for a missing or wrong key."""
    given = headers.get(b"x-api-key", b"")
    expected = os.environ["TEST_SERVER_API_KEY"].encode()
    if not hmac.compare_digest(given, expected):
        raise Auth.exceptions.HTTPException(status_code=401, detail="Wrong or missing API key.")
    return "tests"
