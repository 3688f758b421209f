"""A connection lost during COMMIT (PostgreSQL): the transaction may or may not have landed,
and the bot must not run it twice nor mislead anyone.

The bot talks to PostgreSQL through a TCP proxy (tests/faults/pgproxy.py) that cuts the
connection of one chosen transaction at its COMMIT: after the COMMIT reached the server
("landed": committed, its answer lost) or before ("lost": never committed). Either way the
click is decided once and the run resumed once (bob is never told "already approved by
@bob"), and a `/deploy` whose run was created in a landed COMMIT goes on (no duplicate key).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import Harness, query
from tests.faults.pgproxy import PgProxy
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    FAST,
    GatedBackend,
    all_ephemerals,
    done,
    plain_words,
    progress_counts,
    text_of,
)


@pytest.fixture
async def proxied(pg_url: str) -> AsyncIterator[tuple[PgProxy, str]]:
    """A proxy in front of the test's PostgreSQL schema, and the URL that goes through it.
    The test itself reads ``pg_url`` directly: the proxy runs on the test's event loop, which
    a blocking read through it would stall."""
    parts = urlsplit(pg_url)
    proxy = PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    user = f"{parts.username}@" if parts.username else ""
    yield proxy, urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
    await proxy.stop()


def approval(h: Harness) -> dict[str, Any] | None:
    return next(
        (m for m in h.ws.messages(DEPLOYS) if m.get("blocks", [{}])[0].get("type") == "header"),
        None,
    )


def count(pg_url: str, sql: str) -> int:
    return int(query(Path(), pg_url, sql)[0][0])


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "lost"])
async def test_a_click_whose_commit_lost_its_answer(
    pg_url: str, proxied: tuple[PgProxy, str], fh: Harness, landed: bool
) -> None:
    proxy, url = proxied
    fh.database_url = url
    gated = GatedBackend()
    await fh.start_bot(**FAST, backend=gated)
    await fh.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    m = await fh.wait(lambda: approval(fh), timeout=DEADLINE)

    proxy.cut_commit(b"INSERT INTO bot_votes", landed=landed)
    assert (await fh.ws.click("bob", m, "Approve")).status == 200
    await fh.wait(lambda: done(fh.ws, m["ts"]), timeout=DEADLINE)
    await fh.idle()

    assert proxy.cuts == 1, "the click's COMMIT was never cut"
    assert count(pg_url, "SELECT COUNT(*) FROM bot_audit WHERE event='decided'") == 1
    assert count(pg_url, "SELECT COUNT(*) FROM bot_audit WHERE event='resumed'") == 1
    assert count(pg_url, "SELECT COUNT(*) FROM bot_votes WHERE user_id='U0BOB'") == 1
    assert gated.started == 1
    assert all(n == 1 for n in progress_counts(fh.ws, m["ts"]).values())
    assert not fh.ws.ephemerals("bob"), fh.ws.ephemerals("bob")  # not "already approved"
    assert "Approved" in text_of(approval(fh))


async def test_a_deploy_whose_run_landed_before_its_answer_was_lost(
    pg_url: str, proxied: tuple[PgProxy, str], fh: Harness
) -> None:
    proxy, url = proxied
    fh.database_url = url
    await fh.start_bot(**FAST)
    proxy.cut_commit(b"INSERT INTO bot_runs", landed=True)
    assert (await fh.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)).status == 200
    m = await fh.wait(lambda: approval(fh), timeout=DEADLINE)
    assert (await fh.ws.click("bob", m, "Approve")).status == 200
    await fh.wait(lambda: done(fh.ws, m["ts"]), timeout=DEADLINE)
    await fh.idle()

    assert proxy.cuts == 1, "the run's COMMIT was never cut"
    assert count(pg_url, "SELECT COUNT(*) FROM bot_runs") == 1
    assert count(pg_url, "SELECT COUNT(*) FROM bot_audit WHERE event='run_started'") == 1
    for e in all_ephemerals(fh.ws):
        plain_words(e["text"])
