"""End-to-end approvals per second with 1, 2 and 3 replicas on PostgreSQL, against one process
on SQLite, in the same run::

    python -m bench.replicas [--flows 300] [--database-url postgresql://…]

Each configuration gets a fresh local workspace (50 channels, Slack's rate limits off, the bot's
own pacing off) and a fresh database (a SQLite file; a PostgreSQL schema of its own on
``--database-url``, default ``$TEST_DATABASE_URL``, dropped after). Its replicas are real
``python -m bot run`` processes in HTTP mode; the workspace sends each request to the next
replica in turn, as a load balancer without stickiness would. After a warm-up, ``--flows``
people at once each run ``/deploy``, wait for the approval, click Approve and wait for the
outcome on the message; the figure is flows over the wall time of the whole burst. Beside it,
the bots' CPU per flow (all their processes and threads, from /proc; not the PostgreSQL
server's): on two cores shared with other work it moves far less than the wall time does.
``--configs sqlite:1,postgres:1`` measures only those.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.procs import (
    CONFIG,
    SECRET,
    TOKEN,
    BenchError,
    clean_env,
    cpu_seconds,
    free_port,
    stop_process,
    tail,
)
from bench.workspace import Tracker, ack_ms, click, gather_bounded, open_workspace, slash

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3))
WAIT = 120.0


async def spawn(
    workdir: Path, api_url: str, database_url: str | None, n: int
) -> tuple[asyncio.subprocess.Process, int, Path]:
    port = free_port()
    config = workdir / "approvals.toml"
    config.write_text(CONFIG)
    env = clean_env(
        PYTHONPATH=str(ROOT),
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=api_url,
        APPROVALS_DB=str(workdir / "approvals.db"),
        APPROVALS_CONFIG=str(config),
        APPROVALS_GRACE_SECONDS="2",
        APPROVALS_PACE="0",
        PORT=str(port),
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    log = workdir / f"bot-{n}.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=ROOT, env=env, stdout=out, stderr=out
        )
    return proc, port, log


async def ready(proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise BenchError(f"bot exited:\n{tail(log)}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise BenchError(f"bot not ready:\n{tail(log)}")


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-c%20search_path%3D{schema}"


async def measure(
    backend: str, replicas: int, flows: int, base_url: str | None
) -> tuple[float, float]:
    """Approvals per second for one configuration, and the bots' CPU ms per flow."""
    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    url = None
    if backend == "postgres":
        if not base_url:
            raise BenchError("PostgreSQL needs --database-url or TEST_DATABASE_URL")
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = schema_url(base_url, schema)
    ws = await open_workspace()
    tracker = Tracker(ws)
    procs: list[asyncio.subprocess.Process] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
            started = [await spawn(Path(tmp), ws.api_url, url, n) for n in range(replicas)]
            procs = [p for p, _, _ in started]
            for proc, port, log in started:
                await ready(proc, port, log)
            urls = itertools.cycle(
                f"http://127.0.0.1:{port}/slack/events" for _, port, _ in started
            )
            ws.callbacks.request_url = lambda: next(urls)

            async def flow(n: int) -> None:
                ack_ms(await slash(ws, n), f"/deploy svc{n}")
                await tracker.when("posted", n, WAIT)
                ack_ms(await click(ws, tracker, n), f"click svc{n}")
                await tracker.when("done", n, WAIT)

            for _ in range(10):  # warm-up: every replica has compiled and connected
                await flow(tracker.new_run())
            ns = [tracker.new_run() for _ in range(flows)]
            begun, cpu = time.perf_counter(), sum(cpu_seconds(p.pid) for p in procs)
            await gather_bounded([lambda n=n: flow(n) for n in ns], WAIT * 5)
            wall = time.perf_counter() - begun
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu
            if tracker.failed:
                raise BenchError(f"{len(tracker.failed)} runs did not succeed")
            return flows / wall, cpu * 1000 / flows
    finally:
        for proc in procs:
            await stop_process(proc)
        await ws.stop()
        if url is not None and base_url:
            with psycopg.connect(base_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def main(
    flows: int, base_url: str | None, configs: tuple[tuple[str, int], ...] = CONFIGS
) -> list[tuple[str, int, float, float]]:
    results = []
    for backend, replicas in configs:
        rate, cpu = await measure(backend, replicas, flows, base_url)
        print(f"{backend:8} x{replicas}: {rate:7.1f} approvals/s, {cpu:5.1f} CPU ms a flow")
        results.append((backend, replicas, rate, cpu))
    return results


def parse_configs(text: str) -> tuple[tuple[str, int], ...]:
    """``sqlite:1,postgres:2`` -> the configurations, the first the one compared against."""
    out = []
    for part in text.split(","):
        backend, _, n = part.partition(":")
        if backend not in ("sqlite", "postgres") or not n.isdigit():
            raise argparse.ArgumentTypeError(f"not a configuration: {part!r}")
        out.append((backend, int(n)))
    return tuple(out)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--flows", type=int, default=300, help="people at once (default 300)")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument(
        "--configs", type=parse_configs, default=CONFIGS, help="default sqlite:1,postgres:1,2,3"
    )
    args = parser.parse_args(argv)
    try:
        results = asyncio.run(main(args.flows, args.database_url, args.configs))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    first, first_cpu = results[0][2], results[0][3]
    print(f"\n{args.flows} flows at once, end to end (slash, post, click, deploy, outcome)")
    print(f"| database | replicas | approvals/s | vs {results[0][0]} | bot CPU ms a flow | vs |")
    print("|---|---|---|---|---|---|")
    for backend, replicas, rate, cpu in results:
        print(
            f"| {backend} | {replicas} | {rate:.1f} | {rate / first:.2f}x "
            f"| {cpu:.1f} | {cpu / first_cpu:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
