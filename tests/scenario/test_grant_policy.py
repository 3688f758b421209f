"""Standing grants, what the policy and the people around a grant decide, over signed HTTP
(one test over Socket Mode) against the local workspace, on SQLite (the transactions a grant
takes part in, and their races, run on both databases in test_grants.py): a requester grant
expiring (injected clock) and deciding nobody else's requests; who may revoke; where the
policy allows grants; a quorum rule; exact arguments; the App Home; a grant decides only under
the rule it was made under, and only the rule's own approvers make one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from bot.localslack import LocalSlack
from bot.runtime import BotRuntime, serve
from tests.conftest import FakeClock, Harness, settings_for
from tests.scenario.test_approval_loop import DEPLOYS, buttons, message_text
from tests.scenario.test_grants import (
    ALLOW,
    GRANTED_DEPLOYS,
    agent,
    allow,
    asks,
    compact,
    done,
    policy,
    restart,
    ws_all,
)


async def test_a_requester_grant_expires(harness: Harness) -> None:
    h = harness
    clock = FakeClock()
    await restart(h, clock)
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    await agent(h, "tell b@example.com we ship")
    await done(h, 2)
    assert len(asks(h)) == 1 and len(compact(h)) == 1  # decided by the grant
    await clock.advance(3601, h.bot)
    await agent(h, "tell c@example.com we ship")
    await h.wait(lambda: len(asks(h)) == 2)  # expired: a person is asked again
    assert len(compact(h)) == 1
    # Nor does it decide another person's request.
    await agent(h, "tell d@example.com we ship", user="carol")
    await h.wait(lambda: len(asks(h)) == 3)


async def test_only_its_makers_or_an_admin_revoke(harness: Harness) -> None:
    h = harness
    await restart(h)
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    (grant_id,) = [r[0] for r in h.query("SELECT grant_id FROM bot_grants WHERE status='active'")]
    engine = h.bot.runtime.engine
    assert "Only who made this grant" in await engine.revoke_grant(grant_id, "U0DAN", None)
    assert h.query("SELECT status FROM bot_grants") == [("active",)]
    assert "Revoked" in await engine.revoke_grant(grant_id, "U0CAROL", None)  # an admin
    assert h.query("SELECT status, revoked_by FROM bot_grants") == [("revoked", "U0CAROL")]


async def test_the_policy_decides_where_grants_are_allowed(harness: Harness) -> None:
    h = harness
    await restart(h, grants={"scopes": ["run"], "max": "1h", "tools": ["search_docs"]})
    await agent(h, "tell a@example.com we ship")
    msg = await h.wait(lambda: next(iter(asks(h)), None))
    assert ALLOW not in buttons(msg)  # send_email is not a tool the rule lets be granted
    await restart(h, grants={"scopes": ["run"], "max": "1h"})
    await agent(h, "tell b@example.com we ship")
    msg = await h.wait(lambda: next((m for m in asks(h) if ALLOW in buttons(m)), None))
    # A scope the rule does not allow (a forged submission) approves nothing.
    await h.ws.click("bob", msg, ALLOW)
    view = await h.wait(lambda: next(iter(h.ws.open_views("bob")), None))
    offered = [
        o["value"]
        for b in view["blocks"]
        if b.get("block_id") == "grant_scope"
        for o in b["element"]["options"]
    ]
    assert offered == ["run"]
    durations = [
        o["value"]
        for b in view["blocks"]
        if b.get("block_id") == "grant_for"
        for o in b["element"]["options"]
    ]
    assert durations == ["900", "3600"]  # up to the rule's max
    await h.bot.runtime.engine.approve_and_allow(
        msg["blocks"][-1]["elements"][0]["value"], "U0BOB", "channel", 3600, False, None
    )
    assert not h.query("SELECT 1 FROM bot_grants")
    iid = msg["blocks"][-1]["elements"][0]["value"]
    assert h.query("SELECT status FROM bot_approvals WHERE interrupt_id=?", (iid,)) == [
        ("pending",)
    ]
    # The requester may not grant themselves their own requests either (four eyes).
    await h.ws.click("alice", msg, ALLOW)
    await h.wait(
        lambda: any(
            "second pair of eyes" in m.get("text", "") for m in h.ws.ephemerals("alice", DEPLOYS)
        )
    )
    assert not h.ws.open_views("alice")


async def test_a_quorum_rule_needs_the_grant_from_that_many(harness: Harness) -> None:
    h = harness
    await restart(h, min_approvals=2)
    await agent(h, "tell a@example.com, b@example.com and c@example.com we ship")
    msg = await h.wait(lambda: next(iter(asks(h)), None))
    await allow(h, msg, user="bob")
    await h.wait(
        lambda: any(
            "made once 2 approvers" in m.get("text", "") for m in h.ws.ephemerals("bob", DEPLOYS)
        )
    )
    await allow(h, msg, user="dan")
    await done(h)
    lines = compact(h)
    assert len(lines) == 2 and all("<@U0BOB> and <@U0DAN>'s joint grant" in x for x in lines)
    # One approver's grant does not decide a request that needs two.
    await agent(h, "tell d@example.com and e@example.com we ship")
    msg = await h.wait(lambda: next((m for m in asks(h)[1:]), None))
    await allow(h, msg, user="bob")
    await h.ws.click("dan", msg, "Approve")  # approves, but asks for no grant
    await h.wait(lambda: len(asks(h)) == 3)  # the next call asks people
    assert len(compact(h)) == 2
    statuses = sorted(r[0] for r in h.query("SELECT status FROM bot_grants"))
    assert statuses == ["active", "lapsed"]


async def test_a_grant_for_exact_arguments_approves_nothing_else(harness: Harness) -> None:
    h = harness
    await restart(h)
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), "bob", "requester", True)
    await done(h)
    await agent(h, "tell a@example.com we ship")  # the same call again: decided
    await done(h, 2)
    assert len(compact(h)) == 1 and len(asks(h)) == 1
    await agent(h, "tell a@example.com we ship today")  # another body: asks
    await h.wait(lambda: len(asks(h)) == 2)
    assert len(compact(h)) == 1


async def test_the_app_home_shows_a_viewers_grants_with_revoke(harness: Harness) -> None:
    h = harness
    await restart(h)
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    for user in ("bob", "alice", "dan", "carol"):
        assert (await h.ws.open_home(user)).status == 200
    bob = await h.wait(lambda: (v := h.ws.home("bob")) and "Standing grants" in json.dumps(v) and v)
    assert "Revoke" in json.dumps(bob)  # he made it
    alice = await h.wait(lambda: (v := h.ws.home("alice")) and "Standing grants" in json.dumps(v))
    assert alice and "Revoke" not in json.dumps(h.ws.home("alice"))  # it decides her requests
    carol = await h.wait(lambda: (v := h.ws.home("carol")) and "Standing grants" in json.dumps(v))
    assert carol and "Revoke" in json.dumps(h.ws.home("carol"))  # an admin
    await h.wait(lambda: h.ws.home("dan"))
    assert "Standing grants" not in json.dumps(h.ws.home("dan"))  # nothing of his
    await h.ws.click("bob", h.ws.home("bob"), "Revoke")  # from the Home: drawn again
    await h.wait(lambda: "Standing grants" not in json.dumps(h.ws.home("bob")))
    assert h.query("SELECT status FROM bot_grants") == [("revoked",)]


async def test_a_grant_over_socket_mode(ws: LocalSlack, tmp_path: Path) -> None:
    ws.request_url = None  # nothing over HTTP: the workspace must use the socket
    settings = settings_for(ws, tmp_path / "a.db", policy=policy())
    settings = dataclasses.replace(settings, app_token=ws.app_token)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(await BotRuntime.open(settings), stop))
    h = Harness(ws, tmp_path / "a.db")
    try:
        await ws.wait_for(lambda: ws.socket.connected, timeout=10)
        await agent(h, "tell a@example.com and b@example.com we ship")
        msg = await h.wait(lambda: next(iter(asks(h)), None))
        await h.ws.click("bob", msg, ALLOW)
        view = await h.wait(lambda: next(iter(h.ws.open_views("bob")), None))
        d = await ws.submit_modal("bob", view, {"grant_scope": "run", "grant_for": "3600"})
        assert d.via == "socket" and d.status == 200
        await h.wait(lambda: len(compact(h)) == 1)
        await h.wait(lambda: "Sent to b@example.com" in message_text(asks(h)[0]))
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)


async def test_a_grant_decides_only_under_the_rule_it_was_made_under(harness: Harness) -> None:
    h = harness
    rules = {"staging": {"grants": GRANTED_DEPLOYS}, "prod": {"grants": GRANTED_DEPLOYS}}
    await h.bots.pop().stop()
    await h.start_bot(policy={"policy": {"deploy": {"approvers": ["U0BOB"], **rules}}})
    assert (
        await h.ws.slash("alice", "/deploy", "api 1.4.2 staging", channel=DEPLOYS)
    ).status == 200
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    assert (
        await h.ws.slash("alice", "/deploy", "api 1.4.3 staging", channel=DEPLOYS)
    ).status == 200
    await done(h, 2)
    await h.wait(lambda: len(compact(h)) == 1)  # staging, under the staging grant
    assert (await h.ws.slash("alice", "/deploy", "api 1.4.3 prod", channel=DEPLOYS)).status == 200
    await h.wait(lambda: len(asks(h)) == 2)  # prod asks bob: the grant was made for staging
    assert len(compact(h)) == 1


async def test_an_escalation_decider_approves_but_makes_no_grant(harness: Harness) -> None:
    h = harness
    clock = FakeClock()
    escalation = [{"after": "30m", "notify": ["U0DAN"]}]
    prod = {"approvers": ["U0BOB"], "grants": GRANTED_DEPLOYS, "escalation": escalation}
    await h.bots.pop().stop()
    await h.start_bot(clock=clock, policy={"policy": {"deploy": {"prod": prod}}})
    assert (await h.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)).status == 200
    msg = await h.wait(lambda: next(iter(asks(h)), None))
    await h.wait(lambda: h.query("SELECT COUNT(*) FROM bot_approvals WHERE ts IS NULL") == [(0,)])
    await clock.advance(31 * 60, h.bot)
    await h.wait(lambda: "Escalated" in json.dumps(h.ws.replies(DEPLOYS, msg["ts"])))
    await h.ws.click("dan", msg, ALLOW)
    view = await h.wait(lambda: next(iter(h.ws.open_views("dan")), None))
    await h.ws.submit_modal("dan", view, {"grant_scope": "requester", "grant_for": "3600"})
    await h.wait(
        lambda: any(
            "Standing grants here are made by" in m.get("text", "") for m in ws_all(h, "dan")
        )
    )
    assert not h.query("SELECT 1 FROM bot_grants")
    assert h.query("SELECT status FROM bot_approvals") == [("pending",)]  # nothing decided
    await h.ws.click("dan", msg, "Approve")  # his plain approve counts
    await done(h)


async def test_a_grant_by_a_user_group_approver_decides_after_the_groups_cache_ends(
    harness: Harness,
) -> None:
    h = harness
    clock = FakeClock()
    await restart(h, clock, approvers=["S0APPROVERS"])  # bob and dan, as a user group
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    await clock.advance(20 * 60, h.bot)  # past the group cache, within the grant
    calls = len(h.ws.calls_to("usergroups.users.list"))
    await agent(h, "tell b@example.com we ship")
    await done(h, 2)
    assert len(compact(h)) == 1 and len(asks(h)) == 1  # decided by the grant
    assert len(h.ws.calls_to("usergroups.users.list")) > calls  # members looked up again


async def test_when_slack_cannot_say_who_is_in_the_group_people_are_asked(
    harness: Harness,
) -> None:
    h = harness
    clock = FakeClock()
    await restart(h, clock, approvers=["S0APPROVERS"])
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    await clock.advance(20 * 60, h.bot)  # the group's members must be looked up again
    h.ws.fail_next("usergroups.users.list", status=500, times=1000)
    await agent(h, "tell b@example.com we ship")
    await h.wait(lambda: len(asks(h)) == 2)  # not decided blind, not stuck: people are asked
    assert not compact(h)
