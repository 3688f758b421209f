"""Standing grants: asked for with a vote ("Approve & allow…", in the vote's transaction),
made active when the approval is claimed with as many askers as its rule needs, used by an
approval opened later (in the opening's transaction, so a revoke is ordered before or after
it like a second click), listed, and revoked exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bot.db.audit import _audit
from bot.db.base import Base, Row, Tx
from bot.db.outbox import _queue
from bot.model import Approval, Ballot, Grant, Item

LIVE = "SELECT * FROM bot_grants WHERE status='active' AND expires_at > ?"


class Grants(Base):
    """The standing grants, as rows of their own beside the approvals they were made on."""

    async def live_grants(self, command: str, now: float) -> list[Grant]:
        """The active, unexpired grants of a graph (what a new approval is checked against)."""
        return [_grant(r) for r in await self._all(f"{LIVE} AND command=?", (now, command))]

    async def grants_live(self, now: float, limit: int = 200) -> list[Grant]:
        """Every active, unexpired grant, soonest to end first (``/approvals grants``, Home)."""
        rows = await self._all(f"{LIVE} ORDER BY expires_at LIMIT ?", (now, limit))
        return [_grant(r) for r in rows]

    async def revoke_grant(
        self,
        grant_id: str,
        user: str,
        now: float,
        may: Callable[[Grant], bool],
        told: Callable[[Grant | None, str], list[Item]],
    ) -> tuple[str, Grant | None]:
        """Revoke a grant once: ``may(grant)`` says whether ``user`` may (the grantors,
        admins). Returns ("revoked" | "refused" | "gone", the grant); ``told(grant, what)``
        is what the person is shown, queued in the same transaction."""

        def tx(db: Tx) -> tuple[str, Grant | None]:
            row = db.execute("SELECT * FROM bot_grants WHERE grant_id=?", (grant_id,)).fetchone()
            grant = None if row is None else _grant(row)
            if grant is None or grant.status != "active" or grant.expires_at <= now:
                what = "gone"
            elif not may(grant):
                what = "refused"
            else:
                done = db.execute(
                    "UPDATE bot_grants SET status='revoked', revoked_by=?, revoked_at=? "
                    "WHERE grant_id=? AND status='active' RETURNING *",
                    (user, now, grant_id),
                ).fetchone()
                what = "revoked" if done is not None else "gone"
                if done is not None:
                    grant = _grant(done)
                    _audit(
                        db,
                        "grant_revoked",
                        now,
                        user=user,
                        interrupt_id=grant.source,
                        detail={"grant": grant_id},
                    )
            _queue(db, told(grant, what), now)
            return what, grant

        return await self._write(tx, wakes=True)


def _grant(row: Row) -> Grant:
    return Grant(
        grant_id=row["grant_id"],
        source=row["source"],
        command=row["command"],
        rule=row["rule"],
        tools=tuple(json.loads(row["tools"])),
        scope=row["scope"],
        scope_value=row["scope_value"],
        args_digest=row["args_digest"],
        granted_by=tuple(json.loads(row["granted_by"])),
        needed=int(row["needed"]),
        status=row["status"],
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        revoked_by=row["revoked_by"],
        revoked_at=row["revoked_at"],
        uses=int(row["uses"]),
    )


def _ask_grant(db: Tx, approval: Approval, command: str, b: Ballot, now: float) -> Grant | None:
    """Record ``b.user``'s ask for a grant with their vote: one proposal per (approval,
    scope, exact or not), each asker added once, ending at the earliest of their ends."""
    ask = b.grant
    if ask is None:
        return None
    exact = ask.args_digest is not None
    grant_id = f"{approval.interrupt_id}:{ask.scope}:{'exact' if exact else 'any'}"
    row = db.execute("SELECT * FROM bot_grants WHERE grant_id=?", (grant_id,)).fetchone()
    ends = now + ask.seconds
    if row is None:
        row = db.execute(
            "INSERT INTO bot_grants(grant_id, source, command, rule, tools, scope, scope_value, "
            "args_digest, granted_by, needed, status, created_at, expires_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?, 'proposed', ?,?) RETURNING *",
            (
                grant_id,
                approval.interrupt_id,
                command,
                ask.rule,
                json.dumps(list(ask.tools)),
                ask.scope,
                ask.scope_value,
                ask.args_digest,
                json.dumps([b.user]),
                ask.needed,
                now,
                ends,
            ),
        ).fetchone()
    else:
        old = _grant(row)
        if old.status != "proposed":
            return old
        by = [*old.granted_by, *([] if b.user in old.granted_by else [b.user])]
        row = db.execute(
            "UPDATE bot_grants SET granted_by=?, expires_at=? WHERE grant_id=? RETURNING *",
            (json.dumps(by), min(old.expires_at, ends), grant_id),
        ).fetchone()
    return _grant(row)


def _settle_grants(db: Tx, approval: Approval, approved: bool, now: float) -> Grant | None:
    """The approval was claimed: the grant asked for by enough approvers becomes active
    (an approval, not a rejection); every other ask on it lapses. Returns the grant made."""
    made = None
    if approved:
        asked = [
            _grant(r)
            for r in db.execute(
                "SELECT * FROM bot_grants WHERE source=? AND status='proposed' "
                "AND expires_at > ? ORDER BY created_at",
                (approval.interrupt_id, now),
            ).fetchall()
        ]
        # An asker counts only while their vote is for the choice that decided: one who
        # asked, then voted otherwise, made no grant.
        voted = {
            r[0]
            for r in db.execute(
                "SELECT user_id FROM bot_votes WHERE interrupt_id=? AND choice=?",
                (approval.interrupt_id, approval.choice),
            ).fetchall()
        }
        makers = [(g, tuple(u for u in g.granted_by if u in voted)) for g in asked]
        enough = next(((g, by) for g, by in makers if by and len(by) >= g.needed), None)
        row = (
            None
            if enough is None
            else db.execute(
                "UPDATE bot_grants SET status='active', granted_by=? WHERE grant_id=? "
                "AND status='proposed' RETURNING *",
                (json.dumps(list(enough[1])), enough[0].grant_id),
            ).fetchone()
        )
        if row is not None:
            made = _grant(row)
            _audit(
                db,
                "grant_made",
                now,
                user=made.granted_by[0],
                run_id=approval.run_id,
                interrupt_id=approval.interrupt_id,
                detail={
                    "grant": made.grant_id,
                    "granted_by": list(made.granted_by),
                    "scope": made.scope,
                    "tools": list(made.tools),
                    "exact": made.args_digest is not None,
                    "until": made.expires_at,
                },
                digest=approval.digest,
            )
    db.execute(
        "UPDATE bot_grants SET status='lapsed' WHERE source=? AND status='proposed'",
        (approval.interrupt_id,),
    )
    return made


def _use_grant(db: Tx, grant_id: str, now: float) -> Grant | None:
    """Take one use of a grant, if it still holds (active, unexpired): the same row a
    revoke updates, so the two are ordered."""
    row = db.execute(
        "UPDATE bot_grants SET uses=uses+1 WHERE grant_id=? AND status='active' "
        "AND expires_at > ? RETURNING *",
        (grant_id, now),
    ).fetchone()
    return None if row is None else _grant(row)
