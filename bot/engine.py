"""Runs graphs for Slack: start -> interrupts become approvals -> a decision is claimed once ->
the thread resumes -> the outcome lands on the message. Knows Slack only through SlackPort.

Exactly-once: a decision is claimed by one conditional UPDATE (``Store.vote``); only the
claimer resumes. Before resuming, the thread's pending interrupts are checked, because LangGraph
silently restarts an unknown thread and silently replays a finished one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from bot import blocks
from bot.authz import refusal
from bot.protocol import (
    ApprovalRequest,
    ChoiceSpec,
    DecisionRecord,
    normalise,
    resume_value,
)
from bot.slack import SlackError, SlackPort
from bot.store import Approval, Run, Store
from bot.tasks import TaskSet

log = logging.getLogger(__name__)

RESTART_NOTE = (
    "♻️ The bot restarted while this run was in progress; continuing from its last checkpoint."
)


def _config(run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": run_id}}


def _command_line(run: Run) -> str:
    """The run as the person typed it, e.g. ``/deploy api 1.4.2 prod``."""
    args = (str(v) for k, v in run.input.items() if k != "requested_by")
    return " ".join([run.command, *args])


def _decision(a: Approval) -> DecisionRecord | None:
    if a.choice is None or a.decided_at is None:
        return None
    return DecisionRecord(a.choice, bool(a.approved), a.decided_by, a.comment, a.decided_at)


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        slack: SlackPort,
        graphs: Mapping[str, CompiledStateGraph],
        tasks: TaskSet,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.slack = slack
        self.graphs = graphs
        self.tasks = tasks
        self.clock = clock
        # One lock per thread: a run is never driven twice at once in this process. Weak, so
        # a finished run's lock goes away once nobody holds or waits on it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- entry points (each runs as a task the app owns) ---------------------------------
    async def start(self, command: str, args: dict[str, Any], requester: str, channel: str) -> str:
        """Create a run and drive its graph until it finishes or waits for a person."""
        run_id = uuid.uuid4().hex
        graph_input = {**args, "requested_by": requester}
        await self.store.create_run(run_id, command, graph_input, requester, channel, self.clock())
        run = await self.store.get_run(run_id)
        assert run is not None
        try:
            await self._drive(run, graph_input)
        except SlackError as exc:
            # Nothing reached the channel (not_in_channel, …): close the run, and let the
            # caller tell the requester.
            await self.store.set_run_status(
                run_id, "failed", self.clock(), {"status": "failed", "text": f"Slack: {exc.code}"}
            )
            raise
        return run_id

    async def click(self, interrupt_id: str, user: str, index: int, channel: str) -> None:
        """A button: the choice at ``index`` of the request's choices."""
        found = await self._load(interrupt_id, user, channel)
        if found is None:
            return
        approval, run = found
        request = normalise(approval.request)
        if not 0 <= index < len(request.choices):
            await self.slack.ephemeral(channel, user, "That button is no longer valid.")
            return
        await self._decide(approval, run, request, user, request.choices[index], None, channel)

    async def reject_with_reason(
        self, interrupt_id: str, user: str, reason: str, channel: str
    ) -> None:
        """A submitted "Reject with reason…" modal."""
        found = await self._load(interrupt_id, user, channel)
        if found is None:
            return
        approval, run = found
        request = normalise(approval.request)
        if request.reject_choice is None:
            await self.slack.ephemeral(channel, user, "This request has no reject choice.")
            return
        await self._decide(approval, run, request, user, request.reject_choice, reason, channel)

    async def _decide(
        self,
        approval: Approval,
        run: Run,
        request: ApprovalRequest,
        user: str,
        choice: ChoiceSpec,
        comment: str | None,
        channel: str,
    ) -> None:
        """Authorise, vote, and resume if this vote claims the decision."""
        reason = refusal(request, run.requester, user, choice)
        if reason:
            await self.store.audit(
                "refused",
                self.clock(),
                user=user,
                run_id=run.run_id,
                interrupt_id=approval.interrupt_id,
                detail={"choice": choice.id},
            )
            await self.slack.ephemeral(channel, user, reason)
            return
        if choice.comment == "required" and not comment:
            await self.slack.ephemeral(channel, user, "This choice needs a reason.")
            return
        result = await self.store.vote(
            approval.interrupt_id,
            user,
            choice.id,
            choice.approves,
            comment,
            request.min_approvals,
            self.clock(),
        )
        if result.claimed:
            await self._refresh(result.approval, run)
            await self._resume(result.approval)
        elif result.approval.status == "pending":
            await self._refresh(result.approval, run, approvals=result.approvals)
            await self.slack.ephemeral(
                channel,
                user,
                f"Your vote is in: {result.approvals} of {request.min_approvals} approvals.",
            )
        else:
            await self._tell_decided(result.approval, user, channel)

    async def open_reason(
        self, interrupt_id: str, user: str, trigger_id: str, channel: str
    ) -> None:
        """ "Reject with reason…": check the click first, then open the modal (the trigger
        expires 3 s after the click)."""
        found = await self._load(interrupt_id, user, channel)
        if found is None:
            return
        approval, run = found
        request = normalise(approval.request)
        choice = request.reject_choice
        reason = choice and refusal(request, run.requester, user, choice)
        if choice is None or reason:
            await self.slack.ephemeral(
                channel, user, reason or "This request has no reject choice."
            )
            return
        try:
            await self.slack.open_modal(
                trigger_id, blocks.reason_modal(request, interrupt_id, channel)
            )
        except SlackError as exc:  # expired_trigger_id: Slack took over 3 s to reach us
            log.warning("could not open the reason modal: %s", exc.code)
            await self.slack.ephemeral(
                channel, user, "Slack did not let me open the form in time; please click again."
            )

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
            (_command_line(r), (r.outcome or {}).get("status", r.status), r.created_at)
            for r in await self.store.runs_by(user)
        ]
        await self.slack.publish_home(user, blocks.home_view(items, mine))

    async def recover(self) -> None:
        """At start-up: resume claimed-but-not-resumed decisions, continue runs cut mid-step,
        post approvals whose message never went out. Pending approvals need nothing: their
        buttons carry the interrupt id."""
        resumed: set[str] = set()
        for approval in await self.store.approvals_with_status("decided"):
            resumed.add(approval.run_id)
            self.tasks.spawn(self._resume(approval), f"recover-resume-{approval.interrupt_id}")
        for run in await self.store.runs_with_status("running"):
            if run.run_id not in resumed:
                self.tasks.spawn(self._continue(run), f"recover-run-{run.run_id}")

    # -- internals ------------------------------------------------------------------------
    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def _load(
        self, interrupt_id: str, user: str, channel: str
    ) -> tuple[Approval, Run] | None:
        """The approval and its run if it can still be decided; otherwise tell the user why."""
        approval = await self.store.get_approval(interrupt_id)
        run = approval and await self.store.get_run(approval.run_id)
        if approval is None or run is None:
            await self.slack.ephemeral(
                channel, user, "I don't know this request any more; it may have been cleaned up."
            )
            return None
        if approval.status != "pending":
            await self._tell_decided(approval, user, channel)
            return None
        return approval, run

    async def _tell_decided(self, approval: Approval, user: str, channel: str) -> None:
        decision = _decision(approval)
        text = (
            blocks.already_decided(normalise(approval.request), decision)
            if decision
            else "This request is closed."
        )
        await self.slack.ephemeral(approval.channel or channel, user, text)

    async def _refresh(self, approval: Approval, run: Run, approvals: int = 0) -> None:
        if not approval.ts or not approval.channel:
            return
        text, blks = blocks.approval_message(
            normalise(approval.request),
            approval.interrupt_id,
            run.requester,
            approval.created_at,
            blocks.MessageState(_decision(approval), approvals, run.outcome),
        )
        await self.slack.update(approval.channel, approval.ts, text, blks)

    async def _resume(self, approval: Approval) -> None:
        """Resume the thread with the claimed decision, unless it already consumed it."""
        run = await self.store.get_run(approval.run_id)
        decision = _decision(approval)
        if run is None or decision is None:
            return
        graph = self.graphs[run.command]
        async with self._lock(run.run_id):
            state = await graph.aget_state(_config(run.run_id))
            pending = {i.id for i in state.interrupts}
        if approval.interrupt_id not in pending:
            # Resumed before a crash: the decision is in the checkpoint already.
            await self.store.mark_resumed(approval.interrupt_id, self.clock())
            if run.status == "running":
                await self._continue(run)
            return
        value = resume_value(normalise(approval.request), decision)
        await self._drive(
            run, Command(resume={approval.interrupt_id: value}), resumed=approval.interrupt_id
        )

    async def _continue(self, run: Run) -> None:
        """Continue a run cut mid-step, from its last checkpoint, and say so in its thread."""
        state = await self.graphs[run.command].aget_state(_config(run.run_id))
        await self._progress(run.run_id, RESTART_NOTE)
        await self._drive(run, None if state.created_at else run.input)

    async def _drive(self, run: Run, graph_input: Any, resumed: str | None = None) -> None:
        """Stream the graph (progress lines go to the run's thread) until it pauses or ends."""
        graph = self.graphs[run.command]
        cfg = _config(run.run_id)
        async with self._lock(run.run_id):
            await self.store.set_run_status(run.run_id, "running", self.clock())
            try:
                async for chunk in graph.astream(graph_input, cfg, stream_mode="custom"):
                    if isinstance(chunk, dict) and "progress" in chunk:
                        await self._progress(run.run_id, str(chunk["progress"]))
                if resumed:
                    await self.store.mark_resumed(resumed, self.clock())
                state = await graph.aget_state(cfg)
            except asyncio.CancelledError:
                raise  # shutdown: the run stays "running" and continues on the next start
            except Exception as exc:
                log.exception("run %s failed", run.run_id)
                await self._finish(
                    run,
                    {"status": "failed", "text": f"The run crashed: {type(exc).__name__}: {exc}"},
                )
                return
            if state.interrupts:
                for intr in state.interrupts:
                    await self._open_approval(run, intr.id, intr.value)
                await self.store.set_run_status(run.run_id, "waiting", self.clock())
            elif not state.next:
                outcome = state.values.get("outcome") if isinstance(state.values, dict) else None
                await self._finish(
                    run,
                    outcome
                    if isinstance(outcome, dict)
                    else {"status": "succeeded", "text": "Done."},
                )

    async def _open_approval(self, run: Run, interrupt_id: str, value: Any) -> None:
        """Store the approval (once per interrupt id) and post it unless already posted."""
        approval, _ = await self.store.add_approval(
            interrupt_id, run.run_id, value, self.clock(), run.requester
        )
        if approval.ts:
            return  # a replayed node raised the same interrupt: already in the channel
        text, blks = blocks.approval_message(
            normalise(value), interrupt_id, run.requester, approval.created_at
        )
        channel, ts = await self.slack.post(run.channel, text, blks)
        await self.store.set_posted(interrupt_id, channel, ts)
        await self.store.set_run_thread(run.run_id, channel, ts)

    async def _progress(self, run_id: str, line: str) -> None:
        """Post a progress line in the run's thread; a refused post never fails the run."""
        run = await self.store.get_run(run_id)
        if run is None:
            return
        text = blocks.progress_reply(line)
        try:
            if run.thread_ts and run.thread_channel:
                await self.slack.post(run.thread_channel, text, thread_ts=run.thread_ts)
            else:
                channel, ts = await self.slack.post(run.channel, text)
                await self.store.set_run_thread(run_id, channel, ts)
        except SlackError as exc:
            log.warning("run %s: progress not posted: %s", run_id, exc.code)

    async def _finish(self, run: Run, outcome: dict[str, Any]) -> None:
        status = "failed" if outcome.get("status") == "failed" else "done"
        await self.store.set_run_status(run.run_id, status, self.clock(), outcome)
        done = await self.store.get_run(run.run_id)
        assert done is not None
        for approval in await self.store.approvals_for_run(run.run_id):
            await self._refresh(approval, done)
