"""The measurements, for one checkout of the bot. Each returns plain numbers; ``measure``
runs them all and returns ``{figure key: value}`` plus details.

Concurrency is in waves: a wave of C fires C requests at once (C people clicking together)
and waits until each is acked and its run has reached the state the figure is about, before
the next wave; so every wave starts from the same quiet bot and waves never overlap.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import BenchError, BotProcess, Target, describe_checkout, run_floor, tail
from bench.workspace import (
    APPROVER,
    DriverGc,
    Tracker,
    ack_ms,
    channel_id,
    click,
    gather_bounded,
    open_workspace,
    slash,
)
from bot.localslack import LocalSlack

WAIT = 60.0  # seconds any single run may take to reach a state before the figure fails


@dataclass(frozen=True)
class Sizes:
    cold_starts: int = 3
    warmup: int = 10
    count_ops: int = 20  # sequential starts and decisions counted for statements and hops
    click_levels: tuple[int, ...] = (1, 50, 500)
    min_clicks: int = 200  # per level: enough waves to have at least this many samples
    wave: int = 50  # the "at 50 concurrent" figures: slash waves and click -> updated
    e2e_flows: int = 200
    pending_levels: tuple[int, ...] = (1_000, 2_000)
    pending_batch: int = 100
    home_opens: int = 20
    floor_count: int = 20
    slash_waves: int = 4  # extra waves for slash figures beyond what the clicks need
    repeats: int = 3  # end-to-end bursts and raw-floor runs; the median one is reported

    def waves(self, level: int) -> int:
        return max(1, math.ceil(self.min_clicks / level))


QUICK = Sizes()
FULL = Sizes(pending_levels=(1_000, 10_000))
SMOKE = Sizes(
    cold_starts=1,
    warmup=2,
    count_ops=2,
    click_levels=(1, 5, 10),
    min_clicks=10,
    wave=5,
    e2e_flows=20,
    pending_levels=(20, 40),
    pending_batch=20,
    home_opens=3,
    floor_count=3,
    slash_waves=1,
    repeats=1,
)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        raise BenchError("no samples")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def spread(prefix: str, values: list[float]) -> dict[str, float]:
    return {f"{prefix}_p50": pct(values, 50), f"{prefix}_p99": pct(values, 99)}


def listed(prefix: str, values: list[float] | None) -> dict[str, float | None]:
    """p50/p99, or None for both when the figure does not exist for this bot."""
    return spread(prefix, values) if values else {f"{prefix}_p50": None, f"{prefix}_p99": None}


def median_by(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


class Session:
    """One bot process (with the probe) and its own fresh workspace and database."""

    def __init__(
        self,
        target: Target,
        workdir: Path,
        pace_off: bool,
        database_url: str | None = None,
        wire: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.target = target
        self.workdir = workdir
        self.pace_off = pace_off
        self.database_url = database_url
        self.wire = wire
        self.ws: LocalSlack
        self.tracker: Tracker
        self.bot: BotProcess

    async def __aenter__(self) -> Session:
        self.ws = await open_workspace()
        self.tracker = Tracker(self.ws)
        self.bot = BotProcess(
            self.target,
            self.ws.api_url,
            self.workdir,
            probe=True,
            pace_off=self.pace_off,
            database_url=self.database_url,
            wire=self.wire,
        )
        try:
            await self.bot.spawn()
            await self.bot.wait_ready()
            self.ws.request_url = self.bot.url
            self.info = (await self.bot.counters())["info"]
            expected = str(self.target.root.resolve() / "bot" / "__init__.py")
            if self.info.get("bot_file") != expected:
                raise BenchError(f"wrong bot imported: {self.info.get('bot_file')} != {expected}")
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self.bot.stop()
        finally:
            await self.ws.stop()

    # -- building blocks -----------------------------------------------------------------
    async def start_runs(self, count: int, concurrency: int) -> list[int]:
        """Start ``count`` runs in waves of ``concurrency`` slash commands; each wave waits
        until all its approvals are posted. Returns the run numbers."""
        runs: list[int] = []
        for first in range(0, count, concurrency):
            wave = [self.tracker.new_run() for _ in range(min(concurrency, count - first))]

            async def one(n: int) -> None:
                ack_ms(await slash(self.ws, n), f"/deploy svc{n}")
                await self.tracker.when("posted", n, WAIT)

            await gather_bounded([lambda n=n: one(n) for n in wave], WAIT * 2)
            runs += wave
        return runs

    async def flow(self, n: int) -> tuple[float, float]:
        """slash -> approval posted -> click Approve -> done; returns (start, done) times."""
        started = time.perf_counter()
        ack_ms(await slash(self.ws, n), f"/deploy svc{n}")
        await self.tracker.when("posted", n, WAIT)
        ack_ms(await click(self.ws, self.tracker, n), f"click svc{n}")
        return started, await self.tracker.when("done", n, WAIT)

    async def warm_up(self, flows: int) -> None:
        for _ in range(flows):
            await self.flow(self.tracker.new_run())
        await self.bot.quiet()

    # -- figures -------------------------------------------------------------------------
    async def count_ops(self, count: int) -> dict[str, float]:
        """Statements, DB round trips and DB-thread time per start and per decision, one at a
        time, each measured from a quiet bot to a quiet bot."""
        totals: dict[str, dict[str, float]] = {"start": {}, "decision": {}}
        # PostgreSQL round trips, one per operation: their median, as the lease loop's looks
        # (every 10 s, a few round trips each) land in some operations and not in others
        turns: dict[str, list[float]] = {"start": [], "decision": []}
        runs = []
        for op in ("start", "decision"):
            for i in range(count):
                before = await self.bot.quiet()
                if op == "start":
                    n = self.tracker.new_run()
                    runs.append(n)
                    ack_ms(await slash(self.ws, n), "count: slash")
                    await self.tracker.when("posted", n, WAIT)
                else:
                    n = runs[i]
                    ack_ms(await click(self.ws, self.tracker, n), "count: click")
                    await self.tracker.when("done", n, WAIT)
                after = await self.bot.quiet()
                t = totals[op]
                for key in ("hops", "statements", "db_thread_seconds", "db_thread_cpu_seconds"):
                    t[key] = t.get(key, 0) + after.get(key, 0) - before.get(key, 0)
                if "pg_turns" in after:
                    turns[op].append(after["pg_turns"] - before["pg_turns"])
                for kind, value in after["by_kind"].items():
                    k = f"stmt_{kind}"
                    t[k] = t.get(k, 0) + value - before["by_kind"].get(kind, 0)
        out: dict[str, float] = {}
        for op, t in totals.items():
            out[f"stmts_per_{op}"] = t.pop("statements") / count
            out[f"hops_per_{op}"] = t.pop("hops") / count
            out[f"db_ms_per_{op}"] = t.pop("db_thread_seconds") * 1000 / count
            out[f"db_cpu_ms_per_{op}"] = t.pop("db_thread_cpu_seconds") * 1000 / count
            if turns[op]:
                out[f"pg_turns_per_{op}"] = statistics.median(turns[op])
            for k, v in sorted(t.items()):
                out[f"{k}_per_{op}"] = v / count
        return out

    async def slash_waves(self, count: int, wave: int) -> tuple[list[int], dict[str, Any]]:
        """Start ``count`` runs in waves of ``wave``: slash ack, slash -> approval posted, and
        the bot's CPU and gc per start."""
        acks: list[float] = []
        posted: list[float] = []
        cpu0, c0 = self.bot.cpu_seconds(), await self.bot.counters()
        runs: list[int] = []
        for first in range(0, count, wave):
            ns = [self.tracker.new_run() for _ in range(min(wave, count - first))]

            async def one(n: int) -> None:
                started = time.perf_counter()
                acks.append(ack_ms(await slash(self.ws, n), "slash"))
                posted.append((await self.tracker.when("posted", n, WAIT) - started) * 1000)

            await gather_bounded([lambda n=n: one(n) for n in ns], WAIT * 2)
            runs += ns
        cpu, c1 = self.bot.cpu_seconds() - cpu0, await self.bot.counters()
        figures = {
            **spread(f"slash_ack_c{wave}", acks),
            **spread(f"slash_posted_c{wave}", posted),
            "cpu_ms_per_start": cpu * 1000 / count,
            "gc_per_start": (sum(c1["gc_collections"]) - sum(c0["gc_collections"])) / count,
            "gc_ms_per_start": (c1["gc_seconds"] - c0["gc_seconds"]) * 1000 / count,
        }
        return runs, figures

    async def click_levels(
        self, pending: list[int], levels: tuple[int, ...], sizes: Sizes
    ) -> dict[str, Any]:
        """Ack latency at each concurrency (waves of ``level`` clicks on pending approvals),
        click -> message updated, and the bot's CPU and gc per decision."""
        figures: dict[str, Any] = {}
        cpu0, c0 = self.bot.cpu_seconds(), await self.bot.counters()
        clicks = 0
        late = 0
        queue = list(pending)
        for level in levels:
            acks: list[float] = []
            updated: list[float] = []
            for _ in range(sizes.waves(level)):
                ns, queue = queue[:level], queue[level:]
                if len(ns) < level:
                    raise BenchError(f"not enough pending approvals for a wave of {level}")

                async def one(n: int, acks: list[float] = acks, up: list[float] = updated) -> None:
                    started = time.perf_counter()
                    acks.append(ack_ms(await click(self.ws, self.tracker, n), "click"))
                    up.append((await self.tracker.when("decided", n, WAIT) - started) * 1000)
                    await self.tracker.when("done", n, WAIT)

                await gather_bounded([lambda n=n: one(n) for n in ns], WAIT * 2)
                clicks += level
            late += sum(a > 3000 for a in acks)
            figures.update(spread(f"ack_c{level}", acks))
            figures.update(spread(f"click_updated_c{level}", updated))
            figures[f"samples_c{level}"] = len(acks)
        cpu, c1 = self.bot.cpu_seconds() - cpu0, await self.bot.counters()
        figures["acks_over_3s"] = late
        figures["cpu_ms_per_decision"] = cpu * 1000 / clicks
        figures["gc_per_decision"] = (
            sum(c1["gc_collections"]) - sum(c0["gc_collections"])
        ) / clicks
        figures["gc_ms_per_decision"] = (c1["gc_seconds"] - c0["gc_seconds"]) * 1000 / clicks
        return figures

    async def e2e(self, flows: int) -> dict[str, Any]:
        """``flows`` people at once, each: /deploy, wait for the approval, Approve, wait for
        the outcome. Approvals per second over the whole burst."""
        ns = [self.tracker.new_run() for _ in range(flows)]
        cpu0, own0 = self.bot.cpu_seconds(), time.process_time()
        c0 = await self.bot.counters()
        started = time.perf_counter()
        spans = await gather_bounded([lambda n=n: self.flow(n) for n in ns], WAIT * 5)
        wall = time.perf_counter() - started
        cpu, own = self.bot.cpu_seconds() - cpu0, time.process_time() - own0
        c1 = await self.bot.counters()
        if self.tracker.failed:
            raise BenchError(f"{len(self.tracker.failed)} runs did not succeed")
        return {
            "e2e_approvals_per_s": flows / wall,
            **spread("e2e_flow", [(done - start) * 1000 for start, done in spans]),
            "e2e_wall_s": wall,
            "e2e_bot_cpu_s": cpu,
            "e2e_bench_cpu_s": own,
            "cpu_ms_per_approval": cpu * 1000 / flows,
            "gc_ms_per_approval": (c1["gc_seconds"] - c0["gc_seconds"]) * 1000 / flows,
            "hops_per_approval_e2e": (c1["hops"] - c0["hops"]) / flows,
            "stmts_per_approval_e2e": (c1["statements"] - c0["statements"]) / flows,
        }

    async def approvals_list(self, count: int) -> list[float] | None:
        """``/approvals list`` by an approver, answered in the ack: the ack times, one at a
        time; None when the bot has no ``/approvals`` (it does not answer 200 with a text)."""
        out = []
        for _ in range(count):
            d = await self.ws.slash(APPROVER, "/approvals", "list", channel_id(0))
            if d.status != 200 or not d.body:
                return None
            out.append(d.elapsed * 1000)
        return out

    async def home_latency(self, opens: int) -> list[float]:
        """``app_home_opened`` -> ``views.publish`` seen by the workspace, one open at a time."""
        user = self.ws.user(APPROVER).id
        out = []
        for _ in range(opens):
            published = self.tracker.expect("home", user)
            started = time.perf_counter()
            ack_ms(await self.ws.open_home(APPROVER), "app_home_opened")
            try:
                done = await asyncio.wait_for(published, WAIT)
            except TimeoutError:
                calls = self.ws.calls_to("views.publish")[-1:]
                raise BenchError(f"App Home never published; last call {calls}") from None
            out.append((done - started) * 1000)
        return out


async def cold_start(target: Target, workdir: Path, pace_off: bool) -> float:
    """Spawn plain ``python -m bot run`` and time until a signed slash command gets its 200."""
    ws = await open_workspace()
    bot = BotProcess(target, ws.api_url, workdir, probe=False, pace_off=pace_off)
    ws.request_url = bot.url
    try:
        started = time.perf_counter()
        await bot.spawn()
        deadline = started + 60
        for attempt in range(100_000):
            d = await slash(ws, attempt + 1)
            if d.status == 200:
                return time.perf_counter() - started
            if bot.proc is not None and bot.proc.returncode is not None:
                raise BenchError(f"{target.name} bot exited during cold start:\n{tail(bot.log)}")
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.005)  # polling a port that is not listening yet
        raise BenchError(f"{target.name}: no 200 for a slash command within 60 s")
    finally:
        try:
            await bot.stop()
        finally:
            await ws.stop()


async def measure(
    target: Target, workdir: Path, sizes: Sizes, pace_off: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every figure for one checkout."""
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {"checkout": describe_checkout(target.root)}
    t0 = time.perf_counter()
    DriverGc.reset()

    colds = []
    for i in range(sizes.cold_starts):
        colds.append(await cold_start(target, workdir / f"cold{i}", pace_off) * 1000)
    figures["cold_start_ms"] = statistics.median(colds)
    details["cold_starts_ms"] = colds
    log(f"{target.name}: cold start {figures['cold_start_ms']:.0f} ms (median of {len(colds)})")

    async with Session(target, workdir / "latency", pace_off) as s:
        details["bot"] = s.info
        await s.warm_up(sizes.warmup)
        figures.update(await s.count_ops(sizes.count_ops))
        log(f"{target.name}: counted {sizes.count_ops} starts and decisions")
        needed = sum(sizes.waves(level) * level for level in sizes.click_levels)
        needed += sizes.slash_waves * sizes.wave
        pending, slash_figures = await s.slash_waves(needed, sizes.wave)
        figures.update(slash_figures)
        log(f"{target.name}: {needed} approvals started in waves of {sizes.wave}")
        figures.update(await s.click_levels(pending, sizes.click_levels, sizes))
        log(f"{target.name}: clicks at {sizes.click_levels}")
        # the extra slash waves' approvals are still pending: decide them before the burst
        rest = pending[sum(sizes.waves(lv) * lv for lv in sizes.click_levels) :]
        await gather_bounded([lambda n=n: click(s.ws, s.tracker, n) for n in rest], WAIT)
        for n in rest:
            await s.tracker.when("done", n, WAIT)
        bursts = [await s.e2e(sizes.e2e_flows) for _ in range(sizes.repeats)]
        figures.update(median_by(bursts, "e2e_approvals_per_s"))
        details["e2e_approvals_per_s_all"] = [b["e2e_approvals_per_s"] for b in bursts]
        log(f"{target.name}: end to end {figures['e2e_approvals_per_s']:.1f} approvals/s")

    floors = [
        await run_floor(
            target, workdir / f"floor{i}", sizes.e2e_flows, sizes.e2e_flows, sizes.floor_count
        )
        for i in range(sizes.repeats)
    ]
    floor = median_by(floors, "approvals_per_second")
    details["floor"] = floor
    details["floor_approvals_per_s_all"] = [f["approvals_per_second"] for f in floors]
    figures["floor_approvals_per_s"] = floor["approvals_per_second"]
    figures["bot_over_floor"] = figures["e2e_approvals_per_s"] / floor["approvals_per_second"]
    figures["floor_cpu_ms_per_approval"] = floor["cpu_ms_per_flow"]
    for op in ("start", "decision"):
        figures[f"floor_stmts_per_{op}"] = floor[f"per_{op}"]["statements"]
        figures[f"floor_hops_per_{op}"] = floor[f"per_{op}"]["hops"]
    log(f"{target.name}: floor {floor['approvals_per_second']:.1f} approvals/s")

    async with Session(target, workdir / "pending", pace_off) as s:
        await s.warm_up(min(5, sizes.warmup))
        figures["rss_mb_0"] = s.bot.rss_mb()
        figures.update(spread("home_0", await s.home_latency(sizes.home_opens)))
        figures.update(listed("approvals_list_0", await s.approvals_list(sizes.home_opens)))
        have = 0
        build_started = time.perf_counter()
        build: dict[int, float] = {}
        for level in sizes.pending_levels:
            await s.start_runs(level - have, sizes.pending_batch)
            have = level
            build[level] = time.perf_counter() - build_started
            figures[f"rss_mb_{level}"] = s.bot.rss_mb()
            log(f"{target.name}: {level} pending after {build[level]:.0f} s")
        top = sizes.pending_levels[-1]
        details["pending_build_s"] = build
        figures["pending_starts_per_s"] = top / build[top]
        figures.update(spread(f"home_{top}", await s.home_latency(sizes.home_opens)))
        # /approvals list came with another issue: None ("not implemented yet") for a bot
        # without it.
        listing = await s.approvals_list(sizes.home_opens)
        figures.update(listed(f"approvals_list_{top}", listing))
    details["seconds"] = time.perf_counter() - t0
    details["driver_gc_max_ms"] = DriverGc.max_ms
    details["driver_gc_total_ms"] = DriverGc.total_ms
    return {"figures": figures, "details": details}
