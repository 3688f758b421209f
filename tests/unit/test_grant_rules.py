"""Standing grants, the pure part: the policy's ``grants`` key (strict, and the README's own
snippet), and whether a grant decides a request (scope, tools, exact arguments, expiry, who
made it under the rule the request opens with)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from bot.grants import decides, durations, grantable, subject
from bot.interrupts import normalise
from bot.model import Grant, Run
from bot.policy.faults import PolicyError
from bot.policy.parse import parse_policy
from bot.policy.rules import GrantRule, Rules

ROOT = Path(__file__).resolve().parents[2]
RULE = GrantRule(scopes=("run", "requester"), max_seconds=4 * 3600, tools=("send_email",))
RULES = Rules(approvers=("U0BOB", "U0DAN"), grants=RULE)
RUN = Run(
    run_id="r1",
    command="agent",
    input={},
    requester="U0ALICE",
    channel="C0DEPLOYS",
    status="waiting",
    thread_key=None,
    outcome=None,
    created_at=0.0,
)


def call(**args: str) -> dict[str, object]:
    return {"type": "tool_approval", "tool_call_id": "c", "name": "send_email", "args": args}


def grant(**changes: object) -> Grant:
    base = Grant(
        grant_id="g",
        source="i0",
        command="agent",
        rule="default",
        tools=("send_email",),
        scope="requester",
        scope_value="U0ALICE",
        args_digest=None,
        granted_by=("U0BOB",),
        needed=1,
        status="active",
        created_at=0.0,
        expires_at=3600.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def members(group: str) -> None:
    return None


def ok(
    g: Grant, value: object = None, rules: Rules = RULES, run: Run = RUN, now: float = 10
) -> bool:
    request = normalise(value or call(to="a@example.com"))
    return decides(g, run, request, "digest", rules, now, members)


def test_the_policy_key_is_strict() -> None:
    good = {"scopes": ["run"], "max": "1h", "tools": ["send_email"]}
    rules = parse_policy({"policy": {"agent": {"grants": good}}}, "t").rules("agent")
    assert rules.grants == GrantRule(("run",), 3600.0, ("send_email",))
    assert parse_policy({}, "t").grants_on is False
    for bad, says in [
        ({"scopes": ["forever"], "max": "1h"}, 'grants.scopes[0]: must be "run"'),
        ({"scopes": [], "max": "1h"}, "must name at least one"),
        ({"scopes": ["run", "run"], "max": "1h"}, "listed twice"),
        ({"scopes": ["run"]}, "grants.max: missing"),
        ({"scopes": ["run"], "max": "soon"}, "grants.max: must be a duration"),
        ({"scopes": ["run"], "max": "1h", "tools": []}, "at least one tool"),
        ({"scopes": ["run"], "max": "1h", "uses": 3}, "grants.uses: unknown key"),
        ("yes", "must be a table"),
    ]:
        with pytest.raises(PolicyError, match=re.escape(says)):
            parse_policy({"policy": {"agent": {"grants": bad}}}, "t")


def test_the_readme_snippet_parses() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Standing grants", 1)[1]
    snippet = section.split("```toml", 1)[1].split("```", 1)[0]
    policy = parse_policy(tomllib.loads(snippet), "README")
    assert policy.grants_on
    assert policy.rules("agent").grants == GrantRule(
        ("run", "requester"), 4 * 3600.0, ("search_docs", "send_email")
    )


def test_what_may_be_granted() -> None:
    request = normalise(call(to="a@example.com"))
    assert grantable(RULES, request, "d") == RULE
    assert grantable(replace(RULES, grants=None), request, "d") is None
    other = normalise({**call(to="x"), "name": "delete_everything"})
    assert grantable(RULES, other, "d") is None  # not a tool the rule names
    assert grantable(replace(RULES, comment_required=frozenset({"approve"})), request, "d") is None
    assert grantable(replace(RULES, grants=replace(RULE, tools=None)), other, "d") == replace(
        RULE, tools=None
    )
    assert durations(RULE) == [900.0, 3600.0, 4 * 3600.0]
    assert durations(replace(RULE, max_seconds=1800)) == [900.0, 1800.0]


def test_a_grant_decides_only_what_it_covers() -> None:
    assert ok(grant())
    assert not ok(grant(status="revoked"))
    assert not ok(grant(), now=3600)  # expired
    assert not ok(grant(created_at=0, expires_at=10**9), now=5 * 3600)  # past today's max (4h)
    assert ok(grant(created_at=0, expires_at=10**9), now=3600)
    assert not ok(grant(scope_value="U0CAROL"))  # another requester's
    assert not ok(grant(scope="run", scope_value="r2"))  # another run
    assert ok(grant(scope="run", scope_value="r1"))
    assert not ok(grant(scope="channel", scope_value="C0DEPLOYS"))  # a scope the rule refuses
    assert not ok(grant(command="deploy"))
    assert not ok(grant(tools=("search_docs",)))
    assert not ok(grant(rule="agent.prod"))  # made under another rule


def test_exact_arguments_bind() -> None:
    exact = subject(normalise(call(to="a@example.com")), "d").args_digest
    assert ok(grant(args_digest=exact), call(to="a@example.com"))
    assert not ok(grant(args_digest=exact), call(to="b@example.com"))


def test_who_made_it_must_still_decide() -> None:
    assert not ok(grant(granted_by=("U0CAROL",)))  # not an approver (any more)
    assert not ok(grant(granted_by=("U0ALICE",)), rules=replace(RULES, approvers=()))  # own
    two = replace(RULES, min_approvals=2)
    assert not ok(grant(), rules=two)  # one maker, a rule needing two
    assert ok(grant(granted_by=("U0BOB", "U0DAN"), needed=2), rules=two)
    assert not ok(grant(granted_by=("U0BOB", "U0CAROL"), needed=2), rules=two)
