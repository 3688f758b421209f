"""Standing grants through the full loop, over signed HTTP against the local workspace, on
SQLite and PostgreSQL (the transactions a grant takes part in, and their races): an
approver's "Approve & allow…" decides the rest of the example agent's run (compact line,
audit naming the grant and its maker, no deadlines, metrics); revoked once however many
clicks; an asker who then votes the other way makes no grant; a grant racing a click, and a
revoke racing a grant's use, each end one way only. What the policy and the people around
a grant decide: test_grant_policy.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import BACKENDS, Harness
from tests.reads import audit_events, runs_with_status
from tests.scenario.test_approval_loop import DEPLOYS, buttons, message_text

ALLOW = "Approve & allow…"
AGENT_RULE = {
    "approvers": ["U0BOB", "U0DAN"],
    "grants": {"scopes": ["run", "requester"], "max": "4h", "tools": ["send_email"]},
}


def policy(**agent: Any) -> dict[str, Any]:
    return {
        "graphs": ["graphs.agent:specs"],
        "admins": ["U0CAROL"],
        "policy": {"agent": {**AGENT_RULE, **agent}},
    }


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def restart(h: Harness, clock: Any = None, **options: Any) -> None:
    await h.bots.pop().stop()
    await h.start_bot(**({"clock": clock} if clock else {}), policy=policy(**options))


def asks(h: Harness) -> list[dict[str, Any]]:
    """Approval messages that asked people (a header; buttons until decided)."""
    return [
        m for m in h.ws.messages(DEPLOYS) if m.get("blocks") and m["blocks"][0]["type"] == "header"
    ]


def compact(h: Harness) -> list[str]:
    """The compact lines of requests a standing grant decided."""
    return [
        m["blocks"][0]["text"]["text"]
        for m in h.ws.messages(DEPLOYS)
        if m.get("blocks") and "approved under" in json.dumps(m["blocks"])
    ]


async def agent(h: Harness, text: str, user: str = "alice") -> None:
    d = await h.ws.slash(user, "/approvals", f"run agent {text}", channel=DEPLOYS)
    assert d.status == 200 and not (d.json or {}).get("text"), d.json


async def allow(
    h: Harness, msg: dict[str, Any], user: str = "bob", scope: str = "run", exact: bool = False
) -> None:
    """Click "Approve & allow…" and submit its modal with ``scope`` for an hour."""
    await h.ws.click(user, msg, ALLOW)
    view = await h.wait(lambda: next(iter(h.ws.open_views(user)), None))
    values: dict[str, Any] = {"grant_scope": scope, "grant_for": "3600"}
    if exact:
        values["grant_exact"] = ["exact"]
    d = await h.ws.submit_modal(user, view, values)
    assert d.status == 200


async def done(h: Harness, n: int = 1) -> list[Any]:
    await h.wait(lambda: len(h.query("SELECT 1 FROM bot_runs WHERE status='done'")) >= n)
    await h.idle()
    return await runs_with_status(h.bot.runtime.store, "done")


async def test_a_run_grant_decides_the_rest_of_that_run(harness: Harness) -> None:
    h = harness
    await restart(h)
    await agent(h, "tell a@example.com, b@example.com and c@example.com we ship")
    msg = await h.wait(lambda: next(iter(asks(h)), None))
    assert ALLOW in buttons(msg) and "a@example.com" in message_text(msg)
    await allow(h, msg, scope="run")
    (run,) = await done(h)
    assert run.outcome and "Sent to c@example.com" in run.outcome["text"]
    lines = compact(h)
    assert len(lines) == 2 and all("send_email" in x and "<@U0BOB>'s grant" in x for x in lines)
    assert len(asks(h)) == 1  # only the first call asked anyone
    events = await audit_events(h.bot.runtime.store)
    made = [e for e in events if e["event"] == "grant_made"]
    assert len(made) == 1 and made[0]["user_id"] == "U0BOB"
    by_grant = [e for e in events if e["event"] == "decided" and "grant" in (e["detail"] or "")]
    assert len(by_grant) == 2
    assert all(
        e["user_id"] == "U0BOB" and json.loads(e["detail"])["granted_by"] == ["U0BOB"]
        for e in by_grant
    )
    # No reminder, escalation or timeout is ever due for a request a grant decided.
    granted_ids = [e["interrupt_id"] for e in by_grant]
    for iid in granted_ids:
        assert not h.query("SELECT 1 FROM bot_deadlines WHERE interrupt_id=?", (iid,))
    async with aiohttp.ClientSession() as http:
        metrics_url = h.bot.url.replace("/slack/events", "/metrics")
        async with http.get(metrics_url) as r:
            scraped = await r.text()
    assert 'approvals_decision_seconds_count{outcome="granted"} 2.0' in scraped
    d = await h.ws.slash("bob", "/approvals", f"show {run.run_id}", channel=DEPLOYS)
    assert str(d.json).count("decided <@U0BOB> (standing grant)") == 2, d.json
    # Another run by the same requester is not in the grant's scope: it asks.
    await agent(h, "tell d@example.com we ship")
    await h.wait(lambda: len(asks(h)) == 2)
    assert len(compact(h)) == 2


async def test_revoke_stops_a_grant_once(harness: Harness) -> None:
    h = harness
    await restart(h)
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    d = await h.ws.slash("dan", "/approvals", "grants", channel=DEPLOYS)
    assert "1 standing grants" in str(d.json) and "Revoke" not in json.dumps(d.json)  # dan: not his
    await h.ws.slash("bob", "/approvals", "grants", channel=DEPLOYS)
    listing = await h.wait(
        lambda: next((m for m in h.ws.ephemerals("bob", DEPLOYS) if m.get("blocks")), None)
    )
    clicks = await asyncio.gather(
        h.ws.click("bob", listing, "Revoke"), h.ws.click("bob", listing, "Revoke")
    )
    assert all(c.status == 200 for c in clicks)
    said = await h.wait(
        lambda: (
            (t := [m.get("text", "") for m in h.ws.ephemerals("bob", DEPLOYS)])
            and len(t) >= 3
            and t
        )
    )
    assert sum("Revoked:" in t for t in said) == 1
    assert sum("revoked already" in t for t in said) == 1
    events = [e["event"] for e in await audit_events(h.bot.runtime.store)]
    assert events.count("grant_revoked") == 1
    await agent(h, "tell b@example.com we ship")
    await h.wait(lambda: len(asks(h)) == 2)  # revoked: asks again
    assert not compact(h)


async def test_a_grant_racing_a_click_ends_one_way(harness: Harness) -> None:
    h = harness
    await restart(h)
    for i in range(3):
        await agent(h, f"tell a{i}@example.com we ship")
        msg = await h.wait(
            lambda n=i: next((m for m in asks(h) if f"a{n}@example.com" in message_text(m)), None)
        )
        iid = msg["blocks"][-1]["elements"][0]["value"]
        await h.ws.click("bob", msg, ALLOW)
        view = await h.wait(lambda: next(iter(h.ws.open_views("bob")), None))
        values = {"grant_scope": "run", "grant_for": "3600"}
        await asyncio.gather(
            h.ws.submit_modal("bob", view, values), h.ws.click("dan", msg, "Reject")
        )
        await h.idle()
        (approved,) = h.query("SELECT approved FROM bot_approvals WHERE interrupt_id=?", (iid,))
        grants = h.query("SELECT status FROM bot_grants WHERE source=?", (iid,))
        # Bob's grant exists only if his approval won; if the reject came first, his ask
        # found the request closed (no row) or lapsed with the claim.
        expected = [[("active",)]] if approved[0] else [[], [("lapsed",)]]
        assert grants in expected, (i, approved, grants)


async def test_a_revoke_racing_a_use_is_ordered(harness: Harness) -> None:
    h = harness
    await restart(h)
    await agent(h, "tell a@example.com we ship")
    await allow(h, await h.wait(lambda: next(iter(asks(h)), None)), scope="requester")
    await done(h)
    (grant_id,) = [r[0] for r in h.query("SELECT grant_id FROM bot_grants")]
    engine = h.bot.runtime.engine
    await asyncio.gather(
        agent(h, "tell b@example.com we ship"), engine.revoke_grant(grant_id, "U0BOB", None)
    )
    await h.wait(lambda: len(h.query("SELECT 1 FROM bot_approvals")) == 2)
    await h.idle()
    (uses, revoked_at) = h.query("SELECT uses, revoked_at FROM bot_grants")[0]
    (decided_at,) = (
        h.query("SELECT decided_at FROM bot_approvals WHERE meta LIKE '%grant%'")[0]
        if uses
        else (None,)
    )
    # Either it decided the request before the revoke, or the request asks a person.
    if uses == 0:
        await h.wait(lambda: len(asks(h)) == 2)
    assert (uses == 1 and decided_at <= revoked_at) or uses == 0


async def test_an_asker_who_then_votes_reject_makes_no_grant(harness: Harness) -> None:
    h = harness
    await restart(h, min_approvals=2, reject_ends=False, approvers=["U0BOB", "U0DAN", "U0CAROL"])
    await agent(h, "tell a@example.com and b@example.com we ship")
    msg = await h.wait(lambda: next(iter(asks(h)), None))
    await allow(h, msg, user="bob")  # asks for a run grant with his approve vote
    await h.idle()
    await h.ws.click("bob", msg, "Reject")  # ... then votes the other way
    await h.idle()
    await allow(h, msg, user="dan")
    await h.idle()
    await h.ws.click("carol", msg, "Approve")  # dan and carol decide it
    await h.wait(lambda: len(asks(h)) == 2)  # the next call asks people: no grant was made
    assert h.query("SELECT status FROM bot_grants") == [("lapsed",)]


def ws_all(h: Harness, user: str) -> list[dict[str, Any]]:
    return h.ws.ephemerals(user, DEPLOYS)


GRANTED_DEPLOYS = {"scopes": ["requester"], "max": "4h"}
