"""Decides for Slack: start -> interrupts become approvals -> a decision is claimed once (and
answered) -> the thread resumes in the background -> the outcome lands on the message. The
graph itself is driven by a ``Runner`` (bot/runner.py): the engine never sees LangGraph.

The engine never waits on Slack on the path that records a decision or resumes a graph: what
Slack must show is written as outbox rows in the same transaction as the state change (see
``bot.background.outbox``). Only ``views.open`` is called inline, because its trigger dies in
3 s, and the plain-words answer to a person whose click, form or command the database did not
take (the outbox is in the database too: ``for_person``).

A run fails only because its graph failed. The database blinking is not that: its work is
tried again where it happens (bot/db/retry.py), so a run simply waits; if the database stays
away for longer than the retry allows, the run stays 'running', still this process's, and this
process continues it from its last checkpoint as soon as the database answers again
(``_holding``, ``recover``).

Exactly-once: a decision is claimed by one conditional UPDATE (``Store.decide``); only the
claimer resumes, as a task the engine owns (``_resume_later``), so a decider is answered at the
claim. Before resuming, the thread's pending interrupts are checked (``Runner.state``), because
LangGraph silently restarts an unknown thread and silently replays a finished one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from bot.db.retry import CommitUnknown, error_name, is_transient
from bot.db.store import Store
from bot.grants import (
    SCOPE_WORDS,
    durations,
    first_deciding,
    grant_choice,
    grantable,
    may_revoke,
    scope_value,
    subject,
)
from bot.grants import describe as describe_grant
from bot.integrity import request_digest
from bot.interrupts import (
    ApprovalRequest,
    ChoiceSpec,
    DecisionRecord,
    normalise,
    private_values,
    redact,
    resume_value,
)
from bot.mentions import Heard, usage
from bot.model import (
    Approval,
    Ballot,
    Deadline,
    Delivery,
    Firing,
    Grant,
    GrantAsk,
    Granted,
    Item,
    Opening,
    Refused,
    Run,
    VoteResult,
    grant_note,
)
from bot.model import decision_of as _decision
from bot.policy import authz
from bot.policy.authz import GroupsUnknown, groups_in, may_escalate, may_withdraw, names, refusal
from bot.policy.rules import Policy, Rules, describe, format_duration, freeze_at
from bot.render import blocks, forms, messages
from bot.runner import (
    AnsweredElsewhere,
    Finished,
    GraphRefused,
    GraphThread,
    Paused,
    Pending,
    Progress,
    ResumeRefused,
    Runner,
    ThreadState,
)
from bot.schema import FieldError
from bot.slack.client import SlackError, SlackPort
from bot.slack.groups import GroupCache, with_groups
from bot.slackids import USER_ID as USER
from bot.tasks import TaskSet

log = logging.getLogger(__name__)

RESTART_NOTE = (
    "♻️ The bot restarted while this run was in progress; continuing from its last checkpoint."
)
DB_NOTE = (
    "♻️ The database stopped answering while this run was in progress; continuing from the "
    "last checkpoint after the database came back."
)
MODAL_SECONDS = 2.5  # a trigger_id dies 3 s after the click
HOME_LOOKS = 200  # newest pending approvals the App Home checks for the viewer
HOME_SHOWN = 10  # of those, how many it shows with buttons (a view holds 100 blocks)
RECOVER_BATCH = 100  # runs taken over per look (the rest at the next one)
# Resumes in a row a process makes for standing grants (then: see _drive_locked).
GRANTED_STEPS = 1000
UNKNOWN = "I don't know this request any more; it may have been cleaned up."
GRANTS_OFF = "The policy does not allow a standing grant for this request; use Approve."
GRANTS_APPROVERS = (
    "Standing grants here are made by {who}: you may decide this request, but not grant "
    "later ones. Use Approve."
)
BY_FORM = "This choice needs a comment: use the form its button opens."
BY_MENTION = (
    "This choice needs a comment: write it after the word, e.g. `{word} because …`. "
    "Nothing was decided."
)
NO_CHOICE = "That button is no longer valid."
NO_MENTIONED_CHOICE = "This request has no {word} choice: use its buttons instead."


def _thread(run: Run, attempt: int | None = None) -> GraphThread:
    """The run's graph thread (``attempt``: a new start after a restart)."""
    return GraphThread(run.run_id, run.command, attempt or run.attempt)


def command_line(run: Run) -> str:
    """The run as the person typed it, e.g. ``/deploy api 1.4.2 prod``."""
    if not run.command.startswith("/"):
        return f"/approvals run {run.command}"
    args = (str(v) for k, v in run.input.items() if k != "requested_by")
    return " ".join([run.command, *args])


@dataclass(frozen=True)
class Answer:
    """What a decider is told: ``status`` is decided | voted | refused | closed | unknown."""

    status: str
    text: str


def _answer(result: VoteResult | Refused | None, needed: int = 1) -> Answer:
    """What a decider is told of their vote (the words of its ephemeral): ``result`` is what
    ``Store.decide`` did, ``needed`` the approvals the request needs."""
    if result is None:
        return Answer("unknown", UNKNOWN)
    if isinstance(result, Refused):
        return Answer("refused", result.text)
    a = result.approval
    if result.claimed:
        decision = _decision(a)
        assert decision is not None
        line = blocks.decision_line(normalise(a.request, a.meta), decision)
        return Answer("decided", line + _granted_words(result.grant))
    if a.status == "pending":
        words = f"Your vote is in: {result.approvals} of {needed} approvals."
        if result.grant is not None:
            words += (
                f" The standing grant you asked for is made once {result.grant.needed} "
                "approvers ask for the same one."
            )
        return Answer("voted", words)
    return Answer("closed", _closed_text(a))


def _granted_words(grant: Grant | None) -> str:
    """What an approver who asked for a standing grant is told once the approval is claimed."""
    if grant is None:
        return ""
    if grant.status != "active":
        return (
            f"\nNo standing grant was made: it needed {grant.needed} approvers to ask for the "
            "same one."
        )
    return (
        f"\nStanding grant made: {describe_grant(grant)}, until "
        f"{blocks.slack_date(grant.expires_at)}. `/approvals grants` lists it, with Revoke."
    )


def _revoked_words(grant: Grant | None, what: str) -> str:
    """What a person who clicked Revoke is told (``what``: revoked | refused | gone)."""
    if grant is not None and what == "revoked":
        return f"Revoked: {describe_grant(grant)}. Matching requests will ask people again."
    if grant is not None and what == "refused":
        by = ", ".join(f"<@{u}>" for u in grant.granted_by)
        return f"Only who made this grant ({by}) or an admin can revoke it."
    return "That grant has ended or was revoked already; it decides nothing more."


def _closed_text(approval: Approval) -> str:
    if approval.status == "superseded":
        return messages.CHANGED
    decision = _decision(approval)
    if decision is not None:
        return blocks.already_decided(normalise(approval.request, approval.meta), decision)
    if approval.status == "failed":
        return "This request was never posted properly, so it was closed."
    return "This request is closed."


def _already_decided(
    approval: Approval, channel: str | None, user: str, fallback: str | None = None
) -> list[Item]:
    return _ephemeral(channel, user, _closed_text(approval), approval.run_id, fallback)


def _ephemeral(
    channel: str | None,
    user: str,
    text: str,
    run_id: str | None = None,
    fallback: str | None = None,
) -> list[Item]:
    """An ephemeral answer, when the person acted in a channel or DM (not from the Home);
    ``fallback`` is the click's response_url, used if Slack refuses the ephemeral."""
    return [messages.ephemeral(channel, user, text, run_id, fallback)] if channel else []


def ask(rules: Rules, request: ApprovalRequest, digest: str) -> blocks.Ask:
    """How an approval's message asks, from the rules it is held to (and whether they let
    an approver grant requests like this one in advance)."""
    return blocks.Ask(
        who=describe(rules),
        needed=rules.min_approvals,
        comment_on=rules.comment_required,
        can_escalate=bool(rules.escalation),
        can_grant=grantable(rules, request, digest) is not None,
    )


def outcome_of(values: Any) -> dict[str, Any]:
    """What a finished run shows: its ``outcome`` key, or an agent's last message."""
    if isinstance(values, dict):
        if isinstance(values.get("outcome"), dict):
            return values["outcome"]
        msgs = values.get("messages")
        last = msgs[-1] if isinstance(msgs, list) and msgs else None
        text = last.get("content") if isinstance(last, dict) else getattr(last, "content", None)
        if isinstance(text, str) and text:
            return {"status": "succeeded", "text": text}
    return {"status": "succeeded", "text": "Done."}


def _is_dm(channel: str) -> bool:
    return channel.startswith("D")


class Engine:
    """Decides for the runs of this process: one per process, it holds what must be shared
    between the tasks that start, decide and drive runs (a lock per run, which tasks drive
    which run, the runs cut off while the database was away)."""

    def __init__(
        self,
        *,
        store: Store,
        slack: SlackPort,
        runner: Runner,
        commands: Sequence[str],
        tasks: TaskSet,
        policy: Policy | None = None,
        groups: GroupCache | None = None,
        clock: Callable[[], float] = time.time,
        on_deadlines: Callable[[], None] = lambda: None,
        on_decided: Callable[[Approval], None] = lambda approval: None,
        private: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.store = store
        self.slack = slack
        self.runner = runner  # drives the graphs (bot/runner.py)
        self.commands = tuple(commands)  # the graphs' commands, as the App Home lists them
        self.tasks = tasks
        self.policy = policy or Policy()
        self.groups = groups or GroupCache(slack, clock)
        self.clock = clock
        self._on_deadlines = on_deadlines  # wakes the scheduler when a deadline moved
        self._on_decided = on_decided  # an approval was claimed here (metrics)
        # Per command: argument and field names its graph keeps out of channel messages.
        self.private = {cmd: tuple(names) for cmd, names in (private or {}).items() if names}
        # One lock per thread: a run is never driven twice at once in this process. Weak, so
        # a finished run's lock goes away once nobody holds or waits on it. Across processes
        # the run's lease in the database is the guard (see ``recover``).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._driving: dict[str, int] = {}  # run id -> tasks of this process driving it
        self._drivers: dict[asyncio.Task[Any], str] = {}  # tasks in ``_holding`` -> run id
        self._cut: set[str] = set()  # runs this process stopped driving: taken back if still its
        self._verify = False  # judged dead once: a run's lease is checked before it is driven
        self._on_runs: Callable[[], None] = lambda: None  # a run was cut: look again soon
        self._waiting: set[str] = set()  # runs whose messages say their server is not answering

    def set_deadline_listener(self, listener: Callable[[], None]) -> None:
        self._on_deadlines = listener

    def set_runs_listener(self, listener: Callable[[], None]) -> None:
        self._on_runs = listener

    async def for_person(
        self,
        work: Awaitable[Any],
        user: str,
        channel: str | None,
        response_url: str | None,
        words: str,
    ) -> bool:
        """Do what a person asked (a click, a submitted form, a command); True when done.
        When the database did not take it within the retry budget, tell them ``words`` (or,
        when it went away mid-commit, that it is unknown whether it went through) straight
        through Slack: the response_url, else an ephemeral where they acted, else a DM."""
        try:
            await work
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s's request not recorded: no database (%s)", user, error_name(exc))
            text = messages.NOT_RECORDED_UNSURE if isinstance(exc, CommitUnknown) else words
            await self.tell_directly(user, channel, response_url, text)
            return False
        return True

    async def respond(self, response_url: str, text: str) -> None:
        """Answer a slash command through its response_url, by the outbox like every answer
        (so a listener never writes to the store itself)."""
        await self.store.tell(
            [Item(kind="respond", payload={"url": response_url, "text": text})], self.clock()
        )

    async def tell_directly(
        self, user: str, channel: str | None, response_url: str | None, text: str
    ) -> None:
        """An ephemeral answer sent at once, not through the outbox (which is in the database
        that is not answering): the response_url, else where they acted, else a DM."""
        try:
            if response_url:
                await self.slack.respond(response_url, text)
            elif channel:
                await self.slack.ephemeral(channel, user, text)
            else:
                await self.slack.post(await self.slack.open_dm(user), text)
        except SlackError as error:
            log.warning("could not tell %s it was not recorded: %s", user, error.code)

    def rules_for(self, command: str, args: Mapping[str, Any]) -> Rules:
        return self.policy.rules_for(command, args)

    def rules_of(self, approval: Approval, run: Run) -> Rules:
        return self.policy.rules_of(approval, run)

    # -- entry points (each runs as a task the app owns) ---------------------------------
    def channel_for(self, command: str, args: Mapping[str, Any], channel: str) -> str | None:
        """Where a request typed in ``channel`` is posted: there, or, typed in a DM, the
        policy's ``channel`` (None: nowhere; nobody else could see or decide it)."""
        if not _is_dm(channel) and not channel.startswith("G"):
            return channel
        return self.rules_for(command, args).channel

    async def start(
        self,
        command: str,
        args: dict[str, Any],
        requester: str,
        channel: str,
        response_url: str | None = None,
    ) -> str | None:
        """Create a run and drive its graph until it finishes or waits for a person; None
        when the policy refuses the request (the requester is told why)."""
        now = self.clock()
        rules = self.rules_for(command, args)
        why = await self._start_refusal(rules, command, requester, channel, now)
        if why is not None:
            tell = (
                [Item(kind="respond", payload={"url": response_url, "text": why})]
                if response_url
                else [Item(kind="dm", payload={"user": requester, "text": why})]
            )
            await self.store.record(
                "start_refused", now, tell, user=requester, detail={"command": command}
            )
            return None
        run_id = uuid.uuid4().hex
        graph_input = {**args, "requested_by": requester}
        run = await self.store.create_run(
            run_id, command, graph_input, requester, channel, now, response_url
        )
        await self._drive(run, graph_input)
        return run_id

    async def _start_refusal(
        self, rules: Rules, command: str, requester: str, channel: str, now: float
    ) -> str | None:
        window = freeze_at(rules, now)
        if window is not None and window.action == "refuse":
            return f"🧊 Change freeze ({window.describe()}): `{command}` can't be requested now."
        if rules.requesters:
            groups = groups_in(rules.requesters)
            unknown = [g for g in groups if self.groups.members(g) is None]
            if unknown:
                await self.groups.resolve(unknown)
            mine = [g for g in groups if requester in (self.groups.members(g) or ())]
            if not rules.may_request(requester, channel, mine):
                return f"You can't start `{command}` here: only {names(rules.requesters)} may."
        return None

    async def click(
        self,
        interrupt_id: str,
        user: str,
        index: int,
        channel: str | None,
        response_url: str | None = None,
    ) -> None:
        """A button: the choice at ``index`` of the request's choices."""

        def pick(request: ApprovalRequest) -> ChoiceSpec | None:
            return request.choice_at(index)

        await self._decide(interrupt_id, user, channel, pick, None, response_url)

    async def decide_with_comment(
        self, interrupt_id: str, user: str, index: int | None, comment: str, channel: str | None
    ) -> None:
        """A submitted comment modal: the choice at ``index`` (None: the reject choice)."""

        def pick(request: ApprovalRequest) -> ChoiceSpec | None:
            return request.reject_choice if index is None else request.choice_at(index)

        await self._decide(interrupt_id, user, channel, pick, comment)

    async def decide_with_answer(
        self,
        interrupt_id: str,
        user: str,
        index: int,
        answer: Any,
        comment: str | None,
        channel: str | None,
    ) -> None:
        """A submitted form (edit, respond, answer, review): the choice at ``index`` with
        the data it carries, stored with the claim."""

        def pick(request: ApprovalRequest) -> ChoiceSpec | None:
            return request.choice_at(index)

        await self._decide(interrupt_id, user, channel, pick, comment, answer=answer)

    async def read_form(
        self, interrupt_id: str, index: int, values: Mapping[str, Any]
    ) -> forms.Reading | None:
        """A submitted form read against its approval's schema, while Slack waits for the
        ack (one read of the store); None when the approval is gone or no longer pending
        (the decision path then says so)."""
        approval = await self.store.get_approval(interrupt_id)
        if approval is None or approval.status != "pending":
            return None
        request = normalise(approval.request, approval.meta)
        choice = request.choice_at(index)
        if choice is None or choice.form is None:
            return None
        return forms.read_form(request, choice, values)

    async def show_details(self, interrupt_id: str, user: str, channel: str | None) -> None:
        """The "Show details" button: the private values, to a person who may decide (an
        ephemeral where they clicked, a DM from the App Home); anyone else is told who may."""
        found = await self.store.approval_and_run(interrupt_id)
        if found is None:
            await self._closed(found, interrupt_id, user, channel)
            return
        approval, run = found
        request = normalise(approval.request, approval.meta)
        choice = request.approve_choice or (request.choices[0] if request.choices else None)
        rules = self.rules_of(approval, run)

        async def check() -> str | None:
            if choice is None:
                return None
            return refusal(rules, run.requester, user, choice, self.groups.members)

        try:
            reason = await with_groups(self.groups, check)
        except GroupsUnknown:
            reason = messages.GROUPS_UNKNOWN
        if choice is None or reason:
            text = reason or "Only the people who decide this request can see its details."
        else:
            text = blocks.details_text(normalise(approval.request, approval.meta, reveal=True))
        await self.store.record(
            "details_shown" if not reason and choice else "details_refused",
            self.clock(),
            _ephemeral(channel, user, text, run.run_id)
            if channel
            else [Item(kind="dm", payload={"user": user, "text": text}, run_id=run.run_id)],
            user=user,
            run_id=run.run_id,
            interrupt_id=interrupt_id,
            digest=approval.digest,
        )

    async def withdraw(self, interrupt_id: str, user: str, channel: str | None) -> Answer:
        """The requester (or an admin) takes the request back: the graph resumes with a
        ``cancelled`` decision."""

        def judge(approval: Approval, run: Run) -> Ballot | Refused:
            if not may_withdraw(self.policy.admins, run.requester, user):
                text = f"Only <@{run.requester}>, who asked, or an admin can withdraw this."
                return Refused(user=user, items=[], text=text)
            return Ballot(
                user=user, choice=blocks.CANCELLED, approves=False, comment=None, required=1
            )

        return await self._vote(interrupt_id, user, channel, judge)

    async def escalate_now(self, interrupt_id: str, user: str, channel: str | None) -> None:
        """An eligible approver brings the next escalation level forward."""
        found = await self.store.approval_and_run(interrupt_id)
        if found is None or found[0].status != "pending":
            await self._closed(found, interrupt_id, user, channel)
            return
        approval, run = found
        rules = self.rules_of(approval, run)

        async def check() -> bool:
            return may_escalate(rules, user, self.groups.members)

        eligible = await with_groups(self.groups, check)
        if not eligible:
            text = f"Only {names(rules.approvers)} can escalate this request."
        elif await self.store.deadline_now(interrupt_id, "escalate", self.clock()):
            self._on_deadlines()
            text = "Escalating now: the next people in line get a DM."
        else:
            text = "Everyone in the escalation chain has been asked already."
        await self.store.tell(_ephemeral(channel, user, text, run.run_id), self.clock())

    async def _closed(
        self, found: tuple[Approval, Run] | None, interrupt_id: str, user: str, channel: str | None
    ) -> None:
        if found is None:
            text = "I don't know this request any more; it may have been cleaned up."
            await self.store.tell(_ephemeral(channel, user, text), self.clock())
        else:
            await self.store.tell(_already_decided(found[0], channel, user), self.clock())

    async def _decide(
        self,
        interrupt_id: str,
        user: str,
        channel: str | None,
        pick: Callable[[ApprovalRequest], ChoiceSpec | None],
        comment: str | None,
        response_url: str | None = None,
        answer: Any = None,
        grant: tuple[str, float, bool] | None = None,
        heard: Heard | None = None,
    ) -> Answer:
        """Authorise against the approval's rules and vote; ``answer`` is the data a form
        choice carries (checked against its schema before it gets here); ``grant`` the
        standing grant asked for with it ("Approve & allow…": scope, seconds, exact
        arguments only), checked against what the rule allows; ``heard``: the mention in the
        approval's thread this decision was typed as (acted on once, answered in that
        thread)."""

        def judge(approval: Approval, run: Run) -> Ballot | Refused:
            request = normalise(approval.request, approval.meta)
            rules = self.rules_of(approval, run)
            choice = pick(request)
            if choice is None:
                text = NO_CHOICE
                if heard is not None and heard.said is not None:
                    word = "Approve" if heard.said.approve else "Reject"
                    text = NO_MENTIONED_CHOICE.format(word=word)
                return Refused(user=user, items=[], text=text)
            data = answer
            if choice.form == "respond" and data is None:
                data = comment  # a response given as a comment (the terminal, the API)
            if choice.form and data is None:
                text = f"“{choice.label}” takes a form: use its button on the message in Slack."
                return Refused(user=user, items=[], detail={"choice": choice.id}, text=text)
            reason = refusal(rules, run.requester, user, choice, self.groups.members)
            if reason and any(self.groups.unresolved(g) for g in groups_in(rules.approvers)):
                reason = messages.GROUPS_UNKNOWN
            if reason is None and rules.needs_comment(choice) and not comment:
                reason = BY_FORM
                if heard is not None and heard.said is not None:
                    reason = BY_MENTION.format(word="approve" if heard.said.approve else "reject")
            asked = None if grant is None else self._grant_ask(approval, run, user, grant)
            if reason is None and asked is not None and not isinstance(asked, GrantAsk):
                reason = asked
            if reason:
                return Refused(user=user, items=[], detail={"choice": choice.id}, text=reason)
            ends = choice.approves or not rules.reject_ends
            return Ballot(
                user=user,
                choice=choice.id,
                approves=choice.approves,
                comment=comment,
                required=rules.min_approvals if ends else 1,
                answer=data,
                grant=asked if isinstance(asked, GrantAsk) else None,
            )

        return await self._vote(interrupt_id, user, channel, judge, response_url, heard)

    async def _vote(
        self,
        interrupt_id: str,
        user: str,
        channel: str | None,
        judge: Callable[[Approval, Run], Ballot | Refused],
        response_url: str | None = None,
        heard: Heard | None = None,
    ) -> Answer:
        """One store transaction (load, authorise, vote, claim, audit, messages), answered at
        once; the claimer's resume runs as background work of its own (``_resume_later``), so
        a decision returns at its claim, not when the graph next pauses. Slack is not waited
        for. A rule naming a user group whose members are not known yet is looked up, and the
        click judged again. What the person is told goes to ``channel`` as an ephemeral
        (None: only in the returned Answer, for deciders outside Slack); a mention (``heard``)
        is answered in its thread, and is acted on once (a retry of its event does nothing)."""
        thread_ts = heard.thread_ts if heard is not None else None
        once = heard.event_id if heard is not None else None

        def told(answer: Answer, run_id: str | None) -> list[Item]:
            if not channel:
                return []
            text = answer.text
            return [messages.ephemeral(channel, user, text, run_id, response_url, thread_ts)]

        def judged(approval: Approval, run: Run) -> Ballot | Refused:
            verdict = judge(approval, run)
            if isinstance(verdict, Refused):
                return replace(verdict, items=told(_answer(verdict), run.run_id))
            return verdict

        def render(result: VoteResult) -> list[Item]:
            a, run = result.approval, result.run
            request = normalise(a.request, a.meta)
            rules = self.rules_of(a, run)
            answer = _answer(result, rules.min_approvals)
            if answer.status == "decided":
                state = blocks.MessageState(_decision(a), outcome=run.outcome)
                update = messages.approval_update(
                    run, a, request, state, ask(rules, request, a.digest)
                )
                # who asked for a grant hears whether it was made
                return [update, *(told(answer, run.run_id) if result.grant else [])]
            if answer.status == "voted":
                state = blocks.MessageState(None, result.voters)
                return [
                    messages.approval_update(run, a, request, state, ask(rules, request, a.digest)),
                    *told(answer, run.run_id),
                ]
            return told(answer, run.run_id)

        def unknown() -> list[Item]:
            return told(_answer(None), None)

        async def attempt() -> VoteResult | Refused | None:
            now = self.clock()
            return await self.store.decide(interrupt_id, now, judged, render, unknown, once)

        try:
            result = await with_groups(self.groups, attempt)
        except GroupsUnknown:
            return Answer("refused", messages.GROUPS_UNKNOWN)
        if isinstance(result, VoteResult):
            self._resume_later(result)
            return _answer(result, self.rules_of(result.approval, result.run).min_approvals)
        return _answer(result)

    def _resume_later(self, claim: VoteResult) -> None:
        """A claimed decision's resume, as work the engine owns: it outlives whoever decided
        (a click's task, an HTTP request whose client went away). Shutting down, none is
        started: the run stays claimed and 'running', and the next start resumes it
        (``recover``), as after a crash between the claim and the resume."""
        if not claim.claimed:
            return
        self._on_decided(claim.approval)
        if claim.drive:  # else the process driving the run resumes it after its step
            run_id = claim.run.run_id
            self.tasks.spawn(self._resume(claim.approval, claim.run), f"resume-run-{run_id}")

    async def decide(
        self, interrupt_id: str, user: str, choice_id: str, comment: str | None = None
    ) -> Answer:
        """A decision made outside Slack (the terminal, the HTTP API): the same rules, the
        same claim and the same message updates as a click; the answer comes back at the
        claim instead of an ephemeral, while the graph resumes in the background."""

        def pick(request: ApprovalRequest) -> ChoiceSpec | None:
            return request.choice(choice_id)

        return await self._decide(interrupt_id, user, None, pick, comment)

    async def mention(self, heard: Heard) -> None:
        """The bot mentioned in a thread (``@approvals approve ship it``): in an approval's
        thread (its channel message or an escalation's copy), its Approve or Reject choice
        with the rest as the comment, decided as a click is (the same rules, claim, audit
        and message updates); anything else gets the usage line. Acted on once per Slack
        event: the event id is recorded with the vote or the answer."""
        found = None
        if heard.thread_ts is not None and heard.said is not None:
            found = await self.store.approval_at(heard.channel, heard.thread_ts)
        said = heard.said
        if found is None or said is None:
            words = usage(heard.bot)
            answer = messages.ephemeral(
                heard.channel, heard.user, words, None, None, heard.thread_ts
            )
            await self.store.tell_once(heard.event_id, [answer], self.clock())
            return

        def pick(request: ApprovalRequest) -> ChoiceSpec | None:
            return request.approve_choice if said.approve else request.reject_choice

        iid = found[0].interrupt_id
        await self._decide(iid, heard.user, heard.channel, pick, said.comment, heard=heard)

    async def open_comment(
        self,
        interrupt_id: str,
        user: str,
        trigger_id: str,
        channel: str | None,
        index: int | None,
    ) -> None:
        """A choice that takes a comment (``index``; None: "Reject with reason…"), or one
        that opens a form (edit, respond, answer, review): check the click, then open the
        modal inline (the trigger expires 3 s after the click, so this one call cannot wait
        in the outbox)."""
        found = await self.store.approval_and_run(interrupt_id)
        if found is None or found[0].status != "pending":
            await self._closed(found, interrupt_id, user, channel)
            return
        approval, run = found
        request = normalise(approval.request, approval.meta)
        if index is None:
            choice = request.reject_choice
            index = request.choices.index(choice) if choice is not None else -1
        choice = request.choice_at(index)
        rules = self.rules_of(approval, run)

        async def check() -> str | None:
            if choice is None:
                return None
            return refusal(rules, run.requester, user, choice, self.groups.members)

        reason = await with_groups(self.groups, check)
        if choice is None or reason:
            text = reason or "That button is no longer valid."
            await self.store.tell(_ephemeral(channel, user, text), self.clock())
            return
        if choice.form:
            needed = rules.needs_comment(choice)
            mode = "required" if needed else ("none" if choice.form == "answer" else "optional")
            view = forms.form_modal(request, index, interrupt_id, channel or "", mode)
        else:
            view = blocks.comment_modal(request, interrupt_id, channel or "", index)
        await self._open_modal(run, trigger_id, view, user, channel)

    async def _open_modal(
        self, run: Run, trigger_id: str, view: dict[str, Any], user: str, channel: str | None
    ) -> None:
        """Open a modal inline (its trigger dies 3 s after the click); when Slack would not,
        the person is told why in plain words."""
        try:
            async with asyncio.timeout(MODAL_SECONDS):
                await self.slack.open_modal(trigger_id, view)
        except (SlackError, TimeoutError) as exc:
            error = exc if isinstance(exc, SlackError) else SlackError("timeout", transient=True)
            log.warning("run %s: modal not opened: %s", run.run_id, error.code)
            text = messages.modal_refused(error.code, error.transient)
            await self.store.tell(_ephemeral(channel, user, text, run.run_id), self.clock())

    # -- standing grants (the pure rules: bot/grants.py; the rows: bot/db/grants.py) ----------
    async def open_grant(
        self, interrupt_id: str, user: str, trigger_id: str, channel: str | None
    ) -> None:
        """ "Approve & allow…": check the click as an approval (and that the rule still
        allows a grant here), then open the modal that picks the grant's scope and length."""
        found = await self.store.approval_and_run(interrupt_id)
        if found is None or found[0].status != "pending":
            await self._closed(found, interrupt_id, user, channel)
            return
        approval, run = found
        request = normalise(approval.request, approval.meta)
        rules = self.rules_of(approval, run)
        rule, choice = grantable(rules, request, approval.digest), grant_choice(request)

        async def check() -> str | None:
            if choice is None:
                return None
            return refusal(rules, run.requester, user, choice, self.groups.members)

        reason = await with_groups(self.groups, check)
        if rule is None or reason:
            text = reason or GRANTS_OFF
            await self.store.tell(_ephemeral(channel, user, text, run.run_id), self.clock())
            return
        scopes = [(s, SCOPE_WORDS[s]) for s in rule.scopes]
        lengths = [(str(int(d)), format_duration(d)) for d in durations(rule)]
        view = blocks.grant_modal(request, interrupt_id, channel or "", scopes, lengths, True)
        await self._open_modal(run, trigger_id, view, user, channel)

    async def approve_and_allow(
        self,
        interrupt_id: str,
        user: str,
        scope: str,
        seconds: float,
        exact: bool,
        channel: str | None,
    ) -> Answer:
        """The submitted "Approve & allow…" modal: the approval's approve choice, voted like a
        click, with the standing grant asked for in the same transaction (made when the
        approval is claimed by as many approvers asking for it as the rule needs)."""

        def pick(request: ApprovalRequest) -> ChoiceSpec | None:
            return grant_choice(request)

        grant = (scope, seconds, exact)
        return await self._decide(interrupt_id, user, channel, pick, None, grant=grant)

    def _grant_ask(
        self, approval: Approval, run: Run, user: str, grant: tuple[str, float, bool]
    ) -> GrantAsk | str:
        """The standing grant a vote asks for, or why it may not be made: judged by the rule
        as the policy says it now (the one later requests open with), not the approval's own,
        which an escalation widens: whoever decides only because a request was escalated to
        them approves it, but makes no grant."""
        scope, seconds, exact = grant
        request = normalise(approval.request, approval.meta)
        rules = self._rules_now(run, approval, self.clock())
        rule, choice = grantable(rules, request, approval.digest), grant_choice(request)
        if rule is None or choice is None or scope not in rule.scopes:
            return GRANTS_OFF
        if not authz.may_pick(rules, run.requester, user, choice, self.groups.members):
            return GRANTS_APPROVERS.format(who=names(rules.approvers) or "its approvers")
        what = subject(request, approval.digest)
        return GrantAsk(
            scope=scope,
            scope_value=scope_value(scope, run),
            rule=rules.scope,
            seconds=max(60.0, min(seconds, rule.max_seconds)),
            tools=what.tools,
            args_digest=what.args_digest if exact else None,
            needed=rules.min_approvals,
        )

    async def revoke_grant(
        self, grant_id: str, user: str, channel: str | None, response_url: str | None = None
    ) -> str:
        """Revoke a standing grant (its makers, or an admin), exactly once: a request opened
        after it asks people again; one it decided before stays decided. Returns the words."""

        def may(grant: Grant) -> bool:
            return may_revoke(grant, user, self.policy.admins)

        def told(grant: Grant | None, what: str) -> list[Item]:
            return _ephemeral(channel, user, _revoked_words(grant, what), None, response_url)

        what, grant = await self.store.revoke_grant(grant_id, user, self.clock(), may, told)
        return _revoked_words(grant, what)

    async def grant_lines(self, user: str, only_theirs: bool = False) -> list[blocks.GrantLine]:
        """The live standing grants as ``user`` sees them, with Revoke where they may (who
        made it, admins); ``only_theirs``: the ones they made, those deciding their own
        requests and, for an admin, all (the App Home)."""
        admin = user in self.policy.admins
        lines = []
        for g in await self.store.grants_live(self.clock()):
            revocable = may_revoke(g, user, self.policy.admins)
            if only_theirs and not (revocable or admin or g.scope_value == user):
                continue
            lines.append(
                blocks.GrantLine(g.grant_id, describe_grant(g), g.expires_at, g.uses, revocable)
            )
        return lines

    async def publish_home(self, user: str) -> None:
        """The App Home for ``user``: what they may decide (with working buttons), their
        requests, recent decisions. It looks at the newest pending approvals only, so it
        stays fast with thousands open, and says how many there are."""
        page = await self.store.pending_page(None, HOME_LOOKS)
        members = self.groups.members
        items: list[blocks.HomeItem] = []
        for approval, run in page:
            rules = self.rules_of(approval, run)
            request = normalise(approval.request, approval.meta)
            offer = authz.offer(
                request.choices, rules, run.requester, user, self.policy.admins, members
            )
            yours = authz.may_decide(request, rules, run.requester, user, members)
            if yours and len(items) < HOME_SHOWN:
                items.append(
                    blocks.HomeItem(
                        request,
                        approval.interrupt_id,
                        run.requester,
                        approval.channel or run.channel,
                        approval.created_at,
                        ask(rules, request, approval.digest),
                        offer,
                    )
                )
        mine = [
            (command_line(r), (r.outcome or {}).get("status", r.status), r.created_at)
            for r in await self.store.runs_by(user)
        ]
        recent = [
            f"*{blocks.escape(normalise(a.request, a.meta).title)}*: "
            + blocks.decision_line(normalise(a.request, a.meta), d)
            for a in await self.store.recent_decisions(5)
            if (d := _decision(a)) is not None
        ]
        counts = blocks.HomeCounts(await self.store.count_pending(), len(page))
        grants = await self.grant_lines(user, only_theirs=True)
        view = blocks.home_view(items, mine, recent, counts, list(self.commands), grants)
        item = Item(
            kind="publish", payload={"user": user, "view": view}, key=f"home:{user}", replace=True
        )
        await self.store.tell([item], self.clock())

    async def recover(self) -> int:
        """Take over runs no live process drives (at start-up, then whenever the lease
        keeper looks, see bot/background/leases.py): resume a decision claimed but not resumed, or
        continue a run cut mid-step. Only runs whose lease this process took are touched, so
        this is safe while other processes run. Pending approvals need nothing (their
        buttons carry the interrupt id), and unsent messages need nothing (the outbox sends
        them). Returns how many runs were taken."""
        runs = await self.store.runs_take(RECOVER_BATCH)
        for run in runs:
            self.tasks.spawn(self._recover(run), f"recover-run-{run.run_id}")
        await self._take_back()
        return len(runs)

    async def _take_back(self) -> None:
        """Continue at once the runs this process stopped driving (the database was away past
        the retry budget) and still holds: nobody else will until their leases end."""
        cut = self._cut - set(self._driving) - set(self._drivers.values())
        if not cut:
            return
        self._cut -= cut
        try:
            runs = await self.store.runs_held(sorted(cut))
        except BaseException:
            self._cut |= cut
            raise
        for run in runs:
            self.tasks.spawn(self._recover(run, DB_NOTE), f"continue-run-{run.run_id}")
        if runs:
            log.info("continuing %d run(s) cut while the database was away", len(runs))

    def driving(self) -> list[str]:
        """The runs this process is driving now (their leases are renewed)."""
        return list(self._driving)

    def abandon(self) -> None:
        """This process was judged dead while it lived (cut off from the database), and its
        runs were taken over: stop driving every run at once. Their tasks are cancelled; the
        runs are neither finished nor failed (their new owner continues them); one this
        process holds again meanwhile is taken back (``recover``). From now on a run's lease
        is checked before it is driven: a decision claimed before the judgement may only now
        be about to drive its run."""
        self._verify = True
        for task, run_id in list(self._drivers.items()):
            self._cut.add(run_id)
            task.cancel()

    async def _recover(self, taken: Run, note: str = RESTART_NOTE) -> None:
        async with self._holding(taken.run_id) as mine:
            if not mine:
                return
            run = await self.store.get_run(taken.run_id)
            if run is None or run.status != "running":
                return  # it finished or paused in this process meanwhile
            approvals = await self.store.approvals_of(run.run_id)
            decided = [a for a in approvals if a.status == "decided"]
            if decided:  # one at a time: a second one is taken again after this one's step
                await self._resume_locked(decided[0], run, note)
            else:
                await self._continue_locked(run, note)

    # -- threads of a LangGraph Server found by the inbox (bot/background/inbox.py) ---------
    async def adopt(
        self, run_id: str, graph: str, requester: str, channel: str, started: str
    ) -> bool:
        """A thread started outside Slack waits at interrupts: make it a run (once, across
        replicas: the run id is the thread's) and post what it waits for, as for a run
        started here. ``requester`` is "" when the thread names no Slack user."""
        inputs = {"started": started}
        run = await self.store.create_run_once(
            run_id, graph, inputs, requester, channel, self.clock()
        )
        if run is None:
            return False
        await self._drive(run, None)
        return True

    async def follow(self, run_id: str) -> None:
        """A waiting run's thread changed without a decision from here (resumed by another
        client): close the approvals it no longer waits for, saying so, and follow the graph
        on to its next pause or its end (then close those it answered meanwhile). Nothing is
        sent to the server."""
        run = await self.store.runs_take_waiting(run_id)
        if run is None:
            return  # decided here meanwhile, or ended
        async with self._holding(run_id) as mine:
            if not mine:
                return
            state = await self._state(run)
            if state is None:
                return
            await self._close_answered(run, state)
            await self._drive_locked(run, None, after=state)
            after = await self._state(run)
            if after is not None:
                await self._close_answered(run, after)

    async def waiting_for(self, run_id: str, deployment: str) -> None:
        """The LangGraph Server a run waits on stopped answering (its runner retries until it
        does): its decided approvals' messages and its Slack thread say so, once until the
        run next pauses or ends (``_pause`` puts the decided message back as it was)."""
        run = await self.store.get_run(run_id)
        if run is None or run_id in self._waiting:
            return
        self._waiting.add(run_id)
        words = messages.WAITING_FOR.format(deployment=deployment)
        shown = [
            self._decided(run, a, words)
            for a in await self.store.approvals_of(run_id)
            if a.status == "decided"
        ]
        await self.store.tell(shown, self.clock())
        await self._progress(run, f"progress:{run_id}:waiting:{int(self.clock())}", words)

    def _decided(self, run: Run, a: Approval, waiting: str = "") -> Item:
        """A decided approval's message (with what its run waits for, if anything)."""
        state = blocks.MessageState(_decision(a), waiting=waiting)
        return messages.approval_update(run, a, normalise(a.request, a.meta), state, blocks.Ask())

    async def _answered_elsewhere(self, run: Run, graph_ids: Sequence[str]) -> None:
        """A decision lost the race to an answer given from another client: its approval
        closes as answered elsewhere (its decision void, never sent), and the run follows
        the graph on from what that answer did."""
        log.info("run %s: answered outside Slack before this bot's decision", run.run_id)
        await self._close(run, graph_ids, decided=True)
        await self._drive_locked(run, None)

    async def _close_answered(self, run: Run, state: ThreadState) -> None:
        """Close the run's pending approvals whose interrupts the thread no longer waits at:
        answered outside Slack."""
        waiting = {p.id for p in state.pending}
        approvals = await self.store.approvals_of(run.run_id)
        gone = [
            a.graph_interrupt_id
            for a in approvals
            if a.status == "pending" and a.graph_interrupt_id not in waiting
        ]
        if gone:
            await self._close(run, gone)

    async def _close(self, run: Run, graph_ids: Sequence[str], decided: bool = False) -> None:
        """Close the run's approvals for these interrupts as answered outside Slack (also a
        decided one, with ``decided``: its decision was never sent)."""

        def render(a: Approval) -> list[Item]:
            shown = blocks.MessageState(elsewhere=True)
            request = normalise(a.request, a.meta)
            return [messages.approval_update(run, a, request, shown, blocks.Ask())]

        await self.store.close_elsewhere(run.run_id, graph_ids, self.clock(), render, decided)
        self._on_deadlines()

    async def fire_deadline(self, d: Deadline) -> None:
        """A reminder, an escalation level or the final timeout fell due (the scheduler
        calls this once per deadline). Escalation targets that are user groups are expanded
        to their members first; the rest is one store transaction."""
        found = await self.store.approval_and_run(d.interrupt_id)
        targets: list[str] = []
        if found is not None and d.kind == "escalate":
            schedule = self.rules_of(*found).escalation_schedule()
            notify = schedule[d.level].notify if d.level < len(schedule) else ()
            await self.groups.resolve([g for g in groups_in(notify) if not self.groups.members(g)])
            for target in notify:
                members = self.groups.members(target) if target in groups_in(notify) else None
                targets += sorted(members) if members is not None else [target]
        now = self.clock()

        def act(approval: Approval, run: Run) -> Firing:
            return self._firing(d, approval, run, list(dict.fromkeys(targets)), now)

        done = await self.store.fire(d, now, act)
        if done is not None and done[1] is not None:
            self._resume_later(done[1])

    def _firing(
        self, d: Deadline, approval: Approval, run: Run, targets: list[str], now: float
    ) -> Firing:
        """What a due deadline does to a pending approval (pure; runs in the transaction)."""
        rules = self.rules_of(approval, run)
        request = normalise(approval.request, approval.meta)
        note = f"note:{approval.interrupt_id}:{d.kind}:{d.level}"
        waited = format_duration(max(0.0, now - approval.created_at))
        if d.kind == "remind":
            assert rules.remind_every is not None
            posted = d.due_at - d.level * rules.remind_every
            n = d.level + 1
            nxt = rules.next_reminder(n, posted)
            while nxt is not None and nxt <= now and n < d.level + 10_000:
                n += 1  # reminders missed while the bot was down: one is enough
                nxt = rules.next_reminder(n, posted)
            text = f"⏰ Still waiting for a decision after {waited}. {describe(rules)}."
            return Firing(
                items=[messages.thread_note(run, approval, note, text)],
                deadlines=[("remind", n, nxt)] if nxt is not None else [],
                event="reminded",
            )
        if d.kind == "escalate":
            # Whoever an approval is escalated to may decide it from then on.
            added = tuple(t for t in targets if t not in rules.approvers and USER.fullmatch(t))
            wider = replace(rules, approvers=rules.approvers + added) if rules.approvers else rules
            copies = [
                messages.approval_copy(
                    run, approval, request, ask(wider, request, approval.digest), t
                )
                for t in targets
                if t != run.requester
            ]
            who = names(targets) or "nobody (the escalation target has no members)"
            text = f"⏫ Escalated to {who} after {waited}."
            items = [*copies, messages.thread_note(run, approval, note, text)]
            return Firing(items=items, event="escalated", rules=wider.to_dict() if added else None)
        if rules.on_timeout == "keep_waiting":
            text = f"⏰ Nobody decided within {waited}; still waiting, as the policy says."
            return Firing(
                items=[messages.thread_note(run, approval, note, text)], event="timed_out"
            )
        approved = rules.on_timeout == "approve"
        decision = DecisionRecord(
            choice=blocks.TIMEOUT, approved=approved, decided_by=None, comment=None, decided_at=now
        )
        decided = blocks.MessageState(decision)
        return Firing(
            items=[
                messages.approval_update(
                    run, approval, request, decided, ask(rules, request, approval.digest)
                )
            ],
            decision=(blocks.TIMEOUT, approved),
            event="timed_out",
        )

    async def on_delivery_failed(self, d: Delivery, error: SlackError) -> None:
        """The outbox gave up on a row. Nobody may be left without the news it carried: an
        approval Slack will never show ends its run and the requester is told why; a final
        message Slack will not take reaches the requester another way; an ephemeral goes
        through the click's response_url. Anything else was logged by the outbox."""
        now = self.clock()
        if d.kind == "ephemeral" and d.payload.get("fallback_url"):
            answer = {"url": d.payload["fallback_url"], "text": d.payload.get("text", "")}
            await self.store.tell([Item(kind="respond", payload=answer, run_id=d.run_id)], now)
            return
        if d.interrupt_id is None or d.run_id is None:
            return
        key = messages.approval_key(d.interrupt_id)
        run = await self.store.get_run(d.run_id)
        if run is None:
            return
        if d.kind == "post" and d.key == key:
            text = messages.post_refused(run, error.code, error.transient)
            items = [messages.tell_requester(run, text)]
            await self.store.fail_approval(d.interrupt_id, now, text, error.code, items)
        elif d.kind == "update" and d.ref == key and run.outcome is not None:
            tell = messages.tell_requester(run, messages.outcome_unseen(run, run.outcome))
            await self.store.tell([tell], now)

    # -- internals ------------------------------------------------------------------------
    @asynccontextmanager
    async def _holding(self, run_id: str) -> AsyncIterator[bool]:
        """Drive ``run_id`` alone in this process (its lease in the database keeps other
        processes off it; this lock, the in-process second guard, keeps a second task of
        this process off it), its lease renewed meanwhile. Yields False when the run is not
        this process's to drive any more (checked only after it was judged dead once)."""
        task = asyncio.current_task()
        assert task is not None
        self._drivers[task] = run_id  # ``abandon`` cancels it, waiting or driving
        try:
            lock = self._locks.get(run_id)
            if lock is None:
                lock = self._locks[run_id] = asyncio.Lock()
            async with lock:
                self._driving[run_id] = self._driving.get(run_id, 0) + 1
                try:
                    yield await self._mine(run_id)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    self._cut_off(run_id, exc)
                finally:
                    self._driving[run_id] -= 1
                    if not self._driving[run_id]:
                        del self._driving[run_id]
        finally:
            self._drivers.pop(task, None)

    async def _mine(self, run_id: str) -> bool:
        """Whether this process may drive ``run_id``: always, unless it was judged dead once
        (``abandon``); then only while it holds the run's lease."""
        if not self._verify:
            return True
        try:
            return bool(await self.store.runs_held([run_id]))
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._cut_off(run_id, exc)
            return False

    def _cut_off(self, run_id: str, exc: BaseException) -> None:
        """The database did not answer within the retry budget: not the graph's doing. The
        run stays 'running' and this process's; its lease keeper continues it from its last
        checkpoint as soon as the database answers (``recover``)."""
        self._cut.add(run_id)
        self._on_runs()
        log.warning(
            "run %s: the database did not answer (%s); it continues once it does",
            run_id,
            error_name(exc),
        )

    async def _resume(self, approval: Approval, run: Run) -> None:
        lock = self._locks.get(run.run_id)
        waited = lock is not None and lock.locked()
        async with self._holding(run.run_id) as mine:
            if not mine:
                return
            if waited:
                # Another task drove the run meanwhile: its pause may have replaced the
                # request this decision was for (see ``Store.pause``).
                fresh = await self.store.get_approval(approval.interrupt_id)
                if fresh is None or fresh.status == "superseded":
                    return
                approval = fresh
            await self._resume_locked(approval, run)

    async def _resume_locked(self, approval: Approval, run: Run, note: str = RESTART_NOTE) -> None:
        """Resume the thread with the claimed decision (see ``_resumption``)."""
        step = await self._resumption(approval, run, note)
        if step is not None:
            resume, state = step
            await self._drive_locked(run, resume=resume, resumed=approval.interrupt_id, after=state)

    async def _resumption(
        self, approval: Approval, run: Run, note: str = RESTART_NOTE
    ) -> tuple[dict[str, Any], ThreadState] | None:
        """The resume a claimed decision sends, with the state it was checked against; None
        when there is nothing to send: the thread already consumed it (then the run is
        continued, ``note`` saying why), or the request pending under its interrupt id is no
        longer the one that was decided (a node that re-ran computed it again): then it is
        asked again as it is now."""
        decision = _decision(approval)
        if decision is None:
            return None
        state = await self._state(run)
        if state is None:
            return None
        pending = {p.id: p for p in state.pending}
        now_pending = pending.get(approval.graph_interrupt_id)
        if now_pending is None:
            if not await self.runner.resumed_here(_thread(run), approval.graph_interrupt_id):
                # Answered from another client first: this decision was never sent.
                await self._answered_elsewhere(run, (approval.graph_interrupt_id,))
                return None
            # Resumed before a crash: the decision is in the checkpoint already.
            await self.store.mark_resumed(approval.interrupt_id, run.run_id, self.clock())
            if run.status in ("running", "waiting"):
                await self._continue_locked(run, note)
            return None
        if request_digest(now_pending.value, self._meta(run, now_pending)) != approval.digest:
            log.warning(
                "run %s: request %s changed before its decision was resumed; asking again",
                run.run_id,
                approval.interrupt_id,
            )
            granted = await self._pause(run, state.pending)
            return None if granted is None else await self._resumption(granted, run, note)
        value = resume_value(normalise(approval.request, approval.meta), decision)
        return {approval.graph_interrupt_id: value}, state

    async def _continue_locked(self, run: Run, note: str = RESTART_NOTE) -> None:
        """Continue a run cut mid-step, from its last checkpoint, and say so (``note``) in its
        thread; one cut before its first checkpoint starts again from its input."""
        attempt = await self.store.next_attempt(run.run_id)
        state = await self._state(run, attempt)
        if state is None:
            return
        await self._progress(run, f"restart:{run.run_id}:{attempt}", note)
        start = None if state.started else run.input
        await self._drive_locked(run, start, attempt=attempt, after=state)

    async def _state(self, run: Run, attempt: int | None = None) -> ThreadState | None:
        """The thread as its runner reads it; None when where it runs refused for good (a
        remote thread deleted, a key not accepted): the run then ends, saying why."""
        try:
            return await self.runner.state(_thread(run, attempt))
        except GraphRefused as refused:
            log.warning("run %s: refused where it runs: %s", run.run_id, refused.words)
            await self._finish(run, {"status": "failed", "text": f"⚠️ {refused.words}"})
            return None

    async def _drive(self, run: Run, graph_input: Any) -> None:
        async with self._holding(run.run_id) as mine:
            if mine:
                await self._drive_locked(run, graph_input)

    async def _drive_locked(
        self,
        run: Run,
        start: Any = None,
        *,
        resume: dict[str, Any] | None = None,
        resumed: str | None = None,
        attempt: int | None = None,
        after: ThreadState | None = None,
    ) -> None:
        """Drive the graph until it pauses for people or ends: each time a standing grant
        decides what it stopped at, it is resumed here, under the same hold (at most
        ``GRANTED_STEPS`` in a row: then the run's lease runs out and it is taken again)."""
        granted = await self._step(
            run, start, resume=resume, resumed=resumed, attempt=attempt, after=after
        )
        for _ in range(GRANTED_STEPS):
            if granted is None:
                return
            step = await self._resumption(granted, run)
            if step is None:
                return
            resume, after = step
            granted = await self._step(
                run, resume=resume, resumed=granted.interrupt_id, attempt=attempt, after=after
            )

    async def _step(
        self,
        run: Run,
        start: Any = None,
        *,
        resume: dict[str, Any] | None = None,
        resumed: str | None = None,
        attempt: int | None = None,
        after: ThreadState | None = None,
    ) -> Approval | None:
        """Drive the graph (``start``, ``resume``, or on from its checkpoint) until it pauses
        or ends; ``after``: the state just checked under this hold (the runner need not read
        it again). Progress lines are keyed by the runner's stable key, so a step that re-runs
        after a crash edits its earlier replies instead of posting them again. Returns what a
        standing grant decided at the pause."""
        end: Paused | Finished | None = None
        thread = _thread(run, attempt)
        try:
            async with aclosing(self.runner.stream(thread, start, resume, after)) as events:
                async for event in events:
                    if isinstance(event, Progress):
                        key = f"progress:{run.run_id}:{event.key}"
                        await self._progress(run, key, event.line)
                    else:
                        end = event
        except asyncio.CancelledError:
            raise  # shutdown: the run stays "running" and continues on the next start
        except ResumeRefused as refused:
            # The graph refused the decision's value and saved nothing: not a failed run.
            assert resumed is not None
            await self._resume_refused(run, resumed, refused.errors)
            return None
        except GraphRefused as refused:
            log.warning("run %s: refused where it runs: %s", run.run_id, refused.words)
            await self._finish(run, {"status": "failed", "text": f"⚠️ {refused.words}"}, resumed)
            return None
        except AnsweredElsewhere as elsewhere:
            await self._answered_elsewhere(run, elsewhere.interrupt_ids)
            return None
        except Exception as exc:
            if is_transient(exc):
                raise  # the database, not the graph (see ``_holding``)
            log.exception("run %s failed", run.run_id)
            end = None
        if isinstance(end, Paused):
            return await self._pause(run, end.interrupts, resumed)
        elif isinstance(end, Finished):
            await self._finish(run, outcome_of(end.values), resumed)
        else:
            outcome = {"status": "failed", "text": messages.RUN_FAILED.format(run_id=run.run_id)}
            await self._finish(run, outcome, resumed)
        return None

    async def _pause(
        self, run: Run, interrupts: Sequence[Pending], resumed: str | None = None
    ) -> Approval | None:
        """The run waits for the interrupts it stopped at (see ``Store.pause``). Returns an
        approval a standing grant decided as it opened: this process resumes it."""
        now = self.clock()
        grants = await self.store.live_grants(run.command, now) if self.policy.grants_on else []
        if grants:  # whether their makers still decide may hang on user groups: know them
            approvers = self.rules_for(run.command, run.input).approvers
            stale = [g for g in groups_in(approvers) if self.groups.members(g) is None]
            if stale:
                await self.groups.resolve(stale)
        opening, changed = self._opening(run, grants), self._changed(run)
        stored = [(p.id, p.value, self._meta(run, p)) for p in interrupts]
        opened = await self.store.pause(run, stored, now, opening, resumed, changed)
        self._on_deadlines()  # the new approvals' deadlines may be the next ones due
        if run.run_id in self._waiting:  # its server answered: the decision's message as it was
            self._waiting.discard(run.run_id)
            landed = await self.store.get_approval(resumed) if resumed else None
            if landed is not None:
                await self.store.tell([self._decided(run, landed)], self.clock())
        granted = next((a for a in opened if a.status == "decided"), None)
        if granted is not None:
            self._on_decided(granted)
        return granted

    def _meta(self, run: Run, pending: Pending) -> dict[str, Any] | None:
        """What is stored beside an interrupt's value: its response_schema (JSON Schema) and
        the names the graph keeps private."""
        meta: dict[str, Any] = {}
        if pending.response_schema is not None:
            meta["response_schema"] = pending.response_schema
        if self.private.get(run.command):
            meta["private"] = list(self.private[run.command])
        return meta or None

    async def _resume_refused(self, run: Run, interrupt_id: str, errors: list[FieldError]) -> None:
        """The graph refused a claimed decision's value (``interrupt``'s response_schema;
        nothing was saved). A person's answer goes back to pending, the message gets its
        buttons again and they are told why in plain words, so a corrected answer resumes
        exactly once. A timeout or withdrawal carries no answer the graph could take: the
        run ends there, saying so."""
        approval = await self.store.get_approval(interrupt_id)
        decision = _decision(approval) if approval else None
        if approval is None or decision is None:
            return
        why = "; ".join(f"{name}: {words}" if name else words for name, words in errors)
        log.warning(
            "run %s: the graph refused the decision's value (%d errors)", run.run_id, len(errors)
        )
        if decision.answer is None and decision.choice in (blocks.TIMEOUT, blocks.CANCELLED):
            status = "timed_out" if decision.choice == blocks.TIMEOUT else "cancelled"
            text = (
                "Nobody answered in time" if status == "timed_out" else "The request was withdrawn"
            ) + ", and this graph takes only an answer to its form, so the run ended here."
            await self._finish(run, {"status": status, "text": text}, interrupt_id)
            return
        words = messages.ANSWER_REFUSED.format(
            why=blocks.escape(why) or "it did not fit what the graph expects"
        )

        def render(a: Approval, r: Run) -> list[Item]:
            request = normalise(a.request, a.meta)
            items = [
                messages.approval_update(
                    r,
                    a,
                    request,
                    blocks.MessageState(),
                    ask(self.rules_of(a, r), request, a.digest),
                )
            ]
            if decision.decided_by:
                where = a.channel or r.channel
                items += _ephemeral(where, decision.decided_by, words, r.run_id)
            return items

        await self.store.reopen(
            interrupt_id, self.clock(), render, {"errors": [list(e) for e in errors]}
        )
        self._on_deadlines()

    def _opening(self, run: Run, grants: Sequence[Grant] = ()) -> Callable[[Approval], Opening]:
        """What opening an approval writes: the rules it is held to (the policy for the
        graph and env, with what the graph asked for where the policy allows it; during a
        change freeze, the freeze approvers), its message, and its deadlines; or, when one
        of the live ``grants`` decides it, that (the store checks the grant still holds)."""

        def open_(approval: Approval) -> Opening:
            rules = self._rules_now(run, approval, approval.created_at, warn=True)
            request = normalise(approval.request, approval.meta)
            post = messages.approval_post(
                run, approval, request, ask(rules, request, approval.digest)
            )
            granted = None
            grant = first_deciding(
                grants,
                run,
                request,
                approval.digest,
                rules,
                approval.created_at,
                self.groups.members,
            )
            choice = grant_choice(request)
            if grant is not None and choice is not None:
                items = [messages.granted_post(run, approval, request, grant)]
                granted = Granted(grant=grant, choice=choice.id, items=items)
            return Opening(
                items=[post],
                rules=rules.to_dict(),
                deadlines=rules.deadlines(approval.created_at),
                granted=granted,
            )

        return open_

    def _rules_now(self, run: Run, approval: Approval, now: float, warn: bool = False) -> Rules:
        """The rules the policy holds ``approval`` to now: for the graph and env, with what
        the graph asked for where the policy allows it; during a change freeze, the freeze
        approvers. (An approval keeps the rules it was opened with, ``rules_of``, widened as
        it escalates; a standing grant is judged by these.) ``warn``: log what was ignored."""
        payload = approval.request if isinstance(approval.request, Mapping) else {}
        rules, ignored = self.rules_for(run.command, run.input).merge_request(payload)
        for line in ignored if warn else ():
            log.warning("run %s: %s", run.run_id, line)
        window = freeze_at(rules, now)
        if window is not None and window.action == "require_freeze_approvers":
            rules = rules.during_freeze(window)
        return rules

    def _changed(self, run: Run) -> Callable[[Approval], list[Item]]:
        """How an approval's message shows that its request changed before it was decided
        (buttons gone; the new request is posted as a message of its own)."""

        def changed(old: Approval) -> list[Item]:
            state = blocks.MessageState(superseded=True)
            request = normalise(old.request, old.meta)
            return [messages.approval_update(run, old, request, state, blocks.Ask())]

        return changed

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
        self._waiting.discard(run.run_id)  # every message is drawn again below

        def render(done: Run, approvals: list[Approval]) -> list[Item]:
            secrets = [v for a in approvals for v in private_values(a.request, a.meta)]
            shown = done.outcome
            if secrets and shown is not None:
                shown = {**shown, "text": redact(str(shown.get("text", "")), secrets)}
            items = [
                messages.approval_update(
                    done,
                    a,
                    normalise(a.request, a.meta),
                    blocks.MessageState(_decision(a), outcome=shown),
                    blocks.Ask(),
                )
                for a in approvals
                # those show why already; a grant's compact line never changes
                if a.status not in ("failed", "superseded") and grant_note(a) is None
            ]
            if status == "failed" and not approvals and done.requester:
                # Failed before it asked anything (a LangGraph Server refusing the start):
                # no message shows it, so its requester is told.
                text = f"`{command_line(done)}`: {shown.get('text', '') if shown else ''}"
                items.append(messages.tell_requester(done, text))
            return items

        await self.store.finish(run.run_id, status, outcome, self.clock(), render, resumed)
