"""kill -9 of a real `python -m bot run` while a standing grant is deciding a run's tool calls,
a restart, and exactly once: the example agent emails six addresses; bob "Approve & allow…"s
the first for the run; the bot is killed a random moment later (while the grant is deciding
the next calls, each opened decided and resumed by the same process); the restarted bot takes
the run over at once (the dead process's lock is free) and finishes it. Every call is decided
once (one `decided` per approval, five by the grant), resumed once, every email sent once (a
doubled resume would answer the model's script early: it would not reach the last address),
and each compact line posted once (or twice within the README's one re-post window).

One run by default, ten with LONG_TESTS=1; GRANT_CRASH_SEED picks other moments."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from bot.localslack import LocalSlack
from tests.faults.support import DEPLOYS, LONG, outbox_settled, query
from tests.scenario.test_approval_loop import buttons, message_text
from tests.scenario.test_cli import BotProcess

SEED = int(os.environ.get("GRANT_CRASH_SEED", "20261205"))
RUNS = 10 if LONG else 1
WAIT = 20.0
TO = [f"{c}@example.com" for c in "abcdef"]
POLICY = """\
graphs = ["graphs.agent:specs"]

[policy.agent]
approvers = ["U0BOB"]
grants = { scopes = ["run"], max = "1h", tools = ["send_email"] }
"""


@pytest.mark.parametrize("run", range(RUNS))
async def test_sigkill_while_a_grant_decides(
    ws: LocalSlack, tmp_path: Path, reaper: list[asyncio.subprocess.Process], run: int
) -> None:
    rng = random.Random(SEED * 100 + run)
    db = tmp_path / "approvals.db"
    bot = BotProcess(ws, db, reaper)
    (db.parent / "approvals.toml").write_text(POLICY)
    await bot.start()
    text = f"run agent tell {' '.join(TO)} we ship"
    assert (await ws.slash("alice", "/approvals", text, channel=DEPLOYS)).status == 200
    first = await ws.wait_for(
        lambda: next((m for m in ws.messages(DEPLOYS) if buttons(m)), None), timeout=WAIT
    )
    await ws.click("bob", first, "Approve & allow…")
    view = await ws.wait_for(lambda: next(iter(ws.open_views("bob")), None), timeout=WAIT)
    submitted = await ws.submit_modal("bob", view, {"grant_scope": "run", "grant_for": "3600"})
    assert submitted.status == 200
    delay = rng.uniform(0.0, 0.3)
    await asyncio.sleep(delay)  # the random moment of the kill, not a wait for work
    assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL
    window = query(db, "SELECT COUNT(*) FROM bot_outbox WHERE status='sending' AND kind='post'")[0][
        0
    ]
    await bot.start()

    last = f"Done: Sent to {TO[-1]}"
    try:
        await ws.wait_for(
            lambda: any(last in message_text(m) for m in ws.messages(DEPLOYS) if m.get("blocks")),
            timeout=WAIT,
        )
    except TimeoutError as exc:
        raise AssertionError(
            f"killed {delay:.3f} s after the grant: "
            + json.dumps(query(db, "SELECT interrupt_id, status FROM bot_approvals"))
            + json.dumps(query(db, "SELECT status, outcome, attempt FROM bot_runs"))
            + json.dumps(query(db, "SELECT event, detail FROM bot_audit ORDER BY id"))
            + json.dumps(query(db, "SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints"))
            + json.dumps(query(db, "SELECT checkpoint_id, task_id, channel FROM writes"))
            + "\n"
            + bot.log.read_text()[-3000:]
        ) from exc
    approvals = query(db, "SELECT interrupt_id, status FROM bot_approvals")
    assert len(approvals) == len(TO), approvals
    decided = Counter(
        r[0] for r in query(db, "SELECT interrupt_id FROM bot_audit WHERE event='decided'")
    )
    assert set(decided.values()) == {1}, decided
    by_grant = query(
        db, "SELECT COUNT(*) FROM bot_audit WHERE event='decided' AND detail LIKE ?", ('%"grant"%',)
    )[0][0]
    assert by_grant == len(TO) - 1
    await ws.wait_for(
        lambda: (
            query(db, "SELECT COUNT(*) FROM bot_approvals WHERE status='resumed'")[0][0] == len(TO)
        ),
        timeout=WAIT,
    )
    await ws.wait_for(lambda: outbox_settled(db), timeout=WAIT)  # compact lines are paced
    lines = [m for m in ws.messages(DEPLOYS) if "approved under" in message_text(m)]
    assert len(TO) - 1 <= len(lines) <= len(TO) - 1 + window, (len(lines), window)
    print(
        f"\ngrant crash run {run}: killed {delay * 1000:.0f} ms after the grant; {len(lines)} lines"
    )
