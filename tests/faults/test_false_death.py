"""Two `python -m bot run` replicas on one PostgreSQL database; the one driving a deploy is cut
off from the database (a TCP proxy between it and the server drops every connection and
refuses new ones) for longer than the others wait before judging a replica dead. The other
replica takes the run over, as it must: the cut one may be dead for all it can tell.

The cut replica is alive, though, with its deploy command still running. When it reaches the
database again it finds it was reaped: it stops driving the run at once (its command is
killed) and writes nothing more for it. So the run is driven by one replica at a time: one
deploy completes, each progress line is posted once, the run ends once, and the cut replica
goes on serving new requests.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from bot.localslack import LocalSlack
from tests.conftest import query
from tests.faults.pgproxy import PgProxy
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    buttons,
    done,
    gone_within,
    message,
    progress_counts,
    text_of,
)
from tests.faults.test_commit_lost import proxied  # noqa: F401 (a fixture)
from tests.faults.test_replicas import Replica

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's prctl")

# Each attempt of the deploy appends "start <pid> <bot pid> <attempt>", and, if it gets there,
# "done <pid> <bot pid>", to the log; between its first line and the others it waits for the
# gate file.
SCRIPT = """#!/bin/sh
echo "start $$ $PPID $DEPLOY_ATTEMPT" >> {log}
echo "Pulling image… (1/3)"
for _ in $(seq 1200); do [ -e {gate} ] && break; sleep 0.05; done
echo "Rolling out… (2/3)"
echo "Running health checks… (3/3)"
echo "done $$ $PPID" >> {log}
"""


def attempts(log: Path, what: str) -> list[list[int]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [[int(w) for w in line.split()[1:]] for line in lines if line.startswith(what)]


def approval(ws: LocalSlack, version: str) -> dict[str, object] | None:
    return next(
        (m for m in ws.messages(DEPLOYS) if buttons(m) and f"api {version} to prod" in text_of(m)),
        None,
    )


async def test_a_replica_cut_off_past_the_threshold_never_drives_its_run_twice(
    ws: LocalSlack,
    tmp_path: Path,
    pg_url: str,
    proxied: tuple[PgProxy, str],  # noqa: F811
    reaper: list[asyncio.subprocess.Process],
) -> None:
    proxy, through = proxied
    log, gate = tmp_path / "deploys.log", tmp_path / "gate"
    script = tmp_path / "deploy.sh"
    script.write_text(SCRIPT.format(log=log, gate=gate))
    script.chmod(0o755)
    (tmp_path / "approvals.toml").write_text(
        f'[deploy]\nbackend = "command"\ncommand = ["{script}"]\n'
        '[policy.deploy.prod]\napprovers = ["U0BOB"]\n'
    )
    try:
        await cut_off_mid_step(ws, tmp_path, pg_url, proxy, through, reaper)
    finally:
        gate.touch()  # any deploy still waiting ends (one a failure left behind)


async def cut_off_mid_step(
    ws: LocalSlack,
    tmp_path: Path,
    pg_url: str,
    proxy: PgProxy,
    through: str,
    reaper: list[asyncio.subprocess.Process],
) -> None:
    log, gate = tmp_path / "deploys.log", tmp_path / "gate"
    cut = Replica(ws, through, tmp_path, 0)  # its every connection goes through the proxy
    judge = Replica(ws, pg_url, tmp_path, 1)
    for r in (cut, judge):
        await r.start(reaper)
    for r in (cut, judge):
        await r.ready(ws)
    assert cut.proc is not None and judge.proc is not None
    ws.request_url = cut.url  # every request goes to the replica that will be cut off

    await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    msg = await ws.wait_for(lambda: approval(ws, "1.4.2"), timeout=DEADLINE)
    await ws.click("bob", msg, "Approve")
    await ws.wait_for(lambda: attempts(log, "start"), timeout=DEADLINE)
    ts = str(msg["ts"])
    # Recorded as sent (a reply on its way when the replica is cut off is sent again by the
    # one that takes its row over: the README's window, not what this test is about).
    sent = "SELECT 1 FROM bot_outbox WHERE key LIKE 'progress:%' AND status='sent'"
    await ws.wait_for(lambda: query(tmp_path, pg_url, sent), timeout=DEADLINE)
    [(first, first_bot, _)] = attempts(log, "start")
    assert first_bot == cut.proc.pid  # the cut replica drives it, mid-step

    # -- cut off until the other replica has judged it dead and taken the run over ----------
    await proxy.partition()
    cut_at = time.monotonic()
    await ws.wait_for(lambda: len(attempts(log, "start")) == 2, timeout=DEADLINE)
    taken = time.monotonic() - cut_at
    second, second_bot, attempt = attempts(log, "start")[1]
    assert second_bot == judge.proc.pid and attempt == 2
    owners = query(tmp_path, pg_url, "SELECT owner FROM bot_owners")
    assert [o for (o,) in owners if f":{cut.proc.pid}:" in o] == []  # reaped
    proxy.heal()
    healed = time.monotonic()

    # -- back: it finds it was reaped and stops at once; its command dies with its step ------
    assert await gone_within([first], 10.0), "the cut replica's deploy went on"
    stopped = time.monotonic() - healed
    print(
        f"\nfalse death: the run was taken over {taken:.2f} s after the cut; back, the cut "
        f"replica stopped its step within {stopped:.2f} s"
    )
    gate.touch()
    await ws.wait_for(lambda: done(ws, ts), timeout=DEADLINE)
    await ws.wait_for(
        lambda: (
            not query(
                tmp_path, pg_url, "SELECT 1 FROM bot_outbox WHERE status IN ('pending','sending')"
            )
        ),
        timeout=DEADLINE,
    )
    assert attempts(log, "done") == [[second, judge.proc.pid]]  # one deploy completed
    events = dict(
        query(
            tmp_path,
            pg_url,
            "SELECT event, COUNT(*) FROM bot_audit WHERE event IN "
            "('decided', 'resumed', 'run_done', 'run_failed') GROUP BY event",
        )
    )
    assert events == {"decided": 1, "resumed": 1, "run_done": 1}, events
    assert progress_counts(ws, ts) == {
        "Pulling image": 1,
        "Rolling out": 1,
        "Running health checks": 1,
    }
    assert buttons(message(ws, ts)) == []

    # -- and the cut replica carries on serving, registered again ----------------------------
    await ws.slash("alice", "/deploy", "api 1.4.3 prod", channel=DEPLOYS)
    again = await ws.wait_for(lambda: approval(ws, "1.4.3"), timeout=DEADLINE)
    await ws.click("bob", again, "Approve")
    await ws.wait_for(lambda: done(ws, str(again["ts"])), timeout=DEADLINE)
    assert attempts(log, "done")[-1][1] == cut.proc.pid
    owners = query(tmp_path, pg_url, "SELECT owner FROM bot_owners")
    assert [o for (o,) in owners if f":{cut.proc.pid}:" in o] != []
    text = cut.log.read_text()
    assert "judged this one dead" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "psycopg.pool" not in text  # the pool's reconnect noise (it names the server)
    assert "Traceback" not in judge.log.read_text()
