"""Deadlines (reminders, escalations, timeouts): scheduled when an approval opens, claimed by
one process when due, and fired in one transaction with what they change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from bot.db.audit import _audit
from bot.db.base import Base, Row, Tx, _approval, _notify, _run
from bot.db.outbox import _queue
from bot.db.runs import _claimed
from bot.model import Approval, Deadline, Firing, Run, VoteResult


# Due deadlines (or ones whose firer's lease ran out), taken for firing. On PostgreSQL the
# rows are locked as they are chosen, skipping any another process is taking, and the claim
# is checked again on the row it locked: each deadline fires in one process.
def _deadline(row: Row) -> Deadline:
    return Deadline(
        id=row["id"],
        interrupt_id=row["interrupt_id"],
        run_id=row["run_id"],
        kind=row["kind"],
        level=row["level"],
        due_at=row["due_at"],
    )


_CLAIM_DEADLINES = (
    "UPDATE bot_deadlines SET status='firing', lease_until=?, owner=? WHERE id IN ("
    "SELECT id FROM bot_deadlines WHERE (status='pending' AND due_at <= ?) OR "
    "(status='firing' AND lease_until < ?) ORDER BY due_at LIMIT ?) "
    "RETURNING id, interrupt_id, run_id, kind, level, due_at"
)


_CLAIM_DEADLINES_PG = (
    "UPDATE bot_deadlines SET status='firing', lease_until=?, owner=? WHERE id IN ("
    "SELECT id FROM bot_deadlines WHERE (status='pending' AND due_at <= ?) OR "
    "(status='firing' AND lease_until < ?) ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED) "
    "AND ((status='pending' AND due_at <= ?) OR (status='firing' AND lease_until < ?)) "
    "RETURNING id, interrupt_id, run_id, kind, level, due_at"
)


class Deadlines(Base):
    """The scheduler's deadlines: claimed when due, fired, or brought forward."""

    async def deadlines_claim(self, now: float, lease: float, limit: int) -> list[Deadline]:
        """Take due deadlines (or ones whose firer's lease ran out), oldest first."""

        def tx(db: Tx) -> list[Deadline]:
            owner = self.lease.owner
            if self._postgres:
                sql = _CLAIM_DEADLINES_PG
                args: tuple[Any, ...] = (now + lease, owner, now, now, limit, now, now)
            else:
                sql, args = _CLAIM_DEADLINES, (now + lease, owner, now, now, limit)
            rows = db.execute(sql, args).fetchall()
            return sorted((_deadline(r) for r in rows), key=lambda d: (d.due_at, d.id))

        return await self._write(tx)

    async def next_deadline(self) -> float | None:
        row = await self._one(
            "SELECT MIN(t) FROM (SELECT MIN(due_at) AS t FROM bot_deadlines "
            "WHERE status='pending' UNION ALL SELECT MIN(lease_until) FROM bot_deadlines "
            "WHERE status='firing') AS d",
            (),
        )
        return None if row is None or row[0] is None else float(row[0])

    async def fire(
        self, d: Deadline, now: float, act: Callable[[Approval, Run], Firing]
    ) -> tuple[Firing, VoteResult | None] | None:
        """Carry out a due deadline in one transaction: nothing when its approval is no longer
        pending; otherwise what ``act`` says, and for a timeout the claim of its decision.
        Returns what was done, with the claimed result when a timeout decided."""

        def tx(db: Tx) -> tuple[Firing, VoteResult | None] | None:
            row = db.execute(self._for_update, (d.interrupt_id,)).fetchone()
            pending = row is not None and row["status"] == "pending"
            mine = db.execute(
                "UPDATE bot_deadlines SET status=?, fired_at=?, lease_until=NULL, owner=NULL "
                "WHERE id=? AND status='firing' AND owner=?",
                ("fired" if pending else "cancelled", now, d.id, self.lease.owner),
            ).rowcount
            if not pending or not mine:  # decided meanwhile, or taken over from this process
                return None
            approval, run = _approval(row), _run(row, "r_")
            firing = act(approval, run)
            result = None
            if firing.decision is not None:
                choice, approved = firing.decision
                claimed = db.execute(
                    "UPDATE bot_approvals SET status='decided', choice=?, approved=?, "
                    "decided_by=NULL, comment=NULL, answer=NULL, decided_at=? WHERE "
                    "interrupt_id=? AND "
                    "status='pending' RETURNING *",
                    (choice, int(approved), now, d.interrupt_id),
                ).fetchone()
                if claimed is not None:
                    drive = _claimed(db, run.run_id, d.interrupt_id, now, self.lease)
                    result = VoteResult(
                        claimed=True, approval=_approval(claimed), run=run, approvals=0, drive=drive
                    )
            _schedule(db, d.interrupt_id, d.run_id, firing.deadlines)
            if firing.deadlines:
                _notify(db, "deadlines")
            if firing.rules is not None:
                db.execute(
                    "UPDATE bot_approvals SET rules=? WHERE interrupt_id=?",
                    (json.dumps(firing.rules), d.interrupt_id),
                )
            _audit(
                db,
                firing.event,
                now,
                run_id=d.run_id,
                interrupt_id=d.interrupt_id,
                detail={"kind": d.kind, "level": d.level},
                digest=approval.digest,
            )
            _queue(db, firing.items, now)
            return firing, result

        return await self._write(tx, wakes=True)

    async def deadline_now(self, interrupt_id: str, kind: str, now: float) -> bool:
        """Bring the next pending deadline of ``kind`` forward to now ("Escalate now")."""

        def tx(db: Tx) -> bool:
            cur = db.execute(
                "UPDATE bot_deadlines SET due_at=? WHERE id=(SELECT id FROM bot_deadlines "
                "WHERE interrupt_id=? AND kind=? AND status='pending' ORDER BY due_at LIMIT 1)",
                (now, interrupt_id, kind),
            )
            if cur.rowcount == 1:
                _notify(db, "deadlines")
            return cur.rowcount == 1

        return await self._write(tx)


def _schedule(
    db: Tx,
    interrupt_id: str,
    run_id: str,
    deadlines: Sequence[tuple[str, int, float]],
) -> None:
    db.executemany(
        "INSERT INTO bot_deadlines(interrupt_id, run_id, kind, level, due_at, status) "
        "VALUES (?,?,?,?,?, 'pending') ON CONFLICT DO NOTHING",
        [(interrupt_id, run_id, kind, level, due) for kind, level, due in deadlines],
    )
