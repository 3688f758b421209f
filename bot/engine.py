"""Runs graphs for Slack: start -> interrupts become approvals -> a decision is claimed once ->
the thread resumes -> the outcome lands on the message.

The engine never waits on Slack on the path that records a decision or resumes a graph: what
Slack must show is written as outbox rows in the same transaction as the state change (see
``bot.outbox``). Only ``views.open`` is called inline, because its trigger dies in 3 s.

Exactly-once: a decision is claimed by one conditional UPDATE (``Store.decide``); only the
claimer resumes. Before resuming, the thread's pending interrupts are checked, because LangGraph
silently restarts an unknown thread and silently replays a finished one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability

from bot import blocks, messages
from bot.authz import refusal
from bot.protocol import ApprovalRequest, ChoiceSpec, DecisionRecord, normalise, resume_value
from bot.slack import SlackError, SlackPort
from bot.store import (
    Approval,
    Ballot,
    Delivery,
    Item,
    Opening,
    Refused,
    Run,
    Store,
    VoteResult,
)
from bot.tasks import TaskSet

log = logging.getLogger(__name__)

RESTART_NOTE = (
    "♻️ The bot restarted while this run was in progress; continuing from its last checkpoint."
)
MODAL_SECONDS = 2.5  # a trigger_id dies 3 s after the click


def _config(run: Run, attempt: int | None = None) -> dict[str, Any]:
    """The thread's config. ``run_attempt`` counts starts after restarts, so a step can give
    the outside world an idempotency key (see graphs/deploy.py)."""
    return {"configurable": {"thread_id": run.run_id, "run_attempt": attempt or run.attempt}}


def command_line(run: Run) -> str:
    """The run as the person typed it, e.g. ``/deploy api 1.4.2 prod``."""
    args = (str(v) for k, v in run.input.items() if k != "requested_by")
    return " ".join([run.command, *args])


def _decision(a: Approval) -> DecisionRecord | None:
    if a.choice is None or a.decided_at is None:
        return None
    return DecisionRecord(a.choice, bool(a.approved), a.decided_by, a.comment, a.decided_at)


def _already_decided(approval: Approval, channel: str, user: str) -> Item:
    decision = _decision(approval)
    if decision is not None:
        text = blocks.already_decided(normalise(approval.request), decision)
    elif approval.status == "failed":
        text = "This request was never posted properly, so it was closed."
    else:
        text = "This request is closed."
    return messages.ephemeral(channel, user, text, approval.run_id)


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        slack: SlackPort,
        graphs: Mapping[str, CompiledStateGraph],
        tasks: TaskSet,
        clock: Callable[[], float] = time.time,
        durability: Durability = "sync",
    ) -> None:
        self.store = store
        self.durability: Durability = durability
        self.slack = slack
        self.graphs = graphs
        self.tasks = tasks
        self.clock = clock
        # One lock per thread: a run is never driven twice at once in this process. Weak, so
        # a finished run's lock goes away once nobody holds or waits on it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- entry points (each runs as a task the app owns) ---------------------------------
    async def start(
        self,
        command: str,
        args: dict[str, Any],
        requester: str,
        channel: str,
        response_url: str | None = None,
    ) -> str:
        """Create a run and drive its graph until it finishes or waits for a person."""
        run_id = uuid.uuid4().hex
        graph_input = {**args, "requested_by": requester}
        run = await self.store.create_run(
            run_id, command, graph_input, requester, channel, self.clock(), response_url
        )
        await self._drive(run, graph_input)
        return run_id

    async def click(self, interrupt_id: str, user: str, index: int, channel: str) -> None:
        """A button: the choice at ``index`` of the request's choices."""

        def pick(request: ApprovalRequest) -> ChoiceSpec | None:
            return request.choices[index] if 0 <= index < len(request.choices) else None

        await self._decide(interrupt_id, user, channel, pick, None)

    async def reject_with_reason(
        self, interrupt_id: str, user: str, reason: str, channel: str
    ) -> None:
        """A submitted "Reject with reason…" modal."""
        await self._decide(interrupt_id, user, channel, lambda r: r.reject_choice, reason)

    async def _decide(
        self,
        interrupt_id: str,
        user: str,
        channel: str,
        pick: Callable[[ApprovalRequest], ChoiceSpec | None],
        comment: str | None,
    ) -> None:
        """Authorise, vote, claim and queue the message updates in one store call; the
        claimer then resumes the graph (Slack is not waited for)."""
        requests: dict[str, ApprovalRequest] = {}

        def request_of(a: Approval) -> ApprovalRequest:
            if a.interrupt_id not in requests:
                requests[a.interrupt_id] = normalise(a.request)
            return requests[a.interrupt_id]

        def judge(approval: Approval, run: Run) -> Ballot | Refused:
            request = request_of(approval)
            choice = pick(request)
            if choice is None:
                text = "That button is no longer valid."
                return Refused(user, [messages.ephemeral(channel, user, text, run.run_id)])
            reason = refusal(request, run.requester, user, choice)
            if reason is None and choice.comment == "required" and not comment:
                reason = "This choice needs a reason."
            if reason:
                eph = messages.ephemeral(channel, user, reason, run.run_id)
                return Refused(user, [eph], {"choice": choice.id})
            return Ballot(user, choice.id, choice.approves, comment, request.min_approvals)

        def render(result: VoteResult) -> list[Item]:
            a, run = result.approval, result.run
            if result.claimed:
                state = blocks.MessageState(_decision(a), result.approvals, run.outcome)
                return [messages.approval_update(run, a, request_of(a), state)]
            if a.status == "pending":
                request = request_of(a)
                state = blocks.MessageState(None, result.approvals)
                text = f"Your vote is in: {result.approvals} of {request.min_approvals} approvals."
                return [
                    messages.approval_update(run, a, request, state),
                    messages.ephemeral(channel, user, text, run.run_id),
                ]
            return [_already_decided(a, channel, user)]

        def unknown() -> list[Item]:
            text = "I don't know this request any more; it may have been cleaned up."
            return [messages.ephemeral(channel, user, text)]

        result = await self.store.decide(interrupt_id, self.clock(), judge, render, unknown)
        if result is not None and result.claimed:
            await self._resume(result.approval, result.run)

    async def open_reason(
        self, interrupt_id: str, user: str, trigger_id: str, channel: str
    ) -> None:
        """ "Reject with reason…": check the click, then open the modal inline (the trigger
        expires 3 s after the click, so this one call cannot wait in the outbox)."""
        found = await self.store.approval_and_run(interrupt_id)
        if found is None:
            text = "I don't know this request any more; it may have been cleaned up."
            await self.store.tell([messages.ephemeral(channel, user, text)], self.clock())
            return
        approval, run = found
        if approval.status != "pending":
            await self.store.tell([_already_decided(approval, channel, user)], self.clock())
            return
        request = normalise(approval.request)
        choice = request.reject_choice
        reason = choice and refusal(request, run.requester, user, choice)
        if choice is None or reason:
            text = reason or "This request has no reject choice."
            await self.store.tell([messages.ephemeral(channel, user, text)], self.clock())
            return
        try:
            async with asyncio.timeout(MODAL_SECONDS):
                await self.slack.open_modal(
                    trigger_id, blocks.reason_modal(request, interrupt_id, channel)
                )
        except (SlackError, TimeoutError) as exc:
            error = exc if isinstance(exc, SlackError) else SlackError("timeout", transient=True)
            log.warning("run %s: reason modal not opened: %s", run.run_id, error.code)
            eph = messages.ephemeral(channel, user, messages.modal_refused(error), run.run_id)
            await self.store.tell([eph], self.clock())

    async def publish_home(self, user: str) -> None:
        """The App Home for ``user``: open approvals (theirs to decide first), their requests."""
        items = []
        for approval, requester in await self.store.open_approvals():
            request = normalise(approval.request)
            approve = request.approve_choice
            yours = approve is not None and refusal(request, requester, user, approve) is None
            items.append(
                blocks.HomeItem(
                    request, requester, approval.channel or "", approval.created_at, yours
                )
            )
        mine = [
            (command_line(r), (r.outcome or {}).get("status", r.status), r.created_at)
            for r in await self.store.runs_by(user)
        ]
        view = blocks.home_view(items, mine)
        item = Item("publish", {"user": user, "view": view}, key=f"home:{user}", replace=True)
        await self.store.tell([item], self.clock())

    async def recover(self) -> None:
        """At start-up: resume claimed-but-not-resumed decisions and continue runs cut
        mid-step. Pending approvals need nothing (their buttons carry the interrupt id), and
        unsent messages need nothing (the outbox sends them)."""
        resumed: set[str] = set()
        for approval in await self.store.approvals_with_status("decided"):
            run = await self.store.get_run(approval.run_id)
            if run is None:
                continue
            resumed.add(run.run_id)
            self.tasks.spawn(self._resume(approval, run), f"recover-resume-{run.run_id}")
        for run in await self.store.runs_with_status("running"):
            if run.run_id not in resumed:
                self.tasks.spawn(self._continue(run), f"recover-run-{run.run_id}")

    async def on_delivery_failed(self, d: Delivery, error: SlackError) -> None:
        """The outbox gave up on a row. An approval Slack will never show ends its run, and
        the requester is told in plain words; anything else was logged by the outbox."""
        if (
            d.kind != "post"
            or d.interrupt_id is None
            or d.key != messages.approval_key(d.interrupt_id)
        ):
            return
        run = await self.store.get_run(d.run_id or "")
        if run is None:
            return
        text = messages.post_refused(run, error)
        await self.store.fail_approval(
            d.interrupt_id, self.clock(), text, error.code, [messages.tell_requester(run, text)]
        )

    # -- internals ------------------------------------------------------------------------
    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def _resume(self, approval: Approval, run: Run) -> None:
        """Resume the thread with the claimed decision, unless it already consumed it."""
        decision = _decision(approval)
        if decision is None:
            return
        graph = self.graphs[run.command]
        async with self._lock(run.run_id):
            state = await graph.aget_state(_config(run))
            if approval.interrupt_id not in {i.id for i in state.interrupts}:
                # Resumed before a crash: the decision is in the checkpoint already.
                await self.store.mark_resumed(approval.interrupt_id, run.run_id, self.clock())
                if run.status in ("running", "waiting"):
                    await self._continue_locked(run)
                return
            value = resume_value(normalise(approval.request), decision)
            command = Command(resume={approval.interrupt_id: value})
            await self._drive_locked(run, command, resumed=approval.interrupt_id)

    async def _continue(self, run: Run) -> None:
        async with self._lock(run.run_id):
            await self._continue_locked(run)

    async def _continue_locked(self, run: Run) -> None:
        """Continue a run cut mid-step, from its last checkpoint, and say so in its thread."""
        attempt = await self.store.next_attempt(run.run_id)
        state = await self.graphs[run.command].aget_state(_config(run, attempt))
        await self._progress(run, f"restart:{run.run_id}:{attempt}", RESTART_NOTE)
        await self._drive_locked(run, None if state.created_at else run.input, attempt=attempt)

    async def _drive(self, run: Run, graph_input: Any) -> None:
        async with self._lock(run.run_id):
            await self._drive_locked(run, graph_input)

    async def _drive_locked(
        self,
        run: Run,
        graph_input: Any,
        resumed: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """Stream the graph until it pauses or ends. Progress lines are keyed by LangGraph's
        task id and their position in the task, so a step that re-runs after a crash edits
        its earlier replies instead of posting them again."""
        graph = self.graphs[run.command]
        cfg = _config(run, attempt)
        seen: Counter[str] = Counter()
        task = "run"
        interrupts: list[tuple[str, Any]] = []
        values: Any = None
        try:
            # The stream says all we need: progress ("custom"), which task is running
            # ("tasks"), and the final state or the interrupts it stopped at ("values"), so no
            # aget_state is needed afterwards.
            async for mode, chunk in graph.astream(
                graph_input,
                cfg,
                stream_mode=["custom", "tasks", "values"],
                durability=self.durability,
            ):
                if mode == "values" and isinstance(chunk, dict):
                    if "__interrupt__" in chunk:
                        interrupts = [(i.id, i.value) for i in chunk["__interrupt__"]]
                    else:
                        values = chunk
                elif mode == "tasks" and isinstance(chunk, dict) and "input" in chunk:
                    task = str(chunk.get("id"))
                elif mode == "custom" and isinstance(chunk, dict) and "progress" in chunk:
                    owner = str(chunk.get("task") or task)
                    n = seen[owner]
                    seen[owner] += 1
                    key = f"progress:{run.run_id}:{owner}:{n}"
                    await self._progress(run, key, str(chunk["progress"]))
        except asyncio.CancelledError:
            raise  # shutdown: the run stays "running" and continues on the next start
        except Exception:
            log.exception("run %s failed", run.run_id)
            outcome = {"status": "failed", "text": messages.RUN_FAILED.format(run_id=run.run_id)}
            await self._finish(run, outcome, resumed)
            return
        if interrupts:
            await self.store.pause(
                run,
                interrupts,
                self.clock(),
                lambda a: Opening([messages.approval_post(run, a, normalise(a.request))]),
                resumed,
            )
        else:
            outcome = values.get("outcome") if isinstance(values, dict) else None
            await self._finish(
                run,
                outcome if isinstance(outcome, dict) else {"status": "succeeded", "text": "Done."},
                resumed,
            )

    async def _progress(self, run: Run, key: str, line: str) -> None:
        """Queue a progress line in the run's thread (never fails the run: it is a row)."""
        thread = None
        thread_key = run.thread_key
        if thread_key is None:
            thread = messages.run_thread(run, command_line(run))
            thread_key = thread.key
        assert thread_key is not None
        reply, retried = messages.progress(run.run_id, thread_key, key, line)
        await self.store.progress(run, reply, retried, thread, self.clock())

    async def _finish(self, run: Run, outcome: dict[str, Any], resumed: str | None = None) -> None:
        status = "failed" if outcome.get("status") == "failed" else "done"

        def render(done: Run, approvals: list[Approval]) -> list[Item]:
            return [
                messages.approval_update(
                    done,
                    a,
                    normalise(a.request),
                    blocks.MessageState(_decision(a), 0, done.outcome),
                )
                for a in approvals
                if a.status != "failed"
            ]

        await self.store.finish(run.run_id, status, outcome, self.clock(), render, resumed)
