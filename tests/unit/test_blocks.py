"""Block Kit builders: valid for slack_sdk's models, within the limits slack_sdk does not
check (button text 75, value 2000), escaped, and cut rather than rejected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.interrupts import normalise
from bot.localslack.blockkit import validate_blocks, validate_view
from bot.model import DecisionRecord
from bot.policy import authz
from bot.policy.rules import Rules
from bot.render import blocks
from graphs import agent
from graphs.approval import Choice, approval_payload

IID = "aff30caa44221c2f8817332729636d0f"


def check_message(blks: list[dict[str, Any]]) -> None:
    assert len(blks) <= 50
    for b in blks:
        Block.parse(b).validate_json()
        for el in b.get("elements", []):
            if el.get("type") == "button":
                assert len(el["text"]["text"]) <= 75
                assert len(el["value"]) <= 2000
                assert len(el["action_id"]) <= 255
    assert validate_blocks(blks) == []


def request(**kw: Any):
    return normalise(approval_payload(**{"title": "Deploy api 1.4.2 to prod?", **kw}))


def test_pending_message_has_buttons_with_interrupt_id() -> None:
    text, blks = blocks.approval_message(
        request(text="Plan", fields=[("Service", "api")]), IID, "U0ALICE", 1_700_000_000
    )
    check_message(blks)
    actions = next(b for b in blks if b["type"] == "actions")["elements"]
    labels = ["Approve", "Reject", "Reject with reason…", "Withdraw"]
    assert [a["text"]["text"] for a in actions] == labels
    assert {a["value"] for a in actions} == {IID}
    assert actions[0]["style"] == "primary" and actions[1]["style"] == "danger"
    assert "Deploy api" in text


def test_the_context_line_shows_the_requests_short_digest() -> None:
    digest = "0123456789abcdef" * 4
    _, blks = blocks.approval_message(request(), IID, "U0ALICE", 1_700_000_000, digest=digest)
    check_message(blks)
    context = next(b for b in blks if b["type"] == "context")["elements"][0]["text"]
    assert context.startswith("Requested by <@U0ALICE>")
    assert context.endswith(" · request `0123456789`")


def test_a_superseded_request_says_so_without_buttons() -> None:
    state = blocks.MessageState(superseded=True)
    text, blks = blocks.approval_message(request(), IID, "U0ALICE", 1_700_000_000, state)
    check_message(blks)
    assert not [b for b in blks if b["type"] == "actions"]
    assert "changed before it was decided" in json.dumps(blks)
    assert "changed before it was decided" in text


def test_decided_message_has_no_buttons_and_says_who() -> None:
    d = DecisionRecord(
        choice="reject",
        approved=False,
        decided_by="U0BOB",
        comment="not <!channel> today & never",
        decided_at=1_700_000_000,
    )
    _, blks = blocks.approval_message(
        request(), IID, "U0ALICE", 1_700_000_000, blocks.MessageState(decision=d)
    )
    check_message(blks)
    assert not [b for b in blks if b["type"] == "actions"]
    dumped = json.dumps(blks)
    assert "<@U0BOB>" in dumped
    assert "<!channel>" not in dumped and "&lt;!channel&gt; today &amp; never" in dumped


def test_outcome_is_shown() -> None:
    d = DecisionRecord(
        choice="approve", approved=True, decided_by="U0BOB", comment=None, decided_at=1_700_000_000
    )
    state = blocks.MessageState(decision=d, outcome={"status": "succeeded", "text": "Deployed"})
    _, blks = blocks.approval_message(request(), IID, "U0ALICE", 1_700_000_000, state)
    check_message(blks)
    assert "✅ Deployed" in json.dumps(blks, ensure_ascii=False)


@pytest.mark.parametrize("n", [0, 1, 10, 11, 39, 40, 41, 200])
def test_many_fields_fit(n: int) -> None:
    fields = [(f"k{i}", "v" * 2500) for i in range(n)]
    _, blks = blocks.approval_message(request(fields=fields), IID, "U0ALICE", 0)
    check_message(blks)


def test_huge_text_is_cut_not_rejected() -> None:
    big = "<&>" * 5000
    long_label = "L" * 200
    req = normalise(
        approval_payload(
            title="T" * 500,
            text=big,
            fields=[(big, big)],
            choices=[
                Choice("x" * 300, long_label, "primary", approves=True),
                Choice("no", long_label, "danger"),
            ],
        )
    )
    d = DecisionRecord(choice="no", approved=False, decided_by="U0BOB", comment=big, decided_at=0)
    for state in (
        blocks.MessageState(),
        blocks.MessageState(decision=d, outcome={"status": "failed", "text": big}),
    ):
        text, blks = blocks.approval_message(req, IID, "U0ALICE", 0, state)
        check_message(blks)
        assert len(text) <= 3000


def test_cut_never_splits_an_entity() -> None:
    assert blocks.cut(blocks.escape("ab<"), 4) == "ab…"
    assert blocks.cut("abc", 3) == "abc"


@pytest.mark.parametrize(
    ("choice", "title"), [(1, "Reject with reason"), (0, "Approve with comment")]
)
def test_comment_modal_is_valid(choice: int, title: str) -> None:
    view = blocks.comment_modal(request(title="x" * 5000), IID, "C0DEPLOYS", choice)
    View(**view).validate_json()
    assert view["title"]["text"] == title and len(title) <= 24
    assert len(view["private_metadata"]) <= 3000
    meta = json.loads(view["private_metadata"])
    assert meta == {"interrupt_id": IID, "channel": "C0DEPLOYS", "choice": choice}


def test_a_choice_that_needs_a_comment_opens_the_modal() -> None:
    who = "Needs 2 of <@U0BOB>, <@U0DAN>"
    ask = blocks.Ask(who=who, needed=2, comment_on=frozenset({"reject"}))
    _, blks = blocks.approval_message(request(), IID, "U0ALICE", 0, blocks.MessageState(), ask)
    check_message(blks)
    actions = next(b for b in blks if b["type"] == "actions")["elements"]
    assert [(a["text"]["text"], a["action_id"]) for a in actions] == [
        ("Approve", "approval:choice:0"),
        ("Reject", "approval:comment:1"),
        ("Withdraw", "approval:withdraw"),
    ]
    assert "Needs 2 of <@U0BOB>, <@U0DAN>" in json.dumps(blks)


def test_quorum_progress_is_on_the_message() -> None:
    ask = blocks.Ask(needed=2, can_escalate=True)
    state = blocks.MessageState(voters=("U0BOB",))
    _, blks = blocks.approval_message(request(), IID, "U0ALICE", 0, state, ask)
    check_message(blks)
    assert "1 of 2 approvals: <@U0BOB>" in json.dumps(blks)
    assert "Escalate now" in json.dumps(blks)


def test_plain_string_interrupt_renders() -> None:
    _, blks = blocks.approval_message(normalise("Ship it?"), IID, "U0ALICE", 0)
    check_message(blks)
    assert "Ship it?" in json.dumps(blks)


ASK = blocks.Ask()


def test_home_view_is_valid_with_buttons_for_what_you_may_decide() -> None:
    items = [
        item
        for n in range(10)
        for item in (
            blocks.HomeItem(request(title="other <!here>"), f"o{n}", "U0ALICE", "C0DEPLOYS", 0),
            blocks.HomeItem(request(title="mine"), f"m{n}", "U0ALICE", "C0DEPLOYS", 0, ASK),
        )
    ]
    mine = [("/deploy api 1.4.2 prod", "waiting", 0.0)] * 20
    recent = ["*x*: ✅ *Approved* by <@U0BOB>"] * 5
    view = blocks.home_view(items, mine, recent, blocks.HomeCounts(12_000, 200))
    View(**view).validate_json()
    assert validate_view(view) == []
    assert len(view["blocks"]) <= 100
    text = json.dumps(view)
    assert "10 of the newest 200 open requests are yours to decide (12000 open in all)" in text
    assert "<!here>" not in text and "other" not in text
    assert sum(b["type"] == "actions" for b in view["blocks"]) == 10
    assert "Recent decisions" in text
    empty = blocks.home_view([], [])
    assert validate_view(empty) == []


@pytest.mark.parametrize("mode", ["per_call", "batched"])
def test_the_example_agents_arguments_are_shown_once(mode: str) -> None:
    """HumanInTheLoopMiddleware describes a call as "<prefix>\\n\\nTool: …\\nArgs: {…}" (a
    Python dict): the message shows the arguments as fields, so not that dict as well. The
    interrupt is the real one the example agent (graphs/agent.py) raises."""
    graph = agent.build(InMemorySaver(), interrupt_mode=mode)
    task = "email the team that the release train leaves today at five, with the notes attached"
    out = graph.invoke(agent.parse(task), {"configurable": {"thread_id": mode}})
    (raised,) = out["__interrupt__"]
    meta = {"response_schema": raised.response_schema} if raised.response_schema else None
    request = normalise(raised.value, meta)
    _, blks = blocks.approval_message(request, IID, "U0ALICE", 0)
    check_message(blks)
    shown = json.dumps(blks, ensure_ascii=False)
    assert "Tool execution requires approval" in shown
    assert "Args:" not in shown and "'to'" not in shown
    assert shown.count("team@example.com") == 1
    assert shown.count(task) == 1  # the body (the subject is its first 60 characters)


def labels(view: dict[str, Any]) -> list[list[str]]:
    return [
        [e["text"]["text"] for e in b["elements"]] for b in view["blocks"] if b["type"] == "actions"
    ]


def test_the_home_offers_each_viewer_only_the_buttons_they_may_use() -> None:
    """What a click by this viewer would be refused, the Home does not show: Withdraw is the
    requester's or an admin's, deciding and "Escalate now" the approvers'."""
    prod = Rules(approvers=("U0BOB", "U0DAN", "S0RELEASE"))
    ask = blocks.Ask(can_escalate=True)
    req = request(private=["Card"], fields=[("Card", "4111")])
    release = {"S0RELEASE": frozenset({"U0ERIN"})}.get

    def home(user: str, rules: Rules = prod) -> list[list[str]]:
        offer = authz.offer(req.choices, rules, "U0ALICE", user, ("U0DAN",), release)
        item = blocks.HomeItem(req, IID, "U0ALICE", "C0DEPLOYS", 0, ask, offer)
        view = blocks.home_view([item], [])
        assert validate_view(view) == []
        return labels(view)

    decide = ["Approve", "Reject", "Reject with reason…", "Show details", "Escalate now"]
    assert home("U0BOB") == [decide]  # an approver: no Withdraw on alice's request
    assert home("U0DAN") == [[*decide, "Withdraw"]]  # an approver and an admin
    assert home("U0ERIN") == [decide]  # an approver by her user group
    # alice, where she may approve her own request: all of it, Withdraw included
    assert home("U0ALICE", Rules(allow_self_approval=True)) == [[*decide, "Withdraw"]]
    # a channel message is everyone's: every button, each click judged
    _, blks = blocks.approval_message(req, IID, "U0ALICE", 0, ask=ask)
    assert labels({"blocks": blks}) == [[*decide, "Withdraw"]]
