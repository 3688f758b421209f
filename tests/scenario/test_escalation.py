"""Stuck approvals never stay stuck: reminders, escalation DMs, the final timeout, quorum,
user groups, freezes, withdrawing, escalating now. A fake clock drives the deadlines (the
test moves it and wakes the scheduler); everything else is the real wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.localslack import LocalSlack
from tests.conftest import BACKENDS, Bot, FakeClock, Harness
from tests.reads import audit_events, runs_with_status
from tests.scenario.test_approval_loop import DEPLOYS, buttons, deploy, message_text

MINUTE = 60.0
LADDER = {
    "supervisors": ["U0CAROL"],
    "admins": ["U0CAROL"],
    "policy": {
        "deploy": {
            "prod": {
                "approvers": ["U0BOB"],
                "remind_every": "10m",
                "escalation": [
                    {"after": "30m", "notify": ["U0DAN"]},
                    {"after": "1h", "notify": ["supervisors"]},
                ],
                "timeout": "2h",
                "on_timeout": "reject",
            }
        }
    },
}


def with_rules(**prod: Any) -> dict[str, Any]:
    policy = json.loads(json.dumps(LADDER))
    policy["policy"]["deploy"]["prod"].update(prod)
    return policy


def dm(ws: LocalSlack, user: str) -> list[dict[str, Any]]:
    """The approval copies in ``user``'s DM with the bot."""
    return [m for m in ws.messages("D" + ws.user(user).id[1:]) if m.get("blocks")]


def thread(h: Harness, msg: dict[str, Any]) -> list[str]:
    return [r["text"] for r in h.ws.replies(DEPLOYS, msg["ts"])[1:]]


async def events(bot: Bot) -> list[str]:
    return [e["event"] for e in await audit_events(bot.runtime.store)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def escalating(h: Harness, clock: FakeClock, **prod: Any) -> dict[str, Any]:
    old = h.bots.pop()
    await old.stop()
    await h.start_bot(clock=clock, policy=with_rules(**prod))
    msg = await deploy(h)
    # Deadlines count from when the bot recorded the message as posted: wait for that, or
    # moving the clock first would move them too.
    await h.wait(lambda: posted(h))
    return msg


def posted(h: Harness) -> bool:
    return h.query("SELECT COUNT(*) FROM bot_approvals WHERE posted_at IS NULL")[0][0] == 0


async def test_each_level_fires_once_with_its_dms(harness: Harness, clock: FakeClock) -> None:
    h = harness
    msg = await escalating(h, clock)
    assert "Needs approval from <@U0BOB>" in message_text(msg)
    assert "Escalate now" in buttons(msg)

    await clock.advance(10 * MINUTE, h.bot)
    await h.wait(lambda: any(t.startswith("⏰ Still waiting") for t in thread(h, msg)))
    await clock.advance(20 * MINUTE, h.bot)  # 30 min: dan
    await h.wait(lambda: dm(h.ws, "dan"))
    copy = dm(h.ws, "dan")[0]
    assert buttons(copy)[:2] == ["Approve", "Reject"]
    assert "Deploy api 1.4.2 to prod?" in message_text(copy)
    await h.wait(lambda: any("Escalated to <@U0DAN>" in t for t in thread(h, msg)))
    assert not dm(h.ws, "carol")

    await clock.advance(30 * MINUTE, h.bot)  # 1 h: the supervisors
    await h.wait(lambda: dm(h.ws, "carol"))
    for _ in range(3):  # waking again fires nothing twice
        await clock.advance(1, h.bot)
    await h.bot.runtime.scheduler.run_due()
    await h.idle()
    assert len(dm(h.ws, "dan")) == 1 and len(dm(h.ws, "carol")) == 1
    assert (await events(h.bot)).count("escalated") == 2
    assert (await events(h.bot)).count("reminded") == 3  # at 10 min, 20 min, then one at 1 h


async def test_a_decision_in_a_dm_updates_the_channel_and_every_dm(
    harness: Harness, clock: FakeClock
) -> None:
    h = harness
    msg = await escalating(h, clock)
    await clock.advance(60 * MINUTE, h.bot)
    await h.wait(lambda: dm(h.ws, "dan") and dm(h.ws, "carol"))
    await h.ws.click("carol", dm(h.ws, "carol")[0], "Approve")  # the supervisor decides
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.wait(lambda: not buttons(dm(h.ws, "dan")[0]) and not buttons(dm(h.ws, "carol")[0]))
    for shown in (h.approval_message(), dm(h.ws, "dan")[0], dm(h.ws, "carol")[0]):
        assert "*Approved* by <@U0CAROL>" in message_text(shown)
    assert thread(h, msg)  # progress went to the channel's thread
    await h.idle()
    assert (await events(h.bot)).count("resumed") == 1


async def test_a_decision_in_the_channel_updates_the_dms(
    harness: Harness, clock: FakeClock
) -> None:
    h = harness
    msg = await escalating(h, clock)
    await clock.advance(30 * MINUTE, h.bot)
    await h.wait(lambda: dm(h.ws, "dan"))
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "*Approved* by <@U0BOB>" in message_text(dm(h.ws, "dan")[0]))
    assert not buttons(dm(h.ws, "dan")[0])
    await clock.advance(60 * MINUTE, h.bot)  # later levels were cancelled by the decision
    await h.bot.runtime.scheduler.run_due()
    await h.idle()
    assert not dm(h.ws, "carol")


@pytest.mark.parametrize(("on_timeout", "shown"), [("reject", "Not deployed"), ("approve", "✅")])
async def test_the_final_timeout_resumes_the_graph(
    harness: Harness, clock: FakeClock, on_timeout: str, shown: str
) -> None:
    h = harness
    await escalating(h, clock, on_timeout=on_timeout)
    await clock.advance(2 * 60 * MINUTE, h.bot)
    await h.wait(lambda: shown in message_text(h.approval_message()))
    text = message_text(h.approval_message())
    assert "Timed out" in text and not buttons(h.approval_message())
    await h.idle()
    run = (await runs_with_status(h.bot.runtime.store, "done"))[0]
    assert run.outcome and run.outcome["status"] == (
        "timed_out" if on_timeout == "reject" else "succeeded"
    )
    assert (await events(h.bot)).count("timed_out") == 1


async def test_keep_waiting_says_so_and_stays_open(harness: Harness, clock: FakeClock) -> None:
    h = harness
    msg = await escalating(h, clock, on_timeout="keep_waiting")
    await clock.advance(2 * 60 * MINUTE, h.bot)
    await h.wait(lambda: any("still waiting, as the policy says" in t for t in thread(h, msg)))
    assert buttons(h.approval_message())


async def test_a_deadline_passed_while_down_fires_once_after_restart(
    harness: Harness, clock: FakeClock
) -> None:
    h = harness
    await escalating(h, clock)
    await h.idle()
    old = h.bots.pop()
    await old.stop()
    clock.now += 31 * MINUTE  # the bot is down when dan's level falls due
    await h.start_bot(clock=clock, policy=LADDER)
    await h.wait(lambda: dm(h.ws, "dan"))
    await h.bot.runtime.scheduler.run_due()
    await h.idle()
    assert len(dm(h.ws, "dan")) == 1
    assert (await events(h.bot)).count("escalated") == 1


async def test_two_processes_on_one_file_fire_each_step_once(
    harness: Harness, clock: FakeClock
) -> None:
    h = harness
    await escalating(h, clock)
    second = await h.start_bot(clock=clock, policy=LADDER)
    first = h.bots[-2]
    await clock.advance(61 * MINUTE, first, second)
    await h.wait(lambda: dm(h.ws, "dan") and dm(h.ws, "carol"))
    for bot in (first, second):
        await bot.runtime.scheduler.run_due()
    await h.idle()
    assert len(dm(h.ws, "dan")) == 1 and len(dm(h.ws, "carol")) == 1
    assert (await events(first)).count("escalated") == 2


async def test_a_quorum_counts_people_not_clicks(harness: Harness, clock: FakeClock) -> None:
    h = harness
    await escalating(h, clock, approvers=["U0BOB", "U0DAN"], min_approvals=2)
    msg = h.approval_message()
    assert msg and "Needs 2 of <@U0BOB>, <@U0DAN>" in message_text(msg)
    await h.ws.click("bob", msg, "Approve")
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "1 of 2 approvals: <@U0BOB>" in message_text(h.approval_message()))
    assert buttons(h.approval_message())
    await h.ws.click("dan", h.approval_message(), "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    assert (await events(h.bot)).count("decided") == 1


async def test_approvers_from_a_user_group(harness: Harness, clock: FakeClock) -> None:
    h = harness
    msg = await escalating(h, clock, approvers=["S0APPROVERS"])  # bob and dan
    assert "<!subteam^S0APPROVERS>" in message_text(msg)
    await h.ws.click("carol", msg, "Approve")
    note = await h.wait(lambda: h.ws.ephemerals("carol"))
    assert "Only <!subteam^S0APPROVERS> can decide" in note[-1]["text"]
    await h.ws.click("dan", msg, "Approve")
    await h.wait(lambda: "*Approved* by <@U0DAN>" in message_text(h.approval_message()))
    assert len(h.ws.calls_to("usergroups.users.list")) == 1  # cached


async def test_a_group_slack_cannot_resolve_fails_closed(
    harness: Harness, clock: FakeClock
) -> None:
    h = harness
    msg = await escalating(h, clock, approvers=["S0NOSUCH"])
    await h.ws.click("bob", msg, "Approve")
    note = await h.wait(lambda: h.ws.ephemerals("bob"))
    assert "couldn't check who is in the user group" in note[-1]["text"]
    assert buttons(h.approval_message())


async def test_a_freeze_refuses_a_request(harness: Harness, clock: FakeClock) -> None:
    h = harness
    old = h.bots.pop()
    await old.stop()
    freeze = [{"dates": ["2027-01-15"], "action": "refuse"}]  # the fake clock's day
    await h.start_bot(clock=clock, policy=with_rules(freeze=freeze))
    await h.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    note = await h.wait(lambda: h.ws.ephemerals("alice"))
    assert "Change freeze" in note[-1]["text"]
    await h.idle()
    assert not h.approval_message()


async def test_during_a_freeze_only_freeze_approvers_decide(
    harness: Harness, clock: FakeClock
) -> None:
    h = harness
    freeze = [{"dates": ["2027-01-15"]}]
    msg = await escalating(h, clock, freeze=freeze, freeze_approvers=["U0CAROL"])
    assert "Needs approval from <@U0CAROL>" in message_text(msg)
    await h.ws.click("bob", msg, "Approve")
    note = await h.wait(lambda: h.ws.ephemerals("bob"))
    assert "Only <@U0CAROL> can decide" in note[-1]["text"]
    await h.ws.click("carol", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))


async def test_the_requester_withdraws(harness: Harness, clock: FakeClock) -> None:
    h = harness
    msg = await escalating(h, clock)
    await h.ws.click("bob", msg, "Withdraw")
    note = await h.wait(lambda: h.ws.ephemerals("bob"))
    assert "who asked, or an admin can withdraw" in note[-1]["text"]
    await h.ws.click("alice", msg, "Withdraw")
    await h.wait(lambda: "Withdrawn* by <@U0ALICE>" in message_text(h.approval_message()))
    await h.wait(lambda: "↩️" in message_text(h.approval_message()))
    await h.idle()
    (run,) = await runs_with_status(h.bot.runtime.store, "done")
    assert run.outcome and run.outcome["status"] == "cancelled"


async def home_buttons(h: Harness, user: str) -> list[str]:
    """``user`` opens the App Home: the buttons it offers them, once it is drawn."""
    before = (h.ws.home(user) or {}).get("hash")
    await h.ws.open_home(user)
    view = await h.wait(lambda: (v := h.ws.home(user)) and v["hash"] != before and v)
    return [
        e["text"]["text"] for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]


async def test_the_app_home_offers_each_person_only_what_they_may_do(
    harness: Harness, clock: FakeClock
) -> None:
    """The channel message is everyone's, so it has every button; the Home is drawn per
    viewer: Withdraw only for the requester or an admin, deciding and "Escalate now" only for
    whoever may decide (bob; dan and carol once it is escalated to them)."""
    h = harness
    msg = await escalating(h, clock)
    decide = ["Approve", "Reject", "Reject with reason…", "Escalate now"]
    assert buttons(msg) == [*decide, "Withdraw"]
    assert await home_buttons(h, "bob") == decide  # alice's request: not his to withdraw
    assert await home_buttons(h, "dan") == []  # not his to decide yet
    await clock.advance(30 * MINUTE, h.bot)
    await h.wait(lambda: dm(h.ws, "dan"))
    assert await home_buttons(h, "dan") == decide  # escalated to him: he decides now
    await clock.advance(30 * MINUTE, h.bot)
    await h.wait(lambda: dm(h.ws, "carol"))
    assert await home_buttons(h, "carol") == [*decide, "Withdraw"]  # the admin
    await h.ws.click("carol", h.ws.home("carol")["id"], "Withdraw")
    await h.wait(lambda: "Withdrawn* by <@U0CAROL>" in message_text(h.approval_message()))


async def test_escalate_now(harness: Harness, clock: FakeClock) -> None:
    h = harness
    msg = await escalating(h, clock)
    await h.ws.click("alice", msg, "Escalate now")  # not an approver
    note = await h.wait(lambda: h.ws.ephemerals("alice"))
    assert "can escalate" in note[-1]["text"]
    await h.ws.click("bob", msg, "Escalate now")
    await h.wait(lambda: dm(h.ws, "dan"))
    assert not dm(h.ws, "carol")


async def test_approvals_command(harness: Harness, clock: FakeClock) -> None:
    h = harness
    await escalating(h, clock)
    listed = await h.ws.slash("bob", "/approvals", "list")
    text = listed.json["text"]
    assert "Deploy api 1.4.2 to prod?" in text and "/archives/C0DEPLOYS/p" in text
    assert "Nothing is waiting" in (await h.ws.slash("carol", "/approvals", "list")).json["text"]
    mine = (await h.ws.slash("alice", "/approvals", "mine")).json["text"]
    run_id = mine.split("run `")[1].split("`")[0]
    shown = (await h.ws.slash("alice", "/approvals", f"show {run_id}")).json["text"]
    assert "run_started" in shown and "requested" in shown
    assert "`/approvals list`" in (await h.ws.slash("alice", "/approvals", "help")).json["text"]
    assert "don't know `frob`" in (await h.ws.slash("alice", "/approvals", "frob")).json["text"]
    refused = await h.ws.slash("bob", "/approvals", f"cancel {run_id}")
    assert refused.json["text"] == "Withdrawing…"
    await h.wait(lambda: any("can cancel this run" in e["text"] for e in h.ws.ephemerals("bob")))
    await h.ws.slash("carol", "/approvals", f"cancel {run_id}")  # an admin
    await h.wait(lambda: "Withdrawn* by <@U0CAROL>" in message_text(h.approval_message()))
