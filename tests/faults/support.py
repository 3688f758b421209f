"""Shared pieces of the fault tests: fast settings, a deploy backend the test can pause, the
fault kinds, and the checks every case ends with (exactly once, nothing doubled where Slack
answered, plain words for people)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import OutboxOptions
from bot.localslack import LocalSlack
from graphs.deploy import DeployArgs, DeployResult, Progress, Step
from tests.conftest import Harness

LONG = bool(os.environ.get("LONG_TESTS"))
DEPLOYS = "#deploys"
STEPS = ("Pulling image", "Rolling out", "Running health checks")
LINES = tuple(f"{name}… ({i}/{len(STEPS)})" for i, name in enumerate(STEPS, 1))

# One Web API call gives up after TIMEOUT s; a "slow" fault answers after SLOW s (applied then,
# even though the bot stopped listening). Retries back off 0.1 s doubling to 0.3 s; an update
# that timed out waits LATE s first, so that its late copy cannot land on top of its retry.
TIMEOUT = 1.0
SLOW = TIMEOUT + 0.6
LATE = SLOW - TIMEOUT + 0.4
OUTBOX = OutboxOptions(
    retry_for=300.0,
    backoff_first=0.1,
    backoff_max=0.3,
    lease=2 * TIMEOUT + 5,
    idle_poll=5.0,
    late_landing=LATE,
)
FAST: dict[str, Any] = {"slack_timeout": TIMEOUT, "outbox": OUTBOX, "pace": False}
DEADLINE = 20.0  # for any one wait: generous, a passing case needs a few seconds at most
FIRST_ATTEMPT = Step()


class GatedBackend:
    """The simulated deploy's three steps, with gates the test opens: ``gates[i]`` is waited
    on before step ``i`` (``gates[3]``: before the deploy returns). All open by default."""

    def __init__(self, closed: Iterable[int] = ()) -> None:
        shut = set(closed)
        self.gates = [asyncio.Event() for _ in range(len(STEPS) + 1)]
        for i, gate in enumerate(self.gates):
            if i not in shut:
                gate.set()
        self.started = 0

    def open(self, *which: int) -> None:
        for i in which or range(len(self.gates)):
            self.gates[i].set()

    async def _gate(self, i: int) -> None:
        async with asyncio.timeout(DEADLINE * 2):  # bounded even if a test forgets to open it
            await self.gates[i].wait()

    async def deploy(
        self, args: DeployArgs, progress: Progress, step: Step = FIRST_ATTEMPT
    ) -> DeployResult:
        self.started += 1
        for i, line in enumerate(LINES):
            await self._gate(i)
            progress(line)
            await asyncio.sleep(0)  # let the line leave before the next step
        await self._gate(len(STEPS))
        return DeployResult(True, f"{args.service} {args.version} is live on {args.env}")


# -- faults ----------------------------------------------------------------------------------


Inject = Callable[[LocalSlack, str, int], None]


@dataclass(frozen=True)
class Fault:
    """One kind of trouble for the next ``times`` calls of a method.

    ``permanent``: Slack said no for good (the bot must give up and say so in plain words);
    ``lost``: the call was applied but its answer never reached the bot (a repeated post is
    unavoidable then); otherwise the bot must retry until the call goes through once."""

    name: str
    inject: Inject
    permanent: bool = False
    lost: bool = False


def _answer(status: int, **kw: Any) -> Inject:
    return lambda ws, method, times: ws.fail_next(method, status=status, times=times, **kw)


PERMANENT_CODES = ("not_in_channel", "channel_not_found", "invalid_auth", "message_not_found")
FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault("429", _answer(429, retry_after=1)),
        Fault("500_json", _answer(500)),
        Fault("502_html", _answer(502, non_json=True)),
        Fault("reset_before", lambda ws, m, n: ws.reset_next(m, times=n)),
        Fault("reset_after", lambda ws, m, n: ws.reset_next(m, after=True, times=n), lost=True),
        Fault("slow", lambda ws, m, n: ws.delay_next(m, SLOW, times=n), lost=True),
        *(Fault(code, _answer(200, error=code), permanent=True) for code in PERMANENT_CODES),
        Fault("ratelimited", _answer(200, error="ratelimited")),
    ]
}


def fault_hit(ws: LocalSlack, method: str, before: int) -> bool:
    """The injected fault was met: recorded with its marker, or a slow call is parked."""
    return len(ws.faults(method)) > before or ws.holding(method) > 0


# -- reading the workspace and the bot's file ------------------------------------------------


def query(db: Path, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the bot's SQLite file the way an operator would (WAL: committed rows only)."""
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        return list(conn.execute(sql, tuple(args)))


def events(db: Path) -> Counter[str]:
    return Counter(e for (e,) in query(db, "SELECT event FROM bot_audit"))


def stored_approval(db: Path) -> tuple[str, str] | None:
    """(interrupt id, ts) of the newest approval whose message is posted."""
    rows = query(
        db,
        "SELECT interrupt_id, ts FROM bot_approvals WHERE ts IS NOT NULL "
        "ORDER BY created_at DESC LIMIT 1",
    )
    return (rows[0][0], rows[0][1]) if rows else None


def outbox_settled(db: Path) -> bool:
    return not query(db, "SELECT 1 FROM bot_outbox WHERE status IN ('pending', 'sending')")


def message(ws: LocalSlack, ts: str, channel: str = DEPLOYS) -> dict[str, Any] | None:
    return next((m for m in ws.messages(channel) if m["ts"] == ts), None)


def text_of(m: dict[str, Any] | None) -> str:
    if m is None:
        return ""
    return m.get("text", "") + json.dumps(m.get("blocks") or [], ensure_ascii=False)


def buttons(m: dict[str, Any] | None) -> list[str]:
    return [
        e["text"]["text"]
        for b in (m or {}).get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def approval_posts(ws: LocalSlack, channel: str = DEPLOYS) -> list[dict[str, Any]]:
    return [m for m in ws.messages(channel) if m.get("blocks", [{}])[0].get("type") == "header"]


def progress_counts(ws: LocalSlack, ts: str, channel: str = DEPLOYS) -> dict[str, int]:
    """How often each step's line appears in the thread (an edited line counts too)."""
    texts = [r.get("text", "") for r in ws.replies(channel, ts)[1:]]
    return {name: sum(t.startswith(name) for t in texts) for name in STEPS}


def done(ws: LocalSlack, ts: str) -> bool:
    return "✅ Deployed" in text_of(message(ws, ts))


def rejected(ws: LocalSlack, ts: str) -> bool:
    t = text_of(message(ws, ts))
    return "*Rejected* by" in t and "Not deployed" in t


# -- plain words -----------------------------------------------------------------------------

_MARKUP = re.compile(r"<[^<>]*>")  # <@U0BOB>, <#C0…>, <!date^…|…>: Slack's markup, not words
_CODE = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b")  # not_in_channel, http_502, …
_PYTHON = re.compile(r"\b\w*(?:Error|Exception)\b|Traceback|\bunexpected\b|\bNone\b")
CODES = (*PERMANENT_CODES, "ratelimited", "internal_error", "not_found", "timeout", "http_")


def plain_words(text: str) -> str:
    """The text, after checking a person could read it: no Slack error code, no Python."""
    words = _MARKUP.sub("", text)
    assert not _CODE.search(words), f"raw error code shown to a person: {text!r}"
    assert not _PYTHON.search(words), f"Python shown to a person: {text!r}"
    lowered = words.lower()
    assert not any(c in lowered for c in CODES), f"raw error code shown to a person: {text!r}"
    return text


def all_ephemerals(ws: LocalSlack) -> list[dict[str, Any]]:
    return [e for u in ("alice", "bob", "carol", "dan") for e in ws.ephemerals(u)]


# -- the end of every case -------------------------------------------------------------------


def nothing_parked(ws: LocalSlack) -> bool:
    """No call is waiting inside the workspace (a slow answer, a hang): a call the bot gave
    up on has landed by now, or never will."""
    return not any(ws.api.holding.values())


async def settle(h: Harness) -> None:
    """Everything the bot started is finished, its outbox is empty, and no late call is still
    on its way to the workspace."""
    await h.wait(lambda: outbox_settled(h.db) and nothing_parked(h.ws), timeout=DEADLINE)
    await h.idle()
    await h.wait(lambda: outbox_settled(h.db) and nothing_parked(h.ws), timeout=DEADLINE)


def check_once(
    ws: LocalSlack,
    db: Path,
    ts: str,
    *,
    deploys: int,
    started: int,
    doubled_lines: Iterable[str] = (),
    missing_lines: Iterable[str] = (),
    at_most: Mapping[str, int] | None = None,
) -> None:
    """Exactly one decision, one resume and ``deploys`` deploy; each progress line once
    (``doubled_lines`` may appear twice and a line in ``at_most`` that many times: their
    answer was lost; ``missing_lines`` never: Slack refused them for good); every ephemeral in
    plain words."""
    ev = events(db)
    assert ev["decided"] == 1 and ev["resumed"] == 1, ev
    assert started == deploys, f"deploy ran {started} times"
    counts = progress_counts(ws, ts)
    for name in STEPS:
        if not deploys or name in set(missing_lines):
            expected = {0}
        elif name in set(doubled_lines):
            expected = {1, 2}
        elif at_most and name in at_most:
            expected = set(range(1, at_most[name] + 1))
        else:
            expected = {1}
        assert counts[name] in expected, (name, counts)
    assert buttons(message(ws, ts)) == [], "the decided message still has buttons"
    for e in all_ephemerals(ws):
        plain_words(e["text"])


# -- processes -------------------------------------------------------------------------------


def process_gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (it runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def gone_within(pids: Iterable[int], seconds: float) -> bool:
    """Whether every one of ``pids`` stopped running within ``seconds``."""
    left = list(pids)
    for _ in range(int(seconds / 0.02) + 1):
        left = [p for p in left if not process_gone(p)]
        if not left:
            return True
        await asyncio.sleep(0.02)
    return False
