"""Runs: starting one, the lease that lets one process drive it (several replicas share a
database), taking over the runs of processes that stopped or died, its progress lines, and
its end. Also the run's side of a decision: claimed (``_claimed``) and resumed past it
(``_mark_resumed``), which the approvals' and deadlines' transactions call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from bot.db.audit import _audit
from bot.db.base import Base, RunLease, Tx, _approval, _notify, _run
from bot.db.liveness import LOCK_CLASS, lock_key
from bot.db.outbox import REPLACES, _queue
from bot.model import Approval, Item, Released, Run

# Runs left 'running' by a process that stopped or died (no owner, or its lease ended).
_TAKE_RUNS = (
    "UPDATE bot_runs SET owner=?, lease_until=? WHERE run_id IN (SELECT run_id FROM bot_runs "
    "WHERE status='running' AND (owner IS NULL OR lease_until < ?) ORDER BY updated_at "
    "LIMIT ?{lock}) AND status='running' AND (owner IS NULL OR lease_until < ?) RETURNING *"
)


class Runs(Base):
    """Runs and their leases, the registered lease owners, progress and the end of a run."""

    async def create_run(
        self,
        run_id: str,
        command: str,
        input: dict[str, Any],
        requester: str,
        channel: str,
        now: float,
        response_url: str | None = None,
    ) -> Run:
        run = await self.create_run_once(
            run_id, command, input, requester, channel, now, response_url, once=False
        )
        assert run is not None
        return run

    async def create_run_once(
        self,
        run_id: str,
        command: str,
        input: dict[str, Any],
        requester: str,
        channel: str,
        now: float,
        response_url: str | None = None,
        *,
        once: bool = True,
    ) -> Run | None:
        """Start a run; with ``once``, None when a run with this id exists already (a thread
        of a LangGraph Server found by several replicas' inboxes is taken by one)."""

        def tx(db: Tx) -> bool:
            created = db.execute(
                "INSERT INTO bot_runs(run_id, command, input, requester, channel, status, "
                "response_url, created_at, updated_at, owner, lease_until) "
                "VALUES (?,?,?,?,?, 'running', ?,?,?,?,?)"
                + (" ON CONFLICT(run_id) DO NOTHING" if once else ""),
                (
                    run_id,
                    command,
                    json.dumps(input),
                    requester,
                    channel,
                    response_url,
                    now,
                    now,
                    self.lease.owner,
                    self.lease.until(),
                ),
            ).rowcount
            if created:
                _audit(
                    db,
                    "run_started",
                    now,
                    user=requester,
                    run_id=run_id,
                    detail={"command": command, "input": input},
                )
            return bool(created)

        if not await self._write(tx):
            return None
        return Run(
            run_id=run_id,
            command=command,
            input=input,
            requester=requester,
            channel=channel,
            status="running",
            thread_key=None,
            outcome=None,
            created_at=now,
            response_url=response_url,
        )

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._one("SELECT * FROM bot_runs WHERE run_id=?", (run_id,))
        return _run(row) if row else None

    async def runs_by(self, requester: str, limit: int = 10) -> list[Run]:
        rows = await self._all(
            "SELECT * FROM bot_runs WHERE requester=? ORDER BY created_at DESC LIMIT ?",
            (requester, limit),
        )
        return [_run(r) for r in rows]

    async def runs_waiting_by(self, requester: str, limit: int) -> list[Run]:
        rows = await self._all(
            "SELECT * FROM bot_runs WHERE requester=? AND status IN ('waiting', 'running') "
            "ORDER BY created_at DESC LIMIT ?",
            (requester, limit),
        )
        return [_run(r) for r in rows]

    async def runs_waiting_on(self, deployment: str, after: str, limit: int) -> list[str]:
        """Ids of runs waiting for people on a LangGraph Server's threads (commands
        ``"<deployment>/…"``), in id order after ``after``: a page of them."""
        rows = await self._all(
            "SELECT run_id FROM bot_runs WHERE status='waiting' AND command >= ? AND "
            "command < ? AND run_id > ? ORDER BY run_id LIMIT ?",
            (f"{deployment}/", f"{deployment}0", after, limit),
        )
        return [str(r[0]) for r in rows]

    async def next_attempt(self, run_id: str) -> int:
        """Count one more start of a run cut by a restart; returns the new attempt number."""

        def tx(db: Tx) -> int:
            row = db.execute(
                "UPDATE bot_runs SET attempt=attempt+1 WHERE run_id=? RETURNING attempt",
                (run_id,),
            ).fetchone()
            return int(row[0]) if row else 1

        return await self._write(tx)

    async def runs_take_waiting(self, run_id: str) -> Run | None:
        """Take a run that waits for people, to follow what its graph did without them (a
        remote thread answered elsewhere); None when it does not wait (any more)."""

        def tx(db: Tx) -> Run | None:
            row = db.execute(
                "UPDATE bot_runs SET status='running', owner=?, lease_until=?, updated_at=? "
                "WHERE run_id=? AND status='waiting' RETURNING *",
                (self.lease.owner, self.lease.until(), self.lease.clock(), run_id),
            ).fetchone()
            return None if row is None else _run(row)

        return await self._write(tx)

    async def runs_take(self, limit: int) -> list[Run]:
        """Take runs left 'running' with no owner (a process stopped) or whose owner's lease
        ended (it died): this process drives them on. Each is taken by one process."""
        lease = self.lease
        now = lease.clock()
        sql = _TAKE_RUNS.format(lock=" FOR UPDATE SKIP LOCKED" if self._postgres else "")

        def tx(db: Tx) -> list[Run]:
            rows = db.execute(sql, (lease.owner, lease.until(), now, limit, now)).fetchall()
            return sorted((_run(r) for r in rows), key=lambda r: r.created_at)

        return await self._write(tx)

    async def runs_renew(self, run_ids: Sequence[str]) -> int:
        """Extend the lease of the runs this process is driving; returns how many it still
        held. A run held but not being driven (a bug left it) is not renewed: its lease
        ends and it is taken over."""
        lease = self.lease
        ids = json.dumps(list(run_ids))
        return await self._write(
            lambda db: (
                db.execute(
                    "UPDATE bot_runs SET lease_until=? WHERE owner=? AND status='running' "
                    "AND run_id IN (SELECT value FROM json_each(?) AS j)",
                    (lease.until(), lease.owner, ids),
                ).rowcount
            )
        )

    async def runs_held(self, run_ids: Sequence[str]) -> list[Run]:
        """Of these runs, the ones this process still holds, 'running', their leases renewed:
        runs it stopped driving (the database was away past the retry budget, or it was
        judged dead meanwhile) that it may drive again."""
        lease = self.lease
        ids = json.dumps(list(run_ids))

        def tx(db: Tx) -> list[Run]:
            rows = db.execute(
                "UPDATE bot_runs SET lease_until=? WHERE owner=? AND status='running' "
                "AND run_id IN (SELECT value FROM json_each(?) AS j) RETURNING *",
                (lease.until(), lease.owner, ids),
            ).fetchall()
            return sorted((_run(r) for r in rows), key=lambda r: r.created_at)

        return await self._write(tx)

    async def runs_release(self) -> int:
        """Let go of every run this process still holds (a graceful stop): the next process
        to look takes them over at once instead of waiting for the leases to end."""

        def tx(db: Tx) -> int:
            n = db.execute(
                "UPDATE bot_runs SET owner=NULL, lease_until=NULL WHERE owner=? "
                "AND status='running'",
                (self.lease.owner,),
            ).rowcount
            if n:
                _notify(db, "runs")
            return int(n)

        return await self._write(tx)

    async def owner_started(self, now: float) -> None:
        """Register this process, once it holds its liveness lock: from now on its leases are
        taken over as soon as that lock is free."""
        await self._write(
            lambda db: db.execute(
                "INSERT INTO bot_owners(owner, started_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (self.lease.owner, now),
            )
        )

    async def owner_registered(self) -> bool:
        """Whether this process is still registered: not reaped by another that took it for
        dead (``release_dead``)."""
        row = await self._one("SELECT 1 FROM bot_owners WHERE owner=?", (self.lease.owner,))
        return row is not None

    async def owners(self) -> list[str]:
        """The other registered processes, alive or not."""
        rows = await self._all(
            "SELECT owner FROM bot_owners WHERE owner <> ? ORDER BY started_at",
            (self.lease.owner,),
        )
        return [r[0] for r in rows]

    async def release_dead(self, dead: Sequence[str], hold: float) -> Released:
        """Let go of every lease of these owners, whose death was proven, and forget them:
        their runs wait to be taken (``runs_take``), their deadlines are due again, and the
        outbox rows they were sending are sent again at once. A replacing row (an update, a
        home view) holding a newer version than the dead owner took waits ``hold`` seconds
        first: the older copy the owner had on its way may still land, and must land before
        the newer one, not on top of it.

        On PostgreSQL the proof is taken again inside the transaction: each owner's liveness
        key as a transaction advisory lock, which nobody gets while the owner holds its
        session lock. An owner that holds it again is alive and left alone; one reaped cannot
        take it again until this transaction has committed, and then finds its row gone
        (bot/db/liveness.py)."""
        now = self.lease.clock()
        replacing = ", ".join(f"'{k}'" for k in sorted(REPLACES))

        def tx(db: Tx) -> Released:
            gone = [o for o in dead if not self._postgres or _lock_free(db, o)]
            if not gone:
                return Released()
            owners = json.dumps(gone)
            runs = db.execute(
                "UPDATE bot_runs SET owner=NULL, lease_until=NULL WHERE status='running' AND "
                "owner IN (SELECT value FROM json_each(?) AS d)",
                (owners,),
            ).rowcount
            deadlines = db.execute(
                "UPDATE bot_deadlines SET status='pending', owner=NULL, lease_until=NULL "
                "WHERE status='firing' AND owner IN (SELECT value FROM json_each(?) AS d)",
                (owners,),
            ).rowcount
            outbox = db.execute(
                "UPDATE bot_outbox SET status='pending', owner=NULL, lease_until=NULL, "
                f"next_at=CASE WHEN kind IN ({replacing}) AND version <> claimed_version "
                "THEN ? ELSE 0 END WHERE status='sending' AND "
                "owner IN (SELECT value FROM json_each(?) AS d)",
                (now + hold, owners),
            ).rowcount
            db.execute(
                "DELETE FROM bot_owners WHERE owner IN (SELECT value FROM json_each(?) AS d)",
                (owners,),
            )
            for what, n in (("runs", runs), ("deadlines", deadlines), ("outbox", outbox)):
                if n:
                    _notify(db, what)
            return Released(runs=runs, outbox=outbox, deadlines=deadlines, owners=tuple(gone))

        return await self._write(tx)

    async def progress(
        self, run: Run, item: Item, retried: Item, thread: Item | None, now: float
    ) -> None:
        """A progress line, posted once per key. A key seen before is a step re-run after a
        crash: ``retried`` (an edit of the earlier reply) is queued instead. ``thread`` is the
        run's first message, queued when the run has none yet."""

        def tx(db: Tx) -> None:
            if thread is not None:
                _queue(db, [thread], now)
                db.execute(
                    "UPDATE bot_runs SET thread_key=? WHERE run_id=? AND thread_key IS NULL",
                    (thread.key, run.run_id),
                )
            if not _queue(db, [item], now):
                _queue(db, [retried], now)

        # Without a thread to open: one INSERT (the reply, taken by it when it may go). A
        # step re-run after a crash finds the key: that INSERT changed nothing, and the edit
        # queued after it stands alone (see ``OneStatement``).
        await self._write(tx, wakes=True, one=thread is None)

    async def finish(
        self,
        run_id: str,
        status: str,
        outcome: dict[str, Any],
        now: float,
        render: Callable[[Run, list[Approval]], list[Item]],
        resumed: str | None = None,
    ) -> None:
        """End a run and queue the updates that show its outcome, in one transaction."""

        def tx(db: Tx) -> None:
            if resumed:
                _mark_resumed(db, resumed, run_id, now)
            row = db.execute(
                "UPDATE bot_runs SET status=?, updated_at=?, outcome=?, owner=NULL, "
                "lease_until=NULL WHERE run_id=? RETURNING *",
                (status, now, json.dumps(outcome), run_id),
            ).fetchone()
            if row is None:
                return
            approvals = db.execute(
                "SELECT * FROM bot_approvals WHERE run_id=? ORDER BY created_at", (run_id,)
            ).fetchall()
            _queue(db, render(_run(row), [_approval(a) for a in approvals]), now)
            _audit(db, "run_" + status, now, run_id=run_id, detail=outcome)

        await self._write(tx, wakes=True)


def _claimed(db: Tx, run_id: str, interrupt_id: str, now: float, lease: RunLease) -> bool:
    """A decision was claimed: the run runs again, leased to the claimer unless another
    process holds it (then False: that one resumes it after its step), and nothing more is
    due for the approval."""
    taken = db.execute(
        "UPDATE bot_runs SET status='running', updated_at=?, owner=?, lease_until=? "
        "WHERE run_id=? AND (owner IS NULL OR owner=? OR lease_until < ?)",
        (now, lease.owner, lease.until(), run_id, lease.owner, lease.clock()),
    ).rowcount
    if not taken:
        db.execute(
            "UPDATE bot_runs SET status='running', updated_at=? WHERE run_id=?", (now, run_id)
        )
    db.execute(
        "UPDATE bot_deadlines SET status='cancelled' WHERE interrupt_id=? AND status='pending'",
        (interrupt_id,),
    )
    return bool(taken)


def _mark_resumed(db: Tx, interrupt_id: str, run_id: str, now: float) -> None:
    row = db.execute(
        "UPDATE bot_approvals SET status='resumed' WHERE interrupt_id=? AND status='decided' "
        "RETURNING digest",
        (interrupt_id,),
    ).fetchone()
    if row is not None:
        _audit(db, "resumed", now, run_id=run_id, interrupt_id=interrupt_id, digest=row[0])


def _lock_free(db: Tx, owner: str) -> bool:
    """PostgreSQL: take ``owner``'s liveness key until this transaction ends; False when its
    owner holds it (it is alive)."""
    key = (LOCK_CLASS, lock_key(owner))
    return bool(db.execute("SELECT pg_try_advisory_xact_lock(?, ?)", key).fetchone()[0])
