"""Versioned migrations on both backends: the previous release's SQLite file is upgraded in
place with its rows intact, and several processes starting at once on a fresh database all
come up on the newest schema (SQLite: one write lock; PostgreSQL: an advisory lock), with
LangGraph's tables set up once."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from bot.db.migrations import MIGRATIONS, _statements
from tests.conftest import BACKENDS, query

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS_RELEASE = "5c8bcca"  # the last release before PostgreSQL and forms (5 migrations)
PREVIOUS_COUNT = 5
PROCESSES = 3

# One process starting the bot's database as `python -m bot run` does, then stopping.
START = """
import asyncio, sys
from pathlib import Path
from bot.db.connect import open_backend
from bot.config import Settings
from bot.db.base import RunLease

async def main() -> None:
    url = sys.argv[2] or None
    settings = Settings(bot_token="x", signing_secret="y", db_path=Path(sys.argv[1]),
                        database_url=url)
    backend = await open_backend(settings, RunLease())
    print(await backend.ops.schema_version())
    await backend.close()

asyncio.run(main())
"""


def previous_migrations() -> tuple[str, ...]:
    """The migrations of the release before this one, from git (falling back to this
    release's first five, which the test checks are the same when git can tell)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{PREVIOUS_RELEASE}:bot/db/store.py"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        return MIGRATIONS[:PREVIOUS_COUNT]
    scope: dict[str, object] = {}
    source = done.stdout
    start = source.index("MIGRATIONS: tuple[str, ...] = (")
    end = source.index("\n)\n", start) + 3
    exec(source[start:end].replace("MIGRATIONS: tuple[str, ...] =", "MIGRATIONS ="), scope)
    old = scope["MIGRATIONS"]
    assert isinstance(old, tuple) and len(old) == PREVIOUS_COUNT
    assert MIGRATIONS[: len(old)] == old, "a released migration was edited"
    return old


def previous_release_file(path: Path) -> None:
    """A file as the previous release left it: its schema, a run cut mid-step and a pending
    approval of another run."""
    with closing(sqlite3.connect(path)) as db:
        for number, script in enumerate(previous_migrations(), 1):
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={number}")
        for run, status in (("r-cut", "running"), ("r-wait", "waiting")):
            db.execute(
                "INSERT INTO bot_runs(run_id, command, input, requester, channel, status, "
                "created_at, updated_at) VALUES (?, '/deploy', '{}', 'U0ALICE', 'C0DEPLOYS', ?, "
                "1, 1)",
                (run, status),
            )
        db.execute(
            "INSERT INTO bot_approvals(interrupt_id, run_id, request, status, created_at) "
            "VALUES ('i1', 'r-wait', '\"Ship it?\"', 'pending', 2)"
        )
        db.commit()


async def start_processes(db: Path, url: str | None, n: int) -> list[str]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            START,
            str(db),
            url or "",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(n)
    ]
    outs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    return [out.decode().strip() for out, _ in outs]


async def test_the_previous_releases_file_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "approvals.db"
    previous_release_file(db)
    assert query(db, None, "PRAGMA user_version") == [(PREVIOUS_COUNT,)]
    assert await start_processes(db, None, 1) == [str(len(MIGRATIONS))]
    assert query(db, None, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    rows = query(db, None, "SELECT run_id, status, owner, lease_until FROM bot_runs ORDER BY 1")
    assert rows == [("r-cut", "running", None, None), ("r-wait", "waiting", None, None)]
    assert query(db, None, "SELECT interrupt_id, status FROM bot_approvals") == [("i1", "pending")]
    # Started again: nothing left to do, nothing changed.
    assert await start_processes(db, None, 1) == [str(len(MIGRATIONS))]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_replicas_starting_together_migrate_once(
    tmp_path: Path, database_url: str | None, backend: str
) -> None:
    db = tmp_path / "approvals.db"
    versions = await start_processes(db, database_url, PROCESSES)
    assert versions == [str(len(MIGRATIONS))] * PROCESSES
    version = "PRAGMA user_version"
    assert query(db, database_url, version) == [(len(MIGRATIONS),)]
    if database_url is not None:
        assert query(db, database_url, "SELECT COUNT(*) FROM bot_schema") == [(1,)]
        # LangGraph's own migrations ran once each (its setup is under a lock of its own).
        steps = query(db, database_url, "SELECT v, COUNT(*) FROM checkpoint_migrations GROUP BY v")
        assert steps and all(count == 1 for _, count in steps)
    # And again, on a database already migrated.
    assert await start_processes(db, database_url, 1) == [str(len(MIGRATIONS))]
