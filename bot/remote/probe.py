"""Whether a deployment answers, takes its key and has the assistants the policy file lists:
what ``check-config`` prints and ``/readyz`` reports.

One search of its assistants, never retried: the SDK's own client retries a refused
connection for seconds, and a probe must say "down" at once. The key is sent, never shown.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from langgraph_sdk.client import LangGraphClient

from bot.policy.rules import Deployment

PAGE = 100  # assistants per search
MAX_PAGES = 10  # a server with more than 1,000 assistants is shown in part
SHOWN = 10  # names in the words; the count says how many there are


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One try of a deployment. ``key_accepted`` is None when unknown (not reached, or an
    answer that was neither a refusal nor a list); ``assistants`` are the names the server
    lists (an assistant's name, else its id); ``missing`` the policy's assistants it lacks;
    ``words`` say it all in one line, for a person."""

    reachable: bool
    key_accepted: bool | None
    assistants: tuple[str, ...] = ()
    words: str
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Reached, let in, and serving every assistant the policy file lists."""
        return self.reachable and self.key_accepted is True and not self.missing


async def probe(deployment: Deployment, key: str | None, timeout: float) -> Probe:  # noqa: ASYNC109
    """Search the deployment's assistants with ``key`` (None: none sent), for at most
    ``timeout`` seconds in all, and say what came of it."""
    if key and not (key.isascii() and key.isprintable()):
        return Probe(
            reachable=False,
            key_accepted=False,
            words=(
                f"not tried: the key in {deployment.api_key_env} holds characters an HTTP "
                "header cannot carry"
            ),
        )
    headers = {"x-api-key": key} if key else {}
    http = httpx.AsyncClient(base_url=deployment.url, headers=headers, timeout=timeout)
    client = LangGraphClient(http)
    try:
        found = await asyncio.wait_for(_assistants(client), timeout)
    except (TimeoutError, httpx.TimeoutException):
        return Probe(
            reachable=False,
            key_accepted=None,
            words=(
                f"not reachable: timed out ({deployment.url} did not answer within {timeout:g} s)"
            ),
        )
    except httpx.HTTPStatusError as exc:  # the SDK's errors by status are these too
        return _refused(deployment, key, exc.response)
    except httpx.RequestError as exc:
        return Probe(reachable=False, key_accepted=None, words=_unreachable(deployment, exc))
    except ValueError:  # not JSON, or not a list of assistants
        return Probe(
            reachable=True,
            key_accepted=None,
            words=f"reachable, but {deployment.url} does not answer like a LangGraph Server",
        )
    finally:
        await client.aclose()
    return _found(deployment, key, found)


async def _assistants(client: LangGraphClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in range(MAX_PAGES):
        batch: Any = await client.assistants.search(limit=PAGE, offset=page * PAGE)
        if not isinstance(batch, list) or not all(isinstance(a, dict) for a in batch):
            raise ValueError("not a list of assistants")
        found += batch
        if len(batch) < PAGE:
            break
    return found


def _found(deployment: Deployment, key: str | None, found: Sequence[dict[str, Any]]) -> Probe:
    names = tuple(str(a.get("name") or a.get("assistant_id") or "?") for a in found)
    ids = {str(a.get(k)) for a in found for k in ("graph_id", "assistant_id") if a.get(k)}
    missing = tuple(a for a in deployment.assistants if a not in ids)
    shown = ", ".join(names[:SHOWN]) + (", …" if len(names) > SHOWN else "")
    count = f"{len(names)} assistant{'s' * (len(names) != 1)}" + (f": {shown}" if names else "")
    let_in = "key accepted" if key else "no key needed"
    words = f"reachable, {let_in}, {count}"
    if missing:
        words += f"; not on the server: {', '.join(missing)} (listed in its assistants)"
    return Probe(reachable=True, key_accepted=True, assistants=names, words=words, missing=missing)


def _refused(deployment: Deployment, key: str | None, response: httpx.Response) -> Probe:
    status = response.status_code
    if status not in (401, 403):
        reason = f"{status} {response.reason_phrase}".strip()
        return Probe(
            reachable=True,
            key_accepted=None,
            words=f"reachable, but it answered {reason}: is {deployment.url} a LangGraph Server?",
        )
    if key:
        why = f"the key in {deployment.api_key_env} was not accepted ({status})"
    elif deployment.api_key_env:
        why = f"no key sent: {deployment.api_key_env} is not set ({status})"
    else:
        why = f"it wants an API key ({status}): name the variable holding it with api_key_env"
    return Probe(reachable=True, key_accepted=False, words=f"reachable, but {why}")


def _unreachable(deployment: Deployment, exc: httpx.RequestError) -> str:
    """Plain words for a connection that failed, from the first cause that says why."""
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return f"not reachable: connection refused at {deployment.url} (is the server running?)"
    if any(isinstance(c, socket.gaierror) for c in causes):
        host = httpx.URL(deployment.url).host
        return f"not reachable: no such host {host} (name not resolved)"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return f"not reachable: the TLS handshake with {deployment.url} failed"
    return f"not reachable: cannot connect to {deployment.url} ({type(exc).__name__})"
