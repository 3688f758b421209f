"""Drives graphs that run on a LangGraph Server, behind the same ``Runner`` seam as the graphs in
this process (bot/runner.py): the engine claims, pauses and finishes exactly as for a local
graph, and this module only talks to the server, with ``langgraph-sdk``.

A remote run's graph is ``"<deployment>/<assistant>"``, its thread the server's thread (the
run id is the thread id's hex form). These rules make a decision reach the server at most once
per interrupt id, across crashes and replicas (the engine's run lease keeps a second driver
off the thread):

- every run is created with ``multitask_strategy="reject"``: while a run holds the thread,
  another is refused (409), and this runner follows the one that holds it;
- nothing is sent again before a fresh read of the thread: while a run holds it (queued or
  running; a queued run leaves the thread "interrupted") that run is followed first; an
  interrupt no longer pending was answered by a run of ours (the resume landed: its run's
  metadata names the ids it answers, ``ANSWERS``) or by someone else's (``AnsweredElsewhere``);
- ``state`` waits out a run that holds the thread before it says what is pending, so a resume
  sent before a crash is never taken for one still to send;
- a resume value is checked against the interrupt's ``response_schema`` before it is sent:
  the server takes a wrong one as a failed run (thread status "error"), not a refusal.

The server down or slow is waited out with backoff (a run is never failed for it), and the
engine is told once (``say``) so that the run's messages say it waits. A refusal (the key not
accepted, the thread or assistant gone, a request refused) raises ``GraphRefused`` with plain
words, never the server's own message (it may quote what was sent).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import httpx
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import APIStatusError, ConflictError
from langgraph_sdk.schema import Command, Run, StreamMode

from bot.runner import (
    AnsweredElsewhere,
    Event,
    Finished,
    GraphRefused,
    GraphThread,
    Paused,
    Pending,
    Progress,
    ResumeRefused,
    ThreadState,
)
from bot.schema import check

log = logging.getLogger(__name__)

T = TypeVar("T")
MODES: list[StreamMode] = ["custom", "values"]  # progress lines, and the run's values as it goes
ACTIVE = ("pending", "running")  # a run in these states holds the thread
REFUSALS = {400: "bad", 401: "key", 403: "key", 404: "gone", 422: "bad"}
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
ANSWERS = "approvals_answers"  # a resume run's metadata: the interrupt ids it answers
MAX_TRIES = 200_000  # ~70 days at the longest wait: "until it lands", bounded


@dataclass
class Connection:
    """One deployment as the runner and the inbox reach it: its name (how people name it in
    Slack), the SDK client (holding its key), and where each call's outcome is counted
    (``on_call(deployment, outcome)``: "ok", "refused", "conflict", "unreachable")."""

    name: str
    client: LangGraphClient
    requester_metadata: str | None = None
    channel: str | None = None
    on_call: Callable[[str, str], None] = lambda name, outcome: None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    down_since: float | None = field(default=None, init=False)

    async def call(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """One request, counted; a refusal raised as ``GraphRefused`` in plain words. Other
        errors (unreachable, 5xx, 429, timeouts, 409) are raised as they are: ``transient``
        says which ones to wait out."""
        try:
            result = await make()
        except Exception as exc:
            self.failure(exc, what)
            raise
        self.on_call(self.name, "ok")
        return result

    def failure(self, exc: BaseException, what: str) -> None:
        """Count a failed request; raise ``GraphRefused`` when it was a refusal."""
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if status in REFUSALS and isinstance(exc, APIStatusError | httpx.HTTPStatusError):
            self.on_call(self.name, "refused")
            raise GraphRefused(self.refusal(int(status), what)) from exc
        self.on_call(self.name, "conflict" if status == 409 else "unreachable")

    def refusal(self, status: int, what: str) -> str:
        """Plain words; never the server's own message (it may quote the request)."""
        if REFUSALS[status] == "key":
            return f"{self.name} did not accept the bot's API key ({what} refused)."
        if REFUSALS[status] == "bad":
            return f"{self.name} refused {what} (HTTP {status}); its log says why."
        return f"{what} is not on {self.name} any more (deleted there?)."


def transient(exc: BaseException) -> bool:
    """A failure worth waiting out: the server unreachable, timing out, overloaded or failing
    on its side (5xx, 429). A refusal (``GraphRefused``) or a 409 is not one."""
    if isinstance(exc, GraphRefused | ConflictError):
        return False
    if isinstance(exc, APIStatusError | httpx.HTTPStatusError):
        status = exc.response.status_code
        return status >= 500 or status == 429 or status == 408
    return isinstance(exc, httpx.TransportError | asyncio.TimeoutError | OSError)


def thread_id_of(run_id: str) -> str:
    """The server's thread id for a run (run ids are the thread ids' hex form)."""
    return str(uuid.UUID(run_id))


def run_id_of(thread_id: str) -> str:
    return uuid.UUID(thread_id).hex


def split(graph: str) -> tuple[str, str]:
    """``"support/agent"`` -> ("support", "agent")."""
    deployment, _, assistant = graph.partition("/")
    return deployment, assistant


def start_input(start: Mapping[str, Any]) -> dict[str, Any]:
    """What a run started from Slack sends: the text as the user's message (the shape
    ``create_agent`` and MessagesState graphs take)."""
    return {"messages": [{"role": "user", "content": str(start.get("text", ""))}]}


def pending_of(state: Mapping[str, Any]) -> tuple[Pending, ...]:
    """The interrupts a thread waits at, from ``threads.get_state`` (authoritative: the
    thread's own ``interrupts`` list may still show one answered while another waits)."""
    found: dict[str, Pending] = {}
    for i in state.get("interrupts") or ():
        if isinstance(i, Mapping) and isinstance(i.get("id"), str):
            schema = i.get("response_schema")
            found.setdefault(
                i["id"],
                Pending(i["id"], i.get("value"), schema if isinstance(schema, dict) else None),
            )
    return tuple(found.values())


class RemoteRunner:
    """The ``Runner`` for graphs on LangGraph Servers, one ``Connection`` per deployment;
    ``on_waiting(deployment)`` is told when a deployment stops answering (metrics)."""

    def __init__(self, connections: Mapping[str, Connection]) -> None:
        self.connections = dict(connections)
        self.say: Callable[[str, str], Awaitable[None]] = _silent

    def set_listener(self, say: Callable[[str, str], Awaitable[None]]) -> None:
        """``say(run_id, deployment)``: the deployment stopped answering while the run waits
        on it (the engine shows it in Slack), once per outage."""
        self.say = say

    def serves(self, graph: str) -> bool:
        return split(graph)[0] in self.connections

    async def state(self, thread: GraphThread) -> ThreadState:
        """The thread's pending interrupts, and whether anything ever ran on it (a thread the
        bot created, then crashed before starting its run, holds none: it is started again).
        While a run holds the thread (queued or running: say, a resume sent before a crash)
        the checkpoint still lists the interrupt it answers, so that run is waited out
        first. The assistant of the thread's newest run is kept (``read``): a resume runs on
        the assistant the thread was started with. An unknown thread is a refusal: it was
        deleted on the server."""
        conn = self.connections[split(thread.graph)[0]]
        tid = thread_id_of(thread.thread_id)
        wait = _Waiter(conn, partial(self.say, thread.thread_id))
        runs: list[Run] = []
        for _ in range(MAX_TRIES):
            runs = await wait.until("the thread", partial(_runs, conn, tid))
            active = [r for r in runs if r.get("status") in ACTIVE]
            if not active:
                break
            for run in reversed(active):  # oldest first, to its end
                await wait.until("the thread", partial(_drain, conn, tid, str(run["run_id"])))
        state = await wait.until("the thread", lambda: conn.client.threads.get_state(tid))
        started = bool(runs or state.get("values") or state.get("next"))
        assistant = str(runs[0]["assistant_id"]) if runs else None
        return ThreadState(started, pending_of(state), _Read(assistant, tuple(runs)))

    async def resumed_here(self, thread: GraphThread, interrupt_id: str) -> bool:
        """Whether a run of this bot's answered the interrupt (its resume runs carry the ids
        they answer in their metadata): else someone answered it from another client."""
        conn = self.connections[split(thread.graph)[0]]
        tid = thread_id_of(thread.thread_id)
        wait = _Waiter(conn, partial(self.say, thread.thread_id))
        runs = await wait.until("the thread", partial(_runs, conn, tid, 100))
        return any(interrupt_id in _answered(r) for r in runs)

    async def stream(
        self,
        thread: GraphThread,
        start: Any = None,
        resume: Mapping[str, Any] | None = None,
        after: ThreadState | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Start (``start``: a run from Slack; the thread is created with the requester in its
        metadata), resume (``resume``), or follow whatever the server does on the thread now
        (both None: a restart, an answer given elsewhere, a thread found by the inbox), until
        the thread waits at interrupts or ends.

        Each round sends (only when the last read of the thread allows it), or follows the
        run that holds the thread, then reads the thread (``_settle``). A round that moved
        nothing on waits with backoff, so a thread stuck "busy" is not hammered."""
        deployment, named = split(thread.graph)
        conn = self.connections[deployment]
        tid = thread_id_of(thread.thread_id)
        read = after.read if after is not None and isinstance(after.read, _Read) else None
        assistant = read.assistant if read is not None and read.assistant else named
        wait = _Waiter(conn, partial(self.say, thread.thread_id))
        send = await self._first(conn, wait, tid, start, resume, after)
        may_send = send is not None
        for _ in range(MAX_TRIES):
            moved = False
            if send is not None and may_send:
                sent = _Sent()
                async for progress in self._send(conn, wait, tid, assistant, send, sent):
                    yield progress
                moved = sent.landed is not None
                if sent.landed:
                    send = None
            else:
                async for progress in self._follow(conn, wait, tid):
                    moved = True
                    yield progress
            end, send, may_send = await self._settle(conn, wait, tid, send, resume)
            if end is not None:
                yield end
                return
            if not moved and not may_send:
                await wait.idle()
        raise RemoteRunFailed(f"{deployment} did not settle")

    async def _first(
        self,
        conn: Connection,
        wait: _Waiter,
        tid: str,
        start: Any,
        resume: Mapping[str, Any] | None,
        after: ThreadState | None,
    ) -> _Send | None:
        """What the stream sends first: a resume (checked against its response_schema, the
        ids it answers in its run's metadata), a start (its thread created first, the
        requester in its metadata), or nothing."""
        if resume is not None:
            _check_resume(resume, after)
            return _Send(command={"resume": dict(resume)}, metadata={ANSWERS: list(resume)})
        if start is None:
            return None
        metadata = _metadata(conn, start)
        await wait.until(
            "the thread",
            lambda: conn.client.threads.create(
                thread_id=tid, metadata=metadata, if_exists="do_nothing"
            ),
        )
        return _Send(input=start_input(start), metadata=metadata)

    async def _settle(
        self,
        conn: Connection,
        wait: _Waiter,
        tid: str,
        send: _Send | None,
        resume: Mapping[str, Any] | None,
    ) -> tuple[Paused | Finished | None, _Send | None, bool]:
        """After a round: the thread's end (paused or finished); or None to go round again,
        with what is still to send and whether this read allows sending it now. A resume not
        known to have landed is sent again only when the thread was read, holds no run
        (queued or running), and still waits at its interrupt; gone, it landed if a run of
        ours answered it, else it was answered elsewhere (``AnsweredElsewhere``). A start is
        sent again only while the thread holds no run at all."""
        try:
            state = await conn.call("the thread", lambda: conn.client.threads.get_state(tid))
            thread = await conn.call("the thread", lambda: conn.client.threads.get(tid))
            runs = await conn.call("the thread", partial(_runs, conn, tid))
        except Exception as exc:
            if not transient(exc):
                raise
            await wait.failed(exc)  # round again, sending nothing before a read
            return None, send, False
        wait.answered()
        status = thread.get("status")
        pending = pending_of(state)
        held = status == "busy" or any(r.get("status") in ACTIVE for r in runs)
        if send is not None and not _landed(resume, runs, pending, held):
            return None, send, not held  # follow a run that holds the thread first
        if held:
            return None, None, False
        if status == "error":
            raise RemoteRunFailed(f"the run failed on {conn.name}")
        if pending:
            return Paused(pending), None, False
        return Finished(state.get("values")), None, False

    async def _send(
        self,
        conn: Connection,
        wait: _Waiter,
        tid: str,
        assistant: str,
        send: _Send,
        sent: _Sent,
    ) -> AsyncIterator[Progress]:
        """One run created and streamed; yields its progress. ``sent.landed``: True when the
        server said the run exists, False on a 409 (a run holds the thread: followed, then
        read again), None when it is unknown (the caller reads the thread before sending
        again)."""
        created: list[str] = []
        seen = 0
        try:
            parts = conn.client.runs.stream(
                tid,
                assistant,
                stream_mode=MODES,
                multitask_strategy="reject",
                if_not_exists="reject",
                on_run_created=lambda meta: created.append(str(meta.get("run_id"))),
                on_disconnect="continue",
                input=send.input,
                command=send.command,
                metadata=send.metadata,
            )
            async for part in parts:
                line = _progress(part.event, part.data)
                if line is not None and created:
                    yield Progress(f"{created[0]}:{seen}", line)
                    seen += 1
        except Exception as exc:
            conn.failure(exc, "the run")
            if isinstance(exc, ConflictError):
                sent.landed = False
            elif not transient(exc):
                raise
            else:
                await wait.failed(exc)
                sent.landed = True if created else None
            return
        conn.on_call(conn.name, "ok")
        wait.answered()
        sent.landed = True

    async def _follow(self, conn: Connection, wait: _Waiter, tid: str) -> AsyncIterator[Progress]:
        """Follow the runs that hold the thread now, if any, to their end (their progress
        from the moment of joining)."""
        try:
            runs = await conn.call("the thread", partial(_runs, conn, tid))
        except Exception as exc:
            if not transient(exc):
                raise
            await wait.failed(exc)
            return
        active = [r for r in runs if r.get("status") in ACTIVE]
        for run in reversed(active):  # oldest first
            run_id = str(run["run_id"])
            seen = 0
            try:
                async for part in conn.client.runs.join_stream(tid, run_id, stream_mode=MODES):
                    line = _progress(part.event, part.data)
                    if line is not None:
                        yield Progress(f"{run_id}:joined:{seen}", line)
                        seen += 1
                wait.answered()
            except Exception as exc:
                if not transient(exc):
                    raise
                await wait.failed(exc)


@dataclass
class _Sent:
    landed: bool | None = None


@dataclass(frozen=True)
class _Read:
    """What ``state`` read for the stream that follows: the thread's assistant, its runs."""

    assistant: str | None
    runs: tuple[Run, ...] = ()


async def _runs(conn: Connection, tid: str, limit: int = 20) -> list[Run]:
    """The thread's newest runs: id, status, assistant and metadata only."""
    return await conn.client.runs.list(
        tid, limit=limit, select=["run_id", "status", "assistant_id", "metadata"]
    )


async def _drain(conn: Connection, tid: str, run_id: str) -> None:
    """Wait for a run to end (its stream joined and read to its end: the server's
    heartbeats keep it alive however long a step takes)."""
    async for _ in conn.client.runs.join_stream(tid, run_id, stream_mode=MODES):
        pass


def _landed(
    resume: Mapping[str, Any] | None,
    runs: list[Run],
    pending: tuple[Pending, ...],
    held: bool,
) -> bool:
    """Whether what was sent (its answer lost) reached the server, from a fresh read of the
    thread: a start, when the thread holds a run; a resume, when its interrupt no longer
    waits and a run of ours answered it. Never known while a run holds the thread."""
    if held:
        return False
    if resume is None:
        return bool(runs)
    if _still_pending(resume, pending):
        return False
    if not any(i in _answered(r) for r in runs for i in resume):
        raise AnsweredElsewhere(tuple(resume))
    return True


def _answered(run: Run) -> list[str]:
    """The interrupt ids a run of this bot's resumed (none for anyone else's run)."""
    found = (run.get("metadata") or {}).get(ANSWERS)
    return [str(i) for i in found] if isinstance(found, list) else []


@dataclass(frozen=True)
class _Send:
    """What a run is created with: a start's input and metadata, or a resume's command."""

    input: dict[str, Any] | None = None
    command: Command | None = None
    metadata: dict[str, Any] | None = None


class RemoteRunFailed(Exception):
    """The graph's run failed on the server (its thread's status is "error")."""


class _Waiter:
    """Waits out a deployment that is not answering, with backoff, and says so once per
    outage (``say(deployment)``: the engine shows it on the run's messages)."""

    def __init__(self, conn: Connection, say: Callable[[str], Awaitable[None]]) -> None:
        self.conn = conn
        self.say = say
        self.delay = BACKOFF_FIRST

    async def until(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        for _ in range(MAX_TRIES):
            try:
                result = await self.conn.call(what, make)
            except Exception as exc:
                if not transient(exc):
                    raise
                await self.failed(exc)
                continue
            self.answered()
            return result
        raise RemoteRunFailed(f"{self.conn.name} did not answer")

    async def failed(self, exc: BaseException) -> None:
        if self.conn.down_since is None:
            self.conn.down_since = self.conn.clock()
        if self.delay == BACKOFF_FIRST:
            log.warning(
                "deployment %s is not answering (%s); trying again",
                self.conn.name,
                type(exc).__name__,
            )
            await self.say(self.conn.name)
        await self.conn.sleep(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_MAX)

    def answered(self) -> None:
        self.conn.down_since = None
        self.delay = BACKOFF_FIRST

    async def idle(self) -> None:
        """A round that moved nothing on (a thread "busy" with no run to follow): wait a
        little longer each time before looking again."""
        await self.conn.sleep(self.delay)
        self.delay = min(self.delay * 2, BACKOFF_MAX)


async def _silent(run_id: str, deployment: str) -> None:
    """No one to tell (a runner not wired to an engine)."""


def _progress(event: str, data: Any) -> str | None:
    if event == "custom" and isinstance(data, Mapping) and "progress" in data:
        return str(data["progress"])
    return None


def _metadata(conn: Connection, start: Mapping[str, Any]) -> dict[str, Any]:
    """The thread's metadata for a run started from Slack: who asked (under the deployment's
    ``requester_metadata`` key) and the channel."""
    metadata: dict[str, Any] = {"slack_channel": str(start.get("channel", ""))}
    requester = start.get("requested_by")
    if conn.requester_metadata and isinstance(requester, str):
        metadata[conn.requester_metadata] = requester
    return metadata


def _still_pending(resume: Mapping[str, Any] | None, pending: tuple[Pending, ...]) -> bool:
    ids = {p.id for p in pending}
    return bool(resume) and all(i in ids for i in (resume or {}))


def _check_resume(resume: Mapping[str, Any], after: ThreadState | None) -> None:
    """Refuse a value its interrupt's response_schema does not take before it is sent: the
    server would fail the run on it (thread status "error") instead of refusing it."""
    schemas = {p.id: p.response_schema for p in (after.pending if after else ())}
    errors = []
    for interrupt_id, value in resume.items():
        schema = schemas.get(interrupt_id)
        if schema is not None:
            errors += check(schema, value)
    if errors:
        raise ResumeRefused(errors)
