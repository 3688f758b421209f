"""Drives a graph for the engine: start or resume a thread, stream it until it pauses at
interrupts or ends, and say which interrupts a thread waits at now.

The engine decides (claims, pauses, finishes, leases, exactly-once); a ``Runner`` only drives.
It is keyed by thread id and async throughout, so a graph whose state lives elsewhere (a
LangGraph Server) is one more implementation; ``LocalRunner`` drives today's in-process graphs
on the project's checkpointer. Nothing of LangGraph's (``Command``, ``StateSnapshot``, stream
modes, its errors) crosses this seam.

Errors: a graph that fails raises its own exception from ``stream`` (the engine tells a failed
run from a database that blinked); a resume value the graph refuses before saving anything
raises ``ResumeRefused`` with the refusal in plain words.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.errors import is_invalid_resume
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability, StreamMode
from pydantic import ValidationError

from bot.schema import FieldError, refusal_errors

RESUME_PATH = ("edited_action", "args")  # where an edit's fields sit in a refused HITL answer
MODES: list[StreamMode] = ["custom", "tasks", "values"]  # progress, its task, pauses and ends


@dataclass(frozen=True)
class GraphThread:
    """Which thread to drive: its id, the graph (the command that started it), and the
    attempt (starts after restarts: a step's idempotency key, see graphs/deploy.py)."""

    thread_id: str
    graph: str
    attempt: int


@dataclass(frozen=True)
class Pending:
    """An interrupt a thread waits at: its id, its value, and the response_schema it asks
    for (JSON Schema, None when it asks for none)."""

    id: str
    value: Any
    response_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class ThreadState:
    """What a thread is now: ``started`` is False for a thread with no checkpoint yet (a
    start cut before its first step), ``pending`` the interrupts it waits at. ``read`` is the
    runner's own record of what it read (opaque to the engine), so a stream that follows at
    once, under the same hold on the thread, goes on from it without reading it again."""

    started: bool
    pending: tuple[Pending, ...] = ()
    read: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Progress:
    """A progress line; ``key`` is stable across a step that re-runs after a crash (the
    task's id and the line's position in it), so its reply is edited, not posted again."""

    key: str
    line: str


@dataclass(frozen=True)
class Paused:
    """The stream stopped at these interrupts (every parallel branch's, each once)."""

    interrupts: tuple[Pending, ...]


@dataclass(frozen=True)
class Finished:
    """The thread ended with these final values."""

    values: Any


Event = Progress | Paused | Finished


class ResumeRefused(Exception):
    """The graph refused a resume value (its response_schema) and saved nothing."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


class GraphRefused(Exception):
    """Where the graph runs refused the work for good (its key not accepted, the thread or
    the assistant deleted there): the run ends, ``words`` saying why in plain words."""

    def __init__(self, words: str) -> None:
        super().__init__(words)
        self.words = words


class Runner(Protocol):
    """Drives graphs by thread id; see the module docstring."""

    async def state(self, thread: GraphThread) -> ThreadState:
        """The thread as it is now: started at all, and the interrupts it waits at."""
        ...

    async def resumed_here(self, thread: GraphThread, interrupt_id: str) -> bool:
        """Whether an interrupt the thread no longer waits at was answered by this bot (a
        thread on a LangGraph Server can also be answered from another client)."""
        ...

    def stream(
        self,
        thread: GraphThread,
        start: Any = None,
        resume: Mapping[str, Any] | None = None,
        after: ThreadState | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Run the thread until it pauses or ends: from ``start`` (the graph's input), with
        ``resume`` (interrupt id -> value), or, both None, on from its last checkpoint.
        ``after`` is the state the caller has just checked while it holds the thread (nobody
        else drives it meanwhile): the stream goes on from exactly that state. Yields
        progress as it comes, then one ``Paused`` or ``Finished``."""
        ...


class AnsweredElsewhere(Exception):
    """The interrupts a decision was for were answered from another client before the
    decision reached the graph: it was never sent. ``interrupt_ids`` are the graph's."""

    def __init__(self, interrupt_ids: tuple[str, ...]) -> None:
        super().__init__(f"{len(interrupt_ids)} answered elsewhere")
        self.interrupt_ids = interrupt_ids


class LocalRunner:
    """Today's graphs, compiled in this process on the project's checkpointer; holds them
    and the durability their checkpoints are written with."""

    def __init__(
        self, graphs: Mapping[str, CompiledStateGraph[Any]], durability: Durability = "sync"
    ) -> None:
        self.graphs = graphs
        self.durability: Durability = durability

    async def state(self, thread: GraphThread) -> ThreadState:
        """LangGraph silently restarts an unknown thread and replays a finished one, so the
        engine looks here before it resumes. The checkpoint read is kept in the answer, for
        the stream that follows (``stream``'s ``after``)."""
        graph = self.graphs[thread.graph]
        config = _config(thread)
        read: list[_Read | None] = []
        saver = graph.checkpointer
        if isinstance(saver, BaseCheckpointSaver):
            config["configurable"][CONFIG_KEY_CHECKPOINTER] = _reading(saver, thread, read)
        state = await graph.aget_state(config)
        pending = tuple(_pending(i) for i in state.interrupts)
        kept = read[0] if len(read) == 1 else None
        return ThreadState(bool(state.created_at), pending, kept)

    async def resumed_here(self, thread: GraphThread, interrupt_id: str) -> bool:
        """Nobody but this bot drives a thread in its process."""
        return True

    async def stream(
        self,
        thread: GraphThread,
        start: Any = None,
        resume: Mapping[str, Any] | None = None,
        after: ThreadState | None = None,
    ) -> AsyncGenerator[Event, None]:
        """The stream says all that is needed: progress ("custom"), which task is running
        ("tasks"), and the final values or the interrupts it stopped at ("values"), so no
        ``aget_state`` is needed afterwards. With ``after`` (read by ``state`` on this
        thread), LangGraph's own read of the latest checkpoint is answered from it: a
        decision reads its checkpoint once, not twice."""
        graph_input = Command(resume=dict(resume)) if resume is not None else start
        seen: Counter[str] = Counter()
        task = "run"
        interrupts: dict[str, Pending] = {}
        values: Any = None
        graph = self.graphs[thread.graph]
        try:
            async for mode, chunk in graph.astream(
                graph_input,
                _config_after(graph, thread, after),
                stream_mode=MODES,
                durability=self.durability,
            ):
                if mode == "values" and isinstance(chunk, dict):
                    if "__interrupt__" in chunk:
                        # Parallel branches (``Send``) surface their interrupts in separate
                        # chunks: every one of them is pending.
                        for i in chunk["__interrupt__"]:
                            interrupts.setdefault(i.id, _pending(i))
                    else:
                        values = chunk
                elif mode == "tasks" and isinstance(chunk, dict) and "input" in chunk:
                    task = str(chunk.get("id"))
                elif mode == "custom" and isinstance(chunk, dict) and "progress" in chunk:
                    owner = str(chunk.get("task") or task)
                    n = seen[owner]
                    seen[owner] += 1
                    yield Progress(f"{owner}:{n}", str(chunk["progress"]))
        except ValidationError as exc:
            if resume is not None and is_invalid_resume(exc):
                raise ResumeRefused(refusal_errors(exc, RESUME_PATH)) from exc
            raise
        if interrupts:
            yield Paused(tuple(interrupts.values()))
        else:
            yield Finished(values)


def _config(thread: GraphThread) -> RunnableConfig:
    """The thread's config. ``run_attempt`` counts starts after restarts, so a step can give
    the outside world an idempotency key (see graphs/deploy.py)."""
    return {"configurable": {"thread_id": thread.thread_id, "run_attempt": thread.attempt}}


@dataclass(frozen=True)
class _Read:
    """The latest checkpoint ``state`` read for a thread (None: it had none)."""

    thread_id: str
    saved: CheckpointTuple | None


def _latest(config: RunnableConfig, thread: GraphThread) -> bool:
    """Whether a checkpoint read is for the thread's latest root checkpoint (not a
    subgraph's, not one named by id)."""
    conf = config.get("configurable", {})
    return (
        conf.get("thread_id") == thread.thread_id
        and not conf.get("checkpoint_ns")
        and not conf.get("checkpoint_id")
    )


def _reading(
    saver: BaseCheckpointSaver, thread: GraphThread, read: list[_Read | None]
) -> BaseCheckpointSaver:
    """``saver`` as LangGraph lends it to a call through the config (the way a parent
    graph lends its saver to a subgraph): the same saver, whose reads of the thread's
    latest checkpoint are also appended to ``read``, each as it was read (``_untouched``)."""

    async def aget_tuple(config: RunnableConfig) -> CheckpointTuple | None:
        saved = await saver.aget_tuple(config)
        if _latest(config, thread):
            read.append(_untouched(thread, saved))
        return saved

    view = copy.copy(saver)
    setattr(view, "aget_tuple", aget_tuple)  # noqa: B010 (an instance's own, not the class's)
    return view


def _untouched(thread: GraphThread, saved: CheckpointTuple | None) -> _Read | None:
    """A copy of ``saved`` as it was read, for the stream that follows. ``aget_state``
    applies the saved writes of the checkpoint's finished tasks to the very tuple it was
    given (its channel versions, what each node has seen, values through the reducers): a
    stream handed that tuple finds those steps seen but not their writes, so nothing left to
    run, and ends at once with the values from before them. That is a thread cut between a
    step's writes and its next checkpoint (a replica killed there): it ended "Done." without
    deploying. None (the stream reads the checkpoint itself) when it cannot be copied."""
    try:
        return _Read(thread.thread_id, copy.deepcopy(saved))
    except Exception:  # a value deepcopy refuses: one more read, never a wrong one
        return None


def _answering(saver: BaseCheckpointSaver, thread: GraphThread, read: _Read) -> BaseCheckpointSaver:
    """``saver``, lent to one stream, whose first read of the thread's latest checkpoint is
    answered with ``read`` (just read by ``state`` while the engine held the thread, so it
    is still the latest); every other read and every write go to ``saver``."""
    first = [read.saved] if read.thread_id == thread.thread_id else []

    async def aget_tuple(config: RunnableConfig) -> CheckpointTuple | None:
        if first and _latest(config, thread):
            return first.pop()
        return await saver.aget_tuple(config)

    view = copy.copy(saver)
    setattr(view, "aget_tuple", aget_tuple)  # noqa: B010 (an instance's own, not the class's)
    return view


def _config_after(
    graph: CompiledStateGraph[Any], thread: GraphThread, after: ThreadState | None
) -> RunnableConfig:
    """The thread's config for a stream; after ``state`` read the thread, with its saver
    lent so that the stream's read of the latest checkpoint is answered from that read."""
    config = _config(thread)
    saver = graph.checkpointer
    read = after.read if after is not None else None
    if isinstance(read, _Read) and isinstance(saver, BaseCheckpointSaver):
        config["configurable"][CONFIG_KEY_CHECKPOINTER] = _answering(saver, thread, read)
    return config


def _pending(interrupt: Any) -> Pending:
    schema = getattr(interrupt, "response_schema", None)
    return Pending(interrupt.id, interrupt.value, schema if isinstance(schema, dict) else None)


class Routes:
    """The runner for each graph: ``"<deployment>/<assistant>"`` goes to the runner of that
    deployment's LangGraph Server (``remote``), every other graph to ``local``."""

    def __init__(self, local: Runner, remote: Mapping[str, Runner] | None = None) -> None:
        self.local = local
        self.remote = dict(remote or {})

    def runner(self, graph: str) -> Runner:
        """A local graph's command may start with "/" (``/deploy``); a remote one is
        ``<deployment>/<assistant>``."""
        deployment, slash, _ = graph.lstrip("/").partition("/")
        if not slash:
            return self.local
        if deployment not in self.remote:
            raise GraphRefused(f"the deployment `{deployment}` is not configured here any more.")
        return self.remote[deployment]

    async def state(self, thread: GraphThread) -> ThreadState:
        return await self.runner(thread.graph).state(thread)

    async def resumed_here(self, thread: GraphThread, interrupt_id: str) -> bool:
        return await self.runner(thread.graph).resumed_here(thread, interrupt_id)

    def stream(
        self,
        thread: GraphThread,
        start: Any = None,
        resume: Mapping[str, Any] | None = None,
        after: ThreadState | None = None,
    ) -> AsyncGenerator[Event, None]:
        return self.runner(thread.graph).stream(thread, start, resume, after)
