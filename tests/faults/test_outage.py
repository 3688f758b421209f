"""Slack down for every Web API method, starting at the click or in the middle of the deploy:
after Slack is back, the approval completes without a restart, nothing lost, nothing doubled.

The outage lasts OUTAGE seconds (2 s; 60 s with LONG_TESTS=1). The time from its end to the
message showing ✅ is printed (`pytest -s`) and written to test-artifacts/outage.txt.

Modes: "error" (a non-JSON 503 page) and "reset" (the connection dropped) apply nothing, so
every line must appear exactly once. "hang" parks each call until Slack is back and applies
it then, although the bot gave up on it after its timeout: each post attempt parked that way
lands as one more copy (the bot cannot know it went through; Slack has no idempotency key),
and only such attempts may add copies. The printed line counts the thread's replies.

LONG_TESTS=1 also runs the shipped defaults (10 s timeout, backoff to 30 s) against the
60 s error outage, to show the recovery time a deployment would see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import OutboxOptions
from tests.conftest import Harness
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    FAST,
    LINES,
    LONG,
    STEPS,
    GatedBackend,
    approval_posts,
    check_once,
    done,
    message,
    nothing_parked,
    settle,
    stored_approval,
)

OUTAGE = 60.0 if LONG else 2.0
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "outage.txt"
# "fast": the real pacing, with the short timeout and backoff of the other fault tests.
# "production" (long form only): the shipped defaults, a 10 s timeout and backoff to 30 s.
PROFILES: dict[str, dict[str, Any]] = {
    "fast": {**FAST, "pace": True},
    "production": {"slack_timeout": 10.0, "outbox": OutboxOptions(lease=25.0), "pace": True},
}
CASES = [
    pytest.param("fast", start, mode, id=f"fast-{start}-{mode}")
    for start in ("at_click", "mid_deploy")
    for mode in ("error", "reset", "hang")
] + [
    pytest.param("production", start, "error", id=f"production-{start}-error")
    for start in ("at_click", "mid_deploy")
    if LONG
]


def describe(profile: str) -> str:
    s = PROFILES[profile]
    o = s["outbox"]
    return (
        f"{profile}: slack_timeout {s['slack_timeout']:g} s, backoff "
        f"{o.backoff_first:g}..{o.backoff_max:g} s, late_landing {o.late_landing:g} s, pacing on"
    )


@pytest.fixture(scope="module")
def recoveries() -> Iterator[list[str]]:
    """One line per case; written to test-artifacts/outage.txt when the module is done."""
    lines: list[str] = []
    yield lines
    if lines:
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        head = [
            f"# an outage of every Web API method for {OUTAGE:g} s",
            *(f"# {describe(p)}" for p in PROFILES),
            "# seconds from the end of the outage to the message showing ✅",
        ]
        ARTIFACT.write_text("".join(f"{line}\n" for line in [*head, *lines]))


@pytest.mark.parametrize(("profile", "start", "mode"), CASES)
async def test_outage(
    fh: Harness, profile: str, start: str, mode: str, recoveries: list[str]
) -> None:
    h, ws = fh, fh.ws
    loop = asyncio.get_running_loop()
    gated = GatedBackend(closed=[1] if start == "mid_deploy" else [])
    await h.start_bot(**PROFILES[profile], backend=gated)
    await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    _iid, ts = await h.wait(lambda: stored_approval(h.db), timeout=DEADLINE)
    msg = await h.wait(lambda: message(ws, ts), timeout=DEADLINE)

    if start == "at_click":
        ws.outage(OUTAGE, mode=mode)
        began = loop.time()
        assert (await ws.click("bob", msg, "Approve")).status == 200  # the bot still acks
    else:
        await ws.click("bob", msg, "Approve")
        await h.wait(
            lambda: any(r.get("text") == LINES[0] for r in ws.replies(DEPLOYS, ts)),
            timeout=DEADLINE,
        )
        ws.outage(OUTAGE, mode=mode)
        began = loop.time()
        gated.open()  # the deploy goes on and finishes while Slack is down

    # While Slack is down the bot keeps trying (and keeps the work for later); a hung call
    # is recorded only when it ends, so a parked one counts too
    await h.wait(lambda: ws.faults() or not nothing_parked(ws), timeout=DEADLINE)
    assert not done(ws, ts)
    await h.wait(lambda: not ws.in_outage, timeout=OUTAGE + DEADLINE)
    ended = loop.time()
    await h.wait(lambda: done(ws, ts), timeout=DEADLINE + 40)  # production backoff: 30 s
    recovery = loop.time() - ended

    await settle(h)
    replies = len(ws.replies(DEPLOYS, ts)) - 1
    line = (
        f"{profile:10} {start:10} {mode:5} outage {ended - began:5.1f} s -> ✅ "
        f"{recovery:5.2f} s after it ended; {replies} progress replies for {len(STEPS)} lines"
    )
    print(f"\noutage: {line}")
    recoveries.append(line)
    assert done(ws, ts)
    # Nothing lost, nothing doubled
    at_most: dict[str, int] = {}
    if mode == "hang":  # each post parked past the bot's timeout lands at the end: one copy
        parked = [
            c.args.get("text", "")
            for c in ws.calls_to("chat.postMessage")
            if c.fault == "outage_hang"
        ]
        at_most = {name: 1 + sum(t.startswith(name) for t in parked) for name in STEPS}
    check_once(ws, h.db, ts, deploys=1, started=gated.started, at_most=at_most)
    assert len(approval_posts(ws)) == 1
    assert ws.faults(), "the outage was never noticed"
