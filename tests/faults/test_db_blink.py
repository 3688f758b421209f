"""The database blinks while deploys run and people click: nothing fails, nothing is lost or
doubled, and the cut runs continue within seconds of the database's return.

- PostgreSQL, every connection cut again and again for BLINK seconds (what a failover does):
  the bot's database is one of the test's own (CREATE DATABASE), so ``pg_terminate_backend``
  hits only the bot's connections. The shipped retry budget (60 s).
- PostgreSQL restarted (stopped for BLINK seconds, then started): a private server in a
  temporary folder (tests/faults/pgserver.py). The shipped retry budget.
- PostgreSQL away for longer than a shortened retry budget (2 s): the click, the modal and the
  `/deploy` made meanwhile are answered in plain words; the same click later decides once.
- SQLite: another process holds the write lock past the busy timeout (shortened to 0.5 s) for
  BLINK seconds while a click and a deploy go on. The shipped retry budget. LONG_TESTS=1 also
  holds it for 35 s with the shipped settings (53b61b8 gave up after its 30 s busy timeout).
- A deploy cut past a shortened retry budget (PostgreSQL stopped; SQLite locked), with the
  shipped 30 s run lease: the process that holds the run continues it within seconds of the
  database's return, saying so in its thread (not "the bot restarted").

Each case prints (`pytest -s`) and writes to test-artifacts/db-blink.txt how long after the
database's return the last cut run showed ✅.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from bot.engine import DB_NOTE, RESTART_NOTE
from bot.render.messages import NOT_RECORDED
from tests.conftest import Harness, postgres_base_url
from tests.faults.pgserver import PrivateServer, private_server
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    FAST,
    LINES,
    LONG,
    STEPS,
    GatedBackend,
    all_ephemerals,
    buttons,
    done,
    message,
    nothing_parked,
    plain_words,
    progress_counts,
    text_of,
)

BLINK = 3.0  # seconds the database is away
RUNS = 3  # deploys in flight, one of them approved during the blink
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "db-blink.txt"


@pytest.fixture(scope="module")
def recoveries() -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    if lines:
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        head = "# seconds from the database's return to the last cut deploy showing ✅\n"
        ARTIFACT.write_text(head + "".join(f"{line}\n" for line in lines))


@pytest.fixture
def own_database() -> Iterator[tuple[str, str, str]]:
    """A database of the test's own on TEST_DATABASE_URL's server, dropped after: (its URL,
    its name, the URL of the server's database to act from)."""
    base = postgres_base_url()
    name = f"blink_{secrets.token_hex(5)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}")), name, base
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivateServer]:
    """A PostgreSQL server of the test's own, running; removed after."""
    server = private_server()
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.remove)


async def terminate_all(base: str, dbname: str, seconds: float) -> int:
    """Cut every connection to ``dbname``, every 0.1 s for ``seconds`` (acting from the
    server's own database, so this connection is not among them). Returns how many."""
    cut = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
        while loop.time() < end:
            cur = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
            row = await cur.fetchone()
            cut += int(row[0]) if row else 0
            await asyncio.sleep(0.1)
    return cut


# -- the workspace side ---------------------------------------------------------------------


def approval_of(h: Harness, version: str) -> dict[str, Any] | None:
    """The approval message of ``/deploy api <version> prod``."""
    for m in h.ws.messages(DEPLOYS):
        if m.get("blocks", [{}])[0].get("type") == "header" and f"api {version} to" in text_of(m):
            return m
    return None


async def request(h: Harness, version: str) -> dict[str, Any]:
    assert (await h.ws.slash("alice", "/deploy", f"api {version} prod")).status == 200
    return await h.wait(lambda: approval_of(h, version), timeout=DEADLINE)


def told(h: Harness, user: str, words: str) -> dict[str, Any] | None:
    return next((e for e in h.ws.ephemerals(user) if words in e.get("text", "")), None)


async def settled(h: Harness) -> None:
    """Every task ended and every Slack call was made (read from the bot's database)."""

    def empty() -> bool:
        open_rows = h.query(
            "SELECT COUNT(*) FROM bot_outbox WHERE status IN ('pending', 'sending')"
        )
        return open_rows[0][0] == 0 and nothing_parked(h.ws)

    await h.wait(empty, timeout=DEADLINE)
    await h.idle()
    await h.wait(empty, timeout=DEADLINE)


def check_all_once(h: Harness, versions: list[str], started: int) -> None:
    """Each approval decided once and resumed once, each run done (none failed), one deploy
    per approval, each progress line once in its thread, every ephemeral in plain words."""
    assert started == len(versions), f"{started} deploys for {len(versions)} approvals"
    for version in versions:
        m = approval_of(h, version)
        assert m is not None and done(h.ws, m["ts"]), text_of(m)
        assert buttons(m) == []
        counts = progress_counts(h.ws, m["ts"])
        assert all(counts[name] == 1 for name in STEPS), (version, counts)
    events = h.query(
        "SELECT a.interrupt_id, e.event FROM bot_approvals a JOIN bot_audit e "
        "USING (interrupt_id) WHERE e.event IN ('decided', 'resumed')"
    )
    per: dict[str, list[str]] = {}
    for iid, event in events:
        per.setdefault(iid, []).append(event)
    assert len(per) == len(versions) and all(
        sorted(e) == ["decided", "resumed"] for e in per.values()
    ), per
    runs = h.query("SELECT status, outcome FROM bot_runs")
    assert len(runs) == len(versions)
    for status, outcome in runs:
        assert status == "done" and json.loads(outcome)["status"] == "succeeded", (status, outcome)
    for e in all_ephemerals(h.ws):
        plain_words(e["text"])
        assert "internal error" not in e["text"]


# -- PostgreSQL -----------------------------------------------------------------------------


async def three_deploys(h: Harness) -> tuple[list[str], list[dict[str, Any]]]:
    """Three requests; bob approves two, whose deploys stop after their first line. Returns
    the versions and the approval messages as first posted (with their buttons)."""
    versions = [f"1.4.{i}" for i in range(RUNS)]
    posts = [await request(h, v) for v in versions]
    for m in posts[:2]:
        assert (await h.ws.click("bob", m, "Approve")).status == 200
    for m in posts[:2]:
        await h.wait(
            lambda m=m: any(r.get("text") == LINES[0] for r in h.ws.replies(DEPLOYS, m["ts"])),
            timeout=DEADLINE,
        )
    return versions, posts


async def during_the_blink(h: Harness, gated: GatedBackend, posts: list[dict[str, Any]]) -> None:
    """What people and deploys do while the database is away: the cut deploys go on, bob
    approves the third, dan clicks the first on his stale screen (it is decided already: he
    is told by whom)."""
    gated.open()
    assert (await h.ws.click("bob", posts[2], "Approve")).status == 200
    assert (await h.ws.click("dan", posts[0], "Approve")).status == 200


async def after_the_return(
    h: Harness, versions: list[str], back: float, recoveries: list[str], case: str
) -> float:
    """Wait for every deploy to show ✅; returns (and records) seconds since ``back``."""
    loop = asyncio.get_running_loop()

    def all_done() -> bool:
        return all((m := approval_of(h, v)) is not None and done(h.ws, m["ts"]) for v in versions)

    await h.wait(all_done, timeout=DEADLINE + BLINK)
    took = loop.time() - back
    line = f"{case:28} ✅ on all {len(versions)} deploys {took:5.2f} s after the database's return"
    print(f"\ndb-blink: {line}")
    recoveries.append(line)
    return took


async def test_every_connection_cut_for_seconds(
    own_database: tuple[str, str, str], fh: Harness, recoveries: list[str]
) -> None:
    url, name, base = own_database
    fh.database_url = url
    gated = GatedBackend(closed=[1])
    await fh.start_bot(**FAST, backend=gated)
    versions, posts = await three_deploys(fh)

    loop = asyncio.get_running_loop()
    cutting = asyncio.create_task(terminate_all(base, name, BLINK))
    await asyncio.sleep(0.3)  # the first cuts are made: everything below meets the blink
    await during_the_blink(fh, gated, posts)
    cut = await cutting
    back = loop.time()
    assert cut >= 3, "the test cut no connection"
    took = await after_the_return(fh, versions, back, recoveries, "connections cut for 3 s")

    await h_settled_and_checked(fh, versions, gated)
    assert told(fh, "dan", "Already approved by <@U0BOB>"), fh.ws.ephemerals("dan")
    assert took < 5.0


async def h_settled_and_checked(h: Harness, versions: list[str], gated: GatedBackend) -> None:
    await settled(h)
    check_all_once(h, versions, gated.started)


async def test_server_restarted(
    private_pg: PrivateServer, fh: Harness, recoveries: list[str]
) -> None:
    fh.database_url = private_pg.url
    gated = GatedBackend(closed=[1])
    await fh.start_bot(**FAST, backend=gated)
    versions, posts = await three_deploys(fh)

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(private_pg.stop)
    down = loop.time()
    await during_the_blink(fh, gated, posts)
    await asyncio.sleep(max(0.0, BLINK - (loop.time() - down)))  # the outage's length
    await asyncio.to_thread(private_pg.start)
    back = loop.time()
    took = await after_the_return(fh, versions, back, recoveries, "server restarted (3 s down)")

    await h_settled_and_checked(fh, versions, gated)
    assert took < 5.0


async def test_longer_than_the_retry_budget_people_are_told(
    private_pg: PrivateServer, fh: Harness
) -> None:
    """A 2 s budget (and a 3 s run lease) and a database away for longer: bob's click, dan's
    reason modal and alice's `/deploy` are each answered in plain words, and none of them
    decided or started anything; the deploy in flight stays running (not failed) and is
    continued from its checkpoint once the database is back (its step runs again, as after
    a crash: the README's "make your deploy script safe to repeat"); bob's second click
    decides once."""
    fh.database_url = private_pg.url
    gated = GatedBackend(closed=[1])
    await fh.start_bot(**FAST, backend=gated, db_retry_seconds=2.0, run_lease=3.0)
    flying = await request(fh, "1.3.0")
    m = await request(fh, "1.4.0")
    assert (await fh.ws.click("bob", flying, "Approve")).status == 200
    await fh.wait(
        lambda: any(r.get("text") == LINES[0] for r in fh.ws.replies(DEPLOYS, flying["ts"])),
        timeout=DEADLINE,
    )
    assert (await fh.ws.click("dan", m, "Reject with reason…")).status == 200
    modal = await fh.wait(lambda: fh.ws.open_views("dan"), timeout=DEADLINE)

    await asyncio.to_thread(private_pg.stop)
    gated.open()  # the deploy in flight goes on: its next line cannot be written
    assert (await fh.ws.click("bob", m, "Approve")).status == 200
    assert (await fh.ws.submit_modal("dan", modal[-1], {"reason": "not today"})).status == 200
    assert (await fh.ws.slash("alice", "/deploy", "web 2.0.0 prod")).status == 200
    words = NOT_RECORDED["click"]
    assert await fh.wait(lambda: told(fh, "bob", words), timeout=DEADLINE)
    assert await fh.wait(lambda: told(fh, "dan", NOT_RECORDED["form"]), timeout=DEADLINE)
    started = NOT_RECORDED["command"].format(command="`/deploy`")
    assert await fh.wait(lambda: told(fh, "alice", started), timeout=DEADLINE)
    await asyncio.to_thread(private_pg.start)

    assert "Approved" not in text_of(message(fh.ws, m["ts"]))
    assert (await fh.ws.click("bob", m, "Approve")).status == 200
    await fh.wait(lambda: done(fh.ws, m["ts"]) and done(fh.ws, flying["ts"]), timeout=DEADLINE)
    await settled(fh)
    # web 2.0.0 was never started; the cut deploy's step ran twice (past the budget)
    check_all_once(fh, ["1.3.0", "1.4.0"], gated.started - 1)
    for e in all_ephemerals(fh.ws):
        plain_words(e["text"])


# -- SQLite ---------------------------------------------------------------------------------


# (busy timeout, how long the lock is held): 0.5 s for 3 s; with LONG_TESTS=1 also the shipped
# busy timeout, held past the 30 s that 53b61b8 waited.
SQLITE_CASES = [pytest.param(0.5, BLINK, id="busy-0.5s-held-3s")] + (
    [pytest.param(None, 35.0, id="shipped-held-35s")] if LONG else []
)


@pytest.mark.parametrize(("busy", "held"), SQLITE_CASES)
async def test_sqlite_file_locked_past_the_busy_timeout(
    fh: Harness, recoveries: list[str], busy: float | None, held: float
) -> None:
    gated = GatedBackend(closed=[1])
    options = {} if busy is None else {"sqlite_busy_seconds": busy}
    await fh.start_bot(**FAST, **options, backend=gated)
    first = await request(fh, "1.4.0")
    second = await request(fh, "1.4.1")
    assert (await fh.ws.click("bob", first, "Approve")).status == 200
    await fh.wait(
        lambda: any(r.get("text") == LINES[0] for r in fh.ws.replies(DEPLOYS, first["ts"])),
        timeout=DEADLINE,
    )

    loop = asyncio.get_running_loop()
    holder = sqlite3.connect(fh.db, isolation_level=None, check_same_thread=False)
    with closing(holder):
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock
        gated.open()  # the deploy writes its progress and checkpoints meanwhile
        assert (await fh.ws.click("bob", second, "Approve")).status == 200
        await asyncio.sleep(held)  # past the busy timeout
        assert not done(fh.ws, first["ts"])
        holder.rollback()
    back = loop.time()
    case = f"SQLite locked for {held:g} s"
    took = await after_the_return(fh, ["1.4.0", "1.4.1"], back, recoveries, case)
    await settled(fh)
    check_all_once(fh, ["1.4.0", "1.4.1"], gated.started)
    assert took < 5.0


# -- past the budget, continued by the process that holds the run ---------------------------

# The shipped run lease (30 s): a cut run waiting for its lease to end would miss every wait.
CUT_BUDGET = 2.0  # APPROVALS_DB_RETRY_SECONDS, shortened


async def cut_mid_step(h: Harness, gated: GatedBackend) -> dict[str, Any]:
    """A deploy approved and stopped after its first line; returns its approval message. The
    test then lets it write its second line into the outage and holds its third: the step is
    cut by the failed write, not finished meanwhile."""
    m = await request(h, "1.5.0")
    assert (await h.ws.click("bob", m, "Approve")).status == 200
    await h.wait(
        lambda: any(r.get("text") == LINES[0] for r in h.ws.replies(DEPLOYS, m["ts"])),
        timeout=DEADLINE,
    )
    return m


async def continued_promptly(
    h: Harness,
    m: dict[str, Any],
    gated: GatedBackend,
    back: float,
    recoveries: list[str],
    case: str,
) -> None:
    """The run continues from its checkpoint within seconds of the database's return (not
    when its 30 s lease ends), its thread says why, and its deploy step ran again once."""
    took = await after_the_return(h, ["1.5.0"], back, recoveries, case)
    assert took < 5.0
    await settled(h)
    texts = [r.get("text", "") for r in h.ws.replies(DEPLOYS, m["ts"])[1:]]
    assert sum(t == DB_NOTE for t in texts) == 1, texts
    assert not any(t == RESTART_NOTE for t in texts), texts  # nothing restarted
    assert gated.started == 2  # the cut step ran again, as after a crash
    check_all_once(h, ["1.5.0"], gated.started - 1)


async def test_a_run_cut_past_the_budget_continues_when_the_server_is_back(
    private_pg: PrivateServer, fh: Harness, recoveries: list[str]
) -> None:
    fh.database_url = private_pg.url
    gated = GatedBackend(closed=[1, 2])
    await fh.start_bot(**FAST, backend=gated, db_retry_seconds=CUT_BUDGET)
    engine = fh.bot.runtime.engine
    m = await cut_mid_step(fh, gated)
    await asyncio.to_thread(private_pg.stop)
    gated.open(1)  # the step goes on; its next line cannot be written, past the budget
    await fh.wait(lambda: not engine.driving(), timeout=DEADLINE)  # the run was cut
    gated.open()
    await asyncio.to_thread(private_pg.start)
    back = asyncio.get_running_loop().time()
    await continued_promptly(fh, m, gated, back, recoveries, "PostgreSQL past the budget")


async def test_a_run_cut_past_the_budget_continues_when_sqlite_is_free(
    fh: Harness, recoveries: list[str]
) -> None:
    gated = GatedBackend(closed=[1, 2])
    await fh.start_bot(**FAST, backend=gated, db_retry_seconds=CUT_BUDGET, sqlite_busy_seconds=0.5)
    engine = fh.bot.runtime.engine
    m = await cut_mid_step(fh, gated)
    holder = sqlite3.connect(fh.db, isolation_level=None, check_same_thread=False)
    with closing(holder):
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock, past the budget
        gated.open(1)
        await fh.wait(lambda: not engine.driving(), timeout=DEADLINE)  # the run was cut
        gated.open()
        holder.rollback()
    back = asyncio.get_running_loop().time()
    await continued_promptly(fh, m, gated, back, recoveries, "SQLite locked past the budget")
