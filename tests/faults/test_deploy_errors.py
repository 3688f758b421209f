"""Slack failing while a deploy runs never fails the deploy: progress replies and message
updates are outbox rows, so a reply that times out, a 5xx page that is not JSON or a reset
only delays what Slack shows. The deploy completes and the message ends with ✅."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.localslack import LocalSlack
from tests.conftest import Harness
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    FAST,
    SLOW,
    STEPS,
    GatedBackend,
    check_once,
    done,
    message,
    nothing_parked,
    outbox_settled,
    progress_counts,
    query,
    settle,
    stored_approval,
)

Inject = Callable[[LocalSlack, str], None]
TIMES_OUT: Inject = lambda ws, m: ws.delay_next(m, SLOW)  # noqa: E731
HTML_502: Inject = lambda ws, m: ws.fail_next(m, status=502, non_json=True)  # noqa: E731
HTML_503: Inject = lambda ws, m: ws.fail_next(m, status=503, non_json=True)  # noqa: E731
RESET: Inject = lambda ws, m: ws.reset_next(m)  # noqa: E731
RESET_AFTER: Inject = lambda ws, m: ws.reset_next(m, after=True)  # noqa: E731


@pytest.mark.parametrize(
    ("faults", "lost"),
    [
        pytest.param([TIMES_OUT, HTML_502, RESET], {STEPS[0]}, id="timeout-502html-reset"),
        pytest.param([RESET, TIMES_OUT, HTML_503], {STEPS[1]}, id="reset-timeout-503html"),
        pytest.param([HTML_502, RESET_AFTER, TIMES_OUT], set(STEPS[1:]), id="502-lost-timeout"),
    ],
)
async def test_progress_replies_failing_do_not_fail_the_deploy(
    fh: Harness, faults: list[Inject], lost: set[str]
) -> None:
    """One fault on each step's progress reply, injected just before the step runs."""
    h, ws = fh, fh.ws
    gated = GatedBackend(closed=range(len(STEPS) + 1))
    await h.start_bot(**FAST, backend=gated)
    await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    _iid, ts = await h.wait(lambda: stored_approval(h.db), timeout=DEADLINE)
    await ws.click("bob", await h.wait(lambda: message(ws, ts)), "Approve")
    for step, inject in enumerate(faults):
        before = len(ws.faults("chat.postMessage"))
        inject(ws, "chat.postMessage")
        gated.open(step)

        def sent(before: int = before, line: str = STEPS[step]) -> bool:
            """The fault was met (a slow call: landed) and the line went out."""
            return (
                len(ws.faults("chat.postMessage")) > before
                and nothing_parked(ws)
                and outbox_settled(h.db)
                and progress_counts(ws, ts)[line] >= 1
            )

        await h.wait(sent, timeout=DEADLINE)
    gated.open()
    await h.wait(lambda: done(ws, ts), timeout=DEADLINE)
    await settle(h)
    assert done(ws, ts)
    assert query(h.db, "SELECT status FROM bot_runs") == [("done",)]
    # a reply whose answer was lost (a reset after Slack took it, a timeout) may show twice
    check_once(ws, h.db, ts, deploys=1, started=gated.started, doubled_lines=lost)


async def test_message_updates_failing_do_not_fail_the_deploy(fh: Harness) -> None:
    """The decision update times out, then gets a 502 page; the outcome update is reset
    before Slack took it, then after (its answer lost): the message still ends with ✅."""
    h, ws = fh, fh.ws
    gated = GatedBackend(closed=[len(STEPS)])
    await h.start_bot(**FAST, backend=gated)
    await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    _iid, ts = await h.wait(lambda: stored_approval(h.db), timeout=DEADLINE)
    msg = await h.wait(lambda: message(ws, ts))
    TIMES_OUT(ws, "chat.update")
    HTML_502(ws, "chat.update")
    await ws.click("bob", msg, "Approve")
    await h.wait(
        lambda: (
            len(ws.faults("chat.update")) == 2
            and "⏳ Running…" in str(message(ws, ts))
            and ws.calls_to("chat.update")[-1].status == 200
        ),
        timeout=DEADLINE,
    )
    RESET(ws, "chat.update")
    RESET_AFTER(ws, "chat.update")
    gated.open()
    await h.wait(lambda: done(ws, ts), timeout=DEADLINE)
    await settle(h)
    assert done(ws, ts)
    faults = sorted(c.fault or "" for c in ws.faults("chat.update"))
    assert faults == ["delay", "non_json", "reset_after", "reset_before"], faults
    assert query(h.db, "SELECT status FROM bot_runs") == [("done",)]
    check_once(ws, h.db, ts, deploys=1, started=gated.started)
