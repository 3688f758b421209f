"""The audit table: rows written with each transaction's other changes and appended, at its
end, to a hash chain (bot/integrity.py); and the reads the export and ``verify`` walk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.db.base import Base, Tx
from bot.db.outbox import _queue
from bot.integrity import link
from bot.model import Item


class Audit(Base):
    """Audit rows as the export, ``verify`` and a run's history read them, and an event
    recorded with the Slack side effects it causes."""

    async def record(
        self, event: str, now: float, items: Sequence[Item] = (), **audit: Any
    ) -> None:
        """An audit row and the Slack side effects it causes, together."""

        def tx(db: Tx) -> None:
            _audit(db, event, now, **audit)
            _queue(db, items, now)

        await self._write(tx, wakes=bool(items))

    async def run_history(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM bot_audit WHERE run_id=? ORDER BY id", (run_id,))
        return [dict(r) for r in rows]

    async def audit_page(self, since: float, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Audit rows at or after ``since``, in the order they were written, after ``after_id``."""
        rows = await self._all(
            "SELECT * FROM bot_audit WHERE at >= ? AND id > ? ORDER BY id LIMIT ?",
            (since, after_id, limit),
        )
        return [dict(r) for r in rows]

    async def audit_chain(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Audit rows in the chain's order (by id) after ``after_id``: what ``verify`` walks."""
        rows = await self._all(
            "SELECT id, at, event, user_id, run_id, interrupt_id, detail, digest, hash "
            "FROM bot_audit WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [dict(r) for r in rows]

    async def latest_checkpoints(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Each run's newest LangGraph checkpoint id (its thread's; ids sort by time)."""
        rows = await self._all(
            "SELECT thread_id, MAX(checkpoint_id) FROM checkpoints WHERE checkpoint_ns='' "
            "AND thread_id IN (SELECT value FROM json_each(?) AS j) GROUP BY thread_id",
            (json.dumps(list(run_ids)),),
        )
        return {r[0]: r[1] for r in rows}


def _audit(
    db: Tx,
    event: str,
    now: float,
    *,
    user: str | None = None,
    run_id: str | None = None,
    interrupt_id: str | None = None,
    detail: Any = None,
    digest: str | None = None,
) -> None:
    """An audit row, written with the transaction's others at its end (``_chain``);
    ``digest`` is that of the request the row is about (an approval's)."""
    text = None if detail is None else json.dumps(detail, default=str)
    db.audit.append((float(now), event, user, run_id, interrupt_id, text, digest or None))


_INSERT_AUDIT = (
    "INSERT INTO bot_audit(at, event, user_id, run_id, interrupt_id, detail, digest, hash) "
    "VALUES (?,?,?,?,?,?,?,?)"
)


# PostgreSQL, a chain without a key: the row's hash as ``bot.integrity.link`` makes it, from
# the hash of the row before it, computed by the server in the statement that writes the row.
# The last parameter is the row's JSON array without its "[" (the previous hash, ASCII with
# no quote or backslash, goes before it).
_INSERT_AUDIT_LINKED = (
    "INSERT INTO bot_audit(at, event, user_id, run_id, interrupt_id, detail, digest, hash) "
    "VALUES (?,?,?,?,?,?,?, 'sha256:' || encode(sha256(convert_to('[\"' || COALESCE("
    "(SELECT hash FROM bot_audit ORDER BY id DESC LIMIT 1), '') || '\",' || ?, 'UTF8')), 'hex'))"
)


def _chain(db: Tx, key: bytes | None) -> None:
    """Append the transaction's audit rows to the chain: one read of the last row's hash,
    then the rows, each hashed over its content and the hash before it. On PostgreSQL the
    chain's advisory lock comes first (held until the commit, so replicas append one after
    the other); it is taken here, at the end, so it is held as briefly as can be.

    On PostgreSQL without a key, the server hashes each row as it writes it
    (``_INSERT_AUDIT_LINKED``): the transaction reads nothing under the lock, so the lock,
    the rows and the COMMIT go in one round trip and the lock is held for none of ours
    (while it waited on this process's threads, a third of the store's connections queued
    for it under load). A key never goes to the database: a keyed chain is hashed here."""
    if not db.audit:
        return
    lock = getattr(db, "lock_audit_chain", None)
    if lock is not None:
        lock()
        if key is None:
            for row in db.audit:
                after = json.dumps(list(row), separators=(",", ":"))[1:]
                db.execute(_INSERT_AUDIT_LINKED, (*row, after))
            db.audit.clear()
            return
    last = db.execute("SELECT hash FROM bot_audit ORDER BY id DESC LIMIT 1").fetchone()
    prev = (last[0] if last is not None else None) or ""
    rows = []
    for row in db.audit:
        prev = link(prev, row, key)
        rows.append((*row, prev))
    db.executemany(_INSERT_AUDIT, rows)
    db.audit.clear()
