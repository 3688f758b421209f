"""The bot's own tables (runs, approvals, votes, audit) in the checkpointer's SQLite file.

The store shares the AsyncSqliteSaver's connection *and its lock*: a second connection writing
the same file fails with "database is locked" under load, while one connection serialised by
one lock never contends in-process. Each public method is one transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS bot_runs (
    run_id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    input TEXT NOT NULL,
    requester TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,             -- running | waiting | done | failed
    thread_channel TEXT,
    thread_ts TEXT,
    outcome TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bot_runs_status ON bot_runs(status);
CREATE INDEX IF NOT EXISTS bot_runs_requester ON bot_runs(requester, created_at);
CREATE TABLE IF NOT EXISTS bot_approvals (
    interrupt_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES bot_runs(run_id),
    request TEXT NOT NULL,
    status TEXT NOT NULL,             -- pending | decided | resumed | expired
    channel TEXT,
    ts TEXT,
    choice TEXT,
    approved INTEGER,
    decided_by TEXT,
    comment TEXT,
    decided_at REAL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bot_approvals_status ON bot_approvals(status);
CREATE INDEX IF NOT EXISTS bot_approvals_run ON bot_approvals(run_id);
CREATE TABLE IF NOT EXISTS bot_votes (
    interrupt_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    choice TEXT NOT NULL,
    comment TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (interrupt_id, user_id)
);
CREATE TABLE IF NOT EXISTS bot_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,              -- requested | vote | refused | decided | resumed | ...
    user_id TEXT,
    run_id TEXT,
    interrupt_id TEXT,
    detail TEXT
);
"""


@dataclass(frozen=True)
class Run:
    run_id: str
    command: str
    input: dict[str, Any]
    requester: str
    channel: str
    status: str
    thread_channel: str | None
    thread_ts: str | None
    outcome: dict[str, Any] | None
    created_at: float


@dataclass(frozen=True)
class Approval:
    interrupt_id: str
    run_id: str
    request: Any
    status: str
    channel: str | None
    ts: str | None
    choice: str | None
    approved: bool | None
    decided_by: str | None
    comment: str | None
    decided_at: float | None
    created_at: float


@dataclass(frozen=True)
class VoteResult:
    """``claimed`` is true for exactly one caller per approval: the one that must resume."""

    claimed: bool
    approval: Approval
    approvals: int


def _run(row: aiosqlite.Row) -> Run:
    return Run(
        row["run_id"],
        row["command"],
        json.loads(row["input"]),
        row["requester"],
        row["channel"],
        row["status"],
        row["thread_channel"],
        row["thread_ts"],
        json.loads(row["outcome"]) if row["outcome"] else None,
        row["created_at"],
    )


def _approval(row: aiosqlite.Row) -> Approval:
    approved = row["approved"]
    return Approval(
        row["interrupt_id"],
        row["run_id"],
        json.loads(row["request"]),
        row["status"],
        row["channel"],
        row["ts"],
        row["choice"],
        None if approved is None else bool(approved),
        row["decided_by"],
        row["comment"],
        row["decided_at"],
        row["created_at"],
    )


class Store:
    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._conn = conn
        self._lock = lock

    async def setup(self) -> None:
        async with self._lock:
            self._conn.row_factory = aiosqlite.Row
            await self._conn.executescript(SCHEMA)
            await self._conn.commit()

    async def _one(self, sql: str, args: Iterable[Any]) -> aiosqlite.Row | None:
        async with self._lock, self._conn.execute(sql, tuple(args)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._conn.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

    async def _write(self, *statements: tuple[str, Iterable[Any]]) -> int:
        """Run statements in one transaction; returns the first statement's rowcount."""
        async with self._lock:
            try:
                first = -1
                for sql, args in statements:
                    cur = await self._conn.execute(sql, tuple(args))
                    if first < 0:
                        first = cur.rowcount
                await self._conn.commit()
                return first
            except BaseException:
                await self._conn.rollback()
                raise

    @staticmethod
    def _audit(
        event: str,
        now: float,
        *,
        user: str | None = None,
        run_id: str | None = None,
        interrupt_id: str | None = None,
        detail: Any = None,
        if_changed: bool = False,
    ) -> tuple[str, tuple[Any, ...]]:
        """An audit INSERT; ``if_changed`` keeps it only when the previous statement wrote."""
        return (
            "INSERT INTO bot_audit(at, event, user_id, run_id, interrupt_id, detail) "
            "SELECT ?,?,?,?,?,?" + (" WHERE changes()=1" if if_changed else ""),
            (
                now,
                event,
                user,
                run_id,
                interrupt_id,
                None if detail is None else json.dumps(detail, default=str),
            ),
        )

    # runs
    async def create_run(
        self,
        run_id: str,
        command: str,
        input: dict[str, Any],
        requester: str,
        channel: str,
        now: float,
    ) -> None:
        await self._write(
            (
                "INSERT INTO bot_runs(run_id, command, input, requester, channel, status, "
                "created_at, updated_at) VALUES (?,?,?,?,?, 'running', ?, ?)",
                (run_id, command, json.dumps(input), requester, channel, now, now),
            ),
            self._audit(
                "run_started",
                now,
                user=requester,
                run_id=run_id,
                detail={"command": command, "input": input},
            ),
        )

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._one("SELECT * FROM bot_runs WHERE run_id=?", (run_id,))
        return _run(row) if row else None

    async def runs_with_status(self, status: str) -> list[Run]:
        rows = await self._all(
            "SELECT * FROM bot_runs WHERE status=? ORDER BY created_at", (status,)
        )
        return [_run(r) for r in rows]

    async def set_run_status(
        self, run_id: str, status: str, now: float, outcome: dict[str, Any] | None = None
    ) -> None:
        await self._write(
            (
                "UPDATE bot_runs SET status=?, updated_at=?, outcome=COALESCE(?, outcome) "
                "WHERE run_id=?",
                (status, now, json.dumps(outcome) if outcome else None, run_id),
            ),
        )

    async def set_run_thread(self, run_id: str, channel: str, ts: str) -> None:
        """Remember the message whose thread carries the run's progress (first one wins)."""
        await self._write(
            (
                "UPDATE bot_runs SET thread_channel=?, thread_ts=? "
                "WHERE run_id=? AND thread_ts IS NULL",
                (channel, ts, run_id),
            ),
        )

    # approvals
    async def add_approval(
        self, interrupt_id: str, run_id: str, request: Any, now: float, requester: str
    ) -> tuple[Approval, bool]:
        """Insert once per interrupt id (a node LangGraph replays raises the same id again);
        returns the row and whether this call created it."""
        inserted = await self._write(
            (
                "INSERT OR IGNORE INTO bot_approvals(interrupt_id, run_id, request, status, "
                "created_at) VALUES (?,?,?, 'pending', ?)",
                (interrupt_id, run_id, json.dumps(request, default=repr), now),
            ),
            self._audit(
                "requested",
                now,
                user=requester,
                run_id=run_id,
                interrupt_id=interrupt_id,
                if_changed=True,
            ),
        )
        approval = await self.get_approval(interrupt_id)
        assert approval is not None
        return approval, inserted == 1

    async def set_posted(self, interrupt_id: str, channel: str, ts: str) -> None:
        await self._write(
            (
                "UPDATE bot_approvals SET channel=?, ts=? WHERE interrupt_id=?",
                (channel, ts, interrupt_id),
            )
        )

    async def get_approval(self, interrupt_id: str) -> Approval | None:
        row = await self._one("SELECT * FROM bot_approvals WHERE interrupt_id=?", (interrupt_id,))
        return _approval(row) if row else None

    async def approvals_for_run(self, run_id: str) -> list[Approval]:
        rows = await self._all(
            "SELECT * FROM bot_approvals WHERE run_id=? ORDER BY created_at", (run_id,)
        )
        return [_approval(r) for r in rows]

    async def approvals_with_status(self, status: str) -> list[Approval]:
        rows = await self._all(
            "SELECT * FROM bot_approvals WHERE status=? ORDER BY created_at", (status,)
        )
        return [_approval(r) for r in rows]

    async def open_approvals(self, limit: int = 20) -> list[tuple[Approval, str]]:
        """Posted approvals still waiting, newest first, with their requester."""
        rows = await self._all(
            "SELECT a.*, r.requester AS requester FROM bot_approvals a JOIN bot_runs r "
            "USING (run_id) WHERE a.status='pending' AND a.ts IS NOT NULL "
            "ORDER BY a.created_at DESC LIMIT ?",
            (limit,),
        )
        return [(_approval(r), r["requester"]) for r in rows]

    async def runs_by(self, requester: str, limit: int = 10) -> list[Run]:
        rows = await self._all(
            "SELECT * FROM bot_runs WHERE requester=? ORDER BY created_at DESC LIMIT ?",
            (requester, limit),
        )
        return [_run(r) for r in rows]

    async def vote(
        self,
        interrupt_id: str,
        user: str,
        choice: str,
        approves: bool,
        comment: str | None,
        required: int,
        now: float,
    ) -> VoteResult:
        """Record a vote and, when it reaches the decision, claim it: one transaction, one
        conditional UPDATE, so exactly one caller ever sees ``claimed``."""
        async with self._lock:
            try:
                await self._conn.execute(
                    "INSERT OR REPLACE INTO bot_votes(interrupt_id, user_id, choice, comment, at) "
                    "SELECT ?,?,?,?,? WHERE EXISTS (SELECT 1 FROM bot_approvals "
                    "WHERE interrupt_id=? AND status='pending')",
                    (interrupt_id, user, choice, comment, now, interrupt_id),
                )
                async with self._conn.execute(
                    "SELECT COUNT(*) FROM bot_votes v JOIN bot_approvals a USING (interrupt_id) "
                    "WHERE v.interrupt_id=? AND a.status='pending' AND v.choice=?",
                    (interrupt_id, choice),
                ) as cur:
                    row = await cur.fetchone()
                count = row[0] if row else 0
                claimed = False
                if not approves or count >= required:
                    cur = await self._conn.execute(
                        "UPDATE bot_approvals SET status='decided', choice=?, approved=?, "
                        "decided_by=?, comment=?, decided_at=? "
                        "WHERE interrupt_id=? AND status='pending'",
                        (choice, int(approves), user, comment, now, interrupt_id),
                    )
                    claimed = cur.rowcount == 1
                event = "decided" if claimed else "vote"
                sql, args = self._audit(
                    event,
                    now,
                    user=user,
                    interrupt_id=interrupt_id,
                    detail={"choice": choice, "comment": comment},
                )
                await self._conn.execute(sql, args)
                await self._conn.commit()
            except BaseException:
                await self._conn.rollback()
                raise
            async with self._conn.execute(
                "SELECT * FROM bot_approvals WHERE interrupt_id=?", (interrupt_id,)
            ) as cur:
                row = await cur.fetchone()
        assert row is not None
        return VoteResult(claimed, _approval(row), count)

    async def mark_resumed(self, interrupt_id: str, now: float) -> None:
        await self._write(
            (
                "UPDATE bot_approvals SET status='resumed' WHERE interrupt_id=? "
                "AND status='decided'",
                (interrupt_id,),
            ),
            self._audit("resumed", now, interrupt_id=interrupt_id),
        )

    async def audit(self, event: str, now: float, **kw: Any) -> None:
        await self._write(self._audit(event, now, **kw))

    async def audit_events(self, interrupt_id: str | None = None) -> list[dict[str, Any]]:
        if interrupt_id is None:
            rows = await self._all("SELECT * FROM bot_audit ORDER BY id")
        else:
            rows = await self._all(
                "SELECT * FROM bot_audit WHERE interrupt_id=? ORDER BY id", (interrupt_id,)
            )
        return [dict(r) for r in rows]
