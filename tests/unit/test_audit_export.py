"""The audit export (bot/audit_export.py): one record per audit row, in the order written, with
who, what, when (ISO 8601 UTC), the run, the approval, the run's newest checkpoint and the
detail; JSON Lines or CSV; read page by page."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot import audit_export
from bot.audit_export import export, iso_utc, record
from bot.db.sqlite import OneHop, OneHopSqliteSaver, Writer
from bot.db.store import Store
from bot.integrity import request_digest
from bot.model import Approval, Ballot, Item, Opening, Run, VoteResult


def approve(user: str):
    def judge(_a: Approval, _r: Run) -> Ballot:
        return Ballot(user=user, choice="approve", approves=True, comment="ship it", required=1)

    return judge


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store with one whole run (requested, decided, resumed, done), a refused start that
    never became a run, and two checkpoints of the run's thread."""
    async with aiosqlite.connect(tmp_path / "s.db") as conn:
        await OneHopSqliteSaver(conn).setup()  # the checkpoints table
        s = Store(OneHop(conn), Writer(conn, asyncio.Lock()))
        await s.setup()
        run = await s.create_run("r1", "/deploy", {"service": "api"}, "U0ALICE", "C0DEPLOYS", 1.0)
        await s.pause(run, [("i1", {"kind": "x"}, None)], 2.0, lambda a: Opening(items=[]))

        def render(_: VoteResult) -> list[Item]:
            return []

        await s.decide("i1", 3.5, approve("U0BOB"), render, list)
        await s.mark_resumed("i1", "r1", 4.0)
        await s.finish("r1", "done", {"status": "succeeded"}, 5.0, lambda r, a: [])
        await s.record("start_refused", 6.0, user="U0EVE", detail={"command": "/deploy"})
        for checkpoint in ("1f0a-0001", "1f0a-0002"):
            await conn.execute(
                "INSERT INTO checkpoints(thread_id, checkpoint_ns, checkpoint_id, checkpoint, "
                "metadata) VALUES ('r1', '', ?, x'00', x'00')",
                (checkpoint,),
            )
        await conn.commit()
        yield s


async def jsonl(store: Store, since: float = 0.0) -> list[dict[str, Any]]:
    out = io.StringIO()
    count = await export(store, since, "jsonl", out)
    lines = out.getvalue().splitlines()
    assert len(lines) == count
    return [json.loads(line) for line in lines]


async def test_each_event_says_who_what_when_and_where(store: Store) -> None:
    records = await jsonl(store)
    assert [r["event"] for r in records] == [
        "run_started",
        "requested",
        "decided",
        "resumed",
        "run_done",
        "start_refused",
    ]
    decided = records[2]
    assert decided["hash"].startswith("sha256:")  # its link in the chain (bot/integrity.py)
    assert decided == {
        "id": 3,
        "at": "1970-01-01T00:00:03.500Z",
        "event": "decided",
        "who": "U0BOB",
        "run_id": "r1",
        "interrupt_id": "i1",
        "checkpoint_id": "1f0a-0002",  # the thread's newest, at export time
        "detail": {"choice": "approve", "comment": "ship it"},
        "digest": request_digest({"kind": "x"}, None),  # of the request it decided
        "hash": decided["hash"],
    }
    assert records[3]["who"] is None  # the graph resumed; nobody did it
    # every event of a run carries its run id; a refused start never became a run
    assert all(r["run_id"] == "r1" for r in records[:5])
    assert records[5]["run_id"] is None and records[5]["checkpoint_id"] is None


async def test_since_leaves_older_events_out(store: Store) -> None:
    records = await jsonl(store, since=3.5)
    assert [r["event"] for r in records] == ["decided", "resumed", "run_done", "start_refused"]
    assert await jsonl(store, since=100.0) == []


async def test_csv_has_a_header_and_json_details(store: Store) -> None:
    out = io.StringIO()
    assert await export(store, 0.0, "csv", out) == 6
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(audit_export.FIELDS)
    decided = rows[2]
    assert decided["who"] == "U0BOB" and decided["at"] == "1970-01-01T00:00:03.500Z"
    assert json.loads(decided["detail"]) == {"choice": "approve", "comment": "ship it"}
    assert rows[3]["who"] == "" and rows[3]["detail"] == ""  # none: empty cells
    assert decided["digest"] == request_digest({"kind": "x"}, None)
    assert decided["hash"].startswith("sha256:") and rows[0]["digest"] == ""


class Rows:
    """An audit source of ``n`` rows over three runs, counting the reads."""

    def __init__(self, n: int) -> None:
        self.rows = [
            {"id": i, "at": float(i), "event": "vote", "user_id": "U0BOB", "run_id": f"r{i % 3}"}
            for i in range(1, n + 1)
        ]
        self.pages = 0
        self.asked: list[list[str]] = []

    async def audit_page(self, since: float, after_id: int, limit: int) -> list[dict[str, Any]]:
        self.pages += 1
        return [r for r in self.rows if r["at"] >= since and r["id"] > after_id][:limit]

    async def latest_checkpoints(self, run_ids: list[str]) -> dict[str, str]:
        self.asked.append(list(run_ids))
        return {r: f"cp-{r}" for r in run_ids}


async def test_read_page_by_page_and_each_run_looked_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_export, "PAGE", 4)
    source = Rows(10)
    out = io.StringIO()
    assert await export(source, 0.0, "jsonl", out) == 10
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["at"] for r in records] == [iso_utc(float(i)) for i in range(1, 11)]
    assert all(r["checkpoint_id"] == f"cp-{r['run_id']}" for r in records)
    assert source.pages == 3  # 4 + 4 + 2: the short page is the last
    assert sorted(r for asked in source.asked for r in asked) == ["r0", "r1", "r2"]


def test_details_that_are_not_json_are_kept_as_text() -> None:
    row = {"id": 1, "at": 0.0, "event": "x", "detail": "not json {"}
    assert record(row, {})["detail"] == "not json {"


def test_iso_utc() -> None:
    assert iso_utc(1_767_225_600.25) == "2026-01-01T00:00:00.250Z"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="jsonl or csv"):
        audit_export.Writer(io.StringIO(), "xml")
