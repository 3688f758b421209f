"""The store's claim on a real SQLite file: one claim per approval, whatever the concurrency,
and votes counted per person when several approvals are needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from bot.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with aiosqlite.connect(tmp_path / "s.db") as conn:
        s = Store(conn, asyncio.Lock())
        await s.setup()
        await s.create_run("r1", "/deploy", {"service": "api"}, "U0ALICE", "C0DEPLOYS", 1.0)
        await s.add_approval("i1", "r1", {"kind": "x"}, 2.0, "U0ALICE")
        yield s


async def test_exactly_one_of_many_concurrent_votes_claims(store: Store) -> None:
    results = await asyncio.gather(
        *(store.vote("i1", f"U{n}", "approve", True, None, 1, 3.0) for n in range(50))
    )
    assert sum(r.claimed for r in results) == 1
    winner = next(r for r in results if r.claimed)
    approval = await store.get_approval("i1")
    assert approval is not None and approval.status == "decided"
    assert approval.decided_by == winner.approval.decided_by
    events = [e["event"] for e in await store.audit_events("i1")]
    assert events.count("decided") == 1 and events.count("requested") == 1


async def test_two_approvals_needed_counts_people_not_clicks(store: Store) -> None:
    first = await store.vote("i1", "U0BOB", "approve", True, None, 2, 3.0)
    again = await store.vote("i1", "U0BOB", "approve", True, None, 2, 3.1)
    assert not first.claimed and not again.claimed and again.approvals == 1
    second = await store.vote("i1", "U0DAN", "approve", True, "lgtm", 2, 3.2)
    assert second.claimed and second.approval.decided_by == "U0DAN"


async def test_one_reject_decides_and_late_votes_change_nothing(store: Store) -> None:
    assert (await store.vote("i1", "U0BOB", "reject", False, "no", 2, 3.0)).claimed
    late = await store.vote("i1", "U0DAN", "approve", True, None, 1, 4.0)
    assert not late.claimed and late.approval.choice == "reject"


async def test_adding_the_same_interrupt_twice_keeps_one_row(store: Store) -> None:
    again, created = await store.add_approval("i1", "r1", {"kind": "x"}, 9.0, "U0ALICE")
    assert not created and again.created_at == 2.0
    assert [e["event"] for e in await store.audit_events("i1")] == ["requested"]
