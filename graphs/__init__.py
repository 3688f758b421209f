"""Registry of the graphs the bot can start: command -> builder, usage and parser.

Built in: ``/deploy``, when the policy file has a ``[deploy]`` table. Teams add their own
without touching ``bot/``: the policy file's ``graphs = ["myteam.agents:specs"]`` names an
importable list of ``GraphSpec``. Nothing here
imports ``bot`` or Slack: a human decision enters a graph only via ``interrupt()``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs import deploy
from graphs.deploy import UsageError

__all__ = ["EntryPointError", "GraphSpec", "UsageError", "compile_spec", "registry"]


@dataclass(frozen=True)
class GraphSpec:
    """How one command maps to a graph. ``parse`` raises UsageError with a message for the
    user; its result (plus ``requested_by``) is the graph's input. ``build`` returns an
    uncompiled StateGraph (the bot compiles it with its checkpointer), or takes a
    ``checkpointer`` keyword and returns a compiled graph (as LangChain's ``create_agent``
    does). ``command`` is a slash command (``/deploy``) that must be in the Slack app, or a
    bare name (``agent``) started with ``/approvals run agent …``. ``private`` names tool
    arguments and form fields whose values never appear in a channel message (an eligible
    approver sees them with "Show details")."""

    command: str
    description: str
    usage: str
    parse: Callable[[str], dict[str, Any]]
    build: Callable[..., Any]
    private: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.command.lstrip("/")


class EntryPointError(Exception):
    """An entry point that cannot be used; the message is one line for the operator."""


def registry(
    deploy_options: deploy.DeployOptions | None, entry_points: Iterable[str] = ()
) -> dict[str, GraphSpec]:
    """All graphs, keyed by command (``/deploy``, ``agent``): ``/deploy`` unless
    ``deploy_options`` is None (it is off), then each entry point's specs. A duplicate command
    is an error."""
    specs: dict[str, GraphSpec] = {}
    if deploy_options is not None:
        options = deploy_options
        specs[deploy.COMMAND] = GraphSpec(
            command=deploy.COMMAND,
            description="Deploy a service after a second person approves",
            usage="<service> <version> [env]",
            parse=options.parse,
            build=lambda: deploy.build_graph(options),
        )
    for ref in entry_points:
        for spec in load_entry_point(ref):
            if spec.command in specs or any(s.name == spec.name for s in specs.values()):
                raise EntryPointError(f"graphs: {ref}: {spec.command} is registered twice")
            specs[spec.command] = spec
    return specs


def load_entry_point(ref: str) -> list[GraphSpec]:
    """``"package.module:attribute"`` -> its list of GraphSpec."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error in someone's module: one line, not a trace
        raise EntryPointError(f"graphs: {ref}: cannot import {module_name}: {exc}") from None
    value = getattr(module, attr, None)
    if value is None:
        raise EntryPointError(f"graphs: {ref}: {module_name} has no attribute {attr!r}")
    specs = list(value) if isinstance(value, list | tuple) else None
    if not specs or not all(isinstance(s, GraphSpec) for s in specs):
        raise EntryPointError(f"graphs: {ref}: must be a list of graphs.GraphSpec")
    for s in specs:
        if not s.command or not s.name.replace("-", "").replace("_", "").isalnum():
            raise EntryPointError(f"graphs: {ref}: bad command {s.command!r}")
    return specs


def compile_spec(
    spec: GraphSpec, checkpointer: BaseCheckpointSaver[Any] | None
) -> CompiledStateGraph[Any]:
    """The spec's graph, compiled with the bot's checkpointer (None: only to see that it
    builds). A ``build`` that fails (a model's package not installed, its API key not set) is
    one line for the operator."""
    params = inspect.signature(spec.build).parameters
    try:
        if "checkpointer" in params:
            return spec.build(checkpointer=checkpointer)
        graph = spec.build()
        if isinstance(graph, StateGraph):
            return graph.compile(checkpointer=checkpointer)
    except Exception as exc:
        said = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise EntryPointError(f"graphs: {spec.command}: build() failed: {said}") from None
    raise EntryPointError(
        f"graphs: {spec.command}: build() returned {type(graph).__name__}, not a StateGraph "
        "(or take a `checkpointer` keyword and return a compiled graph)"
    )


def by_name(specs: Mapping[str, GraphSpec], name: str) -> GraphSpec | None:
    return next((s for s in specs.values() if s.name == name.lstrip("/")), None)
