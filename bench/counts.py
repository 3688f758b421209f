"""``python -m bench.counts``: only the per-operation counts, in about a minute::

    python -m bench.counts [--baseline DIR] [--count 10] [--database-url postgresql://…]

For each checkout (this one, and ``--baseline``'s beside it): SQL statements, round trips to
the database thread and database-thread time per start and per decision on SQLite, measured
as ``python -m bench`` does (one at a time, quiet bot to quiet bot, after a warm-up); and with
a database URL (default ``$TEST_DATABASE_URL``), PostgreSQL round trips per start and per
decision, counted on the wire (bench/pgturns.py), in a schema of its own dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
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


async def main(targets: list[Target], count: int, url: str | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-counts-") as tmp:
        for t in targets:
            figures = await on_sqlite(t, Path(tmp) / f"{t.name}-sqlite", count)
            if url:
                figures.update(await on_postgres(t, Path(tmp) / f"{t.name}-pg", count, url))
            out[t.name] = figures
            print(f"[counts] {t.name} done", file=sys.stderr, flush=True)
    return out


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.counts", description=__doc__)
    parser.add_argument("--baseline", type=Path, help="a second checkout to measure beside")
    parser.add_argument("--count", type=int, default=10, help="starts and decisions counted")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--kinds", action="store_true", help="also statements by kind")
    args = parser.parse_args(argv)
    targets = [Target("current", ROOT)]
    if args.baseline:
        targets.append(Target("baseline", args.baseline.resolve()))
    try:
        results = asyncio.run(main(targets, args.count, args.database_url))
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
