"""Approve against reject, at the same moment: exactly one decision, and the one who lost the
race is told who won ("Already approved by <@U0BOB> …" / "Already rejected by <@U0DAN> …"),
never `not_found` or a Python exception's name."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Harness
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    FAST,
    GatedBackend,
    done,
    message,
    plain_words,
    query,
    rejected,
    settle,
    text_of,
)

ROUNDS = 4  # approvals raced per test, on one bot


async def new_approval(h: Harness, seen: set[str]) -> tuple[str, dict[str, Any]]:
    """alice asks for a prod deploy; returns (interrupt id, its posted message)."""
    await h.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)

    def fresh() -> tuple[str, str] | None:
        rows = query(h.db, "SELECT interrupt_id, ts FROM bot_approvals WHERE ts IS NOT NULL")
        return next(((i, t) for i, t in rows if i not in seen), None)

    iid, ts = await h.wait(fresh, timeout=DEADLINE)
    seen.add(iid)
    return iid, await h.wait(lambda: message(h.ws, ts), timeout=DEADLINE)


def decisions(h: Harness, iid: str) -> list[tuple[str, str]]:
    return query(
        h.db,
        "SELECT event, user_id FROM bot_audit WHERE interrupt_id=? AND event IN "
        "('decided', 'resumed') ORDER BY id",
        (iid,),
    )


async def finish_and_check(h: Harness, iid: str, ts: str, told_before: dict[str, int]) -> None:
    """One decision; the final message agrees with it; the loser was told who won."""
    await h.wait(lambda: done(h.ws, ts) or rejected(h.ws, ts), timeout=DEADLINE)
    await settle(h)
    rows = decisions(h, iid)
    assert [e for e, _ in rows] == ["decided", "resumed"], rows
    winner = rows[0][1]
    loser = {"U0BOB": "dan", "U0DAN": "bob"}[winner]
    if winner == "U0BOB":
        assert done(h.ws, ts), text_of(message(h.ws, ts))
        expected = "Already approved by <@U0BOB>"
    else:
        assert rejected(h.ws, ts), text_of(message(h.ws, ts))
        expected = "Already rejected by <@U0DAN>"
    new = {u: h.ws.ephemerals(u)[told_before[u] :] for u in ("bob", "dan")}
    assert new[h.ws.user(winner).name] == [], new
    assert [e["text"][: len(expected)] for e in new[loser]] == [expected], new
    for e in new[loser]:
        plain_words(e["text"])


@pytest.mark.parametrize("how", ["buttons", "modal_submit", "modal_open"])
async def test_approve_against_reject(fh: Harness, how: str) -> None:
    """`buttons`: bob's Approve and dan's Reject at once. `modal_submit`: dan's "Reject with
    reason…" form is open; he submits it as bob clicks Approve. `modal_open`: dan clicks
    "Reject with reason…" as bob clicks Approve (and submits the form if it opened)."""
    h, ws = fh, fh.ws
    await h.start_bot(**FAST, backend=GatedBackend())
    seen: set[str] = set()
    for _ in range(ROUNDS):
        iid, msg = await new_approval(h, seen)
        told = {u: len(ws.ephemerals(u)) for u in ("bob", "dan")}
        if how == "buttons":
            results = await asyncio.gather(
                ws.click("bob", msg, "Approve"), ws.click("dan", msg, "Reject")
            )
        elif how == "modal_submit":
            await ws.click("dan", msg, "Reject with reason…")
            view = await h.wait(lambda: next(iter(ws.open_views("dan")), None), timeout=DEADLINE)
            results = await asyncio.gather(
                ws.click("bob", msg, "Approve"),
                ws.submit_modal("dan", view, {"reason": "not on a Friday"}),
            )
        else:
            results = await asyncio.gather(
                ws.click("bob", msg, "Approve"), ws.click("dan", msg, "Reject with reason…")
            )
            shown = msg["ts"]
            await h.wait(lambda ts=shown: "Approved* by <@U0BOB>" in text_of(message(ws, ts)))
            view = next(iter(ws.open_views("dan")), None)
            if view is not None:  # the form opened before bob's click was stored
                late = await ws.submit_modal("dan", view, {"reason": "too late"})
                assert late.status == 200 and not late.errors
        assert all(r.status == 200 for r in results), [r.status for r in results]
        await finish_and_check(h, iid, msg["ts"], told)
        assert not ws.open_views("dan")
