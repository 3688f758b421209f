"""The rules an approval is held to, and what the policy file gives (read by bot/policy/parse.py).

Pure: nothing here talks to Slack or the database. Rules merge per key, most specific last:
``[policy.default]`` <- ``[policy.<graph>]`` <- ``[policy.<graph>.<env>]``; for an agent on a
LangGraph Server (``[[deployments]]``, command ``"<deployment>/<assistant>"``) the deployment
stands for the graph and the assistant for the env. A key set at a more specific level
replaces the value (lists are replaced, not appended). Durations ("90s", "30m", "2h", "1d",
"1h30m") count from the moment the approval is posted. See ``approvals.example.toml`` for
every key, commented.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, tzinfo
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from bot.interrupts import ChoiceSpec, needs_comment
from bot.policy.faults import PolicyError, did_you_mean, dotted, show, show_list
from bot.slackids import CHANNEL_ID, GROUP_ID, USER_ID

if TYPE_CHECKING:
    from bot.model import Approval, Run

OnTimeout = Literal["reject", "approve", "keep_waiting"]
FreezeAction = Literal["refuse", "require_freeze_approvers"]
SUPERVISORS = "supervisors"
DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
DURATION_HINT = 'a duration like "90s", "30m", "2h" or "1d"'
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DECISIONS = ("approve", "reject")
ON_TIMEOUT: tuple[OnTimeout, ...] = ("reject", "approve", "keep_waiting")
FREEZE_ACTIONS: tuple[FreezeAction, ...] = ("refuse", "require_freeze_approvers")
DEPLOY_OFF = (
    "rules for /deploy, which is off: there is no [deploy] table (add one naming a backend, "
    "see approvals.example.toml, or remove these rules)"
)
ANYONE = "*"  # in a token's act_as: the request may name any Slack user


# -- durations --------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` or a combination such as
    ``"1h30m"`` (units in that order: d, h, m, s). Raises ValueError saying what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"must be {DURATION_HINT}, got {show(text)}")
    m = DURATION_RE.fullmatch(text.strip())
    if not text.strip() or m is None:
        raise ValueError(f"must be {DURATION_HINT}, got {show(text)}")
    d, h, mins, s = (int(g or 0) for g in m.groups())
    seconds = float(((d * 24 + h) * 60 + mins) * 60 + s)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, got {show(text)}")
    return seconds


def format_duration(seconds: float) -> str:
    """``5400`` -> ``"1h30m"``: the file's own notation, for messages and log lines."""
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


# -- the values the file gives ----------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One escalation level: ``after_seconds`` after posting, notify these ids."""

    after_seconds: float
    notify: tuple[str, ...]


@dataclass(frozen=True)
class FreezeWindow:
    """A change freeze, evaluated in its own time zone. Days (0 = Monday), dates, or an
    inclusive date range pick the days; ``start``/``end`` (``from``/``to``, both inclusive to
    the minute) the hours; none of the three means every day."""

    where: str = "freeze[0]"
    tz: str = "UTC"
    days: frozenset[int] = frozenset()
    dates: frozenset[date] = frozenset()
    from_date: date | None = None
    to_date: date | None = None
    start: time | None = None
    end: time | None = None
    action: FreezeAction = "require_freeze_approvers"

    def active_at(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, zone(self.tz))
        day = local.date()
        if self.days and local.weekday() not in self.days:
            return False
        if self.dates and day not in self.dates:
            return False
        if self.from_date is not None and not (self.from_date <= day <= (self.to_date or day)):
            return False
        hm = (local.hour, local.minute)
        if self.start is not None and hm < (self.start.hour, self.start.minute):
            return False
        return self.end is None or hm <= (self.end.hour, self.end.minute)

    def describe(self) -> str:
        """``"sat, sun (Europe/Berlin)"``, ``"fri 16:00-23:59 (Europe/Berlin)"``."""
        if self.days:
            when = ", ".join(DAYS[d] for d in sorted(self.days))
        elif self.dates:
            when = ", ".join(d.isoformat() for d in sorted(self.dates))
        elif self.from_date is not None:
            when = f"{self.from_date.isoformat()} to {(self.to_date or self.from_date).isoformat()}"
        else:
            when = "every day"
        if self.start is not None or self.end is not None:
            start = (self.start or time(0, 0)).strftime("%H:%M")
            when += f" {start}-{(self.end or time(23, 59)).strftime('%H:%M')}"
        return f"{when} ({self.tz})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "tz": self.tz,
            "days": sorted(self.days),
            "dates": sorted(d.isoformat() for d in self.dates),
            "from_date": self.from_date.isoformat() if self.from_date else None,
            "to_date": self.to_date.isoformat() if self.to_date else None,
            "start": self.start.strftime("%H:%M") if self.start else None,
            "end": self.end.strftime("%H:%M") if self.end else None,
            "action": self.action,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FreezeWindow:
        def day(v: str | None) -> date | None:
            return date.fromisoformat(v) if v else None

        def hm(v: str | None) -> time | None:
            return time.fromisoformat(v) if v else None

        return cls(
            where=d.get("where", "freeze[0]"),
            tz=d.get("tz", "UTC"),
            days=frozenset(d.get("days", ())),
            dates=frozenset(date.fromisoformat(x) for x in d.get("dates", ())),
            from_date=day(d.get("from_date")),
            to_date=day(d.get("to_date")),
            start=hm(d.get("start")),
            end=hm(d.get("end")),
            action=d.get("action", "require_freeze_approvers"),
        )


GrantScope = Literal["run", "requester", "channel"]
GRANT_SCOPES: tuple[GrantScope, ...] = ("run", "requester", "channel")
PLAIN_REQUEST = "request"  # in a grant rule's tools: requests that are not tool calls


@dataclass(frozen=True)
class GrantRule:
    """Where a rule lets an approver decide later requests in advance (``grants = {…}``):
    which scopes a standing grant may take, how long it may last at most, and which tools
    it may cover (None: every tool the rule's graph gates; ``"request"`` stands for its
    requests that are not tool calls)."""

    scopes: tuple[GrantScope, ...]
    max_seconds: float
    tools: tuple[str, ...] | None = None

    def covers(self, tools: Collection[str]) -> bool:
        """Whether a grant may cover a request for every one of ``tools``."""
        return self.tools is None or all(t in self.tools for t in tools)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scopes": list(self.scopes),
            "max_seconds": self.max_seconds,
            "tools": None if self.tools is None else list(self.tools),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GrantRule:
        tools = d.get("tools")
        return cls(
            scopes=tuple(d.get("scopes", ())),
            max_seconds=float(d.get("max_seconds", 0)),
            tools=None if tools is None else tuple(tools),
        )


@dataclass(frozen=True)
class Rules:
    """What one approval is held to: ``Policy.rules(graph, env)``, then ``merge_request``.

    ``approvers`` empty = anyone but the requester (unless ``allow_self_approval``);
    ``requesters`` empty = anyone may start the command, anywhere; ``timeout_seconds`` None =
    never. ``escalation`` notify lists hold ids only ("supervisors" is already expanded).
    """

    scope: str = "default"  # the most specific table consulted: "deploy.prod", "deploy", ...
    approvers: tuple[str, ...] = ()
    min_approvals: int = 1
    allow_self_approval: bool = False
    reject_ends: bool = True
    comment_required: frozenset[str] = frozenset()
    requesters: tuple[str, ...] = ()
    channel: str | None = None
    remind_every: float | None = None
    escalation: tuple[Level, ...] = ()
    repeat: int = 0
    timeout_seconds: float | None = None
    on_timeout: OnTimeout = "reject"
    allow_weaker_overrides: bool = False
    freeze_approvers: tuple[str, ...] = ()
    freeze: tuple[FreezeWindow, ...] = ()
    supervisors: tuple[str, ...] = ()
    grants: GrantRule | None = None  # None: no standing grants under this rule

    # -- a graph's request_approval(...) arguments --------------------------------------------
    def merge_request(self, overrides: Mapping[str, Any]) -> tuple[Rules, list[str]]:
        """Apply a graph's per-request settings (the ``request_approval`` payload itself may
        be passed; only approvers, min_approvals, allow_self_approval, timeout_seconds,
        escalate_after_seconds and escalate_to are read). Never raises.

        A setting that makes the request stricter is applied; one that weakens the policy is
        ignored unless ``allow_weaker_overrides``. The list names every ignored setting and
        why, one log-ready line each. The payload's own defaults (``approvers=[]``,
        ``min_approvals=1``, ``timeout_seconds=None``, ...) mean "not set", so a graph that
        does not pass them never shows up in the list.
        """
        merge = _RequestMerge(self)
        merge.approvers(overrides.get("approvers") or ())
        merge.min_approvals(overrides.get("min_approvals", 1))
        merge.self_approval(overrides.get("allow_self_approval", False))
        merge.timeout(overrides.get("timeout_seconds"))
        merge.escalation(overrides.get("escalate_after_seconds"), overrides.get("escalate_to"))
        merge.enough_approvers()
        return merge.rules, merge.notes

    # -- scheduling -----------------------------------------------------------------------------
    def escalation_schedule(self) -> tuple[Level, ...]:
        """Every escalation level with ``repeat`` extra rounds of the ladder (round k fires
        each level again k times the last level's ``after`` later), before the timeout only."""
        if not self.escalation:
            return ()
        span = self.escalation[-1].after_seconds
        levels = [
            Level(lv.after_seconds + k * span, lv.notify)
            for k in range(self.repeat + 1)
            for lv in self.escalation
        ]
        return tuple(
            lv
            for lv in levels
            if self.timeout_seconds is None or lv.after_seconds < self.timeout_seconds
        )

    def next_reminder(self, n: int, posted_at: float) -> float | None:
        """When reminder ``n`` (1, 2, ...) is due, or None: no reminders, or past the timeout."""
        if self.remind_every is None:
            return None
        due = n * self.remind_every
        if self.timeout_seconds is not None and due >= self.timeout_seconds:
            return None
        return posted_at + due

    def deadlines(self, posted_at: float) -> list[tuple[str, int, float]]:
        """The deadlines to store when the approval is posted, as ``(kind, level, due_at)``:
        the first reminder (schedule reminder n+1 when reminder n fires, with
        ``next_reminder``), every escalation level (level = index in
        ``escalation_schedule()``) and the timeout (level 0)."""
        out: list[tuple[str, int, float]] = []
        first = self.next_reminder(1, posted_at)
        if first is not None:
            out.append(("remind", 1, first))
        for i, lv in enumerate(self.escalation_schedule()):
            out.append(("escalate", i, posted_at + lv.after_seconds))
        if self.timeout_seconds is not None:
            out.append(("timeout", 0, posted_at + self.timeout_seconds))
        return out

    # -- who ------------------------------------------------------------------------------------
    def may_request(self, user: str, channel: str, user_groups: Collection[str] = ()) -> bool:
        """Whether ``user`` may start the command in ``channel``; ``user_groups`` are the user
        group ids the caller knows the user is in (only needed when requesters list groups)."""
        if not self.requesters:
            return True
        allowed = set(self.requesters)
        return user in allowed or channel in allowed or bool(allowed.intersection(user_groups))

    def needs_comment(self, choice: ChoiceSpec) -> bool:
        """Whether picking ``choice`` needs a comment (``bot.interrupts.needs_comment``)."""
        return needs_comment(self.comment_required, choice)

    @property
    def has_groups(self) -> bool:
        """Whether deciding needs user-group membership (``usergroups.users.list``)."""
        return any(GROUP_ID.fullmatch(i) for i in (*self.approvers, *self.freeze_approvers))

    def during_freeze(self, window: FreezeWindow) -> Rules:
        """The rules in force while a ``require_freeze_approvers`` window is active: only the
        freeze approvers decide, and one approval from them is enough. (A ``refuse`` window
        is the caller's to enforce: refuse the request when it is made.)"""
        if window.action != "require_freeze_approvers":
            raise ValueError(f"{window.where}: action is {window.action!r}, nothing to decide")
        return replace(
            self, approvers=self.freeze_approvers, min_approvals=1, allow_self_approval=False
        )

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for storing the rules an approval was opened with; ``from_dict``
        reads it back."""
        return {
            "scope": self.scope,
            "approvers": list(self.approvers),
            "min_approvals": self.min_approvals,
            "allow_self_approval": self.allow_self_approval,
            "reject_ends": self.reject_ends,
            "comment_required": sorted(self.comment_required),
            "requesters": list(self.requesters),
            "channel": self.channel,
            "remind_every": self.remind_every,
            "escalation": [[lv.after_seconds, list(lv.notify)] for lv in self.escalation],
            "repeat": self.repeat,
            "timeout_seconds": self.timeout_seconds,
            "on_timeout": self.on_timeout,
            "allow_weaker_overrides": self.allow_weaker_overrides,
            "freeze_approvers": list(self.freeze_approvers),
            "freeze": [w.to_dict() for w in self.freeze],
            "supervisors": list(self.supervisors),
            "grants": None if self.grants is None else self.grants.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rules:
        base = cls()
        return cls(
            scope=d.get("scope", base.scope),
            approvers=tuple(d.get("approvers", ())),
            min_approvals=int(d.get("min_approvals", 1)),
            allow_self_approval=bool(d.get("allow_self_approval", False)),
            reject_ends=bool(d.get("reject_ends", True)),
            comment_required=frozenset(d.get("comment_required", ())),
            requesters=tuple(d.get("requesters", ())),
            channel=d.get("channel"),
            remind_every=d.get("remind_every"),
            escalation=tuple(Level(float(a), tuple(n)) for a, n in d.get("escalation", ())),
            repeat=int(d.get("repeat", 0)),
            timeout_seconds=d.get("timeout_seconds"),
            on_timeout=d.get("on_timeout", "reject"),
            allow_weaker_overrides=bool(d.get("allow_weaker_overrides", False)),
            freeze_approvers=tuple(d.get("freeze_approvers", ())),
            freeze=tuple(FreezeWindow.from_dict(w) for w in d.get("freeze", ())),
            supervisors=tuple(d.get("supervisors", ())),
            grants=GrantRule.from_dict(d["grants"]) if d.get("grants") else None,
        )


class _RequestMerge:
    """One ``Rules.merge_request``: the rules so far and the notes on what was ignored, one
    setting at a time. ``base`` is the policy's; every check of "weakens" is against it."""

    def __init__(self, base: Rules) -> None:
        self.base = base
        self.rules = base
        self.notes: list[str] = []

    def ignore(self, key: str, value: Any, why: str) -> None:
        shown = show_list(value) if isinstance(value, list | tuple) else show(value)
        self.notes.append(f"{self.base.scope}: request's {key}={shown} ignored: {why}")

    def weakens(self, key: str, value: Any, why: str) -> bool:
        """True (and noted) when the policy forbids weakening it this way."""
        if self.base.allow_weaker_overrides:
            return False
        self.ignore(key, value, f"{why} (allow_weaker_overrides = false)")
        return True

    def approvers(self, approvers: Any) -> None:
        if not approvers:
            return
        ids = request_ids(approvers, {"user", "group"})
        if ids is None:
            self.ignore("approvers", approvers, "not a list of Slack user or group ids")
        elif (
            not self.base.approvers
            or set(ids) <= set(self.base.approvers)
            or not self.weakens("approvers", ids, "not all of them are policy approvers")
        ):
            self.rules = replace(self.rules, approvers=ids)

    def min_approvals(self, n: Any) -> None:
        policy = self.base.min_approvals
        if not is_int(n) or n < 1:
            self.ignore("min_approvals", n, "not a whole number ≥ 1")
        elif n != 1 and (
            n >= policy or not self.weakens("min_approvals", n, f"the policy needs {policy}")
        ):
            self.rules = replace(self.rules, min_approvals=n)

    def self_approval(self, self_ok: Any) -> None:
        if not isinstance(self_ok, bool):
            self.ignore("allow_self_approval", self_ok, "not true or false")
        elif self_ok != self.base.allow_self_approval and (
            not self_ok or not self.weakens("allow_self_approval", True, "the policy forbids it")
        ):
            self.rules = replace(self.rules, allow_self_approval=self_ok)

    def timeout(self, timeout: Any) -> None:
        if timeout is None:
            return
        if not is_number(timeout) or timeout <= 0:
            self.ignore("timeout_seconds", timeout, "not a number of seconds > 0")
        elif timeout != self.base.timeout_seconds:
            why = self.timeout_weakens(float(timeout))
            if why is None or not self.weakens("timeout_seconds", timeout, why):
                self.rules = replace(self.rules, timeout_seconds=float(timeout))

    def timeout_weakens(self, timeout: float) -> str | None:
        """Why a request's timeout would weaken this policy, or None when it does not."""
        current = self.base.timeout_seconds
        if self.base.on_timeout == "reject" and current is not None and timeout > current:
            return f"the policy ends it after {format_duration(current)}"
        if self.base.on_timeout == "approve" and (current is None or timeout < current):
            return "on_timeout = approve: a shorter timeout approves sooner"
        return None

    def escalation(self, after: Any, targets: Any) -> None:
        if after is None:
            return
        targets = targets or ()
        ids = request_ids(targets, {"user", "group", "channel", SUPERVISORS})
        if not is_number(after) or after <= 0:
            self.ignore("escalate_after_seconds", after, "not a number of seconds > 0")
            return
        if ids is None:
            self.ignore("escalate_to", targets, "not a list of Slack ids or 'supervisors'")
            return
        notify = expand(ids or (SUPERVISORS,), self.base.supervisors)
        timeout = self.rules.timeout_seconds
        if not notify:
            self.ignore("escalate_after_seconds", after, "nobody to notify (no escalate_to)")
        elif timeout is not None and after >= timeout:
            self.ignore("escalate_after_seconds", after, "not before the timeout")
        elif not self.base.escalation or not self.weakens(
            "escalate_after_seconds", after, "it would replace the policy's escalation"
        ):
            self.rules = replace(self.rules, escalation=(Level(float(after), notify),), repeat=0)

    def enough_approvers(self) -> None:
        """Undo a request's approvers, then its min_approvals, that leave too few people."""
        rules, base = self.rules, self.base
        if too_few(rules.approvers, rules.min_approvals) and rules.approvers != base.approvers:
            why = f"fewer than min_approvals ({rules.min_approvals})"
            self.ignore("approvers", rules.approvers, why)
            rules = self.rules = replace(rules, approvers=base.approvers)
        if (
            too_few(rules.approvers, rules.min_approvals)
            and rules.min_approvals != base.min_approvals
        ):
            why = f"only {len(rules.approvers)} approvers"
            self.ignore("min_approvals", rules.min_approvals, why)
            self.rules = replace(rules, min_approvals=base.min_approvals)


@dataclass(frozen=True)
class DeploySection:
    """The ``[deploy]`` table, validated but raw (turned into ``DeployOptions`` by the bot)."""

    envs: tuple[str, ...] = ("staging", "prod")
    default_env: str = "staging"
    backend: Literal["simulated", "command"] | None = None  # None: not named in the file
    command: tuple[str, ...] = ()
    command_timeout_seconds: float = 900.0
    simulated_step_seconds: float = 1.0


@dataclass(frozen=True)
class ApiToken:
    """One bearer token of the HTTP API (``[api] tokens``). The file holds the token's SHA-256
    only, so reading the file does not give the token away. A token with the "decide" scope
    decides either as one fixed Slack user (``as_user``) or as the user a request names, if
    ``act_as`` lists that user ("*": any user; the policy still decides who may approve)."""

    name: str
    token_sha256: str
    scopes: frozenset[str]
    as_user: str | None = None
    act_as: tuple[str, ...] = ()

    def may_act_as(self, user: str) -> bool:
        if self.as_user is not None:
            return user == self.as_user
        return ANYONE in self.act_as or user in self.act_as


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """A LangGraph Server whose interrupts the bot answers in Slack ([[deployments]])."""

    name: str  # how people name it in Slack: lower-case letters, digits and dashes
    url: str  # http:// or https://, without a trailing slash
    api_key_env: str | None = None  # the NAME of the variable holding its API key, never the key
    channel: str  # where its approvals are posted
    assistants: tuple[str, ...] = ()  # graph ids or assistant ids it serves; () = all
    watch: bool = True  # also answer threads started elsewhere
    poll_seconds: float = 2.0  # how often the inbox looks
    requester_metadata: str | None = None  # thread metadata key naming the Slack user who asked

    def serves(self, graph_id: str, assistant_id: str | None = None) -> bool:
        """Whether an assistant (by its graph id or its own id) is one this bot answers for."""
        if not self.assistants:
            return True
        return graph_id in self.assistants or (
            assistant_id is not None and assistant_id in self.assistants
        )


def remote_command(command: str) -> tuple[str, str] | None:
    """``"support/agent"`` -> ``("support", "agent")``: a remote run's command names the
    deployment and the assistant; None for a local graph's command (no "/" past a leading one)."""
    deployment, slash, assistant = command.lstrip("/").partition("/")
    return (deployment, assistant) if slash and deployment and assistant else None


# A rule layer: field -> (value, the key it came from).
_Layer = Mapping[str, tuple[Any, str]]


@dataclass(frozen=True)
class Policy:
    """The whole file. ``source`` is None for the built-in defaults (no file)."""

    source: str | None = None
    supervisors: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    graph_entry_points: tuple[str, ...] = ()
    deploy: DeploySection | None = None  # None: no [deploy] table, so no built-in /deploy
    deprecations: tuple[str, ...] = ()
    api_tokens: tuple[ApiToken, ...] = ()
    deployments: tuple[Deployment, ...] = ()  # [[deployments]], in file order
    # (graph, env) -> layer; ("default", None) is [policy.default]. In file order.
    layers: Mapping[tuple[str, str | None], _Layer] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def rules(self, graph: str, env: str | None = None) -> Rules:
        """The rules for ``graph`` ("deploy" or "/deploy") in ``env`` (None: no env), merged
        default <- graph <- graph.env. Unknown graphs and envs get the levels that exist. A
        remote command ("support/agent") is deployment "support", assistant "agent" as env."""
        return self.merged(graph, env)[0]

    def rules_for(self, command: str, args: Mapping[str, Any]) -> Rules:
        """The rules for a request of ``command`` with these arguments (its ``env``, if any)."""
        env = args.get("env")
        return self.rules(command, env if isinstance(env, str) else None)

    def rules_of(self, approval: Approval, run: Run) -> Rules:
        """The rules an approval was opened with, as stored with it (older rows: today's
        policy, merged with the request's own settings as they were when it was opened)."""
        if approval.rules is not None:
            return Rules.from_dict(approval.rules)
        payload = approval.request if isinstance(approval.request, Mapping) else {}
        return self.rules_for(run.command, run.input).merge_request(payload)[0]

    @property
    def grants_on(self) -> bool:
        """Whether any rule allows standing grants (else none is ever looked up)."""
        return any("grants" in layer for layer in self.layers.values())

    def deployment(self, name: str) -> Deployment | None:
        """The ``[[deployments]]`` entry named ``name``, or None."""
        return next((d for d in self.deployments if d.name == name), None)

    @property
    def graphs(self) -> tuple[str, ...]:
        """Graph names that have a ``[policy.<graph>]`` table."""
        return tuple(dict.fromkeys(g for g, _ in self.layers if g != "default"))

    def check_graphs(self, known: Iterable[str]) -> None:
        """Raise PolicyError for a ``[policy.<graph>]`` naming no registered graph and no
        deployment (call it once the graphs are loaded; "/deploy" and "deploy" are the same
        name)."""
        deployments = [d.name for d in self.deployments]
        names = sorted({k.lstrip("/") for k in known} | set(deployments))
        for g in self.graphs:
            if g == "deploy" and g not in names and self.deploy is None:
                # [policy.deploy…], or only the deprecated [approvers] table, which is /deploy's
                table = "policy.deploy" if ("deploy", None) in self.layers else "approvers"
                raise PolicyError(self.source or "policy", table, DEPLOY_OFF)
            if g not in names:
                local = [n for n in names if n not in deployments]
                listed = f"graphs: {', '.join(local) or 'none'}"
                if deployments:
                    listed += f"; deployments: {', '.join(deployments)}"
                hint = did_you_mean(g, names) or f"({listed})"
                raise PolicyError(
                    self.source or "policy", f"policy.{dotted(g)}", f"unknown graph {hint}"
                )

    @property
    def rule_sets(self) -> int:
        """Tables that set at least one rule (for check-config's summary)."""
        return sum(1 for layer in self.layers.values() if layer)

    @property
    def escalation_levels(self) -> int:
        return sum(
            len(layer["escalation"][0]) for layer in self.layers.values() if "escalation" in layer
        )

    def merged(self, graph: str, env: str | None) -> tuple[Rules, dict[str, str]]:
        """The rules for ``graph`` in ``env``, and the key each value came from. A remote
        command ("support/agent") stands for graph "support" in env "agent"; its ``env`` is
        not read (a remote run's arguments are the agent's, not an env)."""
        remote = remote_command(graph)
        graph, env = remote if remote is not None else (graph.lstrip("/"), env)
        keys: list[tuple[str, str | None]] = [("default", None)]
        scope = "default"
        if graph != "default":
            keys.append((graph, None))
            scope = graph
            if env is not None:
                keys.append((graph, env))
                scope = f"{graph}.{env}"
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for k in keys:
            for name, (value, where) in self.layers.get(k, {}).items():
                values[name] = value
                origins[name] = where
        if "timeout" in values:
            values["timeout_seconds"] = values.pop("timeout")
        if "escalation" in values:
            values["escalation"] = tuple(
                Level(lv.after_seconds, expand(lv.notify, self.supervisors))
                for lv in values["escalation"]
            )
        return Rules(scope=scope, supervisors=self.supervisors, **values), origins


def freeze_at(rules: Rules, now: float) -> FreezeWindow | None:
    """The freeze window in force at ``now`` (Unix seconds), or None; when several are, a
    ``refuse`` window comes first."""
    active = [w for w in rules.freeze if w.active_at(now)]
    active.sort(key=lambda w: w.action != "refuse")
    return active[0] if active else None


def describe(rules: Rules) -> str:
    """Who may decide, as Slack mrkdwn for the approval message:
    ``"Needs 2 of <@U0BOB>, <@U0DAN>, <!subteam^S0RELEASE>"``."""
    n = rules.min_approvals
    if rules.approvers:
        who = ", ".join(mention(i) for i in rules.approvers)
        if n == 1 and len(rules.approvers) == 1 and not GROUP_ID.fullmatch(rules.approvers[0]):
            return f"Needs approval from {who}"
        return f"Needs {n} of {who}"
    count = "1 approval" if n == 1 else f"{n} approvals"
    if rules.allow_self_approval:
        return f"Needs {count} from anyone"
    return f"Needs {count} from anyone but the requester"


# -- small helpers ----------------------------------------------------------------------------


def zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def id_kind(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    if v == SUPERVISORS:
        return SUPERVISORS
    if USER_ID.fullmatch(v):
        return "user"
    if GROUP_ID.fullmatch(v):
        return "group"
    if CHANNEL_ID.fullmatch(v):
        return "channel"
    return None


def request_ids(v: Any, kinds: set[str]) -> tuple[str, ...] | None:
    """A graph's list of ids, or None when it is not one."""
    if isinstance(v, str) or not isinstance(v, list | tuple):
        return None
    if not all(id_kind(x) in kinds for x in v):
        return None
    return tuple(dict.fromkeys(v))


def too_few(approvers: tuple[str, ...], min_approvals: int) -> bool:
    """Fewer named people than approvals needed (a user group may hold any number)."""
    groups = any(GROUP_ID.fullmatch(a) for a in approvers)
    return bool(approvers) and not groups and min_approvals > len(approvers)


def expand(ids: Iterable[str], supervisors: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for i in ids:
        out.extend(supervisors if i == SUPERVISORS else (i,))
    return tuple(dict.fromkeys(out))


def mention(i: str) -> str:
    if GROUP_ID.fullmatch(i):
        return f"<!subteam^{i}>"
    if CHANNEL_ID.fullmatch(i):
        return f"<#{i}>"
    return f"<@{i}>"
