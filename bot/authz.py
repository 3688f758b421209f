"""Who may decide an approval: pure, so the rule is visible and unit-tested.

The rules are the ones the approval was opened with (``bot.policy.rules.Rules``). User groups count
by membership; a group whose members are not known yet raises ``GroupsUnknown`` so the caller
can look them up and ask again (and refuse, failing closed, when Slack cannot say).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bot.policy.rules import Rules
from bot.protocol import ApprovalRequest, ChoiceSpec
from bot.slackids import GROUP_ID

Members = Callable[[str], frozenset[str] | None]  # group id -> members, None when unknown


class GroupsUnknown(Exception):
    """Deciding needs the members of these user groups."""

    def __init__(self, groups: Iterable[str]) -> None:
        self.groups = tuple(groups)
        super().__init__(", ".join(self.groups))


def groups_in(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(i for i in ids if GROUP_ID.fullmatch(i))


def is_listed(ids: Iterable[str], user: str, members: Members) -> bool:
    """``user`` is one of ``ids`` or in one of its groups. Raises GroupsUnknown when that
    depends on a group whose members are unknown."""
    ids = tuple(ids)
    if user in ids:
        return True
    unknown = []
    for group in groups_in(ids):
        m = members(group)
        if m is None:
            unknown.append(group)
        elif user in m:
            return True
    if unknown:
        raise GroupsUnknown(unknown)
    return False


def refusal(
    rules: Rules, requester: str, user: str, choice: ChoiceSpec, members: Members
) -> str | None:
    """None when ``user`` may pick ``choice``; otherwise the ephemeral text saying why not.

    Four-eyes by default: the requester cannot approve their own request, though they may
    withdraw it by rejecting. A non-empty approver list limits who decides at all.
    """
    if user == requester and not choice.approves:
        return None
    if user == requester and not rules.allow_self_approval:
        who = names(rules.approvers) if rules.approvers else "someone else"
        return f"You asked for this, so it needs a second pair of eyes: {who} can approve it."
    if rules.approvers and not is_listed(rules.approvers, user, members):
        return f"Only {names(rules.approvers)} can decide this request."
    return None


def may_pick(rules: Rules, requester: str, user: str, choice: ChoiceSpec, members: Members) -> bool:
    """Whether ``user`` may pick ``choice``, for showing what they may do (a click is judged by
    ``refusal``): a user group whose members are not known yet counts as not listed."""
    try:
        return refusal(rules, requester, user, choice, members) is None
    except GroupsUnknown:
        return False


def may_decide(
    request: ApprovalRequest, rules: Rules, requester: str, user: str, members: Members
) -> bool:
    """Whether ``user`` may decide ``request`` at all: pick its approve choice (what
    ``/approvals list`` and the App Home offer them)."""
    approve = request.approve_choice
    return approve is not None and may_pick(rules, requester, user, approve, members)


def may_withdraw(admins: Iterable[str], requester: str, user: str) -> bool:
    """Only the requester, or an admin, takes a request back (Withdraw, ``/approvals
    cancel``). Admins are matched by user id."""
    return user == requester or user in tuple(admins)


def may_escalate(rules: Rules, user: str, members: Members) -> bool:
    """The "Escalate now" button is for those who decide (anyone, when no approvers are listed).
    Raises GroupsUnknown as ``is_listed`` does."""
    return not rules.approvers or is_listed(rules.approvers, user, members)


@dataclass(frozen=True)
class Offer:
    """The buttons one viewer may use on an approval. A message in a channel or DM is the
    same for everyone, so it offers every button and each click is judged; the App Home is
    drawn per viewer, so it offers only what the click would be allowed (``offer``)."""

    choices: frozenset[int] | None = None  # positions in the request's choices; None: all
    withdraw: bool = True
    escalate: bool = True

    def choice(self, index: int) -> bool:
        return self.choices is None or index in self.choices


EVERY_BUTTON = Offer()  # a message everyone sees


def offer(
    choices: Sequence[ChoiceSpec],
    rules: Rules,
    requester: str,
    user: str,
    admins: Iterable[str],
    members: Members,
) -> Offer:
    """What ``user`` may do with a request, by the rules its clicks are judged by. A user
    group whose members are not known yet counts as not listed."""

    try:
        escalate = may_escalate(rules, user, members)
    except GroupsUnknown:
        escalate = False
    return Offer(
        choices=frozenset(
            i for i, c in enumerate(choices) if may_pick(rules, requester, user, c, members)
        ),
        withdraw=may_withdraw(admins, requester, user),
        escalate=escalate,
    )


def mention(slack_id: str) -> str:
    return f"<!subteam^{slack_id}>" if GROUP_ID.fullmatch(slack_id) else f"<@{slack_id}>"


def names(ids: Iterable[str]) -> str:
    mentions = [mention(i) for i in ids]
    if len(mentions) <= 1:
        return "".join(mentions)
    return ", ".join(mentions[:-1]) + " or " + mentions[-1]
