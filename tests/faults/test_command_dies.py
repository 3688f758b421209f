"""A bot process SIGKILLed while its deploy command runs: the command dies with it (the kernel
kills it, PR_SET_PDEATHSIG), so the restarted bot's repeat of the step never runs beside it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from bot.localslack import LocalSlack
from tests.faults.support import gone_within, process_gone
from tests.scenario.test_cli import BotProcess, request_deploy

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's prctl")


async def test_the_deploy_command_dies_with_the_bot(
    ws: LocalSlack, tmp_path: Path, reaper: list[asyncio.subprocess.Process]
) -> None:
    pidfile = tmp_path / "command.pid"
    script = tmp_path / "deploy.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\necho 'Rolling out'\nexec sleep 60\n")
    script.chmod(0o755)
    bot = BotProcess(ws, tmp_path / "approvals.db", reaper)
    (tmp_path / "approvals.toml").write_text(
        f'[deploy]\nbackend = "command"\ncommand = ["{script}"]\n'
        '[policy.deploy.prod]\napprovers = ["U0BOB"]\n'
    )
    await bot.start()
    msg = await request_deploy(ws)
    await ws.click("bob", msg, "Approve")
    await ws.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
    pid = int(pidfile.read_text())
    assert not process_gone(pid)
    assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL
    try:
        assert await gone_within([pid], 1.0), "the deploy command outlived the bot"
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)  # the test's own command, left by a failure
