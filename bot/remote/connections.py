"""One ``Connection`` per ``[[deployments]]`` entry: an SDK client with the deployment's key
(read from the environment by the settings, never from the file, never logged)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from langgraph_sdk import get_client

from bot.policy.rules import Deployment
from bot.remote.runner import Connection

# A call may wait this long for the server; a run's stream for its next event (a step
# can take minutes; the server sends heartbeats while it runs).
TIMEOUT = (15.0, 300.0, 15.0, 15.0)  # connect, read, write, pool


def connect(
    deployments: Sequence[Deployment],
    keys: Mapping[str, str | None],
    on_call: Callable[[str, str], None],
) -> dict[str, Connection]:
    """The clients are made here, when the bot starts (none at import); ``api_key=None``
    keeps the SDK from taking a key from its own environment variables."""
    return {
        d.name: Connection(
            name=d.name,
            client=get_client(url=d.url, api_key=keys.get(d.name), timeout=TIMEOUT),
            requester_metadata=d.requester_metadata,
            channel=d.channel,
            on_call=on_call,
        )
        for d in deployments
    }
