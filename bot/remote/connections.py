"""One ``Connection`` per ``[[deployments]]`` entry: an SDK client with the deployment's key
(read from the environment by the settings, never from the file, never logged)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from langgraph_sdk import get_client

from bot.policy.rules import Deployment
from bot.remote.runner import Connection

# (connect, read, write, pool). A read waits 30 s: a call's answer, or a run's next event
# (the server sends a heartbeat every 5 s while a step runs, so a stream that says nothing
# for 30 s is a server that hangs). Then the run says it waits for the deployment.
TIMEOUT = (5.0, 30.0, 15.0, 15.0)


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
