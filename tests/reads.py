"""Reads only the tests need, kept out of the product (like procrastinate's ``testing.py``):
they run their SQL on the store's own connection, so they see what the bot wrote, committed
or not yet sent anywhere, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from bot.db.base import _approval, _run
from bot.db.store import Store
from bot.model import Approval, Run


async def runs_with_status(store: Store, status: str) -> list[Run]:
    rows = await store._all("SELECT * FROM bot_runs WHERE status=? ORDER BY created_at", (status,))
    return [_run(r) for r in rows]


async def approvals_with_status(store: Store, status: str) -> list[Approval]:
    rows = await store._all(
        "SELECT * FROM bot_approvals WHERE status=? ORDER BY created_at", (status,)
    )
    return [_approval(r) for r in rows]


async def audit_events(store: Store, interrupt_id: str | None = None) -> list[dict[str, Any]]:
    if interrupt_id is None:
        rows = await store._all("SELECT * FROM bot_audit ORDER BY id")
    else:
        rows = await store._all(
            "SELECT * FROM bot_audit WHERE interrupt_id=? ORDER BY id", (interrupt_id,)
        )
    return [dict(r) for r in rows]
