"""Bolt listeners. Each module has ``register(app, deps)``; every listener acks first and
hands slow work to ``deps.tasks``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from bot.db.retry import is_transient

T = TypeVar("T")

READ_SECONDS = 2.0  # what an ack waits for the database (Slack wants the ack within 3 s)


class NotAnswered(Exception):
    """The database did not answer a read an ack needed in time."""


async def read_before_ack(read: Awaitable[T]) -> T:
    """A read whose result goes into the ack: within ``READ_SECONDS``, else ``NotAnswered``
    (the database is blinking; the person is told so instead of Slack's timeout error)."""
    try:
        async with asyncio.timeout(READ_SECONDS):
            return await read
    except Exception as exc:
        if isinstance(exc, TimeoutError) or is_transient(exc):
            raise NotAnswered from exc
        raise
