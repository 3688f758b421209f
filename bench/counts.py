"""``python -m bench.counts``: only the per-operation counts, in about a minute::

    python -m bench.counts [--baseline DIR] [--count 10] [--repeats 1] [--database-url …]

For each checkout (this one, and ``--baseline``'s beside it): SQL statements, round trips to
the database thread and database-thread time per start and per decision on SQLite, measured
as ``python -m bench`` does (one at a time, quiet bot to quiet bot, after a warm-up); and with
a database URL (default ``$TEST_DATABASE_URL``), PostgreSQL round trips per start and per
decision, counted on the wire (bench/pgturns.py), in a schema of its own dropped after.

Database-thread time is given twice: wall time on the thread (which includes its waits for
the GIL while the event loop runs, so it moves with the machine's load) and the thread's own
CPU time (which does not). ``--repeats N`` measures the checkouts N times, taking turns, and
shows each figure's median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.pgturns import proxy_for
from bench.phases import Session
from bench.procs import BenchError, Target
from bench.replicas import schema_url

ROOT = Path(__file__).resolve().parents[1]
SHOWN = (
    ("stmts_per_start", "SQLite statements per start"),
    ("stmts_per_decision", "SQLite statements per decision"),
    ("hops_per_start", "DB-thread round trips per start"),
    ("hops_per_decision", "DB-thread round trips per decision"),
    ("db_ms_per_start", "DB-thread ms per start"),
    ("db_ms_per_decision", "DB-thread ms per decision"),
    ("db_cpu_ms_per_start", "DB-thread CPU ms per start"),
    ("db_cpu_ms_per_decision", "DB-thread CPU ms per decision"),
    ("pg_turns_per_start", "PostgreSQL round trips per start"),
    ("pg_turns_per_decision", "PostgreSQL round trips per decision"),
)


async def on_sqlite(target: Target, workdir: Path, count: int) -> dict[str, Any]:
    async with Session(target, workdir, pace_off=True) as s:
        await s.warm_up(5)
        return await s.count_ops(count)


async def on_postgres(target: Target, workdir: Path, count: int, base: str) -> dict[str, Any]:
    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    proxy = proxy_for(base)
    try:
        url = proxy.url(schema_url(base, schema))
        async with Session(target, workdir, True, url, lambda: {"pg_turns": proxy.turns}) as s:
            await s.warm_up(5)
            figures = await s.count_ops(count)
        return {k: v for k, v in figures.items() if k.startswith("pg_turns")}
    finally:
        proxy.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def main(
    targets: list[Target], count: int, url: str | None, repeats: int = 1
) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="bench-counts-") as tmp:
        for r in range(repeats):  # taking turns, so a change in load touches every checkout
            for t in targets:
                figures = await on_sqlite(t, Path(tmp) / f"{t.name}-sqlite-{r}", count)
                if url:
                    where = Path(tmp) / f"{t.name}-pg-{r}"
                    figures.update(await on_postgres(t, where, count, url))
                runs[t.name].append(figures)
                print(f"[counts] {t.name} done ({r + 1}/{repeats})", file=sys.stderr, flush=True)
    return {name: _medians(rs) for name, rs in runs.items()}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, list[float]] = {}
    for r in runs:
        for k, v in r.items():
            if v is not None:
                values.setdefault(k, []).append(v)
    return {k: statistics.median(vs) for k, vs in values.items()}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.counts", description=__doc__)
    parser.add_argument("--baseline", type=Path, help="a second checkout to measure beside")
    parser.add_argument("--count", type=int, default=10, help="starts and decisions counted")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--repeats", type=int, default=1, help="medians of N runs each")
    parser.add_argument("--kinds", action="store_true", help="also statements by kind")
    args = parser.parse_args(argv)
    targets = [Target("current", ROOT)]
    if args.baseline:
        targets.append(Target("baseline", args.baseline.resolve()))
    try:
        results = asyncio.run(main(targets, args.count, args.database_url, args.repeats))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    names = list(results)
    rows = list(SHOWN)
    if args.kinds:
        kinds = sorted({k for r in results.values() for k in r if k.startswith("stmt_")})
        rows += [(k, k) for k in kinds]
    print("| figure | " + " | ".join(names) + (" | ratio |" if len(names) == 2 else " |"))
    print("|---" * (len(names) + 1 + (len(names) == 2)) + "|")
    for key, label in rows:
        values = [results[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        cells = ["-" if v is None else f"{v:.2f}" for v in values]
        ratio = ""
        if len(values) == 2 and values[0] is not None and values[1]:
            ratio = f" {values[0] / values[1]:.2f}x |"
        print(f"| {label} | " + " | ".join(cells) + (" |" + ratio if ratio else " |"))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
