"""Shared fixtures: the real bot (BotRuntime + Bolt over aiohttp on 127.0.0.1) wired to the
local Slack workspace (bot/localslack) through the real Web API client, on a real SQLite file
or, where a module asks for both backends (``backend`` fixture), a real PostgreSQL schema of
its own (TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from bot.config import Settings
from bot.localslack import LocalSlack
from bot.policy.parse import parse_policy
from bot.policy.rules import Policy
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
BACKENDS = ("sqlite", "postgres")  # a module runs on both with a ``backend`` fixture of these
NO_POSTGRES = (
    "TEST_DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/test; .ci/run "
    "sets it): PostgreSQL tests skipped"
)


def postgres_base_url() -> str:
    """TEST_DATABASE_URL; without it the test is skipped, saying why, except in CI (``CI``
    set), where a Postgres test that cannot run fails."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CI is set but TEST_DATABASE_URL is not: the PostgreSQL tests must run")
    pytest.skip(NO_POSTGRES)


def with_schema(url: str, schema: str) -> str:
    """``url`` with every connection's search_path set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-c search_path={schema}')}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh schema of its own on TEST_DATABASE_URL's database, dropped after."""
    import psycopg

    base = postgres_base_url()
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def backend() -> str:
    """SQLite unless a module overrides this fixture with ``params=BACKENDS``."""
    return "sqlite"


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None on SQLite; a fresh PostgreSQL schema's URL on PostgreSQL."""
    return request.getfixturevalue("pg_url") if backend == "postgres" else None


def query(db: Path, url: str | None, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the bot's database as an operator would (committed rows only): the SQLite file,
    or PostgreSQL when ``url`` is set (the store's SQL, translated as the store does)."""
    if url is None:
        with closing(sqlite3.connect(db, timeout=10)) as conn:
            return list(conn.execute(sql, tuple(args)))
    import psycopg

    from bot.postgres import translate

    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(translate(sql), tuple(args)).fetchall()]


def settings_for(
    ws: LocalSlack, db: Path, database_url: str | None = None, **options: Any
) -> Settings:
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
        "database_url": database_url,
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
    database_url: str | None = None  # PostgreSQL instead of the file at ``db``
    bots: list[Bot] = field(default_factory=list)

    async def start_bot(self, clock: Callable[[], float] = time.time, **options: Any) -> Bot:
        """A bot on this workspace and database; ``options`` as for ``settings_for``."""
        settings = settings_for(self.ws, self.db, self.database_url, **options)
        bot = await Bot.start(settings, clock)
        self.bots.append(bot)
        self.ws.request_url = bot.url
        return bot

    @property
    def bot(self) -> Bot:
        return self.bots[-1]

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return query(self.db, self.database_url, sql, args)

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
async def harness(
    ws: LocalSlack, tmp_path: Path, database_url: str | None
) -> AsyncIterator[Harness]:
    h = Harness(ws, tmp_path / "approvals.db", database_url)
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
