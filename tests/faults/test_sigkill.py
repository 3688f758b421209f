"""kill -9 of a real `python -m bot run` at a random moment, then a restart: every approval
ends in exactly one terminal state, with one `decided`, one `resumed`, one finished deploy,
and no progress line twice in the thread (an edited "(retried after a restart)" is fine).

Each run picks a phase and a seeded random delay in it:

- `slash`: 0-0.4 s after `/deploy` was acked (before or around the approval's post)
- `post_in_flight`: while the approval's chat.postMessage is on its way (held in Slack, and
  applied once the bot is dead: the README's one re-post window, so two copies may show)
- `pending`: 0-0.3 s after the approval is stored and posted
- `click`: 0-1.3 s after the Approve click was acked (the claim, the resume, the deploy's
  three 0.3 s steps, the final update)
- `final_update_in_flight`: while the chat.update showing the outcome is on its way

5 runs by default (one per phase), 50 with LONG_TESTS=1; SIGKILL_SEED picks other delays.
After a SIGKILL, rows that were being sent are taken again only when their lease ends
(2 * APPROVALS_SLACK_TIMEOUT + 5 = 9 s), so the waits allow that much more.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import pytest

from bot.localslack import LocalSlack
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    LONG,
    STEPS,
    approval_posts,
    done,
    events,
    message,
    progress_counts,
    query,
    stored_approval,
    text_of,
)
from tests.scenario.test_cli import BotProcess

PHASES = ("slash", "post_in_flight", "pending", "click", "final_update_in_flight")
SEED = int(os.environ.get("SIGKILL_SEED", "20261122"))
RUNS = 50 if LONG else len(PHASES)
STEP = 0.3  # seconds per simulated deploy step
LEASE = 2 * 2 + 5  # BotProcess sets APPROVALS_SLACK_TIMEOUT=2
WAIT = DEADLINE + LEASE
RUNNING = "⏳ Running…"


def approval_status(db: Path) -> str | None:
    rows = query(db, "SELECT status FROM bot_approvals ORDER BY created_at DESC LIMIT 1")
    return rows[0][0] if rows else None


@pytest.mark.parametrize("run", range(RUNS), ids=lambda i: f"{PHASES[i % len(PHASES)]}-{i}")
async def test_sigkill_then_restart(
    ws: LocalSlack, tmp_path: Path, reaper: list[asyncio.subprocess.Process], run: int
) -> None:
    phase = PHASES[run % len(PHASES)]
    rng = random.Random(SEED * 1000 + run)
    db = tmp_path / "approvals.db"
    bot = BotProcess(ws, db, reaper, step_seconds=STEP)
    await bot.start()

    # -- up to the kill ---------------------------------------------------------------------
    when = "held call"
    if phase == "post_in_flight":
        ws.hold("chat.postMessage")
    assert (await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)).status == 200
    if phase == "slash":
        delay = rng.uniform(0, 0.4)
        when = f"{delay:.3f} s after the slash command"
        await asyncio.sleep(delay)  # the random moment of the kill, not a wait for work
    elif phase == "post_in_flight":
        await ws.wait_for(lambda: ws.holding("chat.postMessage"), timeout=WAIT)
    else:
        _iid, ts = await ws.wait_for(lambda: stored_approval(db), timeout=WAIT)
        msg = await ws.wait_for(lambda: message(ws, ts), timeout=WAIT)
        if phase == "pending":
            delay = rng.uniform(0, 0.3)
            when = f"{delay:.3f} s after the approval was posted"
            await asyncio.sleep(delay)
        else:
            assert (await ws.click("bob", msg, "Approve")).status == 200
            if phase == "click":
                delay = rng.uniform(0, 3 * STEP + 0.4)
                when = f"{delay:.3f} s after the click"
                await asyncio.sleep(delay)
            else:
                # once the decision shows, the next chat.update is the one with the outcome
                await ws.wait_for(lambda: RUNNING in text_of(message(ws, ts)), timeout=WAIT)
                ws.hold("chat.update")
                await ws.wait_for(lambda: ws.holding("chat.update"), timeout=WAIT)
    assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL
    print(f"\nsigkill run {run} (seed {SEED}): {phase}, {when}")
    ws.release()  # what was on its way when the bot died reaches Slack now
    stored_runs = query(db, "SELECT count(*) FROM bot_runs")[0][0]

    # -- restart and finish -------------------------------------------------------------------
    await bot.start()
    assert stored_runs == 1, (
        "/deploy was acked but the bot died before storing the run: the request is lost "
        "and alice was never told"
    )
    try:
        ts = await finish(ws, db, phase, run)
    except TimeoutError as exc:
        raise AssertionError(diagnosis(db, bot.log)) from exc
    assert await bot.signal(signal.SIGTERM) == 0

    # -- exactly once ------------------------------------------------------------------------
    ev = events(db)
    assert ev["decided"] == 1 and ev["resumed"] == 1, ev
    assert ev["run_done"] == 1 and ev["run_failed"] == 0, ev
    assert query(db, "SELECT status FROM bot_runs") == [("done",)]
    assert query(db, "SELECT status FROM bot_approvals") == [("resumed",)]
    counts = progress_counts(ws, ts)
    assert counts == dict.fromkeys(STEPS, 1), counts
    assert done(ws, ts)
    posts = approval_posts(ws)
    assert len(posts) == 1 or (phase == "post_in_flight" and len(posts) == 2), len(posts)
    log = bot.log.read_text()
    assert "Traceback" not in log, log[-3000:]


async def finish(ws: LocalSlack, db: Path, phase: str, run: int) -> str:
    """After the restart: the approval's message (its ts is returned); a click if no decision
    was stored; then the outcome on the message and an empty outbox."""
    _iid, ts = await ws.wait_for(lambda: stored_approval(db), timeout=WAIT)
    msg = await ws.wait_for(lambda: message(ws, ts), timeout=WAIT)
    if approval_status(db) == "pending":
        # Never clicked, or the click died with the bot before it was stored: bob sees the
        # buttons still there and clicks again.
        if phase in ("click", "final_update_in_flight"):
            print(f"sigkill run {run}: the click was acked but not stored; bob clicks again")
        assert (await ws.click("bob", msg, "Approve")).status == 200
    await ws.wait_for(lambda: done(ws, ts), timeout=WAIT)
    await ws.wait_for(
        lambda: not query(db, "SELECT 1 FROM bot_outbox WHERE status IN ('pending','sending')"),
        timeout=WAIT,
    )
    return ts


def diagnosis(db: Path, log: Path) -> str:
    """What the bot's file and log say, for a run that did not finish."""
    tables = {
        "runs": "SELECT run_id, status, attempt FROM bot_runs",
        "approvals": "SELECT interrupt_id, status, ts FROM bot_approvals",
        "outbox": "SELECT id, key, kind, status, attempts, error FROM bot_outbox",
        "audit": "SELECT event, user_id FROM bot_audit ORDER BY id",
    }
    out = [f"{name}: {query(db, sql)}" for name, sql in tables.items()]
    lines = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
    return "\n".join([*out, "log:", *lines])
