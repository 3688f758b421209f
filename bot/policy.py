"""The approval policy file (``approvals.toml``), strictly validated, and the rules it gives.

Pure: nothing is read at import time and nothing here talks to Slack; ``load_policy`` reads
one file when called. Every mistake in the file is one ``PolicyError`` line naming the file,
the key and the fault, e.g.::

    approvals.toml: policy.deploy.prd: unknown env "prd" (deploy.envs: staging, prod)

Rules merge per key, most specific last: ``[policy.default]`` <- ``[policy.<graph>]`` <-
``[policy.<graph>.<env>]``. A key set at a more specific level replaces the value (lists are
replaced, not appended). Durations ("90s", "30m", "2h", "1d", "1h30m") count from the moment
the approval is posted. See ``approvals.example.toml`` for every key, commented.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_PATH",
    "ApiToken",
    "DeploySection",
    "FreezeWindow",
    "Level",
    "Policy",
    "PolicyError",
    "Rules",
    "describe",
    "format_duration",
    "freeze_at",
    "load_policy",
    "parse_duration",
    "parse_policy",
    "policy_path",
]

DEFAULT_PATH = Path("approvals.toml")

OnTimeout = Literal["reject", "approve", "keep_waiting"]
FreezeAction = Literal["refuse", "require_freeze_approvers"]

USER_RE = re.compile(r"[UW][A-Z0-9]{2,}", re.ASCII)
GROUP_RE = re.compile(r"S[A-Z0-9]{2,}", re.ASCII)
CHANNEL_RE = re.compile(r"[CG][A-Z0-9]{2,}", re.ASCII)
SUPERVISORS = "supervisors"
ENTRY_POINT_RE = re.compile(
    r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII
)
GRAPH_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*", re.ASCII)
BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
HHMM_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)", re.ASCII)
DURATION_HINT = 'a duration like "90s", "30m", "2h" or "1d"'
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DECISIONS = ("approve", "reject")
ON_TIMEOUT: tuple[OnTimeout, ...] = ("reject", "approve", "keep_waiting")
FREEZE_ACTIONS: tuple[FreezeAction, ...] = ("refuse", "require_freeze_approvers")
BACKENDS = ("simulated", "command")
DEPLOY_OFF = (
    "rules for /deploy, which is off: there is no [deploy] table (add one naming a backend, "
    "see approvals.example.toml, or remove these rules)"
)
SCOPES = ("read", "decide")
ANYONE = "*"  # in a token's act_as: the request may name any Slack user
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)


class PolicyError(ValueError):
    """One line: ``<file>: <key>: <fault>``. ``key`` is "" for faults of the whole file."""

    def __init__(self, source: str, key: str, fault: str) -> None:
        self.source, self.key, self.fault = source, key, fault
        super().__init__(f"{source}: {key}: {fault}" if key else f"{source}: {fault}")

    def __reduce__(self) -> tuple[type[PolicyError], tuple[str, str, str]]:
        return (PolicyError, (self.source, self.key, self.fault))


# -- durations --------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` or a combination such as
    ``"1h30m"`` (units in that order: d, h, m, s). Raises ValueError saying what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"must be {DURATION_HINT}, got {_show(text)}")
    m = DURATION_RE.fullmatch(text.strip())
    if not text.strip() or m is None:
        raise ValueError(f"must be {DURATION_HINT}, got {_show(text)}")
    d, h, mins, s = (int(g or 0) for g in m.groups())
    seconds = float(((d * 24 + h) * 60 + mins) * 60 + s)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, got {_show(text)}")
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
        local = datetime.fromtimestamp(now, _zone(self.tz))
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
        rules, notes = self, []
        weak_ok = self.allow_weaker_overrides

        def ignore(key: str, value: Any, why: str) -> None:
            shown = _show_list(value) if isinstance(value, list | tuple) else _show(value)
            notes.append(f"{self.scope}: request's {key}={shown} ignored: {why}")

        def weakens(key: str, value: Any, why: str) -> bool:
            if weak_ok:
                return False
            ignore(key, value, f"{why} (allow_weaker_overrides = false)")
            return True

        approvers = overrides.get("approvers") or ()
        if approvers:
            ids = _request_ids(approvers, {"user", "group"})
            if ids is None:
                ignore("approvers", approvers, "not a list of Slack user or group ids")
            elif (
                not self.approvers
                or set(ids) <= set(self.approvers)
                or not weakens("approvers", ids, "not all of them are policy approvers")
            ):
                rules = replace(rules, approvers=ids)

        n = overrides.get("min_approvals", 1)
        if not _is_int(n) or n < 1:
            ignore("min_approvals", n, "not a whole number ≥ 1")
        elif n != 1 and (
            n >= self.min_approvals
            or not weakens("min_approvals", n, f"the policy needs {self.min_approvals}")
        ):
            rules = replace(rules, min_approvals=n)

        self_ok = overrides.get("allow_self_approval", False)
        if not isinstance(self_ok, bool):
            ignore("allow_self_approval", self_ok, "not true or false")
        elif self_ok != self.allow_self_approval and (
            not self_ok or not weakens("allow_self_approval", True, "the policy forbids it")
        ):
            rules = replace(rules, allow_self_approval=self_ok)

        timeout = overrides.get("timeout_seconds")
        if timeout is not None:
            if not _is_number(timeout) or timeout <= 0:
                ignore("timeout_seconds", timeout, "not a number of seconds > 0")
            elif timeout != self.timeout_seconds:
                why = self._timeout_weakens(float(timeout))
                if why is None or not weakens("timeout_seconds", timeout, why):
                    rules = replace(rules, timeout_seconds=float(timeout))

        after = overrides.get("escalate_after_seconds")
        if after is not None:
            targets = overrides.get("escalate_to") or ()
            ids = _request_ids(targets, {"user", "group", "channel", SUPERVISORS})
            if not _is_number(after) or after <= 0:
                ignore("escalate_after_seconds", after, "not a number of seconds > 0")
            elif ids is None:
                ignore("escalate_to", targets, "not a list of Slack ids or 'supervisors'")
            else:
                notify = _expand(ids or (SUPERVISORS,), self.supervisors)
                if not notify:
                    ignore("escalate_after_seconds", after, "nobody to notify (no escalate_to)")
                elif rules.timeout_seconds is not None and after >= rules.timeout_seconds:
                    ignore("escalate_after_seconds", after, "not before the timeout")
                elif not self.escalation or not weakens(
                    "escalate_after_seconds", after, "it would replace the policy's escalation"
                ):
                    rules = replace(rules, escalation=(Level(float(after), notify),), repeat=0)
        if _too_few(rules.approvers, rules.min_approvals) and rules.approvers != self.approvers:
            ignore(
                "approvers", rules.approvers, f"fewer than min_approvals ({rules.min_approvals})"
            )
            rules = replace(rules, approvers=self.approvers)
        if (
            _too_few(rules.approvers, rules.min_approvals)
            and rules.min_approvals != self.min_approvals
        ):
            ignore("min_approvals", rules.min_approvals, f"only {len(rules.approvers)} approvers")
            rules = replace(rules, min_approvals=self.min_approvals)
        return rules, notes

    def _timeout_weakens(self, timeout: float) -> str | None:
        """Why a request's timeout would weaken this policy, or None when it does not."""
        current = self.timeout_seconds
        if self.on_timeout == "reject" and current is not None and timeout > current:
            return f"the policy ends it after {format_duration(current)}"
        if self.on_timeout == "approve" and (current is None or timeout < current):
            return "on_timeout = approve: a shorter timeout approves sooner"
        return None

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

    @property
    def has_groups(self) -> bool:
        """Whether deciding needs user-group membership (``usergroups.users.list``)."""
        return any(GROUP_RE.fullmatch(i) for i in (*self.approvers, *self.freeze_approvers))

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
        )


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
    # (graph, env) -> layer; ("default", None) is [policy.default]. In file order.
    layers: Mapping[tuple[str, str | None], _Layer] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def rules(self, graph: str, env: str | None = None) -> Rules:
        """The rules for ``graph`` ("deploy" or "/deploy") in ``env`` (None: no env), merged
        default <- graph <- graph.env. Unknown graphs and envs get the levels that exist."""
        return self._merge(graph.lstrip("/"), env)[0]

    @property
    def graphs(self) -> tuple[str, ...]:
        """Graph names that have a ``[policy.<graph>]`` table."""
        return tuple(dict.fromkeys(g for g, _ in self.layers if g != "default"))

    def check_graphs(self, known: Iterable[str]) -> None:
        """Raise PolicyError for a ``[policy.<graph>]`` naming no registered graph (call it
        once the graphs are loaded; "/deploy" and "deploy" are the same name)."""
        names = sorted({k.lstrip("/") for k in known})
        for g in self.graphs:
            if g == "deploy" and g not in names and self.deploy is None:
                # [policy.deploy…], or only the deprecated [approvers] table, which is /deploy's
                table = "policy.deploy" if ("deploy", None) in self.layers else "approvers"
                raise PolicyError(self.source or "policy", table, DEPLOY_OFF)
            if g not in names:
                hint = _did_you_mean(g, names) or f"(graphs: {', '.join(names) or 'none'})"
                raise PolicyError(
                    self.source or "policy", f"policy.{_key(g)}", f"unknown graph {hint}"
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

    def _merge(self, graph: str, env: str | None) -> tuple[Rules, dict[str, str]]:
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
                Level(lv.after_seconds, _expand(lv.notify, self.supervisors))
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
        who = ", ".join(_mention(i) for i in rules.approvers)
        if n == 1 and len(rules.approvers) == 1 and not GROUP_RE.fullmatch(rules.approvers[0]):
            return f"Needs approval from {who}"
        return f"Needs {n} of {who}"
    count = "1 approval" if n == 1 else f"{n} approvals"
    if rules.allow_self_approval:
        return f"Needs {count} from anyone"
    return f"Needs {count} from anyone but the requester"


# -- reading the file -------------------------------------------------------------------------


def policy_path(env: Mapping[str, str], cwd: Path | None = None) -> Path | None:
    """Where the policy file is: ``APPROVALS_CONFIG`` if set (it must exist, which
    ``load_policy`` checks), else ``./approvals.toml`` if present, else None (defaults)."""
    if env.get("APPROVALS_CONFIG"):
        return Path(env["APPROVALS_CONFIG"])
    default = (cwd or Path.cwd()) / DEFAULT_PATH
    return default if default.is_file() else None


def load_policy(path: Path | None) -> Policy:
    """Read and validate the file; None gives the built-in defaults. A path that does not
    exist is an error (resolve an optional default with ``policy_path`` first)."""
    if path is None:
        return Policy()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(source, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        fault = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyError(source, "", f"cannot read: {fault}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, "", f"invalid TOML: {_one_line(str(exc))}") from None
    return parse_policy(data, source)


TOP_KEYS = ("supervisors", "admins", "graphs", "deploy", "policy", "approvers", "api")
DEPLOY_KEYS = (
    "envs",
    "default_env",
    "backend",
    "command",
    "command_timeout_seconds",
    "simulated_step_seconds",
)
RULE_KEYS = (
    "approvers",
    "min_approvals",
    "allow_self_approval",
    "reject_ends",
    "comment_required",
    "requesters",
    "channel",
    "remind_every",
    "escalation",
    "repeat",
    "timeout",
    "on_timeout",
    "allow_weaker_overrides",
    "freeze_approvers",
    "freeze",
)
LEVEL_KEYS = ("after", "notify")
FREEZE_KEYS = ("days", "dates", "from_date", "to_date", "from", "to", "tz", "action")
API_KEYS = ("tokens",)
TOKEN_KEYS = ("name", "token_sha256", "scopes", "as", "act_as")
TOKEN_SHAPE = "{ name = …, token_sha256 = …, scopes = […] }"


def parse_policy(data: Mapping[str, Any], source: str) -> Policy:
    """Validate parsed TOML; ``source`` names the file in every error."""
    return _Parser(source).policy(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.envs: tuple[str, ...] = ()
        self.supervisors: tuple[str, ...] = ()

    def fail(self, key: str, fault: str) -> PolicyError:
        return PolicyError(self.source, key, fault)

    # -- top level ------------------------------------------------------------------------------
    def policy(self, data: Mapping[str, Any]) -> Policy:
        for key, value in data.items():
            if key not in TOP_KEYS:
                raise self.unknown(_key(key), key, value, TOP_KEYS)
        deploy = self.deploy(self.table(data, "deploy", "deploy")) if "deploy" in data else None
        self.envs = (deploy or DeploySection()).envs
        supervisors = self.ids(data.get("supervisors", []), "supervisors", {"user", "group"})
        self.supervisors = supervisors
        admins = self.ids(data.get("admins", []), "admins", {"user", "group"})
        entry_points = self.entry_points(data.get("graphs", []))
        layers: dict[tuple[str, str | None], dict[str, tuple[Any, str]]] = {}
        for graph, value in self.table(data, "policy", "policy").items():
            self.graph(graph, value, layers)
        deprecations = self.legacy(self.table(data, "approvers", "approvers"), layers)
        api_tokens = self.api(self.table(data, "api", "api"))
        policy = Policy(
            source=self.source,
            supervisors=supervisors,
            admins=admins,
            graph_entry_points=entry_points,
            deploy=deploy,
            deprecations=deprecations,
            api_tokens=api_tokens,
            layers=MappingProxyType({k: MappingProxyType(v) for k, v in layers.items()}),
        )
        self.check(policy)
        return policy

    def deploy(self, t: Mapping[str, Any]) -> DeploySection:
        for key, value in t.items():
            if key not in DEPLOY_KEYS:
                raise self.unknown(f"deploy.{_key(key)}", key, value, DEPLOY_KEYS)
        base = DeploySection()
        envs = base.envs
        if "envs" in t:
            envs = self.strings(t["envs"], "deploy.envs", "environment names")
            if not envs:
                raise self.fail("deploy.envs", "must list at least one environment")
            for i, e in enumerate(envs):
                if not e or any(c.isspace() for c in e):
                    raise self.fail(f"deploy.envs[{i}]", f"not an environment name: {_show(e)}")
        default_env = "staging" if "staging" in envs else envs[0]
        if "default_env" in t:
            default_env = self.string(t["default_env"], "deploy.default_env", "an environment")
            if default_env not in envs:
                raise self.fail(
                    "deploy.default_env",
                    f"unknown env {_show(default_env)} (deploy.envs: {', '.join(envs)})",
                )
        backend = t.get("backend")
        if backend is not None and backend not in BACKENDS:
            raise self.fail(
                "deploy.backend", f'must be "simulated" or "command", got {_show(backend)}'
            )
        command: tuple[str, ...] = ()
        if "command" in t:
            command = self.strings(t["command"], "deploy.command", "strings (argv)")
            if not command or not command[0]:
                raise self.fail("deploy.command", "must name a program: the list is empty")
        elif backend == "command":
            raise self.fail("deploy.command", 'missing: deploy.backend = "command" needs it')
        timeout = self.number(t, "command_timeout_seconds", "deploy", base.command_timeout_seconds)
        if timeout <= 0:
            raise self.fail(
                "deploy.command_timeout_seconds", f"must be more than 0, got {_show(timeout)}"
            )
        step = self.number(t, "simulated_step_seconds", "deploy", base.simulated_step_seconds)
        if step < 0:
            raise self.fail(
                "deploy.simulated_step_seconds", f"must be 0 or more, got {_show(step)}"
            )
        return DeploySection(envs, default_env, backend, command, timeout, step)

    def entry_points(self, value: Any) -> tuple[str, ...]:
        items = self.strings(value, "graphs", '"module:attribute" strings')
        for i, item in enumerate(items):
            if not ENTRY_POINT_RE.fullmatch(item):
                raise self.fail(
                    f"graphs[{i}]", f'must look like "package.module:attribute", got {_show(item)}'
                )
        return items

    def graph(
        self,
        graph: str,
        value: Any,
        layers: dict[tuple[str, str | None], dict[str, tuple[Any, str]]],
    ) -> None:
        path = f"policy.{_key(graph)}"
        if not isinstance(value, Mapping):
            raise self.fail(
                path, "unknown key (rules go in [policy.default] or [policy.<graph>] tables)"
            )
        if not GRAPH_NAME_RE.fullmatch(graph):
            raise self.fail(
                path, 'not a graph name: lowercase letters, digits, "-" and "_" (e.g. "deploy")'
            )
        layer: dict[str, tuple[Any, str]] = {}
        layers[(graph, None)] = layer
        for key, v in value.items():
            where = f"{path}.{_key(key)}"
            if key in RULE_KEYS:
                layer[key] = (self.rule(key, v, where), where)
            elif not isinstance(v, Mapping):
                raise self.unknown(where, key, v, RULE_KEYS)
            elif graph == "default":
                raise self.fail(where, "unknown table (per-env rules go in [policy.<graph>.<env>])")
            elif key not in self.envs:
                raise self.fail(
                    where, f"unknown env {_show(key)} (deploy.envs: {', '.join(self.envs)})"
                )
            else:
                env_layer: dict[str, tuple[Any, str]] = {}
                layers[(graph, key)] = env_layer
                for k, rv in v.items():
                    w = f"{where}.{_key(k)}"
                    if k not in RULE_KEYS:
                        raise self.unknown(w, k, rv, RULE_KEYS)
                    env_layer[k] = (self.rule(k, rv, w), w)

    def legacy(
        self, t: Mapping[str, Any], layers: dict[tuple[str, str | None], dict[str, tuple[Any, str]]]
    ) -> tuple[str, ...]:
        if not t:
            return ()
        for env, value in t.items():
            where = f"approvers.{_key(env)}"
            if env not in self.envs:
                raise self.fail(
                    where, f"unknown env {_show(env)} (deploy.envs: {', '.join(self.envs)})"
                )
            ids = self.ids(value, where, {"user", "group"})
            layer = layers.setdefault(("deploy", env), {})
            if "approvers" in layer:
                raise self.fail(where, f"also set as {layer['approvers'][1]}; keep only that one")
            layer["approvers"] = (ids, where)
        envs = ", ".join(t)
        return (
            f"{self.source}: [approvers] is deprecated: write approvers = [...] in "
            f"[policy.deploy.<env>] instead (for {envs})",
        )

    # -- the HTTP API's tokens -----------------------------------------------------------------
    def api(self, t: Mapping[str, Any]) -> tuple[ApiToken, ...]:
        for key, value in t.items():
            if key not in API_KEYS:
                raise self.unknown(f"api.{_key(key)}", key, value, API_KEYS)
        raw = t.get("tokens", [])
        if not isinstance(raw, list):
            raise self.fail(
                "api.tokens", f"must be a list of tables ({TOKEN_SHAPE}), got {_kind(raw)}"
            )
        tokens: list[ApiToken] = []
        for i, entry in enumerate(raw):
            where = f"api.tokens[{i}]"
            token = self.token(entry, where)
            for j, other in enumerate(tokens):
                if other.name == token.name:
                    raise self.fail(f"{where}.name", f"{_show(token.name)} is listed twice")
                if other.token_sha256 == token.token_sha256:
                    raise self.fail(f"{where}.token_sha256", f"the same token as api.tokens[{j}]")
            tokens.append(token)
        return tuple(tokens)

    def token(self, t: Any, where: str) -> ApiToken:
        if not isinstance(t, Mapping):
            raise self.fail(where, f"must be a table ({TOKEN_SHAPE}), got {_kind(t)}")
        for key, value in t.items():
            if key not in TOKEN_KEYS:
                raise self.unknown(f"{where}.{_key(key)}", key, value, TOKEN_KEYS)
        if "name" not in t:
            raise self.fail(f"{where}.name", "missing: every token needs a name (logs show it)")
        name = self.string(t["name"], f"{where}.name", "a name")
        if not TOKEN_NAME_RE.fullmatch(name):
            raise self.fail(
                f"{where}.name",
                f'must be letters, digits, ".", "-" or "_" (at most 64), got {_show(name)}',
            )
        if "token_sha256" not in t:
            raise self.fail(
                f"{where}.token_sha256",
                "missing: the SHA-256 of the token, in hex (never the token)",
            )
        digest = t["token_sha256"]
        # Never echo the value: someone may have pasted the token itself here.
        if (
            isinstance(digest, str)
            and SHA256_RE.fullmatch(digest.lower())
            and digest != digest.lower()
        ):
            raise self.fail(f"{where}.token_sha256", "hex digits are lower case")
        if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
            raise self.fail(
                f"{where}.token_sha256",
                "must be 64 hex digits: the SHA-256 of the token, not the token itself",
            )
        if "scopes" not in t:
            raise self.fail(f"{where}.scopes", 'missing: list what it may do: "read", "decide"')
        scopes = self.strings(t["scopes"], f"{where}.scopes", '"read" and/or "decide"')
        if not scopes:
            raise self.fail(f"{where}.scopes", 'must list "read" and/or "decide"')
        for i, scope in enumerate(scopes):
            if scope not in SCOPES:
                raise self.fail(
                    f"{where}.scopes[{i}]", f'must be "read" or "decide", got {_show(scope)}'
                )
        self.no_repeats(scopes, f"{where}.scopes")
        as_user = None
        if "as" in t:
            as_user = t["as"]
            if _id_kind(as_user) != "user":
                raise self.fail(
                    f"{where}.as", f"must be a Slack user id (U… or W…), got {_show(as_user)}"
                )
        act_as: tuple[str, ...] = ()
        if "act_as" in t:
            if as_user is not None:
                raise self.fail(f"{where}.act_as", 'give "as" or "act_as", not both')
            act_as = self.strings(t["act_as"], f"{where}.act_as", 'Slack user ids, or ["*"]')
            if not act_as:
                raise self.fail(f"{where}.act_as", 'must list Slack user ids, or be ["*"]')
            for i, user in enumerate(act_as):
                if user == ANYONE and len(act_as) > 1:
                    raise self.fail(f"{where}.act_as[{i}]", '"*" (anyone) stands alone')
                if user != ANYONE and _id_kind(user) != "user":
                    raise self.fail(
                        f"{where}.act_as[{i}]",
                        f'must be a Slack user id (U… or W…) or "*", got {_show(user)}',
                    )
            self.no_repeats(act_as, f"{where}.act_as")
        deciding = as_user is not None or bool(act_as)
        if "decide" in scopes and not deciding:
            raise self.fail(
                where,
                'a token with the "decide" scope needs "as" (the Slack user it decides as) '
                'or "act_as" (the users a request may name)',
            )
        if deciding and "decide" not in scopes:
            key = "as" if as_user is not None else "act_as"
            raise self.fail(f"{where}.{key}", 'only a token with the "decide" scope decides')
        return ApiToken(name, digest, frozenset(scopes), as_user, act_as)

    # -- one rule -------------------------------------------------------------------------------
    def rule(self, key: str, v: Any, where: str) -> Any:
        if key in ("approvers", "freeze_approvers"):
            return self.ids(v, where, {"user", "group"})
        if key == "requesters":
            return self.ids(v, where, {"user", "group", "channel"})
        if key == "min_approvals":
            if not _is_int(v) or v < 1:
                raise self.fail(where, f"must be a whole number ≥ 1, got {_show(v)}")
            return v
        if key == "repeat":
            if not _is_int(v) or v < 0:
                raise self.fail(where, f"must be a whole number ≥ 0, got {_show(v)}")
            return v
        if key in ("allow_self_approval", "reject_ends", "allow_weaker_overrides"):
            if not isinstance(v, bool):
                raise self.fail(where, f"must be true or false, got {_show(v)}")
            return v
        if key == "comment_required":
            items = self.strings(v, where, '"approve" and/or "reject"')
            for i, item in enumerate(items):
                if item not in DECISIONS:
                    raise self.fail(
                        f"{where}[{i}]", f'must be "approve" or "reject", got {_show(item)}'
                    )
            self.no_repeats(items, where)
            return frozenset(items)
        if key == "channel":
            if not isinstance(v, str) or not CHANNEL_RE.fullmatch(v):
                raise self.fail(where, f"must be a Slack channel id (C… or G…), got {_show(v)}")
            return v
        if key in ("remind_every", "timeout"):
            if v == "never":
                return None
            return self.duration(v, where)
        if key == "on_timeout":
            if v not in ON_TIMEOUT:
                raise self.fail(
                    where, f'must be "reject", "approve" or "keep_waiting", got {_show(v)}'
                )
            return v
        if key == "escalation":
            return self.escalation(v, where)
        assert key == "freeze", key
        return self.freeze(v, where)

    def escalation(self, v: Any, where: str) -> tuple[Level, ...]:
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            raise self.fail(
                where, f"must be a list of {{ after = ..., notify = [...] }} tables, got {_kind(v)}"
            )
        levels: list[Level] = []
        for i, item in enumerate(v):
            at = f"{where}[{i}]"
            for k, x in item.items():
                if k not in LEVEL_KEYS:
                    raise self.unknown(f"{at}.{_key(k)}", k, x, LEVEL_KEYS)
            for k in LEVEL_KEYS:
                if k not in item:
                    raise self.fail(f"{at}.{k}", "missing")
            after = self.duration(item["after"], f"{at}.after")
            if levels and after <= levels[-1].after_seconds:
                raise self.fail(
                    f"{at}.after",
                    f"must be later than {where}[{i - 1}].after "
                    f"({format_duration(levels[-1].after_seconds)}), got {_show(item['after'])}",
                )
            notify = self.ids(
                item["notify"], f"{at}.notify", {"user", "group", "channel", SUPERVISORS}
            )
            if not notify:
                raise self.fail(f"{at}.notify", 'must name at least one id or "supervisors"')
            if SUPERVISORS in notify and not self.supervisors:
                raise self.fail(
                    f"{at}.notify",
                    '"supervisors" is used but the top-level supervisors = [...] is not set',
                )
            levels.append(Level(after, notify))
        return tuple(levels)

    def freeze(self, v: Any, where: str) -> tuple[FreezeWindow, ...]:
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            raise self.fail(
                where, f"must be a list of tables ({{ days = [...], ... }}), got {_kind(v)}"
            )
        return tuple(self.window(item, f"{where}[{i}]") for i, item in enumerate(v))

    def window(self, t: Mapping[str, Any], at: str) -> FreezeWindow:
        for k, x in t.items():
            if k not in FREEZE_KEYS:
                raise self.unknown(f"{at}.{_key(k)}", k, x, FREEZE_KEYS)
        picks = [k for k in ("days", "dates", "from_date") if k in t]
        if "to_date" in t and "from_date" not in t:
            raise self.fail(f"{at}.from_date", "missing: to_date needs from_date")
        if len(picks) > 1:
            raise self.fail(f"{at}.{picks[1]}", f"cannot be combined with {picks[0]} in one window")
        if not picks and "from" not in t and "to" not in t:
            raise self.fail(at, "a freeze window needs days, dates, from_date/to_date or from/to")
        tz = "UTC"
        if "tz" in t:
            tz = self.string(t["tz"], f"{at}.tz", "a time zone name")
            try:
                _zone(tz)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise self.fail(
                    f"{at}.tz", f'unknown time zone {_show(tz)} (use e.g. "Europe/Berlin" or "UTC")'
                ) from None
        days: frozenset[int] = frozenset()
        if "days" in t:
            names = self.strings(t["days"], f"{at}.days", "day names")
            if not names:
                raise self.fail(f"{at}.days", "must name at least one day")
            for i, name in enumerate(names):
                if name not in DAYS:
                    guess = name.lower()[:3]
                    hint = f'did you mean "{guess}"?' if guess in DAYS else ", ".join(DAYS)
                    raise self.fail(f"{at}.days[{i}]", f"not a day: {_show(name)} ({hint})")
            self.no_repeats(names, f"{at}.days")
            days = frozenset(DAYS.index(n) for n in names)
        dates: frozenset[date] = frozenset()
        if "dates" in t:
            raw = t["dates"]
            if not isinstance(raw, list) or not raw:
                raise self.fail(
                    f"{at}.dates", f'must be a list of dates ("2026-12-24"), got {_kind(raw)}'
                )
            dates = frozenset(self.date(x, f"{at}.dates[{i}]") for i, x in enumerate(raw))
        from_date = to_date = None
        if "from_date" in t:
            from_date = self.date(t["from_date"], f"{at}.from_date")
            if "to_date" not in t:
                raise self.fail(f"{at}.to_date", "missing: from_date needs to_date")
            to_date = self.date(t["to_date"], f"{at}.to_date")
            if to_date < from_date:
                raise self.fail(f"{at}.to_date", f"is before from_date ({from_date.isoformat()})")
            if "from" in t or "to" in t:
                raise self.fail(
                    f"{at}.{'from' if 'from' in t else 'to'}",
                    "hours apply to days or dates; a from_date/to_date range is whole days",
                )
        start = self.clock(t["from"], f"{at}.from") if "from" in t else None
        end = self.clock(t["to"], f"{at}.to") if "to" in t else None
        if start is not None and end is not None and end < start:
            raise self.fail(
                f"{at}.to",
                f"is before from ({start.strftime('%H:%M')}); split a window past midnight in two",
            )
        action = t.get("action", "require_freeze_approvers")
        if action not in FREEZE_ACTIONS:
            raise self.fail(
                f"{at}.action",
                f'must be "refuse" or "require_freeze_approvers", got {_show(action)}',
            )
        return FreezeWindow(at, tz, days, dates, from_date, to_date, start, end, action)

    # -- checks across keys and levels, on every merged rule set ------------------------------
    def check(self, policy: Policy) -> None:
        for graph, env in policy.layers:
            rules, origins = policy._merge(graph, env)
            self.check_rules(policy, rules, origins)

    def check_rules(self, policy: Policy, rules: Rules, origins: dict[str, str]) -> None:
        if rules.escalation and rules.timeout_seconds is not None:
            last = rules.escalation[-1].after_seconds
            if rules.timeout_seconds <= last:
                at = f"{origins['escalation']}[{len(rules.escalation) - 1}]"
                raise self.fail(
                    origins["timeout"],
                    f"{format_duration(rules.timeout_seconds)} must be after the last escalation "
                    f"level ({format_duration(last)} at {at}.after)",
                )
        if rules.repeat and not rules.escalation:
            raise self.fail(origins["repeat"], "there are no escalation levels to repeat")
        if _too_few(rules.approvers, rules.min_approvals):
            where = origins.get("min_approvals") or origins["approvers"]
            raise self.fail(
                where,
                f"needs {rules.min_approvals} approvals but approvers lists only "
                f"{len(rules.approvers)} ({origins['approvers']})",
            )
        for w in rules.freeze:
            if w.action == "require_freeze_approvers" and not rules.freeze_approvers:
                raise self.fail(
                    w.where,
                    'needs freeze_approvers (action "require_freeze_approvers" is the default; '
                    'or set action = "refuse")',
                )

    # -- value shapes ---------------------------------------------------------------------------
    def unknown(self, where: str, key: str, value: Any, known: Iterable[str]) -> PolicyError:
        what = "table" if isinstance(value, Mapping) else "key"
        known = list(known)
        hint = _did_you_mean(key, known) or f"(known: {', '.join(known)})"
        return self.fail(where, f"unknown {what} {hint}")

    def table(self, data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        v = data.get(key, {})
        if not isinstance(v, Mapping):
            raise self.fail(where, f"must be a table ([{key}]), got {_kind(v)}")
        return v

    def string(self, v: Any, where: str, what: str) -> str:
        if not isinstance(v, str):
            raise self.fail(where, f"must be {what} (a string), got {_show(v)}")
        return v

    def strings(self, v: Any, where: str, what: str) -> tuple[str, ...]:
        if not isinstance(v, list):
            raise self.fail(where, f"must be a list of {what}, got {_kind(v)}")
        for i, x in enumerate(v):
            if not isinstance(x, str):
                raise self.fail(f"{where}[{i}]", f"must be a string, got {_show(x)}")
        return tuple(v)

    def number(self, t: Mapping[str, Any], key: str, table: str, default: float) -> float:
        v = t.get(key, default)
        if not _is_number(v):
            raise self.fail(f"{table}.{key}", f"must be a number of seconds, got {_show(v)}")
        return float(v)

    def ids(self, v: Any, where: str, kinds: set[str]) -> tuple[str, ...]:
        what = _id_words(kinds)
        if not isinstance(v, list):
            raise self.fail(where, f"must be a list of {what}, got {_kind(v)}")
        for i, x in enumerate(v):
            kind = _id_kind(x)
            if kind not in kinds:
                if kind is None and isinstance(x, str) and _id_kind(x.upper()) in kinds:
                    fault = f"Slack ids are upper case: {_show(x)}"
                elif kind is not None and kind != SUPERVISORS:
                    fault = f"{_show(x)} is a {kind} id; this list takes {what}"
                else:
                    fault = f"{_show(x)} is not one of {what}"
                raise self.fail(f"{where}[{i}]", fault)
        self.no_repeats(v, where)
        return tuple(v)

    def no_repeats(self, items: Iterable[str], where: str) -> None:
        seen: set[str] = set()
        for i, x in enumerate(items):
            if x in seen:
                raise self.fail(f"{where}[{i}]", f"{_show(x)} is listed twice")
            seen.add(x)

    def duration(self, v: Any, where: str) -> float:
        try:
            return parse_duration(v)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def date(self, v: Any, where: str) -> date:
        if isinstance(v, date) and not isinstance(v, datetime):
            return v
        if isinstance(v, str) and DATE_RE.fullmatch(v):
            try:
                return date.fromisoformat(v)
            except ValueError:
                pass
        raise self.fail(where, f'must be a date like "2026-12-24", got {_show(v)}')

    def clock(self, v: Any, where: str) -> time:
        if isinstance(v, time) and v.tzinfo is None:
            return v.replace(second=0, microsecond=0)
        if isinstance(v, str) and (m := HHMM_RE.fullmatch(v)):
            return time(int(m[1]), int(m[2]))
        raise self.fail(where, f'must be a time like "16:00" (24-hour), got {_show(v)}')


# -- small helpers ----------------------------------------------------------------------------


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _id_kind(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    if v == SUPERVISORS:
        return SUPERVISORS
    if USER_RE.fullmatch(v):
        return "user"
    if GROUP_RE.fullmatch(v):
        return "group"
    if CHANNEL_RE.fullmatch(v):
        return "channel"
    return None


def _id_words(kinds: set[str]) -> str:
    names = [n for n in ("user", "group", "channel") if n in kinds]
    words = (
        "Slack "
        + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1])
        + " ids"
    )
    return words + ', or "supervisors"' if SUPERVISORS in kinds else words


def _request_ids(v: Any, kinds: set[str]) -> tuple[str, ...] | None:
    """A graph's list of ids, or None when it is not one."""
    if isinstance(v, str) or not isinstance(v, list | tuple):
        return None
    if not all(_id_kind(x) in kinds for x in v):
        return None
    return tuple(dict.fromkeys(v))


def _too_few(approvers: tuple[str, ...], min_approvals: int) -> bool:
    """Fewer named people than approvals needed (a user group may hold any number)."""
    groups = any(GROUP_RE.fullmatch(a) for a in approvers)
    return bool(approvers) and not groups and min_approvals > len(approvers)


def _expand(ids: Iterable[str], supervisors: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for i in ids:
        out.extend(supervisors if i == SUPERVISORS else (i,))
    return tuple(dict.fromkeys(out))


def _mention(i: str) -> str:
    if GROUP_RE.fullmatch(i):
        return f"<!subteam^{i}>"
    if CHANNEL_RE.fullmatch(i):
        return f"<#{i}>"
    return f"<@{i}>"


def _key(k: str) -> str:
    """A key as written in a dotted path: bare when it can be, else quoted."""
    return k if BARE_KEY_RE.fullmatch(k) else json.dumps(k, ensure_ascii=False)


def _did_you_mean(key: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f'(did you mean "{close[0]}"?)' if close else None


def _show(v: Any) -> str:
    """A value as the file would write it, short and on one line."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
        return s if len(s) <= 60 else s[:56] + '…"'
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, date | time):
        return v.isoformat()
    return _kind(v)


def _show_list(v: list[Any] | tuple[Any, ...]) -> str:
    s = "[" + ", ".join(_show(x) for x in v) + "]"
    return s if len(s) <= 80 else s[:76] + "…]"


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, int):
        return "a whole number"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, Mapping):
        return "a table"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, datetime):
        return "a date-time"
    if isinstance(v, date):
        return "a date"
    if isinstance(v, time):
        return "a time"
    return type(v).__name__


def _one_line(s: str) -> str:
    return " ".join(s.split())
