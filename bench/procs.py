"""The processes the benchmark starts: a bot of one checkout (``python -m bot run``, or the same
through ``_bot.py`` with measurement counters) and the raw-floor script. Every process started
here is stopped by its owner in a ``finally`` (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench-token"
CONFIG = """\
[deploy]
backend = "simulated"
simulated_step_seconds = 0

[approvers]
prod = ["U0BOB"]
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A figure could not be produced (the message says which and why)."""


@dataclass(frozen=True)
class Target:
    """One checkout of the bot to measure."""

    name: str  # "current" or "baseline"
    root: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the bot's settings or a PYTHONPATH, plus ``extra``."""
    ours = ("SLACK_", "APPROVALS_", "PORT", "PYTHONPATH", "BENCH_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(ours)}, **extra}


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class BotProcess:
    """``python -m bot run`` of ``target`` in HTTP mode, with the local workspace as Slack.

    ``probe=True`` starts it through ``bench/_bot.py`` (the same ``main(["run"])`` plus the
    measurement counters of ``_probe.py``); ``pace_off`` sets ``APPROVALS_PACE=0``;
    ``database_url`` sets ``DATABASE_URL`` (PostgreSQL), and ``wire`` adds counters measured
    outside the bot (bench/pgturns.py) to the probe's.
    """

    def __init__(
        self,
        target: Target,
        api_url: str,
        workdir: Path,
        *,
        probe: bool,
        pace_off: bool,
        database_url: str | None = None,
        wire: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.target = target
        self.database_url = database_url
        self.wire = wire
        self.api_url = api_url
        self.workdir = workdir
        self.probe = probe
        self.pace_off = pace_off
        self.port = free_port()
        self.probe_port = free_port() if probe else None
        self.log = workdir / "bot.log"
        self.proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "approvals.toml"
        config.write_text(CONFIG)
        env = clean_env(
            PYTHONPATH=str(self.target.root),
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=self.api_url,
            APPROVALS_DB=str(self.workdir / "approvals.db"),
            APPROVALS_CONFIG=str(config),
            APPROVALS_GRACE_SECONDS="2",
            PORT=str(self.port),
        )
        if self.pace_off:
            env["APPROVALS_PACE"] = "0"
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.probe_port is not None:
            env["BENCH_PROBE_PORT"] = str(self.probe_port)
        argv = (
            [sys.executable, str(BENCH_DIR / "_bot.py")]
            if self.probe
            else [sys.executable, "-m", "bot", "run"]
        )
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self.target.root, env=env, stdout=out, stderr=out
            )

    async def wait_ready(self, within: float = 30.0) -> None:
        """Poll ``/healthz`` (and the probe) until both answer, or fail with the log's tail."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        urls = [f"http://127.0.0.1:{self.port}/healthz"]
        if self.probe_port is not None:
            urls.append(f"http://127.0.0.1:{self.probe_port}/")
        session = self.session()
        for url in urls:
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise BenchError(f"{self.target.name} bot exited:\n{tail(self.log)}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            break
                if loop.time() > deadline:
                    raise BenchError(f"{self.target.name} bot not ready:\n{tail(self.log)}")
                await asyncio.sleep(0.01)  # polling a socket that is not listening yet

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def counters(self) -> dict[str, Any]:
        """The probe's counters (hops, statements, gc, CPU); see ``_probe.py``."""
        assert self.probe_port is not None
        url = f"http://127.0.0.1:{self.probe_port}/"
        async with self.session().get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            counters: dict[str, Any] = json.loads(await r.text())
        if self.wire is not None:
            counters.update(self.wire())
        return counters

    async def quiet(self, within: float = 10.0, still: float = 0.15) -> dict[str, Any]:
        """Poll the counters until no DB call happened for ``still`` seconds; return them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        last = await self.counters()
        since = loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(0.025)
            now = await self.counters()
            if self._moved(last, now):
                last, since = now, loop.time()
            elif loop.time() - since >= still:
                return now
        raise BenchError(f"{self.target.name} bot never went quiet in {within} s")

    @staticmethod
    def _moved(last: dict[str, Any], now: dict[str, Any]) -> bool:
        keys = ("hops", "statements", "pg_turns")
        return any(last.get(k) != now.get(k) for k in keys)

    def rss_mb(self) -> float:
        """Resident set size now, from /proc (costs the bot nothing)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise BenchError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole process (all threads), from /proc."""
        return cpu_seconds(self.pid)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await stop_process(self.proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def stop_process(proc: asyncio.subprocess.Process | None, grace: float = 8.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def run_floor(
    target: Target, workdir: Path, flows: int, concurrency: int, count: int
) -> dict[str, Any]:
    """The raw floor of ``target``'s graph (see ``_floor.py``), in its own process."""
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (local, instant)
    err = workdir / "floor.log"
    started = time.perf_counter()
    with err.open("wb") as errors:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH_DIR / "_floor.py"),
            f"--flows={flows}",
            f"--concurrency={concurrency}",
            f"--count={count}",
            f"--db={workdir / 'floor.db'}",
            cwd=target.root,
            env=clean_env(PYTHONPATH=str(target.root)),
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 300)
        finally:
            await stop_process(proc, grace=1)
    if proc.returncode != 0:
        raise BenchError(f"floor of {target.name} failed:\n{tail(err)}")
    result = json.loads(out)
    result["process_seconds"] = time.perf_counter() - started
    return result


def describe_checkout(root: Path) -> str:
    """``<commit>`` (plus ``+ uncommitted changes``) when ``root`` is a git work tree."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        if Path(top).resolve() != root.resolve():
            return str(root)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "bot", "graphs"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return head + (" + uncommitted changes in bot/ or graphs/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return str(root)
