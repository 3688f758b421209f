"""Fixtures for the fault tests: a workspace and a bot file, the bot started by each test with
the settings it needs (``h.start_bot(**FAST, backend=...)``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.localslack import LocalSlack
from tests.conftest import Harness


@pytest.fixture
async def fh(ws: LocalSlack, tmp_path: Path) -> AsyncIterator[Harness]:
    """A Harness with no bot yet."""
    h = Harness(ws, tmp_path / "approvals.db")
    yield h
    ws.release()  # parked calls go, so that stopping never waits on them
    for bot in h.bots:
        await bot.stop()
