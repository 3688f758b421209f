"""The outbox's rows: every Slack side effect a state change causes, written in that change's
transaction (``_queue``), then taken, sent and recorded by the sender (bot/background/outbox.py,
which owns the delivery loop). Rows that may go at once are taken by the transaction that
queues them (``FastPath``, ``_INSERT_TAKEN``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.db.base import Base, Row, Tx
from bot.model import Delivery, Item, Sent

# Outbox kinds whose call replaces what Slack shows: a late copy of an older one would undo a
# newer one (bot/background/outbox.py waits before retrying them after a timeout).
REPLACES = frozenset({"update", "publish"})


@dataclass(frozen=True)
class FastPath:
    """The sender's side of the fast path: its clock and lease, and where rows go."""

    take: Callable[[list[Delivery]], None]
    active: Callable[[], bool]  # the sender is running (else rows wait for its first pass)
    clock: Callable[[], float]
    lease: float


_INSERT_ITEM = (
    "INSERT INTO bot_outbox(seq, key, kind, ref, lane, run_id, interrupt_id, payload, channel, "
    "status, next_at, created_at, updated_at) VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM "
    "bot_outbox), ?,?,?,?,?,?,?,?, 'pending', ?,?,?) "
)


_IGNORE = "ON CONFLICT(key) DO NOTHING"


# The row written, and "<status>:<owner>" of the first row of its lane waiting or in flight
# (an earlier one; on SQLite the row itself when there is none): "sending:<this process>"
# says the row will be taken when that one is recorded as delivered. On PostgreSQL that row
# is locked (FOR SHARE) until this transaction ends: its delivery record, in a transaction
# of its own, waits for this one's commit and then takes this row next; a record that
# committed first leaves the row no longer in flight, read again after the lock, and this
# row is then left for a pass (see ``bot.db.postgres.translate``).
_AHEAD = (
    "(SELECT e.status || ':' || COALESCE(e.owner, '') FROM bot_outbox e "
    "WHERE e.lane = CAST(bot_outbox.lane AS TEXT) AND e.status IN ('pending', 'sending') "
    "ORDER BY e.seq LIMIT 1 /* FOR SHARE */) AS ahead"
)


_QUEUED = " RETURNING id, status, " + _AHEAD


_REPLACE = (
    "ON CONFLICT(key) DO UPDATE SET payload=excluded.payload, version=bot_outbox.version+1, "
    "seq=excluded.seq, "
    "status=CASE bot_outbox.status WHEN 'sending' THEN 'sending' ELSE 'pending' END, attempts=0, "
    "next_at=excluded.next_at, error=NULL, failing_since=NULL, created_at=excluded.created_at, "
    "updated_at=excluded.updated_at"
)


# Outbox rows as the sender reads them (``_delivery``): each with the message it refers to.
_DELIVERIES = """
SELECT o.id, o.key, o.kind, o.ref, o.lane, o.run_id, o.interrupt_id, o.version, o.status,
       o.attempts, o.next_at, o.lease_until, o.failing_since, o.channel,
       p.channel AS ref_channel, p.ts AS ref_ts, p.status AS ref_status
FROM bot_outbox o LEFT JOIN bot_outbox p ON p.key = o.ref
"""


# A claimed row as ``_delivery`` reads it, with the message it refers to, and its payload.
# The CASTs are for SQLite: in RETURNING, a column of the changed row loses its affinity, and
# ``p.key = bot_outbox.ref`` then reads the whole outbox instead of its key's index (a burst
# of 200 ran 5.7 times slower after a few thousand deliveries; tests/unit/test_query_plans.py).
_CLAIMED = """RETURNING id, key, kind, ref, lane, run_id, interrupt_id, version, status,
    attempts, next_at, lease_until, failing_since, channel,
    (SELECT p.channel FROM bot_outbox p WHERE p.key = CAST(bot_outbox.ref AS TEXT)) AS ref_channel,
    (SELECT p.ts FROM bot_outbox p WHERE p.key = CAST(bot_outbox.ref AS TEXT)) AS ref_ts,
    (SELECT p.status FROM bot_outbox p WHERE p.key = CAST(bot_outbox.ref AS TEXT)) AS ref_status,
    payload
"""


# Take a waiting row for ``owner`` in one statement, when it may go now: due, first of its
# lane (no earlier row of the lane waiting or in flight), and its message in Slack.
_MAY_GO = """status = 'pending' AND next_at <= ?
AND NOT EXISTS (SELECT 1 FROM bot_outbox e WHERE e.lane = bot_outbox.lane
                AND e.status IN ('pending', 'sending') AND e.seq < bot_outbox.seq)
AND (ref IS NULL OR EXISTS (SELECT 1 FROM bot_outbox p WHERE p.key = bot_outbox.ref
                            AND p.status = 'sent' AND p.ts IS NOT NULL))
"""


_TAKE = "UPDATE bot_outbox SET status='sending', lease_until=?, owner=?, claimed_version=version "


# A new row taken by its own insert (for the owner and lease given) when it may go at once:
# nothing of its lane waiting or in flight, its message (if any) in Slack. The row as
# ``_delivery`` reads it, and the first of its lane otherwise (``_AHEAD``).
_NEW_MAY_GO = (
    "(NOT EXISTS (SELECT 1 FROM bot_outbox WHERE lane = ? AND status IN ('pending', 'sending')) "
    "AND (CAST(? AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM bot_outbox p WHERE p.key = ? "
    "AND p.status = 'sent' AND p.ts IS NOT NULL)))"
)


_INSERT_TAKEN = (
    "INSERT INTO bot_outbox(seq, key, kind, ref, lane, run_id, interrupt_id, payload, channel, "
    "next_at, created_at, updated_at, status, owner, lease_until, claimed_version) VALUES ("
    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM bot_outbox), ?,?,?,?,?,?,?,?, ?,?,?, "
    f"CASE WHEN {_NEW_MAY_GO} THEN 'sending' ELSE 'pending' END, "
    f"CASE WHEN {_NEW_MAY_GO} THEN ? END, CASE WHEN {_NEW_MAY_GO} THEN ? END, 1) "
    + _IGNORE
    + " "
    + _CLAIMED.rstrip()
    + ", "
    + _AHEAD
)


# A row this transaction queued (by id).
_TAKE_QUEUED = _TAKE + "WHERE id = ? AND " + _MAY_GO + _CLAIMED


# The next waiting row of a lane whose row was just delivered.
_TAKE_NEXT = (
    _TAKE
    + """WHERE id = (SELECT id FROM bot_outbox WHERE lane = ? AND status = 'pending'
            ORDER BY seq LIMIT 1) AND """
    + _MAY_GO
    + _CLAIMED
)


# SQLite: a delivery record (``_sent``) and its lane's follow-on (``_TAKE_NEXT``) in one
# statement, the same rows changed to the same values. Its reads see the rows as they were
# before it, so they look at the delivered row (?1) as the record leaves it: 'sent' when
# its version is still ?2, else waiting again, due at ?9, its ts COALESCE(?5, ts). The
# follow-on is chosen once (MATERIALIZED) before any row changes: the first row of lane ?3
# waiting (the delivered row itself when a newer version of it waits, as ``_TAKE_NEXT`` takes
# it after ``_sent``), if it may go (``_MAY_GO``). ?4: now, ?6: the channel, ?7 and ?8: the
# lease and owner the follow-on is taken with.
_SENT_AND_NEXT = """
WITH nxt(id) AS MATERIALIZED (
  SELECT o.id FROM (
    SELECT id, seq, lane, ref, next_at FROM bot_outbox
    WHERE lane = ?3 AND CASE WHEN id = ?1 THEN version <> ?2 ELSE status = 'pending' END
    ORDER BY seq LIMIT 1) o
  WHERE CASE WHEN o.id = ?1 THEN ?9 ELSE o.next_at END <= ?4
  AND NOT EXISTS (SELECT 1 FROM bot_outbox e WHERE e.lane = o.lane AND e.seq < o.seq
                  AND CASE WHEN e.id = ?1 THEN e.version <> ?2
                      ELSE e.status IN ('pending', 'sending') END)
  AND (o.ref IS NULL OR EXISTS (SELECT 1 FROM bot_outbox p WHERE p.key = o.ref AND CASE
       WHEN p.id = ?1 THEN p.version = ?2 AND COALESCE(?5, p.ts) IS NOT NULL
       ELSE p.status = 'sent' AND p.ts IS NOT NULL END)))
UPDATE bot_outbox SET
  status = CASE WHEN id IN (SELECT id FROM nxt) THEN 'sending' WHEN version = ?2 THEN 'sent'
           ELSE 'pending' END,
  attempts = CASE WHEN id = ?1 THEN attempts + 1 ELSE attempts END,
  channel = CASE WHEN id = ?1 THEN COALESCE(?6, channel) ELSE channel END,
  ts = CASE WHEN id = ?1 THEN COALESCE(?5, ts) ELSE ts END,
  lease_until = CASE WHEN id IN (SELECT id FROM nxt) THEN ?7 END,
  owner = CASE WHEN id IN (SELECT id FROM nxt) THEN ?8 END,
  error = CASE WHEN id = ?1 THEN NULL ELSE error END,
  next_at = CASE WHEN id = ?1 THEN ?9 ELSE next_at END,
  updated_at = CASE WHEN id = ?1 THEN ?9 ELSE updated_at END,
  claimed_version = CASE WHEN id IN (SELECT id FROM nxt) THEN version ELSE claimed_version END
WHERE id = ?1 OR id IN (SELECT id FROM nxt)
RETURNING id, key, kind, ref, lane, run_id, interrupt_id, version, status,
    attempts, next_at, lease_until, failing_since, channel,
    (SELECT CASE WHEN p.id = ?1 THEN COALESCE(?6, p.channel) ELSE p.channel END
     FROM bot_outbox p WHERE p.key = CAST(bot_outbox.ref AS TEXT)) AS ref_channel,
    (SELECT CASE WHEN p.id = ?1 THEN COALESCE(?5, p.ts) ELSE p.ts END
     FROM bot_outbox p WHERE p.key = CAST(bot_outbox.ref AS TEXT)) AS ref_ts,
    (SELECT CASE WHEN p.id = ?1 AND p.version = ?2 THEN 'sent'
                 WHEN p.id = ?1 THEN 'pending' ELSE p.status END
     FROM bot_outbox p WHERE p.key = CAST(bot_outbox.ref AS TEXT)) AS ref_status,
    payload
"""

_CLAIM_OUTBOX = (
    "UPDATE bot_outbox SET status='sending', lease_until=?, updated_at=?, owner=?, "
    "claimed_version=version "
    "WHERE id IN (SELECT value FROM json_each(?)) AND ((status='pending' AND "
    "next_at <= ?) OR (status='sending' AND lease_until < ?)) "
    "RETURNING id, version, payload"
)


_CLAIM_OUTBOX_PG = (
    "UPDATE bot_outbox SET status='sending', lease_until=?, updated_at=?, owner=?, "
    "claimed_version=version "
    "WHERE id IN (SELECT id FROM bot_outbox WHERE id = ANY(?) FOR UPDATE SKIP LOCKED) "
    "AND ((status='pending' AND next_at <= ?) OR (status='sending' AND lease_until < ?)) "
    "RETURNING id, version, payload"
)


_OPEN = (
    _DELIVERIES
    + """WHERE o.status IN ('pending', 'sending')
ORDER BY o.seq LIMIT ?
"""
)


class OutboxRows(Base):
    """The sender's reads and writes of outbox rows, and queueing Slack work that changes no
    state."""

    async def tell(self, items: Sequence[Item], now: float) -> None:
        """Queue Slack side effects that change no state (an answer to a stale click)."""
        if items:
            await self._write(lambda db: _queue(db, items, now), wakes=True)

    async def outbox_open(self, limit: int = 500) -> list[Delivery]:
        """Undelivered rows, oldest first, with the message each refers to: the sender needs
        the ones not yet due too, so that a later reply never overtakes an earlier one."""
        return [_delivery(r) for r in await self._all(_OPEN, (limit,))]

    async def outbox_claim(
        self, ids: Sequence[int], now: float, lease: float
    ) -> dict[int, tuple[int, dict[str, Any]]]:
        """Take rows for sending: id -> (version, payload). A row another process took
        meanwhile is not returned."""
        owner = self.lease.owner

        def tx(db: Tx) -> dict[int, tuple[int, dict[str, Any]]]:
            if self._postgres:
                sql = _CLAIM_OUTBOX_PG
                wanted: Any = list(ids)
            else:
                sql, wanted = _CLAIM_OUTBOX, json.dumps(list(ids))
            rows = db.execute(sql, (now + lease, now, owner, wanted, now, now)).fetchall()
            return {int(r[0]): (int(r[1]), json.loads(r[2])) for r in rows}

        return await self._write(tx)

    async def outbox_sent_many(
        self, done: Sequence[Sent], now: float, lease: float, follow: bool = True
    ) -> tuple[list[Delivery], bool]:
        """Delivered, in one transaction. A newer version queued meanwhile (a coalesced
        update) stays pending. An approval's post also records where the message landed and
        when (``posted_at``, on the deadlines' clock), and moves its deadlines to count from
        then.

        In the same transaction, the rows that were waiting on these (the next of each lane:
        a reply for its thread, an update for its post's ``ts``) are claimed and returned, so
        the sender goes straight on to them (unless ``follow`` is off: a stopping sender), and
        whether any waiting row was left.

        One record alone on SQLite is one statement (``_SENT_AND_NEXT``), run by the writer
        without BEGIN/COMMIT. PostgreSQL keeps two: a row queued meanwhile behind the one
        delivered holds that row's lock until its commit (``_AHEAD``), and only a second
        statement, with a snapshot taken after that wait, sees the new row to take it."""
        owner = self.lease.owner
        if len(done) == 1 and not _posts_approval(done[0]) and not self._postgres:
            one = done[0]
            lane = one.delivery.lane if follow else None
            return await self._write(
                lambda db: (_sent_and_next(db, one, lane, now, lease, owner), False), one=True
            )

        def tx(db: Tx) -> tuple[list[Delivery], bool]:
            for sent in done:
                _sent(db, sent)
            if not follow:
                return [], False
            lanes = sorted({s.delivery.lane for s in done if s.delivery.lane})
            return _take(db, _TAKE_NEXT, [(x,) for x in lanes], now, lease, owner), False

        return await self._write(tx)

    async def outbox_note_channel(self, d: Delivery, channel: str) -> None:
        """A DM's conversation is open: remember it so a retry skips conversations.open."""
        await self._write(
            lambda db: db.execute("UPDATE bot_outbox SET channel=? WHERE id=?", (channel, d.id))
        )

    async def outbox_retry(self, d: Delivery, now: float, next_at: float, error: str) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE bot_outbox SET status='pending', attempts=attempts+1, next_at=?, "
                "lease_until=NULL, owner=NULL, error=?, failing_since=COALESCE(failing_since, ?), "
                "updated_at=? WHERE id=? AND status='sending'",
                (next_at, error, now, now, d.id),
            )
        )

    async def outbox_failed(self, d: Delivery, now: float, error: str) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE bot_outbox SET status='failed', attempts=attempts+1, error=?, "
                "lease_until=NULL, owner=NULL, updated_at=? WHERE id=?",
                (error, now, d.id),
            )
        )

    async def outbox_open_for_run(self, run_id: str, since: float) -> int:
        """Rows of a run queued (or replaced) since ``since`` that Slack has not had yet: a
        decision made outside the bot waits for these before its process exits."""
        row = await self._one(
            "SELECT COUNT(*) FROM bot_outbox WHERE run_id=? AND created_at >= ? "
            "AND status IN ('pending', 'sending')",
            (run_id, since),
        )
        return int(row[0]) if row else 0


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        key=row["key"],
        kind=row["kind"],
        ref=row["ref"],
        lane=row["lane"],
        run_id=row["run_id"],
        interrupt_id=row["interrupt_id"],
        payload={},  # read when the row is claimed: the sender looks at many rows, sends few
        version=row["version"],
        status=row["status"],
        attempts=row["attempts"],
        next_at=row["next_at"],
        lease_until=row["lease_until"],
        failing_since=row["failing_since"],
        channel=row["channel"],
        ref_channel=row["ref_channel"],
        ref_ts=row["ref_ts"],
        ref_status=row["ref_status"],
    )


def _sent(db: Tx, sent: Sent) -> None:
    d, now, channel, ts = sent.delivery, sent.now, sent.channel, sent.ts
    db.execute(
        "UPDATE bot_outbox SET status=CASE WHEN version=? THEN 'sent' ELSE 'pending' "
        "END, attempts=attempts+1, channel=COALESCE(?, channel), ts=COALESCE(?, ts), "
        "lease_until=NULL, owner=NULL, error=NULL, next_at=?, updated_at=? WHERE id=?",
        (d.version, channel, ts, now, now, d.id),
    )
    if _posts_approval(sent):
        # Deadlines count from the moment the message is in Slack, not from when it was
        # queued (they differ by minutes when Slack is down).
        db.execute(
            "UPDATE bot_deadlines SET due_at = due_at + (? - (SELECT created_at FROM "
            "bot_approvals WHERE interrupt_id=? AND posted_at IS NULL)) "
            "WHERE interrupt_id=? AND status='pending' AND EXISTS (SELECT 1 FROM "
            "bot_approvals WHERE interrupt_id=? AND posted_at IS NULL)",
            (sent.posted_at, d.interrupt_id, d.interrupt_id, d.interrupt_id),
        )
        db.execute(
            "UPDATE bot_approvals SET channel=?, ts=?, posted_at=COALESCE(posted_at, ?) "
            "WHERE interrupt_id=?",
            (channel, ts, sent.posted_at, d.interrupt_id),
        )


def _posts_approval(sent: Sent) -> bool:
    """Whether ``sent`` put an approval's message in Slack (its record also moves the
    approval's deadlines and says where the message is)."""
    d = sent.delivery
    return d.kind == "post" and d.key == f"approval:{d.interrupt_id}" and bool(sent.ts)


def _sent_and_next(
    db: Tx, sent: Sent, lane: str | None, now: float, lease: float, owner: str
) -> list[Delivery]:
    """SQLite: record ``sent`` (not an approval's post) and take the next row of ``lane`` for
    ``owner``, in one statement (``_SENT_AND_NEXT``); without a lane, the record alone."""
    if not lane:
        _sent(db, sent)
        return []
    d = sent.delivery
    args = (d.id, d.version, lane, now, sent.ts, sent.channel, now + lease, owner, sent.now)
    rows = db.execute(_SENT_AND_NEXT, args).fetchall()
    return [
        replace(_delivery(r), payload=json.loads(r["payload"]))
        for r in rows
        if r["status"] == "sending"
    ]


def _take(
    db: Tx,
    claim: str,
    keys: Sequence[tuple[Any, ...]],
    now: float,
    lease: float,
    owner: str,
) -> list[Delivery]:
    """Claim for ``owner``, one statement each, the rows ``claim`` picks by ``keys`` (a row's
    id, or a lane) that may be sent now (``_MAY_GO``)."""
    taken = []
    for key in keys:
        row = db.execute(claim, (now + lease, owner, *key, now)).fetchone()
        if row is not None:
            taken.append(replace(_delivery(row), payload=json.loads(row["payload"])))
    return taken


def _queue(db: Tx, items: Sequence[Item], now: float) -> int:
    """Write outbox rows; returns how many were new or replaced (a known key is skipped).
    An update of an approval's message also updates each copy of it (escalation DMs). The
    ids of rows now waiting are kept on the transaction (``Tx.queued``) for the fast path,
    each with the first row of its lane as the insert found it (``_QUEUED``)."""
    written = 0
    queued: list[tuple[int, str | None]] | None = getattr(db, "queued", None)
    claim: tuple[str, float] | None = getattr(db, "claim", None)
    taken: list[Delivery] = getattr(db, "taken", [])
    behind: list[str | None] = getattr(db, "behind", [])
    for i in _with_copies(db, items):
        lane = i.ref or i.key
        args: tuple[Any, ...] = (
            i.key,
            i.kind,
            i.ref,
            lane,
            i.run_id,
            i.interrupt_id,
            json.dumps(i.payload),
            i.payload.get("channel") if i.kind == "post" else None,
            0.0,  # due at once; the sender keeps time for retries on its own clock
            now,
            now,
        )
        if claim is not None and not i.replace:
            may_go = (lane, i.ref, i.ref)
            args = (*args, *may_go, *may_go, claim[0], *may_go, claim[1])
            row = db.execute(_INSERT_TAKEN, args).fetchone()
        else:
            sql = _INSERT_ITEM + (_REPLACE if i.replace else _IGNORE) + _QUEUED
            row = db.execute(sql, args).fetchone()
        if row is None:
            continue
        written += 1
        if claim is not None and not i.replace:  # taken by its insert, or cannot go yet
            if row["status"] == "sending":
                taken.append(replace(_delivery(row), payload=dict(i.payload)))
            else:
                behind.append(row["ahead"])
        elif queued is not None and row["status"] == "pending":
            queued.append((int(row["id"]), row["ahead"]))
    return written


def _with_copies(db: Tx, items: Sequence[Item]) -> list[Item]:
    out = list(items)
    for i in items:
        if i.kind != "update" or not (i.ref or "").startswith("approval:"):
            continue
        prefix = "copy:" + (i.ref or "").removeprefix("approval:") + ":"
        copies = db.execute(
            "SELECT key FROM bot_outbox WHERE key >= ? AND key < ?", (prefix, prefix[:-1] + ";")
        ).fetchall()
        out += [replace(i, key=f"update:{c[0]}", ref=c[0]) for c in copies]
    return out
