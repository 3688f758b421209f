"""``python -m bench.remote``: figures for the bot answering a LangGraph Server (issue 16,
"Performance"). Everything runs on loopback: a real ``langgraph dev`` (tests/remote/server.py,
from ``.venv-server``) serving the test graphs, the local Slack workspace in this process, and
the real bot (``python -m bot run``) in a process of its own, with a policy holding one
``[[deployments]]`` entry ("support", ``poll = "2s"``, the default) and, for the comparison,
the same ``plain`` graph run locally (``graphs = ["bench.remote:specs"]``).

It measures, in one sitting:

1. interrupt raised on the server -> approval posted, for threads started with the SDK
   (``runs.wait`` returned -> the workspace shows the message), started a few at a time with
   random gaps so they do not line up with the inbox's poll;
2. ``/approvals run support/plain x`` -> approval posted, next to ``/approvals run plain x``
   (the same graph in the bot's process), one at a time, alternating; and their ratio;
3. click -> resume accepted by the server (the server's ``created_at`` of the resume's run)
   at 50 concurrent clicks on 50 different pending threads; each thread has exactly 2 runs;
4. a backlog of threads already interrupted when a fresh bot starts, with Slack's rate limits
   on in the workspace: time until every one is posted, approval messages per thread, the
   429s the bot got, then the deployment calls per minute while nothing changes (the bot's
   /metrics ``approvals_deployment_calls``: ``langgraph dev`` logs no line per request).

``--quick`` is a small run (the smoke test's); ``--json FILE`` also writes every figure.
Heavy imports are inside functions: the bot's process imports this module for ``specs``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from graphs import GraphSpec

REPO = Path(__file__).resolve().parent.parent
DEPLOYMENT = "support"
WAIT = 60.0  # seconds any single thing may take before the run fails
SEED = 16


# -- the local twin of the served ``plain`` graph (imported by the bot's process) ----------
def _build_plain() -> Any:
    from langgraph.graph import END, START, StateGraph

    from tests.remote.served.nodes import State, ask_plain

    graph = StateGraph(State)
    graph.add_node("ask_plain", ask_plain)
    graph.add_edge(START, "ask_plain")
    graph.add_edge("ask_plain", END)
    return graph


specs = [
    GraphSpec(
        command="plain",
        description="tests/remote/served's plain graph, run in the bot (benchmark only)",
        usage="<text>",
        parse=lambda text: {"subject": text},
        build=_build_plain,
    )
]


# -- sizes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    sdk_threads: int = 40  # figure 1
    slack_runs: int = 20  # figure 2, each of remote and local
    clicks: int = 50  # figure 3
    backlog: int = 1_000  # figure 4
    quiet_seconds: float = 60.0  # figure 4's window with nothing changing
    batch: tuple[int, int] = (1, 3)  # figure 1: threads started together
    gap: tuple[float, float] = (1.5, 4.5)  # figure 1: seconds between batches


FULL = Sizes()
QUICK = Sizes(
    sdk_threads=5,
    slack_runs=3,
    clicks=6,
    backlog=12,
    quiet_seconds=6.0,
    gap=(0.3, 1.5),
)


def log(message: str) -> None:
    print(f"[bench.remote {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "n": len(values),
    }


# -- the workspace's approval messages ----------------------------------------------------
SVC = re.compile(r"\bsvc(\d{7})\b")


class Posts:
    """Every top-level bot message with buttons the workspace shows (an approval posted), with
    when (``time.perf_counter``) and the ``svc<n>`` it names, if any; futures for the next."""

    def __init__(self, ws: Any) -> None:
        from bot.localslack.model import BOT_USER_ID

        self.ws = ws
        self.bot_user = BOT_USER_ID
        self.all: list[tuple[float, str, str, int | None]] = []  # when, channel, ts, n
        self.by_n: dict[int, list[tuple[float, str, str]]] = {}
        self._next: list[asyncio.Future[tuple[float, str, str]]] = []
        ws.model.listeners.append(self._on_event)

    def _on_event(self, event: dict[str, Any], to_user: str | None) -> None:
        if event.get("type") != "message" or "thread_ts" in event:
            return
        now = time.perf_counter()
        message = self.ws.model.find_message(event["channel"], event["ts"])
        if not message or message.get("user") != self.bot_user:
            return
        if not any(b.get("type") == "actions" for b in message.get("blocks") or []):
            return
        found = SVC.search(message.get("text") or "") or SVC.search(
            json.dumps(message.get("blocks") or [])
        )
        n = int(found.group(1)) if found else None
        self.all.append((now, event["channel"], event["ts"], n))
        if n is not None:
            self.by_n.setdefault(n, []).append((now, event["channel"], event["ts"]))
        for fut in self._next:
            if not fut.done():
                fut.set_result((now, event["channel"], event["ts"]))
        self._next.clear()

    def next_one(self) -> asyncio.Future[tuple[float, str, str]]:
        """A future for the next approval posted (register before acting)."""
        fut: asyncio.Future[tuple[float, str, str]] = asyncio.get_running_loop().create_future()
        self._next.append(fut)
        return fut

    async def when(self, n: int, within: float = WAIT) -> float:
        """When ``svc<n>``'s approval was first posted; polls this process's own record."""
        deadline = time.monotonic() + within
        for _ in range(int(within / 0.02) + 1):
            if n in self.by_n:
                return self.by_n[n][0][0]
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        raise BenchFailed(f"svc{n:07d} not posted after {within} s")

    def message(self, n: int) -> dict[str, Any]:
        _, channel, ts = self.by_n[n][0]
        message = self.ws.model.find_message(channel, ts)
        if message is None:
            raise BenchFailed(f"message of svc{n:07d} is gone")
        return dict(message)


class BenchFailed(RuntimeError):
    """A figure could not be produced (the message says which and why)."""


# -- the bot -----------------------------------------------------------------------------
def policy(server_url: str, channel: str) -> str:
    return f"""\
graphs = ["bench.remote:specs"]

[[deployments]]
name = "{DEPLOYMENT}"
url = "{server_url}"
channel = "{channel}"
poll = "2s"
requester_metadata = "slack_user"
"""


class Bot:
    """``python -m bot run`` of this checkout in HTTP mode, the workspace as its Slack, its
    policy naming the server as deployment "support". Defaults otherwise (pacing on)."""

    def __init__(self, api_url: str, workdir: Path, server_url: str, channel: str) -> None:
        from bench.procs import free_port

        self.api_url = api_url
        self.workdir = workdir
        self.server_url = server_url
        self.channel = channel
        self.port = free_port()
        self.log = workdir / "bot.log"
        self.proc: asyncio.subprocess.Process | None = None
        self._session: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    async def spawn(self) -> None:
        from bench.procs import SECRET, TOKEN, clean_env

        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "approvals.toml"
        config.write_text(policy(self.server_url, self.channel))
        env = clean_env(
            PYTHONPATH=str(REPO),
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=self.api_url,
            APPROVALS_DB=str(self.workdir / "approvals.db"),
            APPROVALS_CONFIG=str(config),
            APPROVALS_GRACE_SECONDS="2",
            PORT=str(self.port),
            TEST_TOOL_LOG=str(self.workdir / "local-tools.jsonl"),
        )
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", cwd=REPO, env=env, stdout=out, stderr=out
            )

    async def wait_ready(self, within: float = 30.0) -> None:
        import aiohttp

        from bench.procs import tail

        deadline = time.monotonic() + within
        for _ in range(int(within / 0.02) + 1):
            if self.proc is not None and self.proc.returncode is not None:
                raise BenchFailed(f"the bot exited:\n{tail(self.log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session().get(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)  # a socket that is not listening yet
        raise BenchFailed(f"the bot is not ready:\n{tail(self.log)}")

    def session(self) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def deployment_calls(self) -> dict[str, float]:
        """``approvals_deployment_calls`` for "support", by outcome, from /metrics."""
        import aiohttp

        url = f"http://127.0.0.1:{self.port}/metrics"
        async with self.session().get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            text = await r.text()
        calls: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("approvals_deployment_calls_total{") and (
                f'deployment="{DEPLOYMENT}"' in line
            ):
                outcome = re.search(r'outcome="([^"]*)"', line)
                calls[outcome.group(1) if outcome else "?"] = float(line.rsplit(" ", 1)[1])
        return calls

    def searches_logged(self, server_url: str) -> int:
        """``POST /threads/search`` requests in the bot's log (httpx logs each request)."""
        line = f"POST {server_url}/threads/search ".encode()
        try:
            return self.log.read_bytes().count(line)
        except OSError:
            return 0

    async def stop(self) -> None:
        from bench.procs import stop_process

        if self._session is not None:
            await self._session.close()
            self._session = None
        await stop_process(self.proc)


# -- the server --------------------------------------------------------------------------
def start_server(folder: Path) -> Any:
    from tests.remote.server import SERVER_VENV, LangGraphServer

    exe = SERVER_VENV / "bin" / "langgraph"
    if not exe.exists():
        raise BenchFailed(f"no {exe}: create .venv-server (README, 'Test it')")
    server = LangGraphServer(exe, folder)
    took = server.start()
    log(f"langgraph dev up on {server.url} in {took:.1f} s")
    return server


async def sdk_thread(client: Any, n: int, graph: str = "approval") -> tuple[str, float]:
    """A thread started with the SDK, left at its interrupt; returns its id and when
    ``runs.wait`` returned (``time.perf_counter``)."""
    thread = await client.threads.create(metadata={"bench": n})
    tid = str(thread["thread_id"])
    values = await asyncio.wait_for(
        client.runs.wait(tid, graph, input={"subject": f"svc{n:07d} 1.0"}), WAIT
    )
    returned = time.perf_counter()
    if not isinstance(values, dict) or "__interrupt__" not in values:
        raise BenchFailed(f"thread {tid} did not stop at its interrupt: {str(values)[:200]}")
    return tid, returned


async def bounded(factories: list[Any], at_once: int, within: float) -> list[Any]:
    """Run coroutine factories, ``at_once`` at a time; fail after ``within`` seconds."""
    gate = asyncio.Semaphore(at_once)

    async def one(f: Any) -> Any:
        async with gate:
            return await f()

    return await asyncio.wait_for(asyncio.gather(*(one(f) for f in factories)), within)


def server_queue(server_log: Path) -> dict[str, dict[str, float]]:
    """From ``langgraph dev``'s own log: per graph, how long its runs waited in the server's
    queue before a worker took them, and how long they ran (its ``Background run`` lines)."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    try:
        text = server_log.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if "Background run" not in line:
            continue
        graph = re.search(r"graph_id=(\S+)", line)
        waited = re.search(r"run_wait_time_ms=(\d+)", line)
        ran = re.search(r"run_exec_ms=(\d+)", line)
        if graph and waited and ran:
            w, e = found.setdefault(graph.group(1), ([], []))
            w.append(float(waited.group(1)))
            e.append(float(ran.group(1)))
    return {
        g: {"queue_wait_ms_p50": pct(w, 50), "exec_ms_p50": pct(e, 50), "runs": len(w)}
        for g, (w, e) in found.items()
    }


# -- the figures -------------------------------------------------------------------------
class Sitting:
    """One server, one workspace and one bot for figures 1-3."""

    def __init__(self, sizes: Sizes, workdir: Path) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.rng = random.Random(SEED)
        self.next_n = 0
        self.threads: dict[int, str] = {}  # svc number -> thread id

    def new_n(self) -> int:
        self.next_n += 1
        return self.next_n

    async def sdk_to_posted(self) -> dict[str, Any]:
        """Figure 1: SDK ``runs.wait`` returned -> approval posted."""
        latencies: list[float] = []
        left = self.sizes.sdk_threads
        batches = 0
        for _ in range(self.sizes.sdk_threads):
            if left <= 0:
                break
            k = min(left, self.rng.randint(*self.sizes.batch))
            ns = [self.new_n() for _ in range(k)]
            started = await asyncio.gather(*(sdk_thread(self.client, n) for n in ns))
            for n, (tid, _) in zip(ns, started, strict=True):
                self.threads[n] = tid
            self.waiting += [(n, returned) for n, (_, returned) in zip(ns, started, strict=True)]
            left -= k
            batches += 1
            if left > 0:
                await asyncio.sleep(self.rng.uniform(*self.sizes.gap))  # the gap is the point
        for n, returned in self.waiting:
            latencies.append((await self.posts.when(n) - returned) * 1000)
        self.waiting.clear()
        return {**spread(latencies), "batches": batches}

    async def slack_to_posted(self) -> dict[str, Any]:
        """Figure 2: slash -> approval posted, remote (support/plain) and local (plain),
        alternating, one at a time, each in a channel of its own turn."""
        from bench.workspace import REQUESTER, ack_ms, channel_id

        remote: list[float] = []
        local: list[float] = []
        for i in range(self.sizes.slack_runs):
            order = [("remote", remote), ("local", local)]
            if i % 2:
                order.reverse()
            for turn, (kind, into) in enumerate(order):
                graph = f"{DEPLOYMENT}/plain" if kind == "remote" else "plain"
                nxt = self.posts.next_one()
                started = time.perf_counter()
                # a channel of its own (Slack paces posts per channel), never the inbox's
                channel = channel_id(1 + (2 * i + turn) % 49)
                d = await self.ws.slash(REQUESTER, "/approvals", f"run {graph} x{i}", channel)
                ack_ms(d, f"/approvals run {graph}")
                posted, where, ts = await asyncio.wait_for(nxt, WAIT)
                into.append((posted - started) * 1000)
                self.slack_started.append((kind, where, ts))
        r, lo = spread(remote), spread(local)
        return {
            "remote": r,
            "local": lo,
            "ratio_p50": r["p50"] / lo["p50"],
            "ratio_p99": r["p99"] / lo["p99"],
        }

    async def click_to_accepted(self) -> dict[str, Any]:
        """Figure 3: ``clicks`` people click Approve at once, each on another pending thread;
        resume accepted = the server's ``created_at`` of the thread's second run."""
        from bench.workspace import APPROVER, ack_ms

        ns = sorted(self.threads)
        extra = [self.new_n() for _ in range(max(0, self.sizes.clicks - len(ns)))]
        if extra:
            made = await bounded(
                [lambda n=n: sdk_thread(self.client, n) for n in extra], 10, WAIT * 2
            )
            for n, (tid, _) in zip(extra, made, strict=True):
                self.threads[n] = tid
            for n in extra:
                await self.posts.when(n)
        ns = sorted(self.threads)[: self.sizes.clicks]
        clicked: dict[int, float] = {}
        acks: list[float] = []

        async def one(n: int) -> None:
            message = self.posts.message(n)
            clicked[n] = time.time()
            acks.append(ack_ms(await self.ws.click(APPROVER, message, "Approve"), "click"))

        await asyncio.wait_for(asyncio.gather(*(one(n) for n in ns)), WAIT)
        accepted = await self._accepted(ns)
        runs = await self._runs_when_idle(ns)
        latencies = [(accepted[n] - clicked[n]) * 1000 for n in ns]
        return {
            **spread(latencies),
            "ack_p50": pct(acks, 50),
            "ack_p99": pct(acks, 99),
            "threads_with_2_runs": sum(1 for n in ns if runs.get(n) == 2),
            "threads_other": {str(n): c for n, c in runs.items() if c != 2},
        }

    async def _accepted(self, ns: list[int]) -> dict[int, float]:
        """When the server created each thread's second run (epoch seconds), polling
        ``runs.list`` (10 at a time, every 0.2 s) until every thread has one."""
        accepted: dict[int, float] = {}
        deadline = time.monotonic() + WAIT
        for _ in range(int(WAIT / 0.2) + 1):
            todo = [n for n in ns if n not in accepted]
            if not todo or time.monotonic() > deadline:
                break
            lists = await bounded(
                [lambda n=n: self.client.runs.list(self.threads[n], limit=10) for n in todo],
                10,
                WAIT,
            )
            for n, listed in zip(todo, lists, strict=True):
                if len(listed) >= 2:
                    newest = max(listed, key=lambda r: r["created_at"])
                    accepted[n] = datetime.fromisoformat(newest["created_at"]).timestamp()
            await asyncio.sleep(0.2)  # polling the server, not waiting for it to settle
        missing = [n for n in ns if n not in accepted]
        if missing:
            raise BenchFailed(f"{len(missing)} resumes not accepted after {WAIT} s")
        return accepted

    async def _runs_when_idle(self, ns: list[int]) -> dict[int, int]:
        """Runs per thread once no run is pending or running on any of them."""
        runs: dict[int, int] = {}
        deadline = time.monotonic() + WAIT
        for _ in range(int(WAIT / 0.25) + 1):
            lists = await bounded(
                [lambda n=n: self.client.runs.list(self.threads[n], limit=10) for n in ns],
                10,
                WAIT,
            )
            runs = {n: len(listed) for n, listed in zip(ns, lists, strict=True)}
            busy = any(r["status"] in ("pending", "running") for listed in lists for r in listed)
            if not busy or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        return runs

    async def run(self) -> dict[str, Any]:
        from bench.workspace import channel_id, open_workspace

        self.waiting: list[tuple[int, float]] = []
        self.slack_started: list[tuple[str, str, str]] = []
        server = await asyncio.to_thread(start_server, self.workdir / "server")
        try:
            self.client = server.client()
            self.ws = await open_workspace()
            self.posts = Posts(self.ws)
            bot = Bot(self.ws.api_url, self.workdir / "bot", server.url, channel_id(0))
            try:
                await bot.spawn()
                await bot.wait_ready()
                self.ws.request_url = bot.url
                out: dict[str, Any] = {}
                log(f"1. {self.sizes.sdk_threads} SDK threads -> approval posted")
                out["sdk_to_posted_ms"] = await self.sdk_to_posted()
                log(f"2. {self.sizes.slack_runs} x (remote, local) slash -> approval posted")
                out["slack_to_posted_ms"] = await self.slack_to_posted()
                log(f"3. {self.sizes.clicks} concurrent clicks -> resume accepted")
                out["click_to_accepted_ms"] = await self.click_to_accepted()
                out["bot_calls"] = await bot.deployment_calls()
                out["server_runs"] = server_queue(server.log)
                return out
            finally:
                await bot.stop()
                await self.ws.stop()
                await self.client.aclose()
        finally:
            await asyncio.to_thread(server.kill)


async def make_backlog(client: Any, count: int) -> None:
    """``count`` threads started with the SDK and left at their interrupt (20 at a time);
    checked with the server's own list of interrupted threads."""
    log(f"4. {count} threads interrupted before the bot starts")
    made_at = time.perf_counter()
    ns = list(range(1, count + 1))
    await bounded([lambda n=n: sdk_thread(client, n) for n in ns], 20, WAIT + count)
    interrupted = 0
    for offset in range(0, count + 100, 100):
        page = await client.threads.search(
            status="interrupted", limit=100, offset=offset, select=["thread_id"]
        )
        interrupted += len(page)
        if len(page) < 100:
            break
    if interrupted != count:
        raise BenchFailed(f"{interrupted} threads interrupted, not {count}")
    log(f"   made in {time.perf_counter() - made_at:.1f} s; starting the bot")


async def all_posted(bot: Bot, posts: Posts, count: int) -> None:
    """Wait until ``count`` different threads are posted; Slack's pace (1 chat.postMessage
    per second per channel, burst 5) sets the time, so the deadline is 3 s a thread."""
    within = 3.0 * count + 120
    deadline = time.monotonic() + within
    last_log = time.monotonic()
    for _ in range(int(within / 0.25) + 1):
        if len(posts.by_n) >= count or time.monotonic() > deadline:
            break
        if bot.proc is not None and bot.proc.returncode is not None:
            raise BenchFailed("the bot exited during the backlog")
        if time.monotonic() - last_log > 60:
            last_log = time.monotonic()
            log(f"   {len(posts.by_n)} of {count} posted")
        await asyncio.sleep(0.25)  # polling this process's own record
    if len(posts.by_n) < count:
        raise BenchFailed(f"{len(posts.by_n)} of {count} posted in {within} s")


def slack_429s(ws: Any) -> dict[str, int]:
    """The workspace's answers with HTTP 429, by method."""
    limited: dict[str, int] = {}
    for c in ws.api.calls:
        if c.status == 429:
            limited[c.method] = limited.get(c.method, 0) + 1
    return limited


async def backlog(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Figure 4: ``backlog`` threads interrupted before a fresh bot starts (Slack's rate
    limits on), then the deployment calls per minute while nothing changes."""
    from bench.workspace import channel_id, open_workspace

    server = await asyncio.to_thread(start_server, workdir / "server")
    try:
        client = server.client()
        try:
            await make_backlog(client, sizes.backlog)
        finally:
            await client.aclose()
        ws = await open_workspace()
        ws.set_rate_limits(True)
        posts = Posts(ws)
        bot = Bot(ws.api_url, workdir / "bot", server.url, channel_id(0))
        try:
            spawned = time.perf_counter()
            await bot.spawn()
            await bot.wait_ready()
            ready = time.perf_counter()
            ws.request_url = bot.url
            await all_posted(bot, posts, sizes.backlog)
            last = max(p[0][0] for p in posts.by_n.values())
            first = min(p[0][0] for p in posts.by_n.values())
            calls_at_done = len(ws.api.calls)
            log(f"   all posted; {sizes.quiet_seconds:.0f} s with nothing changing")
            before = await bot.deployment_calls()
            searches_before = bot.searches_logged(server.url)
            quiet_from = time.perf_counter()
            slack_before = len(ws.api.calls)
            await asyncio.sleep(sizes.quiet_seconds)  # the window measured, not a settle
            after = await bot.deployment_calls()
            searches = bot.searches_logged(server.url) - searches_before
            quiet = time.perf_counter() - quiet_from
            slack_in_window = ws.api.calls[slack_before:]
            calls = sum(after.values()) - sum(before.values())
            per_thread = {n: len(p) for n, p in posts.by_n.items()}
            limited = slack_429s(ws)
            posted_calls = [
                c for c in ws.api.calls if c.method == "chat.postMessage" and c.status == 200
            ]
            return {
                "threads": sizes.backlog,
                "posted_threads": len(per_thread),
                "posted_exactly_once": sum(1 for c in per_thread.values() if c == 1),
                "posted_more_than_once": sum(1 for c in per_thread.values() if c > 1),
                "other_approval_messages": sum(1 for p in posts.all if p[3] is None),
                "all_posted_from_spawn_s": last - spawned,
                "all_posted_from_ready_s": last - ready,
                "first_posted_from_ready_s": first - ready,
                "posts_per_second": (len(per_thread) - 1) / (last - first)
                if last > first
                else float("nan"),
                "slack_429s": sum(limited.values()),
                "slack_429s_by_method": limited,
                "chat_postMessage_ok": len(posted_calls),
                "slack_calls_until_done": calls_at_done,
                "quiet_seconds": quiet,
                "deployment_calls_in_window": calls,
                "deployment_calls_by_outcome": {
                    k: after.get(k, 0) - before.get(k, 0) for k in after
                },
                "deployment_calls_per_minute": calls * 60 / quiet,
                "searches_in_window_bot_log": searches,
                "searches_per_minute_bot_log": searches * 60 / quiet,
                "slack_calls_in_window": len(slack_in_window),
            }
        finally:
            await bot.stop()
            await ws.stop()
    finally:
        await asyncio.to_thread(server.kill)


# -- report ------------------------------------------------------------------------------
def table(r: dict[str, Any], sizes: Sizes) -> str:
    s1, s2, s3, s4 = (
        r["sdk_to_posted_ms"],
        r["slack_to_posted_ms"],
        r["click_to_accepted_ms"],
        r["backlog"],
    )

    def ms(d: dict[str, Any]) -> str:
        return f"{d['p50']:.0f} ms / {d['p99']:.0f} ms"

    rows = [
        ("Figure", "p50 / p99 (or value)", "Notes"),
        (
            f"Interrupt on the server -> approval posted (SDK threads, poll 2 s, N={s1['n']})",
            ms(s1),
            f"runs.wait returned -> message shown; {s1['batches']} batches, random gaps",
        ),
        (
            f"`/approvals run support/plain` -> approval posted (N={s2['remote']['n']})",
            ms(s2["remote"]),
            "remote: the bot creates the thread and streams the run",
        ),
        (
            f"`/approvals run plain` (same graph, in the bot) -> approval posted "
            f"(N={s2['local']['n']})",
            ms(s2["local"]),
            "local, same sitting, alternating with the remote runs",
        ),
        (
            "Ratio remote / local",
            f"{s2['ratio_p50']:.1f}x / {s2['ratio_p99']:.1f}x",
            "",
        ),
        (
            f"Click -> resume accepted by the server, {s3['n']} concurrent clicks",
            ms(s3),
            f"server's created_at of the resume run; {s3['threads_with_2_runs']}/{s3['n']} "
            f"threads with exactly 2 runs; click ack p50 {s3['ack_p50']:.0f} ms",
        ),
        (
            f"{s4['threads']} threads interrupted before start -> all posted",
            f"{s4['all_posted_from_ready_s']:.1f} s",
            f"from the bot ready ({s4['all_posted_from_spawn_s']:.1f} s from spawn); "
            f"{s4['posts_per_second']:.2f} posts/s",
        ),
        (
            "… each posted exactly once",
            f"{s4['posted_exactly_once']}/{s4['threads']}",
            f"{s4['posted_more_than_once']} twice or more, "
            f"{s4['threads'] - s4['posted_threads']} never",
        ),
        (
            "… Slack 429s the bot got (workspace rate limits on)",
            str(s4["slack_429s"]),
            json.dumps(s4["slack_429s_by_method"]) if s4["slack_429s"] else "pacing held",
        ),
        (
            "Inbox requests to the deployment per minute, nothing changing",
            f"{s4['deployment_calls_per_minute']:.1f}",
            f"{s4['deployment_calls_in_window']:.0f} calls in {s4['quiet_seconds']:.0f} s "
            f"(bot /metrics; {s4['searches_in_window_bot_log']} POST /threads/search in its "
            f"log); {s4['slack_calls_in_window']} Slack calls in the window",
        ),
    ]
    queue = r.get("server_runs", {})
    if queue:
        rows.append(
            (
                "langgraph dev: a run's wait in the server's queue, p50 (its log)",
                ", ".join(f"{g} {q['queue_wait_ms_p50']:.0f} ms" for g, q in sorted(queue.items())),
                ", ".join(
                    f"{g}: {q['runs']} runs, exec p50 {q['exec_ms_p50']:.0f} ms"
                    for g, q in sorted(queue.items())
                ),
            )
        )
    out = [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out.insert(1, "|---|---|---|")
    return "\n".join(out)


async def main_async(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    began = time.perf_counter()
    results = await Sitting(sizes, workdir / "sitting").run()
    results["backlog"] = await backlog(sizes, workdir / "backlog")
    results["sizes"] = asdict(sizes)
    results["seconds"] = time.perf_counter() - began
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (the smoke test's)")
    p.add_argument("--json", type=Path, help="also write every figure as JSON")
    p.add_argument("--keep", type=Path, help="a folder for the logs (default: a temporary one)")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    with contextlib.ExitStack() as stack:
        workdir = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            results = asyncio.run(main_async(sizes, workdir))
        except BenchFailed as exc:
            log(f"failed: {exc}")
            return 1
    print(table(results, sizes))
    print(f"\n({'quick' if args.quick else 'full'} run, {results['seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
