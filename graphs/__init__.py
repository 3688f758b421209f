"""Registry of the graphs the bot can start: slash command -> builder, usage and parser.

Nothing here imports ``bot`` or Slack: a human decision enters a graph only via ``interrupt()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.graph import StateGraph

from graphs import deploy
from graphs.deploy import UsageError

__all__ = ["GraphSpec", "UsageError", "registry"]


@dataclass(frozen=True)
class GraphSpec:
    """How one slash command maps to a graph. ``parse`` raises UsageError with a message for
    the user; its result (plus ``requested_by``) is the graph's input."""

    command: str
    description: str
    usage: str
    parse: Callable[[str], dict[str, Any]]
    build: Callable[[], StateGraph]


def registry(deploy_options: deploy.DeployOptions) -> dict[str, GraphSpec]:
    """All slash commands, keyed by command (``/deploy``)."""
    return {
        "/deploy": GraphSpec(
            command="/deploy",
            description="Deploy a service after a second person approves",
            usage="<service> <version> [env]",
            parse=deploy_options.parse,
            build=lambda: deploy.build_graph(deploy_options),
        ),
    }
