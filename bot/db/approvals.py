"""Approvals: opened when a run pauses, voted on and decided (the claim is a conditional
UPDATE, so exactly one caller ever sees it), reopened when the graph refuses a decision,
superseded when a re-run asks something else; and the pending pages the terminal, the API
and ``/approvals`` read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from bot.db.audit import _audit
from bot.db.base import _APPROVAL_AND_RUN, Base, RunLease, Tx, _approval, _notify, _run
from bot.db.deadlines import _schedule
from bot.db.events import _first_time
from bot.db.grants import _ask_grant, _settle_grants, _use_grant
from bot.db.outbox import _queue
from bot.db.runs import _claimed, _mark_resumed
from bot.integrity import request_digest
from bot.model import Approval, Ballot, Grant, Item, Opening, Refused, Run, VoteResult

Judge = Callable[[Approval, Run], Ballot | Refused]
Render = Callable[[VoteResult], list[Item]]


class Approvals(Base):
    """Approvals, their votes and decisions."""

    async def pause(
        self,
        run: Run,
        interrupts: Sequence[tuple[str, Any, dict[str, Any] | None]],
        now: float,
        open_: Callable[[Approval], Opening],
        resumed: str | None = None,
        changed: Callable[[Approval], list[Item]] = lambda old: [],
    ) -> list[Approval]:
        """The run waits for people: store one approval per (interrupt id, value, meta) (a node
        LangGraph replays raises the same id, stored once, posted once) and queue its
        message. An approval is bound to the request it showed (its digest): when a re-run
        raised a known id with another request, the approval still open (or decided, not yet
        resumed) is closed as superseded, its decision void, ``changed(old)`` says how its
        message shows that, and the new request is opened as an approval of its own
        (``<interrupt id>-<n>``: its own message, votes and deadlines). One a standing grant
        decides (``Opening.granted``) is returned decided, and the run stays with this
        process, which resumes it."""

        def tx(db: Tx) -> tuple[list[Approval], bool]:
            """The approvals opened, and whether the run is still to be taken (a decision
            waits): returned, not collected outside, so a transaction run again after a lost
            connection counts nothing twice."""
            if resumed:
                _mark_resumed(db, resumed, run.run_id, now)
            opened: list[Approval] = []
            deadlines = False
            thread_key = run.thread_key
            for interrupt_id, value, meta in interrupts:
                digest = request_digest(value, meta)
                approval = Approval(
                    interrupt_id=interrupt_id,
                    run_id=run.run_id,
                    request=value,
                    status="pending",
                    channel=None,
                    ts=None,
                    choice=None,
                    approved=None,
                    decided_by=None,
                    comment=None,
                    decided_at=None,
                    created_at=now,
                    meta=meta or None,
                    digest=digest,
                    graph_interrupt_id=interrupt_id,
                )
                old = None
                if not _open_approval(db, approval):
                    found = _superseded(db, interrupt_id, digest)
                    if found is None:
                        continue  # the same request again: stored once, posted once
                    old, version = found
                    approval = replace(approval, interrupt_id=f"{interrupt_id}-{version}")
                    _open_approval(db, approval)
                    _audit(
                        db,
                        "request_changed",
                        now,
                        run_id=run.run_id,
                        interrupt_id=old.interrupt_id,
                        digest=old.digest,
                        detail={"new_digest": digest, "new_id": approval.interrupt_id},
                    )
                    _queue(db, changed(old), now)
                iid = approval.interrupt_id
                _audit(
                    db,
                    "requested",
                    now,
                    user=run.requester,
                    run_id=run.run_id,
                    interrupt_id=iid,
                    digest=digest,
                    detail=None if old is None else {"replaces": old.interrupt_id},
                )
                approval, scheduled = _opened(db, approval, open_(approval), now)
                opened.append(approval)
                deadlines = deadlines or scheduled
                thread_key = thread_key or f"approval:{iid}"
            # The run lets its lease go. A decision another process claimed while this one
            # drove the run is still to be resumed: the run stays 'running', to be taken.
            # One a standing grant took here is resumed by this process: it keeps the lease.
            keep = any(a.status == "decided" for a in opened)
            row = db.execute(
                "UPDATE bot_runs SET status=CASE WHEN ? OR EXISTS (SELECT 1 FROM bot_approvals "
                "WHERE run_id=? AND status='decided') THEN 'running' ELSE 'waiting' END, "
                "updated_at=?, thread_key=COALESCE(thread_key, ?), "
                "owner=CASE WHEN ? THEN owner ELSE NULL END, "
                "lease_until=CASE WHEN ? THEN lease_until ELSE NULL END "
                "WHERE run_id=? RETURNING status",
                (keep, run.run_id, now, thread_key, keep, keep, run.run_id),
            ).fetchone()
            more = not keep and row is not None and row[0] == "running"
            if more:
                _notify(db, "runs")
            if deadlines:
                _notify(db, "deadlines")
            return opened, more

        opened, more = await self._write(tx, wakes=True)
        if more:
            self._on_runs()
        return opened

    async def close_elsewhere(
        self,
        run_id: str,
        interrupt_ids: Sequence[str],
        now: float,
        render: Callable[[Approval], list[Item]],
        decided: bool = False,
    ) -> list[Approval]:
        """Close the run's approvals still pending for these graph interrupts: someone
        answered them outside Slack. Their deadlines end, their messages say so (``render``),
        and nothing of theirs is ever sent. A decision claimed first keeps its approval
        (the claim and this both change only a pending approval), unless ``decided``: the
        resume found the interrupt answered by another client, so that decision is void."""
        statuses = "('pending', 'decided')" if decided else "('pending')"

        def tx(db: Tx) -> list[Approval]:
            closed: list[Approval] = []
            for graph_id in interrupt_ids:
                rows = db.execute(
                    "UPDATE bot_approvals SET status='superseded' WHERE run_id=? AND "
                    f"graph_interrupt_id=? AND status IN {statuses} RETURNING *",
                    (run_id, graph_id),
                ).fetchall()
                for row in rows:
                    approval = _approval(row)
                    db.execute(
                        "UPDATE bot_deadlines SET status='cancelled' WHERE interrupt_id=? "
                        "AND status='pending'",
                        (approval.interrupt_id,),
                    )
                    _audit(
                        db,
                        "answered_elsewhere",
                        now,
                        run_id=run_id,
                        interrupt_id=approval.interrupt_id,
                        digest=approval.digest,
                    )
                    _queue(db, render(approval), now)
                    closed.append(approval)
            return closed

        return await self._write(tx, wakes=True)

    async def fail_approval(
        self, interrupt_id: str, now: float, reason: str, code: str, items: Sequence[Item]
    ) -> None:
        """The approval's message can never be posted: close it and its run, and queue
        the words that tell the requester."""

        def tx(db: Tx) -> None:
            row = db.execute(
                "UPDATE bot_approvals SET status='failed' WHERE interrupt_id=? "
                "AND status='pending' RETURNING run_id, digest",
                (interrupt_id,),
            ).fetchone()
            if row is None:
                return
            run_id = row[0]
            db.execute(
                "UPDATE bot_runs SET status='failed', updated_at=?, outcome=?, owner=NULL, "
                "lease_until=NULL WHERE run_id=?",
                (now, json.dumps({"status": "failed", "text": reason}), run_id),
            )
            _audit(
                db,
                "post_failed",
                now,
                run_id=run_id,
                interrupt_id=interrupt_id,
                detail={"error": code},
                digest=row[1],
            )
            _queue(db, items, now)

        await self._write(tx, wakes=True)

    async def decide(
        self,
        interrupt_id: str,
        now: float,
        judge: Judge,
        render: Render,
        unknown: Callable[[], list[Item]],
        once: str | None = None,
    ) -> VoteResult | Refused | None:
        """One click, one transaction: load the approval and its run, let ``judge`` authorise,
        record the vote, claim the decision when it is reached (a conditional UPDATE, so
        exactly one caller ever sees ``claimed``), audit, and queue what ``render`` says Slack
        must show. ``judge`` and ``render`` are pure and run on the database thread. Returns
        what happened: the vote, the refusal, a result with no vote for an approval no longer
        pending, or None for an unknown approval. ``once``: the Slack event this decision
        comes from, recorded in the same transaction; when it was acted on already, nothing
        is done or queued and None is returned (bot/db/events.py)."""

        def tx(db: Tx) -> VoteResult | Refused | None:
            if once is not None and not _first_time(db, once, now):
                return None
            row = db.execute(self._for_update, (interrupt_id,)).fetchone()
            if row is None:
                _queue(db, unknown(), now)
                return None
            approval, run = _approval(row), _run(row, "r_")
            if approval.status != "pending":
                closed = VoteResult(claimed=False, approval=approval, run=run, approvals=0)
                _queue(db, render(closed), now)
                return closed
            verdict = judge(approval, run)
            if isinstance(verdict, Refused):
                _audit(
                    db,
                    "refused",
                    now,
                    user=verdict.user,
                    run_id=run.run_id,
                    interrupt_id=interrupt_id,
                    detail=verdict.detail,
                    digest=approval.digest,
                )
                _queue(db, verdict.items, now)
                return verdict
            result = _vote(db, approval, run, verdict, now, self.lease)
            _queue(db, render(result), now)
            return result

        return await self._write(tx, wakes=True)

    async def mark_resumed(self, interrupt_id: str, run_id: str, now: float) -> None:
        await self._write(lambda db: _mark_resumed(db, interrupt_id, run_id, now))

    async def reopen(
        self,
        interrupt_id: str,
        now: float,
        render: Callable[[Approval, Run], list[Item]],
        detail: dict[str, Any],
    ) -> Approval | None:
        """The graph refused a claimed decision's value (LangGraph saved nothing): the
        approval is pending again, as if nobody had decided. Its votes are forgotten, the
        deadlines the claim cancelled are due again, the run waits, and ``render`` says what
        Slack must show. Returns the reopened approval (None: it was not ``decided``)."""

        def tx(db: Tx) -> Approval | None:
            row = db.execute(
                "UPDATE bot_approvals SET status='pending', choice=NULL, approved=NULL, "
                "decided_by=NULL, comment=NULL, decided_at=NULL, answer=NULL "
                "WHERE interrupt_id=? AND status='decided' RETURNING run_id",
                (interrupt_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM bot_votes WHERE interrupt_id=?", (interrupt_id,))
            db.execute(
                "UPDATE bot_deadlines SET status='pending' WHERE interrupt_id=? "
                "AND status='cancelled'",
                (interrupt_id,),
            )
            db.execute(
                "UPDATE bot_runs SET status='waiting', updated_at=? WHERE run_id=?",
                (now, row[0]),
            )
            found = db.execute(_APPROVAL_AND_RUN, (interrupt_id,)).fetchone()
            approval, run = _approval(found), _run(found, "r_")
            _audit(
                db,
                "resume_refused",
                now,
                run_id=run.run_id,
                interrupt_id=interrupt_id,
                detail=detail,
                digest=approval.digest,
            )
            _queue(db, render(approval, run), now)
            return approval

        return await self._write(tx, wakes=True)

    async def get_approval(self, interrupt_id: str) -> Approval | None:
        row = await self._one("SELECT * FROM bot_approvals WHERE interrupt_id=?", (interrupt_id,))
        return _approval(row) if row else None

    async def approval_and_run(self, interrupt_id: str) -> tuple[Approval, Run] | None:
        row = await self._one(_APPROVAL_AND_RUN, (interrupt_id,))
        return (_approval(row), _run(row, "r_")) if row else None

    async def approval_at(self, channel: str, ts: str) -> tuple[Approval, Run] | None:
        """The approval whose message is at (``channel``, ``ts``): its channel message, or a
        copy of it an escalation sent (a DM, another channel); with its run."""
        row = await self._one(_APPROVAL_AT, (ts, channel, ts, channel))
        return (_approval(row), _run(row, "r_")) if row else None

    async def approvals_of(self, run_id: str) -> list[Approval]:
        rows = await self._all(
            "SELECT * FROM bot_approvals WHERE run_id=? ORDER BY created_at", (run_id,)
        )
        return [_approval(r) for r in rows]

    async def pending_page(self, before: float | None, limit: int) -> list[tuple[Approval, Run]]:
        """Pending approvals with their runs, newest first, created before ``before`` (one
        page; the caller pages on while it filters)."""
        rows = await self._all(
            _APPROVAL_AND_RUN.replace("WHERE a.interrupt_id=?", "WHERE a.status='pending'")
            + (" AND a.created_at < ?" if before is not None else "")
            + " ORDER BY a.created_at DESC LIMIT ?",
            ((before,) if before is not None else ()) + (limit,),
        )
        return [(_approval(r), _run(r, "r_")) for r in rows]

    async def pending_approvals(
        self, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[Approval, Run]]:
        """Pending approvals with their runs, oldest first, after the (created_at,
        interrupt_id) of the last one seen: a cursor that never skips approvals opened in the
        same instant (one pause opens several)."""
        sql = _APPROVAL_AND_RUN.replace("WHERE a.interrupt_id=?", "WHERE a.status='pending'")
        args: tuple[Any, ...] = ()
        if after is not None:
            sql += " AND (a.created_at > ? OR (a.created_at = ? AND a.interrupt_id > ?))"
            args = (after[0], after[0], after[1])
        rows = await self._all(
            sql + " ORDER BY a.created_at, a.interrupt_id LIMIT ?", (*args, limit)
        )
        return [(_approval(r), _run(r, "r_")) for r in rows]

    async def approval_ids(self, prefix: str, limit: int) -> list[str]:
        """Interrupt ids that start with ``prefix`` (the terminal takes a unique prefix)."""
        rows = await self._all(
            "SELECT interrupt_id FROM bot_approvals WHERE interrupt_id >= ? AND interrupt_id < ? "
            "ORDER BY interrupt_id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        )
        return [r[0] for r in rows]

    async def count_pending(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM bot_approvals WHERE status='pending'", ())
        return int(row[0]) if row else 0

    async def recent_decisions(self, limit: int) -> list[Approval]:
        rows = await self._all(
            "SELECT * FROM bot_approvals WHERE status IN ('decided', 'resumed') "
            "ORDER BY decided_at DESC LIMIT ?",
            (limit,),
        )
        return [_approval(r) for r in rows]


# An approval (with its run) by where its message is: the channel message, else a copy
# (outbox keys ``copy:<interrupt id>:<target>``, found through the key index's range).
_APPROVAL_AT = _APPROVAL_AND_RUN.replace(
    "a.interrupt_id=?",
    "a.interrupt_id=COALESCE("
    "(SELECT interrupt_id FROM bot_approvals WHERE ts=? AND channel=? LIMIT 1), "
    "(SELECT interrupt_id FROM bot_outbox WHERE key >= 'copy:' AND key < 'copy;' "
    "AND ts=? AND channel=? LIMIT 1))",
)


def _vote(
    db: Tx, approval: Approval, run: Run, b: Ballot, now: float, lease: RunLease
) -> VoteResult:
    iid = approval.interrupt_id
    db.execute(
        "INSERT INTO bot_votes(interrupt_id, user_id, choice, comment, at) VALUES (?,?,?,?,?) "
        "ON CONFLICT(interrupt_id, user_id) DO UPDATE SET choice=excluded.choice, "
        "comment=excluded.comment, at=excluded.at",
        (iid, b.user, b.choice, b.comment, now),
    )
    voters = tuple(
        r[0]
        for r in db.execute(
            "SELECT user_id FROM bot_votes WHERE interrupt_id=? AND choice=? ORDER BY at",
            (iid, b.choice),
        )
    )
    grant = _ask_grant(db, approval, run.command, b, now)
    claimed = None
    if len(voters) >= b.required:
        claimed = db.execute(
            "UPDATE bot_approvals SET status='decided', choice=?, approved=?, decided_by=?, "
            "comment=?, decided_at=?, answer=? WHERE interrupt_id=? AND status='pending' "
            "RETURNING *",
            (
                b.choice,
                int(b.approves),
                b.user,
                b.comment,
                now,
                None if b.answer is None else json.dumps(b.answer),
                iid,
            ),
        ).fetchone()
    drive = False
    if claimed is not None:
        drive = _claimed(db, run.run_id, iid, now, lease)
        approval = _approval(claimed)
        if (approval.rules or {}).get("grants"):  # asks for a grant on it may be open
            made = _settle_grants(db, approval, b.approves, now)
            grant = made or (grant and replace(grant, status="lapsed"))
    _audit(
        db,
        "decided" if claimed is not None else "vote",
        now,
        user=b.user,
        run_id=run.run_id,
        interrupt_id=iid,
        detail={"choice": b.choice, "comment": b.comment},
        digest=approval.digest,
    )
    return VoteResult(
        claimed=claimed is not None,
        approval=approval,
        run=run,
        approvals=len(voters),
        voters=voters,
        drive=drive,
        grant=grant,
    )


def _opened(db: Tx, a: Approval, opening: Opening, now: float) -> tuple[Approval, bool]:
    """Write what opening ``a`` says: its rules, then its deadlines and messages, or, when
    a standing grant decides it and still holds, that decision and its compact line.
    Returns the approval as opened (decided, by a grant) and whether deadlines were set."""
    iid = a.interrupt_id
    if opening.rules is not None:
        db.execute(
            "UPDATE bot_approvals SET rules=? WHERE interrupt_id=?",
            (json.dumps(opening.rules), iid),
        )
    granted = opening.granted
    grant = _use_grant(db, granted.grant.grant_id, now) if granted else None
    if granted and grant:
        decided = _decide_by_grant(db, a, granted.choice, grant, now)
        _queue(db, granted.items, now)
        return decided, False
    _schedule(db, iid, a.run_id, opening.deadlines)
    _queue(db, opening.items, now)
    return a, bool(opening.deadlines)


def _decide_by_grant(db: Tx, a: Approval, choice: str, grant: Grant, now: float) -> Approval:
    """Open ``a`` decided by a standing grant: claimed by its first grantor, the grant
    named in the approval (``meta["grant"]``, which its messages show) and in the audit."""
    note = {"id": grant.grant_id, "by": list(grant.granted_by), "until": grant.expires_at}
    row = db.execute(
        "UPDATE bot_approvals SET status='decided', choice=?, approved=1, decided_by=?, "
        "decided_at=?, meta=? WHERE interrupt_id=? AND status='pending' RETURNING *",
        (
            choice,
            grant.granted_by[0],
            now,
            json.dumps({**(a.meta or {}), "grant": note}),
            a.interrupt_id,
        ),
    ).fetchone()
    _audit(
        db,
        "decided",
        now,
        user=grant.granted_by[0],
        run_id=a.run_id,
        interrupt_id=a.interrupt_id,
        detail={"choice": choice, "grant": grant.grant_id, "granted_by": list(grant.granted_by)},
        digest=a.digest,
    )
    return _approval(row)


def _open_approval(db: Tx, a: Approval) -> bool:
    """Store a new approval; False when one with its id is there already."""
    return bool(
        db.execute(
            "INSERT INTO bot_approvals(interrupt_id, run_id, request, status, created_at, meta, "
            "digest, graph_interrupt_id) VALUES (?,?,?, 'pending', ?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (
                a.interrupt_id,
                a.run_id,
                json.dumps(a.request, default=repr),
                a.created_at,
                json.dumps(a.meta) if a.meta else None,
                a.digest,
                a.graph_interrupt_id,
            ),
        ).rowcount
        == 1
    )


def _superseded(db: Tx, interrupt_id: str, digest: str) -> tuple[Approval, int] | None:
    """LangGraph raised ``interrupt_id`` again: when the approval open for it (pending, or
    decided and not yet resumed) showed another request, close it as superseded (its
    decision void, nothing more due) and return it with the number of the new version;
    None when the request is the same (or nothing is open for it any more)."""
    row = db.execute(
        "SELECT *, (SELECT COUNT(*) FROM bot_approvals WHERE graph_interrupt_id=?) AS versions "
        "FROM bot_approvals WHERE graph_interrupt_id=? AND status IN ('pending', 'decided')",
        (interrupt_id, interrupt_id),
    ).fetchone()
    if row is None or row["digest"] == digest:
        return None
    closed = db.execute(
        "UPDATE bot_approvals SET status='superseded' WHERE interrupt_id=? "
        "AND status IN ('pending', 'decided')",
        (row["interrupt_id"],),
    ).rowcount
    if not closed:
        return None
    db.execute(
        "UPDATE bot_deadlines SET status='cancelled' WHERE interrupt_id=? AND status='pending'",
        (row["interrupt_id"],),
    )
    return _approval(row), int(row["versions"]) + 1
