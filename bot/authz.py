"""Who may decide an approval: pure, so the rule is visible and unit-tested."""

from __future__ import annotations

from bot.protocol import ApprovalRequest, ChoiceSpec


def refusal(request: ApprovalRequest, requester: str, user: str, choice: ChoiceSpec) -> str | None:
    """None when ``user`` may pick ``choice``; otherwise the ephemeral text saying why not.

    Four-eyes by default: the requester cannot approve their own request, though they may
    withdraw it by rejecting. A non-empty approver list limits who decides at all.
    """
    if user == requester and choice.approves and not request.allow_self_approval:
        who = _names(request.approvers) if request.approvers else "someone else"
        return f"You asked for this, so it needs a second pair of eyes: {who} can approve it."
    if user == requester and not choice.approves:
        return None
    if request.approvers and user not in request.approvers:
        return f"Only {_names(request.approvers)} can decide this request."
    return None


def _names(users: tuple[str, ...]) -> str:
    mentions = [f"<@{u}>" for u in users]
    return mentions[0] if len(mentions) == 1 else ", ".join(mentions[:-1]) + " or " + mentions[-1]
