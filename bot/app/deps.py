"""What the listeners need, passed in explicitly (no module-level singletons)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.engine import Engine
from bot.tasks import TaskSet
from graphs import GraphSpec


@dataclass(frozen=True)
class Deps:
    """The listeners' one argument: what they may use, built by the runtime, so a listener
    module holds no state of its own and a test wires them to its own engine."""

    engine: Engine
    tasks: TaskSet
    specs: Mapping[str, GraphSpec]
