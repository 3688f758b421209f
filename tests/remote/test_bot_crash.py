"""`python -m bot run` as a real process answering a real LangGraph Server, SIGKILLed at the
moments where a decision could be lost or sent twice:

- between the claim and the resume (the server stopped, so the resume cannot land): restarted
  with the server back, the bot sends the recorded decision once and the run ends done;
- after the resume reached the server but before the bot recorded it (the resumed run holds
  the thread in its step, the ``plain`` graph's ``hold``): restarted, the bot follows that
  run and nothing more is run on the thread;
- the same, the run ending just as the restarted bot reads the thread (a proxy between them
  holds that read until the thread is idle).

And two processes on one database (a SQLite file; PostgreSQL with TEST_DATABASE_URL), both
watching the deployment: each thread started with the SDK is posted once.

Exactly one resume is counted on the server (``runs.list`` on the thread: the start and one
resume, both successful) and in the served tools' own log, never taken from what the bot
says. The timed cases print their figures (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from langgraph_sdk.client import LangGraphClient

from bot.localslack import LocalSlack
from tests.conftest import BACKENDS, SECRET, TOKEN, query
from tests.remote.conftest import SERVER_KEY
from tests.remote.server import LangGraphServer, server_executable
from tests.remote.test_bot import CHANNEL, POLL, runs_on
from tests.scenario.test_approval_loop import buttons, message_text
from tests.scenario.test_cli import free_port, run_env, spawn_bot

WAIT = 30.0  # any one wait: a cold interpreter, a server's queue, a loaded CI host
KEY_ENV = "SUPPORT_LANGGRAPH_API_KEY"
HOP = ("host", "content-length", "transfer-encoding", "connection", "keep-alive")


def policy_file(folder: Path, url: str) -> Path:
    """The bot's policy: the server as deployment "support", watched, and nothing else."""
    path = folder / "approvals.toml"
    path.write_text(
        "[[deployments]]\n"
        'name = "support"\n'
        f'url = "{url}"\n'
        f'api_key_env = "{KEY_ENV}"\n'
        f'channel = "{CHANNEL}"\n'
        f'poll = "{POLL}"\n'
        'requester_metadata = "slack_user"\n'
    )
    return path


class BotProcess:
    """One `python -m bot run` in HTTP mode on the local workspace, its SQLite file at ``db``,
    the deployment's key in its environment; ``start`` may be called again after a kill."""

    def __init__(
        self,
        ws: LocalSlack,
        db: Path,
        config: Path,
        reaper: list[asyncio.subprocess.Process],
        name: str = "bot",
        database_url: str | None = None,
    ) -> None:
        self.ws = ws
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        where = {"DATABASE_URL": database_url} if database_url else {"APPROVALS_DB": str(db)}
        self.env = run_env(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=ws.api_url,
            APPROVALS_CONFIG=str(config),
            PORT=str(self.port),
            APPROVALS_PACE="0",
            **where,
            **{KEY_ENV: SERVER_KEY},
        )
        if not database_url:
            self.env.pop("DATABASE_URL", None)
        self.log = db.parent / f"{name}.log"
        self.reaper = reaper
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, slack: bool = True) -> float:
        """Spawn it and wait until /healthz answers; Slack's requests go to it when ``slack``.
        Returns the seconds that took."""
        began = time.monotonic()
        self.proc = await spawn_bot(["run"], self.log, env=self.env)
        self.reaper.append(self.proc)
        if slack:
            self.ws.request_url = f"{self.url}/slack/events"
        deadline = began + WAIT
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return time.monotonic() - began
                except aiohttp.ClientConnectionError:
                    pass
                assert self.proc.returncode is None, self.log.read_text()
                await asyncio.sleep(0.05)
        raise TimeoutError("bot did not start:\n" + self.log.read_text())

    async def kill(self) -> None:
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.proc.wait(), WAIT) == -signal.SIGKILL

    async def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.proc.wait(), WAIT) == 0, self.log.read_text()[-4000:]
        log = self.log.read_text()
        assert "Traceback" not in log, log[-8000:]
        assert SERVER_KEY not in log and TOKEN not in log

    async def calls(self, outcome: str = "ok") -> float:
        """The calls it made to the deployment so far (its /metrics)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/metrics") as r:
            text = await r.text()
        pattern = (
            r'^approvals_deployment_calls_total\{deployment="support",outcome="'
            + outcome
            + r'"\} (\S+)$'
        )
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


class Proxy:
    """An HTTP proxy between the bot and the server, passing everything through (streams
    too) except that, once ``arm``ed, it holds the answer to the first read of one thread
    (``GET /threads/<id>``, its ``/state`` or its ``/runs``) until ``hook()`` is done: a slow
    network, or a run ending at that moment, made to happen at the same point every time.
    The answer held is the one read before the hook: stale when it is passed on."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.armed: tuple[set[str], Callable[[], Awaitable[None]]] | None = None
        self.held = 0  # answers held so far
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    def arm(self, thread_id: str, hook: Callable[[], Awaitable[None]]) -> None:
        reads = {f"/threads/{thread_id}{tail}" for tail in ("", "/state", "/runs")}
        self.armed = (reads, hook)

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _pass(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with self._http.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
        ) as up:
            if self.armed and request.method == "GET" and request.path in self.armed[0]:
                hook, self.armed = self.armed[1], None
                self.held += 1
                await hook()
            answer = web.StreamResponse(
                status=up.status,
                headers={k: v for k, v in up.headers.items() if k.lower() not in HOP},
            )
            await answer.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    await answer.write(chunk)
                await answer.write_eof()
            except ConnectionResetError:
                pass  # the bot went (killed, stopped) while its stream was on
            return answer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LangGraphServer]:
    """A server of the test's own, behind SERVER_KEY, not started."""
    own = LangGraphServer(server_executable(), tmp_path / "server", api_key=SERVER_KEY)
    try:
        yield own
    finally:
        own.kill()


@pytest.fixture
async def sdk(server: LangGraphServer) -> AsyncIterator[LangGraphClient]:
    client = server.client()
    yield client
    await client.aclose()


def approvals(ws: LocalSlack) -> list[dict[str, Any]]:
    return [
        m
        for m in ws.messages(CHANNEL)
        if m.get("blocks") and m["blocks"][0].get("type") == "header"
    ]


def run_status(db: Path) -> list[str]:
    return [s for (s,) in query(db, None, "SELECT status FROM bot_runs")]


def approval_status(db: Path) -> list[str]:
    return [s for (s,) in query(db, None, "SELECT status FROM bot_approvals")]


def stored(db: Path) -> bool:
    """The approval is stored with its message's ts (pending, posted)."""
    return bool(query(db, None, "SELECT 1 FROM bot_approvals WHERE status='pending' AND ts != ''"))


async def plain_thread(sdk: LangGraphClient, **given: Any) -> str:
    """A ``plain`` thread started with the SDK, left at its interrupt."""
    thread = await sdk.threads.create(metadata={"test": uuid.uuid4().hex})
    await sdk.runs.wait(thread["thread_id"], "plain", input={"subject": "api", **given})
    return str(thread["thread_id"])


async def wait_for(what: str, holds: Any, timeout: float = WAIT) -> Any:  # noqa: ASYNC109
    """Poll ``holds()`` (sync or async) every 20 ms until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = holds()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still false after {timeout} s")
        await asyncio.sleep(0.02)


async def one_resume(sdk: LangGraphClient, server: LangGraphServer, tid: str) -> None:
    """The server ran the thread twice (its start, one resume), both successfully, and the
    graph went past its interrupt once; the thread is idle."""
    runs = await runs_on(sdk, tid)
    assert sorted(r["status"] for r in runs) == ["success", "success"], runs
    assert [c["name"] for c in server.tool_calls(tid)] == ["ship"]
    assert (await sdk.threads.get(tid))["status"] == "idle"


async def test_sigkill_between_claim_and_resume_resumes_once_after_the_restart(
    ws: LocalSlack,
    tmp_path: Path,
    reaper: list[asyncio.subprocess.Process],
    server: LangGraphServer,
    sdk: LangGraphClient,
) -> None:
    await asyncio.to_thread(server.start)
    db = tmp_path / "approvals.db"
    bot = BotProcess(ws, db, policy_file(tmp_path, server.url), reaper)
    await bot.start()
    tid = await plain_thread(sdk)
    msg = await ws.wait_for(lambda: (approvals(ws) or [None])[-1], timeout=WAIT)
    await wait_for("the approval stored", lambda: stored(db))

    await asyncio.to_thread(server.stop)  # SIGTERM: the server keeps its threads
    await ws.click("bob", msg, "Approve")
    await ws.wait_for(
        lambda: "Approved" in message_text(approvals(ws)[-1]) and not buttons(approvals(ws)[-1]),
        timeout=WAIT,
    )
    await bot.kill()
    assert approval_status(db) == ["decided"]  # claimed, not resumed

    server_seconds = await asyncio.to_thread(server.start)
    assert (await sdk.threads.get(tid))["status"] == "interrupted"  # nothing reached it
    assert len(await runs_on(sdk, tid)) == 1 and server.tool_calls(tid) == []
    restarted = time.monotonic()
    ready = await bot.start()
    await wait_for("the run done", lambda: run_status(db) == ["done"])
    done = time.monotonic() - restarted
    print(
        f"\nclaim-then-kill: server back in {server_seconds:.2f} s; bot restart -> ready "
        f"{ready:.2f} s, -> run done {done:.2f} s"
    )
    await one_resume(sdk, server, tid)
    assert approval_status(db) == ["resumed"]
    # A few polls later: still one resume, one message.
    calls = await bot.calls()
    await wait_for("three more calls", lambda: _more(bot, calls + 3))
    await one_resume(sdk, server, tid)
    assert len(approvals(ws)) == 1
    await bot.stop()


async def _more(bot: BotProcess, calls: float) -> bool:
    return await bot.calls() >= calls


async def test_sigkill_after_the_resume_landed_sends_nothing_again(
    ws: LocalSlack,
    tmp_path: Path,
    reaper: list[asyncio.subprocess.Process],
    server: LangGraphServer,
    sdk: LangGraphClient,
) -> None:
    await asyncio.to_thread(server.start)
    db = tmp_path / "approvals.db"
    bot = BotProcess(ws, db, policy_file(tmp_path, server.url), reaper)
    await bot.start()
    released = tmp_path / "release"
    tid = await plain_thread(sdk, hold=str(released))
    msg = await ws.wait_for(lambda: (approvals(ws) or [None])[-1], timeout=WAIT)
    await wait_for("the approval stored", lambda: stored(db))

    await ws.click("bob", msg, "Approve")
    # The server has the resume: the resumed run went past the interrupt and holds the thread.
    await wait_for("the resume on the server", lambda: server.tool_calls(tid))
    await bot.kill()
    assert approval_status(db) == ["decided"]  # the bot had not recorded the resume
    (resumed,) = [r for r in await runs_on(sdk, tid) if r["status"] in ("pending", "running")]

    ready = await bot.start()
    # The restarted bot looks at the thread (recovery, the inbox) while the run still holds it.
    calls = await bot.calls()
    await wait_for("three calls after the restart", lambda: _more(bot, calls + 3))
    assert (await sdk.threads.get(tid))["status"] == "busy"
    released.touch()
    let_go = time.monotonic()
    await wait_for("the run done", lambda: run_status(db) == ["done"])
    print(
        f"\nresume-then-kill: bot restart -> ready {ready:.2f} s; the run let go -> done "
        f"{time.monotonic() - let_go:.2f} s; resumes refused as the thread was busy (409): "
        f"{await bot.calls('conflict'):.0f}"
    )
    await one_resume(sdk, server, tid)
    assert resumed["run_id"] in {r["run_id"] for r in await runs_on(sdk, tid)}
    calls = await bot.calls()
    await wait_for("three more calls", lambda: _more(bot, calls + 3))
    await one_resume(sdk, server, tid)
    assert len(approvals(ws)) == 1
    await bot.stop()


async def test_sigkill_after_the_resume_landed_then_the_run_ends_while_the_bot_reads(
    ws: LocalSlack,
    tmp_path: Path,
    reaper: list[asyncio.subprocess.Process],
    server: LangGraphServer,
    sdk: LangGraphClient,
) -> None:
    """As above, but the resumed run ends just as the restarted bot reads the thread (the
    proxy holds the bot's first read of it until the thread is idle): the bot must not
    send the decision a second time."""
    await asyncio.to_thread(server.start)
    proxy = Proxy(server.url)
    await proxy.start()
    try:
        db = tmp_path / "approvals.db"
        bot = BotProcess(ws, db, policy_file(tmp_path, proxy.url), reaper)
        await bot.start()
        released = tmp_path / "release"
        tid = await plain_thread(sdk, hold=str(released))
        msg = await ws.wait_for(lambda: (approvals(ws) or [None])[-1], timeout=WAIT)
        await wait_for("the approval stored", lambda: stored(db))
        await ws.click("bob", msg, "Approve")
        await wait_for("the resume on the server", lambda: server.tool_calls(tid))
        await bot.kill()
        assert approval_status(db) == ["decided"]

        async def the_run_ends() -> None:
            released.touch()
            await wait_for("the thread idle", lambda: _status_is(sdk, tid, "idle"))

        proxy.arm(tid, the_run_ends)
        await bot.start()
        await wait_for("the run done", lambda: run_status(db) == ["done"])
        assert proxy.held == 1
        calls = await bot.calls()
        await wait_for("three more calls", lambda: _more(bot, calls + 3))
        await one_resume(sdk, server, tid)
        await bot.stop()
    finally:
        await proxy.stop()


async def _status_is(sdk: LangGraphClient, tid: str, status: str) -> bool:
    return (await sdk.threads.get(tid))["status"] == status


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_processes_on_one_database_post_each_thread_once(
    ws: LocalSlack,
    tmp_path: Path,
    reaper: list[asyncio.subprocess.Process],
    server: LangGraphServer,
    sdk: LangGraphClient,
    database_url: str | None,
) -> None:
    """Both watch the deployment, each inbox finds every thread: one SQLite file, or one
    PostgreSQL schema (TEST_DATABASE_URL)."""
    await asyncio.to_thread(server.start)
    db = tmp_path / "approvals.db"
    config = policy_file(tmp_path, server.url)
    bots = [BotProcess(ws, db, config, reaper, f"bot-{n}", database_url) for n in (1, 2)]
    await asyncio.gather(*(b.start(slack=n == 0) for n, b in enumerate(bots)))
    tids = await asyncio.gather(*(plain_thread(sdk) for _ in range(6)))
    await ws.wait_for(lambda: len(approvals(ws)) >= len(tids), timeout=WAIT)
    # Both inboxes look a few more times: nothing is posted again.
    counts = [await b.calls() for b in bots]
    for bot, calls in zip(bots, counts, strict=True):
        await wait_for("three more looks", lambda b=bot, c=calls: _more(b, c + 3))
    posted = approvals(ws)
    assert len(posted) == len(tids), [message_text(m)[:200] for m in posted]
    assert sorted(r for (r,) in query(db, database_url, "SELECT run_id FROM bot_runs")) == sorted(
        uuid.UUID(t).hex for t in tids
    )
    for bot in bots:
        await bot.stop()
