"""The operator's queries on the bot's database: the readiness probe, the counts /metrics
reads at scrape time, and retention pruning.

Kept apart from the store (``bot.db.store.Store``) so that its hot paths (clicks, the outbox)
stay as they are; none of these run on a click. Same rules as the store: one thread hop per
call, each write one transaction, the same SQL on SQLite and PostgreSQL (``bot.db.postgres``
translates the few spellings that differ).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bot.db.base import Conn, Hop
from bot.db.migrations import MIGRATIONS

FINISHED = ("done", "failed")  # bot_runs.status of a run that will never be driven again

# A run may go once it finished before the cutoff, none of its approvals can still be decided
# or resumed, and none of its Slack messages is still queued (a queued update needs the row of
# the message it updates).
_PRUNABLE = """
SELECT r.run_id FROM bot_runs r
WHERE r.status IN ('done', 'failed') AND r.updated_at < ? {only}
  AND NOT EXISTS (SELECT 1 FROM bot_approvals a
                  WHERE a.run_id = r.run_id AND a.status IN ('pending', 'decided'))
  AND NOT EXISTS (SELECT 1 FROM bot_outbox o
                  WHERE o.run_id = r.run_id AND o.status IN ('pending', 'sending'))
ORDER BY r.updated_at LIMIT ?
"""
_IDS = "(SELECT value FROM json_each(?) AS j)"
_INTERRUPTS = f"(SELECT interrupt_id FROM bot_approvals WHERE run_id IN {_IDS})"


@dataclass(frozen=True)
class Snapshot:
    """Counts at one moment, for a scrape: rows by status, and when the oldest undelivered
    outbox row was queued (on the bot's clock; None: nothing undelivered)."""

    approvals: dict[str, int]
    runs: dict[str, int]
    outbox: dict[str, int]  # pending | sending | failed
    oldest_undelivered: float | None


@dataclass(frozen=True)
class Pruned:
    """What one retention batch deleted, for logs and metrics."""

    runs: int
    outbox_rows: int


class OpsStore:
    """The operator's reads and retention's deletes, kept out of the Store so the click path
    stays as it is; it runs on the same hops and writer as the Store."""

    def __init__(self, read: Hop, write: Hop) -> None:
        self._hop = read
        self._write = write  # SQLite: the saver's Writer (its lock, its commits)

    @property
    def schema_expected(self) -> int:
        """The schema version this release migrates to."""
        return len(MIGRATIONS)

    async def schema_version(self) -> int:
        """The file's schema version: the readiness probe's trivial query (it also says
        whether the migrations ran)."""
        return int(await self._hop(lambda db: db.execute("PRAGMA user_version").fetchone()[0]))

    async def snapshot(self) -> Snapshot:
        """Rows by status: group-bys over status indexes; the outbox's sent rows (nearly all
        of them) are not counted."""

        def read(db: Conn) -> Snapshot:
            approvals = db.execute(
                "SELECT status, COUNT(*) FROM bot_approvals GROUP BY status"
            ).fetchall()
            runs = db.execute("SELECT status, COUNT(*) FROM bot_runs GROUP BY status").fetchall()
            outbox = db.execute(
                "SELECT status, COUNT(*), MIN(created_at) FROM bot_outbox "
                "WHERE status IN ('pending', 'sending', 'failed') GROUP BY status"
            ).fetchall()
            open_since = [r[2] for r in outbox if r[0] != "failed" and r[2] is not None]
            return Snapshot(
                {str(r[0]): int(r[1]) for r in approvals},
                {str(r[0]): int(r[1]) for r in runs},
                {str(r[0]): int(r[1]) for r in outbox},
                min(open_since) if open_since else None,
            )

        return await self._hop(read)

    async def prunable_runs(self, cutoff: float, limit: int) -> list[str]:
        """Up to ``limit`` runs that may be pruned, oldest first."""
        sql = _PRUNABLE.format(only="")
        rows = await self._hop(lambda db: db.execute(sql, (cutoff, limit)).fetchall())
        return [str(r[0]) for r in rows]

    async def forget_runs(self, run_ids: Sequence[str], cutoff: float) -> Pruned:
        """Delete these runs (those that still qualify) with their approvals, votes,
        deadlines, ended standing grants and delivered outbox rows, in one transaction. The
        audit table keeps every row. Their checkpoints are the caller's (the saver's
        ``adelete_thread``)."""
        wanted = json.dumps(list(run_ids))

        def tx(db: Conn) -> Pruned:
            sql = _PRUNABLE.format(only=f"AND r.run_id IN {_IDS}")
            ids = [r[0] for r in db.execute(sql, (cutoff, wanted, len(run_ids))).fetchall()]
            if not ids:
                return Pruned(0, 0)
            arg = (json.dumps(ids),)
            db.execute(f"DELETE FROM bot_votes WHERE interrupt_id IN {_INTERRUPTS}", arg)
            db.execute(f"DELETE FROM bot_deadlines WHERE interrupt_id IN {_INTERRUPTS}", arg)
            # Standing grants made on them, once ended (one still in force stays)
            db.execute(
                f"DELETE FROM bot_grants WHERE source IN {_INTERRUPTS} AND expires_at < ?",
                (*arg, cutoff),
            )
            # Failed rows stay: the operator's record of what Slack refused.
            outbox = db.execute(
                f"DELETE FROM bot_outbox WHERE run_id IN {_IDS} AND status = 'sent'", arg
            ).rowcount
            db.execute(f"DELETE FROM bot_approvals WHERE run_id IN {_IDS}", arg)
            runs = db.execute(f"DELETE FROM bot_runs WHERE run_id IN {_IDS}", arg).rowcount
            return Pruned(runs, outbox)

        return await self._write(tx)

    async def forget_loose_outbox(self, cutoff: float, limit: int) -> int:
        """Delete delivered outbox rows that belong to no run and have no key (ephemerals,
        answers through response_url), queued before the cutoff. Keyed rows stay: a key
        is what keeps a message from being sent twice."""

        def tx(db: Conn) -> int:
            return db.execute(
                "DELETE FROM bot_outbox WHERE id IN (SELECT id FROM bot_outbox "
                "WHERE run_id IS NULL AND key IS NULL AND status = 'sent' AND created_at < ? "
                "LIMIT ?)",
                (cutoff, limit),
            ).rowcount

        return await self._write(tx)
