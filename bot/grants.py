"""Standing grants, the pure rules: what a request is for (its tools and arguments), whether
a rule lets an approver grant it, and whether a grant decides a new request.

A grant never widens who decides: each person who made it must still be allowed to approve
the new request under the rule it opens with (approvers, four eyes), as many of them as
that rule needs, and the rule must still allow a grant of that scope for those tools. The
store checks again, in the transaction that uses a grant, that it is active and unexpired,
so a revoke and a grant's use are ordered like two clicks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bot.integrity import canonical
from bot.interrupts import ApprovalRequest, ChoiceSpec
from bot.model import Grant, Run
from bot.policy.authz import Members, may_pick
from bot.policy.rules import PLAIN_REQUEST, GrantRule, Rules
from bot.render.blocks import escape

# What the "Approve & allow…" modal offers, cut to the rule's ``max`` (which is offered too).
DURATIONS = (15 * 60.0, 3600.0, 4 * 3600.0, 8 * 3600.0, 86400.0, 7 * 86400.0)
# How the modal offers each scope (plain text: a radio button's label shows no mentions).
SCOPE_WORDS = {
    "run": "this run",
    "requester": "this requester's runs",
    "channel": "runs started in this channel",
}


@dataclass(frozen=True)
class Subject:
    """What a request asks for, as a grant sees it: the tools it would run (``("request",)``
    for a request that is not a tool call) and a digest of its exact arguments."""

    tools: tuple[str, ...]
    args_digest: str


def subject(request: ApprovalRequest, digest: str) -> Subject:
    """The tools of a HITL or Agent Inbox request, with its calls' names and arguments as
    the exact-arguments digest; any other request is a plain ``request`` whose exact
    arguments are the request itself (``digest``, the approval's)."""
    if not request.actions:
        return Subject((PLAIN_REQUEST,), digest)
    calls = [[a.name, a.args] for a in request.actions]
    exact = hashlib.sha256(canonical(calls).encode()).hexdigest()
    return Subject(tuple(sorted({a.name for a in request.actions})), exact)


def grant_choice(request: ApprovalRequest) -> ChoiceSpec | None:
    """The choice a grant picks: the request's plain approve (no form: a grant carries no
    edited arguments, answer or per-call review)."""
    choice = request.approve_choice
    return choice if choice is not None and choice.form is None else None


def grantable(rules: Rules, request: ApprovalRequest, digest: str) -> GrantRule | None:
    """The rule's grant settings when "Approve & allow…" may be offered on this request."""
    rule, choice = rules.grants, grant_choice(request)
    if rule is None or choice is None or rules.needs_comment(choice):
        return None  # a grant carries no comment: a rule asking one on approvals asks a person
    return rule if rule.covers(subject(request, digest).tools) else None


def durations(rule: GrantRule) -> list[float]:
    """The durations to offer, shortest first, up to the rule's ``max``."""
    return sorted({*(d for d in DURATIONS if d < rule.max_seconds), rule.max_seconds})


def scope_value(scope: str, run: Run) -> str:
    """What a grant of ``scope`` made on ``run`` is bound to."""
    return {"run": run.run_id, "requester": run.requester, "channel": run.channel}[scope]


def decides(
    grant: Grant,
    run: Run,
    request: ApprovalRequest,
    digest: str,
    rules: Rules,
    now: float,
    members: Members,
) -> bool:
    """Whether ``grant`` decides this new request of ``run`` under ``rules`` (the rules it
    opens with): active, unexpired (also by today's ``max``), of this graph and scope,
    covering its tools (and its exact arguments when bound to them), allowed by the rule,
    and made by enough people who may each approve it (never its own requester, unless the
    rule allows self-approval)."""
    rule = grantable(rules, request, digest)
    if rule is None or grant.status != "active" or grant.command != run.command:
        return False
    if grant.rule != rules.scope:  # made under another rule (a staging grant, a prod deploy)
        return False
    if now >= min(grant.expires_at, grant.created_at + rule.max_seconds):
        return False
    if grant.scope not in rule.scopes or grant.scope_value != scope_value(grant.scope, run):
        return False
    what = subject(request, digest)
    if not all(t in grant.tools for t in what.tools):
        return False
    if grant.args_digest is not None and grant.args_digest != what.args_digest:
        return False
    choice = grant_choice(request)
    assert choice is not None  # grantable
    deciders = [u for u in grant.granted_by if may_pick(rules, run.requester, u, choice, members)]
    return len(deciders) >= rules.min_approvals and len(deciders) == len(grant.granted_by)


def first_deciding(
    grants: Sequence[Grant],
    run: Run,
    request: ApprovalRequest,
    digest: str,
    rules: Rules,
    now: float,
    members: Members,
) -> Grant | None:
    """The grant that decides this request, if any: the narrowest bound first (exact
    arguments before any), then the one ending soonest."""
    ordered = sorted(grants, key=lambda g: (g.args_digest is None, g.expires_at))
    return next((g for g in ordered if decides(g, run, request, digest, rules, now, members)), None)


def _code(text: str) -> str:
    """``text`` as inline code in mrkdwn: escaped, and no backtick to break out with."""
    return f"`{escape(text.replace('`', ''))}`"


def describe(grant: Grant) -> str:
    """A grant in one line of mrkdwn (for lists and answers); tool and graph names are the
    graph's own strings, so they are escaped."""
    tools = ", ".join("requests" if t == PLAIN_REQUEST else _code(t) for t in grant.tools)
    where = {
        "run": f"run {_code(grant.scope_value)}",
        "requester": f"<@{grant.scope_value}>'s runs",
        "channel": f"<#{grant.scope_value}>",
    }[grant.scope]
    exact = " with these exact arguments" if grant.args_digest else ""
    by = ", ".join(f"<@{u}>" for u in grant.granted_by)
    return f"{tools} of {_code(grant.command)} ({_code(grant.rule)}) in {where}{exact}, by {by}"


def may_revoke(grant: Grant, user: str, admins: Collection[str]) -> bool:
    """Who made a grant, or an admin, may revoke it."""
    return user in grant.granted_by or user in admins
