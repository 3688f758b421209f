"""`python -m bot run` as a real process: configuration errors, HTTP mode against the local
workspace, SIGKILL while an approval is pending, SIGTERM shutdown, no secrets in the log."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp

from bot.localslack import LocalSlack
from tests.conftest import SECRET, TOKEN
from tests.scenario.test_approval_loop import buttons, message_text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any of the bot's settings, plus ``extra``."""
    ours = ("SLACK_", "APPROVALS_", "PORT")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(ours)}, **extra}


async def test_missing_settings_exit_2_with_one_line(tmp_path: Path) -> None:
    for missing, env in [
        ("SLACK_BOT_TOKEN", run_env()),
        ("SLACK_SIGNING_SECRET", run_env(SLACK_BOT_TOKEN=TOKEN)),
    ]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2
        assert err.decode() == f"error: {missing} is not set\n"


async def spawn_bot(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """`python -m bot ARGS` in the log's folder, its output appended to the log."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, env=env, cwd=log.parent, stdout=out, stderr=out
        )


class BotProcess:
    def __init__(
        self,
        ws: LocalSlack,
        db: Path,
        reaper: list[asyncio.subprocess.Process],
        step_seconds: float = 0,
    ) -> None:
        self.port = free_port()
        self.env = run_env(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=ws.api_url,
            APPROVALS_DB=str(db),
            PORT=str(self.port),
            APPROVALS_CONFIG=str(db.parent / "approvals.toml"),
            # The shipped lease and Slack timeout: what a killed process held is taken over at
            # start-up because its lock is free, not because a shortened lease ended.
        )
        (db.parent / "approvals.toml").write_text(
            f'[deploy]\nbackend = "simulated"\nsimulated_step_seconds = {step_seconds}\n'
            '[policy.deploy.prod]\napprovers = ["U0BOB"]\n'
        )
        self.log = db.parent / "bot.log"
        self.reaper = reaper
        self.proc: asyncio.subprocess.Process | None = None
        ws.request_url = f"http://127.0.0.1:{self.port}/slack/events"

    async def start(self) -> None:
        self.proc = await spawn_bot(["run"], self.log, env=self.env)
        self.reaper.append(self.proc)
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # up to ~15 s for a cold interpreter
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                assert self.proc.returncode is None, self.log.read_text()
                await asyncio.sleep(0.05)
        raise TimeoutError("bot did not start:\n" + self.log.read_text())

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 30)


def posted_ts(db: Path) -> str | None:
    """Where the newest approval's message landed, once the outbox has recorded it."""
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT ts FROM bot_approvals ORDER BY created_at DESC").fetchone()
    return row[0] if row else None


def sent_progress(db: Path) -> int:
    """How many progress replies the outbox has recorded as delivered."""
    with closing(sqlite3.connect(db)) as conn:
        sql = "SELECT COUNT(*) FROM bot_outbox WHERE key LIKE 'progress:%' AND status='sent'"
        return int(conn.execute(sql).fetchone()[0])


async def request_deploy(ws: LocalSlack) -> dict[str, Any]:
    """alice asks for a prod deploy; returns the approval message once it is posted."""
    await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel="#deploys")
    return await ws.wait_for(
        lambda: next((m for m in ws.messages("#deploys") if m.get("blocks") and buttons(m)), None),
        timeout=10,
    )


async def test_sigkill_while_pending_then_restart_buttons_still_work(
    ws: LocalSlack, tmp_path: Path, reaper: list[asyncio.subprocess.Process]
) -> None:
    bot = BotProcess(ws, tmp_path / "approvals.db", reaper)
    await bot.start()
    msg = await request_deploy(ws)
    # Pending = stored with its message ts. (Killed in the millisecond between Slack taking
    # the message and the bot storing its ts, the bot would post it again on restart.)
    await ws.wait_for(lambda: posted_ts(tmp_path / "approvals.db") == msg["ts"], timeout=10)
    assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL

    await bot.start()
    await ws.click("bob", msg, "Approve")
    await ws.wait_for(
        lambda: "✅ Deployed" in message_text(ws.messages("#deploys")[-1]), timeout=10
    )
    assert len([m for m in ws.messages("#deploys") if m.get("blocks")]) == 1
    assert await bot.signal(signal.SIGTERM) == 0
    log = bot.log.read_text()
    assert TOKEN not in log and SECRET not in log
    assert "Traceback" not in log


async def test_sigterm_lets_a_running_deploy_finish(
    ws: LocalSlack, tmp_path: Path, reaper: list[asyncio.subprocess.Process]
) -> None:
    bot = BotProcess(ws, tmp_path / "approvals.db", reaper, step_seconds=0.5)
    await bot.start()
    msg = await request_deploy(ws)
    await ws.click("bob", msg, "Approve")
    await ws.wait_for(lambda: len(ws.replies("#deploys", msg["ts"])) >= 2, timeout=10)
    assert await bot.signal(signal.SIGTERM) == 0  # within the 10 s grace period
    final = ws.messages("#deploys")[-1]
    assert "✅ Deployed" in message_text(final)
    assert len(ws.replies("#deploys", msg["ts"])) == 1 + 3


async def test_sigkill_mid_deploy_resumes_once_without_a_second_progress_line(
    ws: LocalSlack, tmp_path: Path, reaper: list[asyncio.subprocess.Process]
) -> None:
    """Killed while a deploy step runs: on restart the step runs again (LangGraph re-runs a
    node from its start), but its progress line is edited, not posted twice."""
    bot = BotProcess(ws, tmp_path / "approvals.db", reaper, step_seconds=1)
    await bot.start()
    msg = await request_deploy(ws)
    await ws.click("bob", msg, "Approve")
    # Killed once the first line is recorded as sent. (Killed in the millisecond between
    # Slack taking a reply and the bot recording it, the restarted bot would send it again:
    # Slack has no idempotency key. The README says so.)
    await ws.wait_for(lambda: sent_progress(tmp_path / "approvals.db") >= 1, timeout=10)
    assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL

    await bot.start()  # recovery: continue the run from its last checkpoint
    await ws.wait_for(
        lambda: "✅ Deployed" in message_text(ws.messages("#deploys")[-1]), timeout=20
    )
    texts = [r["text"] for r in ws.replies("#deploys", msg["ts"])[1:]]
    assert sum(t.startswith("Pulling image") for t in texts) == 1, texts
    assert sum(t.startswith("Running health checks") for t in texts) == 1, texts
    assert any(t.startswith("♻️ The bot restarted") for t in texts), texts
    assert await bot.signal(signal.SIGTERM) == 0
    assert [m for m in ws.messages("#deploys") if m.get("blocks")] == [ws.messages("#deploys")[-1]]
    with closing(sqlite3.connect(tmp_path / "approvals.db")) as db:
        events = [e for (e,) in db.execute("SELECT event FROM bot_audit ORDER BY id")]
    assert events.count("decided") == 1 and events.count("resumed") == 1
