"""The store on a real SQLite file and on PostgreSQL: one claim per approval whatever the
concurrency, votes counted per person, interrupts stored once, and outbox rows written with
the change that causes them (coalesced by key, a replaced row moving to the back of the
queue)."""

from __future__ import annotations

import asyncio
import random
import sqlite3 as sq
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiosqlite
import pytest

from bot.db.base import RunLease
from bot.db.liveness import AdvisoryLocks
from bot.db.migrations import MIGRATIONS
from bot.db.outbox import _SENT_AND_NEXT, _TAKE_NEXT
from bot.db.postgres import Database
from bot.db.sqlite import OneHop, Writer
from bot.db.store import Store
from bot.model import Approval, Ballot, Firing, Item, Opening, Released, Run, Sent, VoteResult
from tests.conftest import BACKENDS
from tests.reads import audit_events


def ballot(user: str, choice: str = "approve", required: int = 1, comment: str | None = None):
    def judge(_a: Approval, _r: Run) -> Ballot:
        return Ballot(
            user=user,
            choice=choice,
            approves=choice == "approve",
            comment=comment,
            required=required,
        )

    return judge


def nothing(_: VoteResult) -> list[Item]:
    return []


async def vote(store: Store, user: str, choice: str = "approve", required: int = 1, at=3.0):
    return await store.decide("i1", at, ballot(user, choice, required), nothing, list)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@asynccontextmanager
async def opened(tmp_path: Path, url: str | None, lease: RunLease | None = None):
    """A migrated store on the SQLite file in ``tmp_path``, or on PostgreSQL at ``url``."""
    if url is None:
        async with aiosqlite.connect(tmp_path / "s.db") as conn:
            await conn.execute("PRAGMA busy_timeout=30000")
            s = Store(OneHop(conn), Writer(conn, asyncio.Lock()), lease=lease)
            await s.setup()
            yield s
        return
    db = Database(url)
    await db.open()
    try:
        s = Store(db.read, db.write, postgres=True, lease=lease)
        await s.setup()
        yield s
    finally:
        await db.close()


@pytest.fixture
async def store(tmp_path: Path, database_url: str | None) -> AsyncIterator[Store]:
    async with opened(tmp_path, database_url) as s:
        run = await s.create_run("r1", "/deploy", {"service": "api"}, "U0ALICE", "C0DEPLOYS", 1.0)
        await s.pause(run, [("i1", {"kind": "x"}, None)], 2.0, lambda a: Opening(items=[]))
        yield s


async def test_exactly_one_of_many_concurrent_votes_claims(store: Store) -> None:
    results = await asyncio.gather(*(vote(store, f"U{n}") for n in range(50)))
    claimed = [r for r in results if r is not None and r.claimed]
    assert len(claimed) == 1
    approval = await store.get_approval("i1")
    assert approval is not None and approval.status == "decided"
    assert approval.decided_by == claimed[0].approval.decided_by
    events = [e["event"] for e in await audit_events(store, "i1")]
    assert events.count("decided") == 1 and events.count("requested") == 1


async def test_two_approvals_needed_counts_people_not_clicks(store: Store) -> None:
    first = await vote(store, "U0BOB", required=2)
    again = await vote(store, "U0BOB", required=2, at=3.1)
    assert first and again and not first.claimed and not again.claimed
    assert again.approvals == 1
    second = await vote(store, "U0DAN", required=2, at=3.2)
    assert second and second.claimed and second.approval.decided_by == "U0DAN"
    assert second.voters == ("U0BOB", "U0DAN")


async def test_one_reject_decides_and_late_votes_change_nothing(store: Store) -> None:
    first = await vote(store, "U0BOB", "reject", required=1)  # a reject that ends it
    assert first and first.claimed
    late = await vote(store, "U0DAN", at=4.0)  # not pending: no vote, render only
    assert isinstance(late, VoteResult) and not late.claimed and late.approvals == 0
    assert late.approval.status == "decided" and late.approval.decided_by == "U0BOB"
    approval = await store.get_approval("i1")
    assert approval and approval.choice == "reject"


async def test_adding_the_same_interrupt_twice_keeps_one_row(store: Store) -> None:
    run = await store.get_run("r1")
    assert run is not None
    again = await store.pause(run, [("i1", {"kind": "x"}, None)], 9.0, lambda a: Opening(items=[]))
    assert again == []
    assert [e["event"] for e in await audit_events(store, "i1")] == ["requested"]


async def test_a_replaced_update_coalesces_and_moves_behind_later_rows(store: Store) -> None:
    update = Item(kind="update", payload={"text": "v1"}, key="update:m", ref="m", replace=True)
    await store.tell([Item(kind="post", payload={"text": "m"}, key="m"), update], 1.0)
    await store.tell([Item(kind="post", payload={"text": "reply"}, key="r", ref="m")], 2.0)
    await store.tell(
        [Item(kind="update", payload={"text": "v2"}, key="update:m", ref="m", replace=True)], 3.0
    )
    rows = await store.outbox_open()
    claimed = await store.outbox_claim([d.id for d in rows], 3.0, lease=10)
    assert [(d.key, claimed[d.id][1]["text"], claimed[d.id][0]) for d in rows] == [
        ("m", "m", 1),
        ("r", "reply", 1),
        ("update:m", "v2", 2),
    ]


async def test_a_row_is_claimed_by_one_sender_until_its_lease_runs_out(store: Store) -> None:
    await store.tell(
        [Item(kind="ephemeral", payload={"channel": "C1", "user": "U1", "text": "x"})], 1.0
    )
    (row,) = await store.outbox_open()
    first, second = await asyncio.gather(
        store.outbox_claim([row.id], 1.0, lease=10), store.outbox_claim([row.id], 1.0, lease=10)
    )
    assert sorted([len(first), len(second)]) == [0, 1]
    assert await store.outbox_claim([row.id], 5.0, lease=10) == {}
    assert set(await store.outbox_claim([row.id], 12.0, lease=10)) == {row.id}  # sender died


async def test_a_run_is_taken_over_only_when_its_lease_ends_or_is_let_go(
    tmp_path: Path, database_url: str | None
) -> None:
    now = [100.0]
    first = RunLease("first", 10.0, lambda: now[0])
    second = RunLease("second", 10.0, lambda: now[0])
    async with (
        opened(tmp_path, database_url, first) as a,
        opened(tmp_path, database_url, second) as b,
    ):
        await a.create_run("r1", "/deploy", {}, "U0ALICE", "C0DEPLOYS", 1.0)  # held by "first"
        assert await b.runs_take(10) == []
        now[0] += 9
        assert await a.runs_renew(["r1"]) == 1  # "first" is alive: held until 119
        now[0] += 9
        assert await b.runs_take(10) == []
        now[0] += 2  # "first" died after its last renewal
        taken = await asyncio.gather(a.runs_take(10), b.runs_take(10))
        assert sorted(len(t) for t in taken) == [0, 1]  # one process takes it
        holder, other = (b, a) if taken[1] else (a, b)
        assert await other.runs_renew(["r1"]) == 0  # the one that lost it cannot renew it
        assert await holder.runs_release() == 1  # a graceful stop lets it go at once
        assert [r.run_id for r in await other.runs_take(10)] == ["r1"]


async def test_a_decision_claimed_while_another_process_drives_the_run_waits_for_it(
    tmp_path: Path, database_url: str | None
) -> None:
    first, second = RunLease("first"), RunLease("second")
    async with (
        opened(tmp_path, database_url, first) as a,
        opened(tmp_path, database_url, second) as b,
    ):
        run = await a.create_run("r1", "/deploy", {}, "U0ALICE", "C0DEPLOYS", 1.0)
        await a.pause(
            run, [("i1", "one?", None), ("i2", "two?", None)], 2.0, lambda x: Opening(items=[])
        )
        claimed = await b.decide("i1", 3.0, ballot("U0BOB"), nothing, list)
        assert claimed and claimed.claimed and claimed.drive  # "second" drives the run now
        other = await a.decide("i2", 3.1, ballot("U0DAN"), nothing, list)
        assert other and other.claimed and not other.drive  # recorded; "second" resumes it
        await b.pause(run, [], 4.0, lambda x: Opening(items=[]), resumed="i1")
        assert (await b.get_run("r1")).status == "running"  # type: ignore[union-attr]
        assert [r.run_id for r in await a.runs_take(10)] == ["r1"]  # taken to resume i2


async def test_notifications_wake_the_other_processes(tmp_path: Path, pg_url: str) -> None:
    from bot.db.wakeups import Listener

    woken = asyncio.Event()
    listener = Listener(pg_url, "listening", {"deadlines": woken.set})
    listener.start()
    try:
        async with opened(tmp_path, pg_url) as s:
            await asyncio.wait_for(listener.connected.wait(), 10)
            run = await s.create_run("r1", "/deploy", {}, "U0ALICE", "C0DEPLOYS", 1.0)
            opening = Opening(items=[], deadlines=[("timeout", 0, 99.0)])
            await s.pause(run, [("i1", "ok?", None)], 2.0, lambda a: opening)
            await asyncio.wait_for(woken.wait(), 10)
    finally:
        await listener.stop()


async def test_a_dead_owners_leases_are_let_go_at_once(
    tmp_path: Path, database_url: str | None
) -> None:
    """Whatever a process whose death was proven held (a run, the outbox rows it was sending,
    a deadline it was firing) is free at once, not when the leases end; a newer version of an
    update it was sending waits ``hold`` seconds, so the older copy it may have had on its way
    cannot land on top of it. Only the dead owner's leases move."""
    now = [100.0]
    dead, live = RunLease("dead", 30.0, lambda: now[0]), RunLease("live", 30.0, lambda: now[0])
    async with opened(tmp_path, database_url, dead) as a, opened(tmp_path, database_url, live) as b:
        await a.owner_started(now[0])
        await b.owner_started(now[0])
        assert await b.owners() == ["dead"]
        run = await a.create_run("r1", "/deploy", {}, "U0ALICE", "C0DEPLOYS", 1.0)
        post_item = Item(kind="post", payload={"channel": "C1", "text": "m"}, key="m")
        opening = Opening(items=[post_item], deadlines=[("remind", 0, 50.0)])
        await a.pause(run, [("i1", "ok?", None)], 2.0, lambda _: opening)
        await a.create_run("r2", "/deploy", {}, "U0ALICE", "C0DEPLOYS", 3.0)  # driven by "dead"
        await b.create_run("r3", "/deploy", {}, "U0ALICE", "C0DEPLOYS", 3.0)  # driven by "live"
        await a.tell(
            [Item(kind="ephemeral", payload={"channel": "C1", "user": "U1", "text": "x"})], 4.0
        )
        rows = await a.outbox_open()
        assert set(await a.outbox_claim([d.id for d in rows], now[0], lease=25)) == {
            d.id for d in rows
        }
        ts = "1.000001"
        (post,) = [d for d in rows if d.key == "m"]
        sent = Sent(delivery=post, now=now[0], channel="C1", ts=ts, posted_at=now[0])
        await a.outbox_sent_many([sent], now[0], 25, follow=False)
        update = Item(kind="update", payload={"text": "v1"}, key="update:m", ref="m", replace=True)
        await a.tell([update], 5.0)
        (row,) = [d for d in await a.outbox_open() if d.key == "update:m"]
        assert set(await a.outbox_claim([row.id], now[0], lease=25)) == {row.id}  # v1 on its way
        await a.tell([replace(update, payload={"text": "v2"})], 6.0)  # v2 queued meanwhile
        assert [d.id for d in await a.deadlines_claim(60.0, 60.0, 10)] != []  # "dead" fires it
        assert await b.runs_take(10) == []  # the leases have not ended
        assert await b.outbox_claim([row.id], now[0], lease=25) == {}

        released = await b.release_dead(["dead"], hold=20.0)
        assert released == Released(runs=1, outbox=2, deadlines=1, owners=("dead",))
        assert await b.owners() == []  # reaped: forgotten
        assert [r.run_id for r in await b.runs_take(10)] == ["r2"]  # not r3: "live" holds it
        due = {d.key: d for d in await b.outbox_open() if d.status == "pending"}
        assert due["update:m"].next_at == now[0] + 20  # v2 waits for v1's late copy
        assert [k for k, d in due.items() if d.next_at == 0] == [None]  # the ephemeral: at once
        (deadline,) = await b.deadlines_claim(60.0, 60.0, 10)  # due again, at once
        assert await a.fire(deadline, 61.0, lambda *_: Firing()) is None  # not "dead"'s now
        left = await b.release_dead(["dead"], hold=20.0)
        assert left == Released(owners=("dead",))  # nothing left


async def test_the_reap_takes_the_proof_again_in_its_own_transaction(
    tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL: an owner judged dead that holds its lock again by the time the reap's
    transaction runs (it was only cut off) is not reaped and keeps its runs; once its lock is
    free the reap goes through, and the owner can tell (its row is gone)."""
    now = 100.0
    victim, judge = RunLease("victim", 30.0, lambda: now), RunLease("judge", 30.0, lambda: now)
    async with opened(tmp_path, pg_url, victim) as a, opened(tmp_path, pg_url, judge) as b:
        await a.owner_started(now)
        await b.owner_started(now)
        await a.create_run("r1", "/deploy", {}, "U0ALICE", "C0DEPLOYS", 1.0)
        lock = AdvisoryLocks(pg_url, "victim")
        await lock.hold()
        try:
            assert await b.release_dead(["victim"], hold=20.0) == Released()
            assert await a.owner_registered()
            assert await b.runs_take(10) == []
            assert [r.run_id for r in await a.runs_held(["r1"])] == ["r1"]
        finally:
            await lock.close()
        for _ in range(200):  # the server drops the lock once the closed session has ended
            released = await b.release_dead(["victim"], hold=20.0)
            if released.owners:
                break
            await asyncio.sleep(0.02)
        assert released == Released(runs=1, owners=("victim",))
        assert not await a.owner_registered()
        assert await a.runs_held(["r1"]) == []  # not the victim's to drive any more
        assert [r.run_id for r in await b.runs_take(10)] == ["r1"]


async def test_a_delivery_record_takes_the_next_row_of_its_lane(store: Store) -> None:
    """Recording a post as sent takes the reply waiting in its thread (with the post's ts, to
    thread it under); recording an update whose newer version was queued meanwhile leaves it
    waiting and takes it again at once, the newer version."""
    await store.tell([Item(kind="post", payload={"channel": "C1", "text": "m"}, key="m")], 1.0)
    await store.tell([Item(kind="post", payload={"text": "reply"}, key="r", ref="m")], 2.0)
    rows = {d.key: d for d in await store.outbox_open()}
    assert set(await store.outbox_claim([rows["m"].id], 3.0, lease=10)) == {rows["m"].id}
    post = replace(rows["m"], status="sending")
    taken, _ = await store.outbox_sent_many(
        [Sent(delivery=post, now=4.0, channel="C1", ts="1.5", posted_at=4.0)], 4.0, 10
    )
    assert [(d.key, d.status, d.ref_channel, d.ref_ts, d.ref_status) for d in taken] == [
        ("r", "sending", "C1", "1.5", "sent")
    ]
    assert taken[0].payload == {"text": "reply"} and taken[0].lease_until == 14.0
    taken, _ = await store.outbox_sent_many(
        [Sent(delivery=taken[0], now=5.0, channel="C1", ts="1.6", posted_at=5.0)], 5.0, 10
    )
    assert taken == []  # nothing else in the lane

    update = Item(kind="update", payload={"text": "v1"}, key="update:m", ref="m", replace=True)
    await store.tell([update], 6.0)
    (row,) = [d for d in await store.outbox_open() if d.key == "update:m"]
    assert set(await store.outbox_claim([row.id], 6.0, lease=10)) == {row.id}
    await store.tell([replace(update, payload={"text": "v2"})], 7.0)  # while v1 is sent
    taken, _ = await store.outbox_sent_many(
        [Sent(delivery=row, now=8.0, channel="C1", ts=None, posted_at=8.0)], 8.0, 10
    )
    assert [(d.key, d.version, d.payload) for d in taken] == [("update:m", 2, {"text": "v2"})]
    assert await store.outbox_claim([row.id], 8.0, lease=10) == {}  # it is this sender's
    taken, _ = await store.outbox_sent_many(
        [Sent(delivery=taken[0], now=9.0, channel="C1", ts=None, posted_at=9.0)], 9.0, 10
    )
    assert taken == [] and [d for d in await store.outbox_open() if d.key == "update:m"] == []


async def test_one_statement_record_matches_the_record_then_the_take(tmp_path: Path) -> None:
    """SQLite's delivery record in one statement (``_SENT_AND_NEXT``) leaves every row as
    the record (``_sent``) followed by the lane's take (``_TAKE_NEXT``) does, and takes the
    same row, over random lanes: any status and version of the delivered row (a newer
    version queued meanwhile, a late record), replies waiting on it or on other rows, rows
    not yet due."""
    mark = (
        "UPDATE bot_outbox SET status=CASE WHEN version=? THEN 'sent' ELSE 'pending' "
        "END, attempts=attempts+1, channel=COALESCE(?, channel), ts=COALESCE(?, ts), "
        "lease_until=NULL, owner=NULL, error=NULL, next_at=?, updated_at=? WHERE id=?"
    )

    def migrated() -> sq.Connection:
        db = sq.connect(":memory:", isolation_level=None)
        db.row_factory = sq.Row
        for m in MIGRATIONS:
            db.executescript(m)
        return db

    def lanes(db: sq.Connection, seed: int) -> None:
        """Rows of two lanes, in a transaction the caller rolls back."""
        rnd = random.Random(seed)
        db.execute("BEGIN")
        n = rnd.randint(1, 6)
        for i in range(n):
            status = rnd.choice(["pending", "sending", "sent", "failed"])
            db.execute(
                "INSERT INTO bot_outbox(id, seq, key, kind, ref, lane, payload, channel, "
                "status, next_at, created_at, updated_at, version, ts, owner, lease_until) "
                "VALUES (?,?,?,'post',?,?,'{}',?,?,?,1,1,?,?,?,?)",
                (
                    i + 1,
                    i + 1,
                    f"k{i}",
                    rnd.choice([None, None, f"k{rnd.randint(0, n)}"]),
                    rnd.choice(["L", "M"]),
                    rnd.choice([None, "C1"]),
                    status,
                    rnd.choice([0.0, 5.0, 20.0]),
                    rnd.randint(1, 2),
                    rnd.choice([None, "1.1"]),
                    "me" if status == "sending" else None,
                    30.0 if status == "sending" else None,
                ),
            )

    before, after = migrated(), migrated()
    for seed in range(3000):
        rnd = random.Random(-seed)
        lanes(before, seed)
        lanes(after, seed)
        row = rnd.choice(before.execute("SELECT id, lane, version FROM bot_outbox").fetchall())
        version = rnd.choice([row["version"], row["version"] + 1])
        ts, channel = rnd.choice([None, "9.9"]), rnd.choice([None, "C9"])
        now = rnd.choice([4.0, 10.0, 30.0])
        sent_at = now + rnd.choice([-1, 0, 1])
        before.execute(mark, (version, channel, ts, sent_at, sent_at, row["id"]))
        two = before.execute(_TAKE_NEXT, (now + 25, "me2", row["lane"], now)).fetchall()
        args = (row["id"], version, row["lane"], now, ts, channel, now + 25, "me2", sent_at)
        one = after.execute(_SENT_AND_NEXT, args).fetchall()
        table = "SELECT * FROM bot_outbox ORDER BY id"
        assert [tuple(r) for r in before.execute(table)] == [
            tuple(r) for r in after.execute(table)
        ], seed
        assert [dict(r) for r in two] == [dict(r) for r in one if r["status"] == "sending"], seed
        before.execute("ROLLBACK")
        after.execute("ROLLBACK")
