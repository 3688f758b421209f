"""Shared fixtures: the real bot (BotRuntime + Bolt over aiohttp on 127.0.0.1) wired to the
local Slack workspace (bot/localslack) through the real Web API client, on a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.config import Settings
from bot.localslack import LocalSlack
from bot.policy import Policy, parse_policy
from bot.runtime import BotRuntime
from graphs.deploy import DeployOptions, SimulatedBackend

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
PROD_APPROVERS = ("U0BOB", "U0DAN")


# Settings fields a test may override through settings_for / Harness.start_bot (slack_timeout,
# outbox, pace, grace_seconds, ...); every other keyword is a DeployOptions field, except
# ``policy``, which may also be the policy file's contents as a dict.
SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings)) - {"deploy", "policy"}
DEFAULT_POLICY = {"policy": {"deploy": {"prod": {"approvers": list(PROD_APPROVERS)}}}}


def settings_for(ws: LocalSlack, db: Path, **options: Any) -> Settings:
    """Test Settings: keywords naming a Settings field (``slack_timeout=1``,
    ``outbox=OutboxOptions(...)``) set it; ``policy`` is a Policy or the file's contents as a
    dict (default: bob and dan approve prod); the rest are DeployOptions fields."""
    fields = {k: options.pop(k) for k in list(options) if k in SETTINGS_FIELDS}
    policy = options.pop("policy", DEFAULT_POLICY)
    fields["policy"] = policy if isinstance(policy, Policy) else parse_policy(policy, "test")
    deploy = {"backend": SimulatedBackend(step_seconds=0), **options}
    base: dict[str, Any] = {
        "bot_token": TOKEN,
        "signing_secret": SECRET,
        "api_url": ws.api_url,
        "db_path": db,
        "grace_seconds": 5,
    }
    return Settings(**{**base, **fields}, deploy=DeployOptions(**deploy))


@dataclass
class Bot:
    """One running bot instance: its runtime and its HTTP endpoint."""

    runtime: BotRuntime
    runner: web.AppRunner
    url: str

    @classmethod
    async def start(cls, settings: Settings, clock: Callable[[], float] = time.time) -> Bot:
        runtime = await BotRuntime.open(settings, clock)
        app = web.Application()
        app.add_routes(runtime.routes())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await runtime.begin()
        return cls(runtime, runner, f"http://127.0.0.1:{port}/slack/events")

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.runtime.close()


@dataclass
class Harness:
    ws: LocalSlack
    db: Path
    bots: list[Bot] = field(default_factory=list)

    async def start_bot(self, clock: Callable[[], float] = time.time, **options: Any) -> Bot:
        """A bot on this workspace and file; ``options`` as for ``settings_for``."""
        bot = await Bot.start(settings_for(self.ws, self.db, **options), clock)
        self.bots.append(bot)
        self.ws.request_url = bot.url
        return bot

    @property
    def bot(self) -> Bot:
        return self.bots[-1]

    async def idle(self) -> None:
        for bot in self.bots:
            await bot.runtime.tasks.idle()

    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        return await self.ws.wait_for(predicate, timeout=timeout)

    def approval_message(self, channel: str = "#deploys") -> dict[str, Any] | None:
        """The newest message in the channel with approval buttons or a decision."""
        for m in reversed(self.ws.messages(channel)):
            if m.get("blocks") and m["blocks"][0].get("type") == "header":
                return m
        return None


@dataclass
class FakeClock:
    """Time the bot sees, moved by the test: deadlines fall due without anyone sleeping."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float, *bots: Bot) -> None:
        """Move time on and make each bot's scheduler look again."""
        self.now += seconds
        for bot in bots:
            bot.runtime.scheduler.wake()


@pytest.fixture
async def ws() -> AsyncIterator[LocalSlack]:
    slack = LocalSlack(signing_secret=SECRET, bot_token=TOKEN)
    await slack.start(host="127.0.0.1", port=0)
    yield slack
    await slack.stop()


@pytest.fixture
async def harness(ws: LocalSlack, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(ws, tmp_path / "approvals.db")
    await h.start_bot()
    yield h
    for bot in h.bots:
        await bot.stop()


@pytest.fixture
async def reaper() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes a test started; any still running when it ends (say, it failed) are killed."""
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
