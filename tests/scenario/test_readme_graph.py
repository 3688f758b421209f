"""The README's "Bring your own graph", followed exactly as written, so it cannot rot: its
module at the path it names, the one line it puts in approvals.toml (no [deploy] table), the
real `python -m bot run` in that folder against the local workspace, and the command it says
to type. The only stand-in is the model: the example names "openai:gpt-4.1", so the bot's
path starts with tests/scenario/offline (a scripted `langchain_openai.ChatOpenAI`: no key,
no network), where a team would `pip install langchain-openai` and set OPENAI_API_KEY."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp

from bot.app.listeners.commands import DEPLOY_OFF
from bot.localslack import LocalSlack
from tests.conftest import SECRET, TOKEN
from tests.scenario.test_approval_loop import buttons, message_text
from tests.scenario.test_cli import free_port, run_env, spawn_bot

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = Path(__file__).resolve().parent / "offline"


def section(title: str) -> str:
    """The README's ``## title`` section, up to the next ``## ``."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"\n## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end > 0 else None]


def follow_the_readme(folder: Path) -> str:
    """Write what the README says to write, where it says; returns the command it says to
    type in Slack."""
    text = section("Bring your own graph")
    found = re.search(
        r"Put\s+this\s+in\s+`([\w/]+\.py)`\s+and\s+`(graphs = \[[^`]+\])`\s+in\s+`(\w+\.toml)`",
        text,
    )
    assert found, "the README no longer says where the module and the graphs line go"
    module, line, config = found.groups()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code, "the README's example module is gone"
    (folder / module).parent.mkdir(parents=True, exist_ok=True)
    (folder / module).write_text(code.group(1))
    (folder / config).write_text(line + "\n")
    start = re.search(r"Start\s+it\s+with\s+`(/approvals run [^`]+)`", text)
    assert start, "the README no longer says how to start the example"
    # what the stand-in replaces is what the README tells a team to install and set
    assert "langchain-openai" in text and "OPENAI_API_KEY" in text
    return start.group(1)


async def bot(folder: Path, ws: LocalSlack, port: int, offline: bool) -> asyncio.subprocess.Process:
    """`python -m bot run` in ``folder``: its approvals.toml and approvals.db are the ones
    there, as for a team that followed the README."""
    env = run_env(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=ws.api_url,
        PORT=str(port),
    )
    env.pop("OPENAI_API_KEY", None)
    if offline:
        env["PYTHONPATH"] = str(OFFLINE)
    return await spawn_bot(["run"], folder / "bot.log", env=env)


def text_of(log: Path) -> str:
    return log.read_text()


async def until_healthy(proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):  # up to ~20 s for a cold interpreter on a busy machine
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert proc.returncode is None, text_of(log)
            await asyncio.sleep(0.05)
    raise TimeoutError("bot did not start:\n" + text_of(log))


async def cli(folder: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=run_env(PYTHONPATH=str(OFFLINE)),
        cwd=folder,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_bring_your_own_graph_as_the_readme_says(
    ws: LocalSlack, tmp_path: Path, reaper: list[asyncio.subprocess.Process]
) -> None:
    start = follow_the_readme(tmp_path)
    port = free_port()
    ws.request_url = f"http://127.0.0.1:{port}/slack/events"
    log = tmp_path / "bot.log"

    # Without the model's package (or its key), the bot says so in one line, before Slack.
    proc = await bot(tmp_path, ws, port, offline=False)
    reaper.append(proc)
    assert await asyncio.wait_for(proc.wait(), 60) == 2
    said = log.read_text()
    assert said.count("\n") == 1 and said.startswith("error: graphs: refunds: build() failed: ")
    log.unlink()

    proc = await bot(tmp_path, ws, port, offline=True)
    reaper.append(proc)
    await until_healthy(proc, port, log)
    off = r"/deploy is off \(no \[deploy\] table in \S+\); graphs: refunds\n"
    assert len(re.findall(off, log.read_text())) == 1  # one line, at start-up

    # alice types what the README says; bob approves the refund; the agent finishes.
    command, _, text = start.removeprefix("/").partition(" ")
    asked = await ws.slash("alice", f"/{command}", text, channel="#deploys")
    assert asked.status == 200 and not (asked.json or {}).get("text"), asked.json
    msg = await ws.wait_for(
        lambda: next((m for m in ws.messages("#deploys") if m.get("blocks")), None), timeout=20
    )
    shown = message_text(msg)
    assert "Run refund?" in shown and "ACME-1042" in shown and "Args:" not in shown
    assert buttons(msg)[:4] == ["Approve", "Edit…", "Reject", "Respond…"]
    await ws.click("bob", msg, "Approve")
    await ws.wait_for(
        lambda: "Done: Refunded 1200.0 on ACME-1042" in message_text(ws.messages("#deploys")[0]),
        timeout=20,
    )

    # /deploy is off: not in the manifest; typed anyway, it is answered in plain words.
    deploy = await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel="#deploys")
    assert deploy.json == {"text": DEPLOY_OFF, "response_type": "ephemeral"}
    helped = (await ws.slash("alice", "/approvals", "help")).json or {}
    assert "deploy" not in helped["text"] and "`refunds`" in helped["text"]
    code, out, err = await cli(tmp_path, "manifest")
    assert code == 0, err
    commands = [c["command"] for c in json.loads(out)["features"]["slash_commands"]]
    assert commands == ["/approvals"]
    code, out, err = await cli(tmp_path, "check-config")
    assert (code, err) == (0, "")
    assert out.endswith("; graphs: refunds; /deploy is off (no [deploy] table)\n")

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert "Traceback" not in log.read_text()
