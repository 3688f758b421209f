"""The HTTP API's Idempotency-Keys: a table of their own, written only by bot/web/api.py."""

from __future__ import annotations

from bot.db.base import Base, Tx


class Keys(Base):
    """Each Idempotency-Key a token used, and the answer its first request was given."""

    async def api_request_begin(
        self, token: str, key: str, fingerprint: str, now: float, keep: float, stale: float
    ) -> tuple[str, int | None, str | None] | None:
        """Take an Idempotency-Key for a token: None when it is new (the caller answers it);
        else the first request's fingerprint, status and response (status None: still being
        answered). Keys older than ``keep`` seconds are forgotten first, and so are keys still
        unanswered after ``stale`` seconds (the process answering them stopped)."""

        def tx(db: Tx) -> tuple[str, int | None, str | None] | None:
            db.execute(
                "DELETE FROM bot_api_requests WHERE created_at < ? OR "
                "(status IS NULL AND created_at < ?)",
                (now - keep, now - stale),
            )
            row = db.execute(
                "SELECT fingerprint, status, response FROM bot_api_requests "
                "WHERE token=? AND key=?",
                (token, key),
            ).fetchone()
            if row is not None:
                return row[0], row[1], row[2]
            db.execute(
                "INSERT INTO bot_api_requests(token, key, fingerprint, created_at) "
                "VALUES (?,?,?,?)",
                (token, key, fingerprint, now),
            )
            return None

        return await self._write(tx)

    async def api_request_end(
        self, token: str, key: str, status: int, response: str
    ) -> tuple[int, str]:
        """Record a key's answer unless one is recorded already; returns the recorded one."""

        def tx(db: Tx) -> tuple[int, str]:
            db.execute(
                "UPDATE bot_api_requests SET status=?, response=? WHERE token=? AND key=? "
                "AND status IS NULL",
                (status, response, token, key),
            )
            row = db.execute(
                "SELECT status, response FROM bot_api_requests WHERE token=? AND key=?",
                (token, key),
            ).fetchone()
            return (row[0], row[1]) if row and row[0] is not None else (status, response)

        return await self._write(tx)

    async def api_request_forget(self, token: str, key: str) -> None:
        """Let a key be used again: its request failed before it could be answered."""
        await self._write(
            lambda db: db.execute(
                "DELETE FROM bot_api_requests WHERE token=? AND key=? AND status IS NULL",
                (token, key),
            )
        )
