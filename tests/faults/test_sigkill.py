"""kill -9 of a real `python -m bot run` at a random moment, a restart within a second, and how
fast the restarted bot takes over, with the shipped lease and Slack timeout
(APPROVALS_RUN_LEASE_SECONDS and APPROVALS_SLACK_TIMEOUT unset).

After a kill at any moment after a click, the approval's buttons are gone and the deploy's last
progress line is in the thread within TARGET seconds of the restart (the new process's start,
its interpreter's start-up included, about half of it), every time: the dead process's lock is
free (an flock, bot/db/liveness.py), so its run, the Slack calls it was making and the deadlines it
was firing are taken over at start-up instead of when their leases end. On a machine so busy
that the interpreter alone takes longer than TARGET - RECOVERY to start, the bound is RECOVERY
seconds after the restarted process answers instead (start-up is not what is tested here).

And exactly once: every approval ends with one `decided`, one `resumed`, one finished deploy
and no progress line twice in the thread (an edited "(retried)" is fine).

Each run picks a phase and a seeded random delay in it:

- `click_early`: 0-100 ms after the Approve click was acked: the claim, the rows it just took
  for sending, the decision's chat.update on its way
- `click`: 0.1-0.7 s after the click was acked (the resume, the deploy's three 0.1 s steps,
  the final update)
- `decision_update_lost`: while the decision's chat.update (the one that removes the buttons)
  is held in Slack. The local workspace drops a held call whose caller died, so it is never
  applied (checked): the dead process had claimed the row, only the restarted one can send it
- `final_update_in_flight`: while the chat.update showing the outcome is held in Slack
- `post_in_flight`: while the approval's chat.postMessage is held in Slack (were it applied
  anyway, as Slack may, two copies would show: the README's one re-post window, allowed);
  bob clicks after the restart
- `slash`: 0-0.4 s after `/deploy` was acked; `pending`: 0-0.3 s after the approval was
  posted; bob clicks after the restart

A click acked but killed before it was stored leaves the buttons there: bob clicks again at
once after the restart, and that counts in the time. Each run prints its figures, and the
module a summary (`pytest -s`): restart → ready, → buttons gone, → last progress line, →
outcome shown. 8 runs by default, 50 with LONG_TESTS=1; SIGKILL_SEED picks other delays, and
SIGKILL_WAIT (seconds) how long any one wait may take (raise it to measure a slow release).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.localslack import LocalSlack
from tests.faults.support import (
    DEPLOYS,
    LONG,
    STEPS,
    approval_posts,
    buttons,
    done,
    events,
    message,
    progress_counts,
    query,
    stored_approval,
    text_of,
)
from tests.scenario.test_cli import BotProcess

# One rotation of phases; the default suite runs the first 8, LONG_TESTS=1 five rotations.
ROTATION = (
    "click_early",
    "click",
    "decision_update_lost",
    "final_update_in_flight",
    "click_early",
    "post_in_flight",
    "slash",
    "click",
    "pending",
    "click_early",
)
# Killed after the click: these are timed.
CLICKED = ("click_early", "click", "decision_update_lost", "final_update_in_flight")
SEED = int(os.environ.get("SIGKILL_SEED", "20261122"))
RUNS = 50 if LONG else 8
STEP = 0.1  # seconds per simulated deploy step
TARGET = 3.0  # restart -> buttons gone, restart -> last progress line
# ... or this long after the restarted process answers (ready), when the interpreter's start-up
# alone took more than TARGET - RECOVERY (a machine busy with other work): the bot's own part.
RECOVERY = 1.5
WAIT = float(os.environ.get("SIGKILL_WAIT", "20"))
RUNNING = "⏳ Running…"
FIGURES = ("ready", "buttons", "last_line", "outcome")
OWN = ("buttons", "last_line")  # also summed up from ready: the bot's own part


def approval_status(db: Path) -> str | None:
    rows = query(db, "SELECT status FROM bot_approvals ORDER BY created_at DESC LIMIT 1")
    return rows[0][0] if rows else None


def all_lines(ws: LocalSlack, ts: str) -> bool:
    return all(n >= 1 for n in progress_counts(ws, ts).values())


class Stopwatch:
    """When each condition first held, in seconds after ``start``, looked at every 10 ms from
    a task of its own (so a condition that holds for a moment while the test waits on
    something else is still seen)."""

    def __init__(self, conditions: dict[str, Callable[[], bool]]) -> None:
        self.conditions = conditions
        self.seen: dict[str, float] = {}
        self.start = time.monotonic()
        self._task = asyncio.create_task(self._watch())

    def mark(self, name: str) -> None:
        self.seen.setdefault(name, time.monotonic() - self.start)

    async def _watch(self) -> None:
        while len(self.seen) < len(self.conditions) + 1:  # +1: "ready", marked by the test
            for name, holds in self.conditions.items():
                if name not in self.seen and holds():
                    self.mark(name)
            if time.monotonic() - self.start > WAIT:
                return
            await asyncio.sleep(0.01)

    async def result(self) -> dict[str, float]:
        await asyncio.wait_for(self._task, WAIT + 5)
        return self.seen


@pytest.fixture(scope="module")
def figures() -> Iterator[list[dict[str, float]]]:
    """Every run's figures; their distribution is printed when the module ends."""
    runs: list[dict[str, float]] = []
    yield runs
    timed = [r for r in runs if "buttons" in r]
    if not timed:
        return
    print(f"\nsigkill: {len(timed)} run(s) killed after the click, seconds after the restart")
    rows = [(name, [r[name] for r in timed if name in r]) for name in FIGURES] + [
        (f"{name}-ready", [max(0.0, r[name] - r["ready"]) for r in timed if name in r])
        for name in OWN
    ]
    for name, found in rows:
        values = sorted(found)
        if values:
            pick = [values[min(len(values) - 1, int(q * len(values)))] for q in (0.5, 0.9)]
            print(
                f"  {name:>15}: min {values[0]:.2f}  p50 {pick[0]:.2f}  p90 {pick[1]:.2f}  "
                f"max {values[-1]:.2f}"
            )


@pytest.mark.parametrize("run", range(RUNS), ids=lambda i: f"{ROTATION[i % len(ROTATION)]}-{i}")
async def test_sigkill_then_restart(
    ws: LocalSlack,
    tmp_path: Path,
    reaper: list[asyncio.subprocess.Process],
    figures: list[dict[str, float]],
    run: int,
) -> None:
    phase = ROTATION[run % len(ROTATION)]
    rng = random.Random(SEED * 1000 + run)
    db = tmp_path / "approvals.db"
    bot = BotProcess(ws, db, reaper, step_seconds=STEP)
    for shipped in ("APPROVALS_RUN_LEASE_SECONDS", "APPROVALS_SLACK_TIMEOUT"):
        bot.env.pop(shipped, None)  # the defaults, 30 s and 10 s, in any checkout
    await bot.start()

    # -- up to the kill ---------------------------------------------------------------------
    when = "held call"
    ts: str | None = None
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
            if phase == "decision_update_lost":
                ws.hold("chat.update")
            assert (await ws.click("bob", msg, "Approve")).status == 200
            if phase in ("click_early", "click"):
                low, high = (0.0, 0.1) if phase == "click_early" else (0.1, 3 * STEP + 0.4)
                delay = rng.uniform(low, high)
                when = f"{delay * 1000:.0f} ms after the click's ack"
                await asyncio.sleep(delay)  # the random moment of the kill
            elif phase == "decision_update_lost":
                await ws.wait_for(lambda: ws.holding("chat.update"), timeout=WAIT)
            else:
                # once the decision shows, the next chat.update is the one with the outcome
                await ws.wait_for(lambda: RUNNING in text_of(message(ws, ts)), timeout=WAIT)
                ws.hold("chat.update")
                await ws.wait_for(lambda: ws.holding("chat.update"), timeout=WAIT)
    assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL
    ws.release()  # what was on its way when the bot died reaches Slack now
    stored_runs = query(db, "SELECT count(*) FROM bot_runs")[0][0]
    assert stored_runs == 1, (
        "/deploy was acked but the bot died before storing the run: the request is lost "
        "and alice was never told"
    )
    # Posts the dead process was sending: Slack may have taken one it had not recorded yet,
    # and the restarted bot sends it again (the README's one re-post window).
    window = dict(
        query(
            db,
            "SELECT substr(key, 1, instr(key, ':')), COUNT(*) FROM bot_outbox "
            "WHERE status='sending' AND kind='post' GROUP BY 1",
        )
    )
    await asyncio.sleep(rng.uniform(0, 1.0))  # restarted within a second
    if phase == "decision_update_lost":
        assert buttons(message(ws, ts or "")), "the decision's update was applied after all"

    # -- restart, timed -----------------------------------------------------------------------
    watch = None
    if ts is not None and phase in CLICKED:
        t = ts
        watch = Stopwatch(
            {
                "buttons": lambda: message(ws, t) is not None and not buttons(message(ws, t)),
                "last_line": lambda: all_lines(ws, t),
                "outcome": lambda: done(ws, t),
            }
        )
    await bot.start()
    if watch is not None:
        watch.mark("ready")
    try:
        ts, clicked_again = await finish(ws, db)
    except TimeoutError as exc:
        raise AssertionError(diagnosis(db, bot.log)) from exc
    seen = await watch.result() if watch is not None else {}
    counts, posts = progress_counts(ws, ts), approval_posts(ws)
    again = sum(counts.values()) - len(STEPS) + len(posts) - 1
    line = ", ".join(f"{name} {seen[name]:.2f} s" for name in FIGURES if name in seen)
    twice = sum(window.values())
    print(
        f"\nsigkill run {run} (seed {SEED}): {phase}, {when}"
        + (f"; {twice} post(s) on their way at the kill, {again} sent twice" if twice else "")
        + (
            ("; the click died with the bot: bob clicked again" if phase in CLICKED else "")
            if clicked_again
            else ""
        )
        + (f"; after the restart: {line}" if seen else "")
    )
    if watch is not None:
        figures.append(seen)
    assert await bot.signal(signal.SIGTERM) == 0

    # -- exactly once ------------------------------------------------------------------------
    ev = events(db)
    assert ev["decided"] == 1 and ev["resumed"] == 1, ev
    assert ev["run_done"] == 1 and ev["run_failed"] == 0, ev
    assert query(db, "SELECT status FROM bot_runs") == [("done",)]
    assert query(db, "SELECT status FROM bot_approvals") == [("resumed",)]
    lines_again = sum(counts.values()) - len(STEPS)
    assert set(counts.values()) <= {1, 2}, counts
    assert lines_again <= window.get("progress:", 0), (counts, window)
    assert done(ws, ts)
    assert 1 <= len(posts) <= 1 + window.get("approval:", 0), (len(posts), window)
    log = bot.log.read_text()
    assert "Traceback" not in log, log[-3000:]

    # -- how fast ------------------------------------------------------------------------------
    if watch is not None:
        bound = max(TARGET, seen["ready"] + RECOVERY)
        for name in ("buttons", "last_line"):
            assert name in seen and seen[name] <= bound, (
                f"{name} {seen.get(name, 'never')} s after the restart (up after "
                f"{seen['ready']:.2f} s); target {bound:.2f} s"
            )


async def finish(ws: LocalSlack, db: Path) -> tuple[str, bool]:
    """After the restart: the approval's message (its ts is returned, with whether bob had to
    click again); a click if no decision was stored; then the outcome on the message and an
    empty outbox."""
    _iid, ts = await ws.wait_for(lambda: stored_approval(db), timeout=WAIT)
    msg = await ws.wait_for(lambda: message(ws, ts), timeout=WAIT)
    again = approval_status(db) == "pending"
    if again:
        # Never clicked, or the click died with the bot before it was stored: bob sees the
        # buttons still there and clicks again.
        assert (await ws.click("bob", msg, "Approve")).status == 200
    await ws.wait_for(lambda: done(ws, ts), timeout=WAIT)
    await ws.wait_for(
        lambda: not query(db, "SELECT 1 FROM bot_outbox WHERE status IN ('pending','sending')"),
        timeout=WAIT,
    )
    return ts, again


def diagnosis(db: Path, log: Path) -> str:
    """What the bot's file and log say, for a run that did not finish."""
    tables = {
        "runs": "SELECT run_id, status, attempt, owner FROM bot_runs",
        "approvals": "SELECT interrupt_id, status, ts FROM bot_approvals",
        "outbox": "SELECT id, key, kind, status, attempts, error FROM bot_outbox",
        "audit": "SELECT event, user_id FROM bot_audit ORDER BY id",
    }
    out = [f"{name}: {query(db, sql)}" for name, sql in tables.items()]
    lines = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
    return "\n".join([*out, "log:", *lines])
