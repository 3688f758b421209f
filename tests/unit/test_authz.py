"""Who may decide, and the rules an approval is held to: each rule written once
(bot/policy/authz.py, bot/policy/rules.py, bot/slack/groups.py), checked here where it is subtle:
user groups whose members are not known yet, a comment the policy or the request asks for, rules
stored with an approval."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from bot.interrupts import APPROVE, EDIT, REJECT, ChoiceSpec, normalise
from bot.model import Approval, Run, decision_of
from bot.policy.authz import GroupsUnknown, may_decide, may_pick, offer, refusal
from bot.policy.parse import parse_policy
from bot.policy.rules import Rules
from bot.slack.client import SlackError, SlackPort
from bot.slack.groups import GroupCache, with_groups

RELEASE = "S0RELEASE"


def members(known: dict[str, frozenset[str]]) -> Any:
    return known.get


def test_may_decide_counts_group_members_and_fails_closed_on_unknown_groups() -> None:
    request = normalise("Ship it?")
    rules = Rules(approvers=("U0BOB", RELEASE))
    known = members({RELEASE: frozenset({"U0DAN"})})
    assert may_decide(request, rules, "U0ALICE", "U0BOB", known)
    assert may_decide(request, rules, "U0ALICE", "U0DAN", known)
    assert not may_decide(request, rules, "U0ALICE", "U0EVE", known)
    # members not known yet: not offered (a click would look them up and be judged again)
    assert not may_decide(request, rules, "U0ALICE", "U0DAN", members({}))
    assert may_decide(request, rules, "U0ALICE", "U0BOB", members({}))


def test_may_decide_is_the_approve_choice_and_never_the_requesters_own() -> None:
    anyone = Rules()
    assert not may_decide(normalise("Ship it?"), anyone, "U0ALICE", "U0ALICE", members({}))
    assert may_decide(normalise("Ship it?"), anyone, "U0ALICE", "U0BOB", members({}))
    # the requester may still take it back by rejecting
    assert may_pick(anyone, "U0ALICE", "U0ALICE", REJECT, members({}))
    only_reject = replace(normalise("Ship it?"), choices=(REJECT,))
    assert not may_decide(only_reject, anyone, "U0ALICE", "U0BOB", members({}))


def test_offer_uses_the_same_rule_per_choice() -> None:
    request = normalise("Ship it?")
    rules = Rules(approvers=(RELEASE,))
    seen = offer(request.choices, rules, "U0ALICE", "U0DAN", (), members({}))
    assert seen.choices == frozenset() and not seen.escalate
    known = members({RELEASE: frozenset({"U0DAN"})})
    seen = offer(request.choices, rules, "U0ALICE", "U0DAN", (), known)
    assert seen.choices == frozenset(range(len(request.choices))) and seen.escalate


@pytest.mark.parametrize(
    ("comment_required", "choice", "needed"),
    [
        (frozenset(), APPROVE, False),
        (frozenset({"reject"}), REJECT, True),
        (frozenset({"reject"}), APPROVE, False),
        (frozenset({"approve"}), EDIT, True),  # an edit approves
        (frozenset(), ChoiceSpec("why", "Why…", comment="required"), True),
        (frozenset(), ChoiceSpec("maybe", "Maybe", comment="optional"), False),
    ],
)
def test_needs_comment_from_the_policy_or_the_request(
    comment_required: frozenset[str], choice: ChoiceSpec, needed: bool
) -> None:
    assert Rules(comment_required=comment_required).needs_comment(choice) is needed


def _approval(rules: dict[str, Any] | None, request: Any, **decided: Any) -> Approval:
    fields: dict[str, Any] = {
        "choice": None,
        "approved": None,
        "decided_by": None,
        "comment": None,
        "decided_at": None,
    }
    fields.update(decided)
    return Approval(
        interrupt_id="i1",
        run_id="r1",
        request=request,
        status="pending" if fields["choice"] is None else "approved",
        channel="C0DEPLOYS",
        ts="1.2",
        created_at=1.0,
        rules=rules,
        **fields,
    )


RUN = Run(
    run_id="r1",
    command="/deploy",
    input={"env": "prod"},
    requester="U0ALICE",
    channel="C0DEPLOYS",
    status="waiting",
    thread_key=None,
    outcome=None,
    created_at=1.0,
)
POLICY = parse_policy(
    {
        "deploy": {"backend": "simulated"},
        "policy": {"deploy": {"prod": {"approvers": ["U0BOB", "U0DAN"], "min_approvals": 2}}},
    },
    "approvals.toml",
)


def test_rules_of_prefers_the_rules_stored_with_the_approval() -> None:
    stored = Rules(scope="deploy.prod", approvers=("U0CAROL",)).to_dict()
    assert POLICY.rules_of(_approval(stored, "Ship?"), RUN).approvers == ("U0CAROL",)


def test_rules_of_an_older_row_is_todays_policy_with_the_requests_settings() -> None:
    rules = POLICY.rules_of(_approval(None, "Ship?"), RUN)
    assert (rules.scope, rules.approvers, rules.min_approvals) == (
        "deploy.prod",
        ("U0BOB", "U0DAN"),
        2,
    )
    stricter = {"question": "Ship?", "timeout_seconds": 60}
    assert POLICY.rules_of(_approval(None, stricter), RUN).timeout_seconds == 60.0
    assert POLICY.rules_for("/deploy", {"env": 7}).scope == "deploy"


def test_decision_of_is_none_until_claimed() -> None:
    assert decision_of(_approval(None, "Ship?")) is None
    d = decision_of(
        _approval(None, "Ship?", choice="approve", approved=1, decided_by="U0BOB", decided_at=5.0)
    )
    assert d is not None and (d.choice, d.approved, d.decided_by, d.decided_at) == (
        "approve",
        True,
        "U0BOB",
        5.0,
    )


def test_choice_at_is_none_outside_the_choices() -> None:
    request = normalise("Ship it?")
    assert request.choice_at(0) == request.choices[0]
    assert request.choice_at(-1) is None
    assert request.choice_at(len(request.choices)) is None


class GroupsDirectory:
    """Slack's usergroups.users.list as the cache sees it: the outside world, counted."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups
        self.asked: list[str] = []

    async def group_members(self, group: str) -> list[str]:
        self.asked.append(group)
        if group not in self.groups:
            raise SlackError("no_such_subteam")
        return self.groups[group]


async def test_with_groups_looks_the_groups_up_once_and_judges_again() -> None:
    slack = GroupsDirectory({RELEASE: ["U0DAN"]})
    cache = GroupCache(cast(SlackPort, slack), clock=lambda: 100.0)
    rules = Rules(approvers=(RELEASE,))

    async def check() -> str | None:
        return refusal(rules, "U0ALICE", "U0DAN", APPROVE, cache.members)

    assert await with_groups(cache, check) is None
    assert slack.asked == [RELEASE]
    assert await with_groups(cache, check) is None
    assert slack.asked == [RELEASE]  # cached


async def test_with_groups_lets_a_second_unknown_reach_the_caller() -> None:
    cache = GroupCache(cast(SlackPort, GroupsDirectory({})), clock=lambda: 100.0)
    calls = 0

    async def always_unknown() -> bool:
        nonlocal calls
        calls += 1
        raise GroupsUnknown([RELEASE])

    with pytest.raises(GroupsUnknown):
        await with_groups(cache, always_unknown)
    assert calls == 2
    assert cache.unresolved(RELEASE)
