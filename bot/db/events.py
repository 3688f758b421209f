"""Slack events acted on, by ``event_id``: Slack sends an event again (same id, header
``X-Slack-Retry-Num``) when it did not see our 200 within 3 s, to any replica, possibly after a
restart. An event is recorded in the same transaction as what it does (a vote, a refusal, an
answer), so a retry finds it recorded and does nothing, and an attempt whose transaction was
rolled back leaves the retry free to act.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.db.base import Base, Tx
from bot.db.outbox import _queue
from bot.model import Item

KEEP_EVENTS = 86_400.0  # seconds an event id is remembered; Slack retries for ~6 minutes


class SlackEvents(Base):
    """Answers given once per Slack event (the decisions themselves go through
    ``Store.decide(..., once=event_id)``)."""

    async def tell_once(self, event_id: str, items: Sequence[Item], now: float) -> bool:
        """Queue ``items`` (an answer that changes no state) unless ``event_id`` was acted on
        already; True when they were queued."""

        def tx(db: Tx) -> bool:
            if not _first_time(db, event_id, now):
                return False
            _queue(db, items, now)
            return True

        return await self._write(tx, wakes=True)


def _first_time(db: Tx, event_id: str, now: float) -> bool:
    """Record ``event_id`` in this transaction; False when it is recorded already (by this or
    any process: on PostgreSQL a concurrent insert of the same id waits for the first
    transaction and then finds it). Ids older than ``KEEP_EVENTS`` are forgotten first."""
    db.execute("DELETE FROM bot_slack_events WHERE at < ?", (now - KEEP_EVENTS,))
    inserted = db.execute(
        "INSERT INTO bot_slack_events(event_id, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (event_id, now),
    )
    return bool(inserted.rowcount == 1)
