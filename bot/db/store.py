"""The bot's own tables (runs, approvals, votes, audit, outbox, deadlines, API keys), in the
checkpointer's SQLite file or in PostgreSQL (``DATABASE_URL``), with one copy of the SQL.

On SQLite the store shares the AsyncSqliteSaver's connection *and its lock*: a second
connection writing the same file fails with "database is locked" under load, while one
connection serialised by one lock never contends in-process. On PostgreSQL the same
transaction functions run on pooled connections (bot/db/postgres.py), side by side, so the few
statements whose semantics differ (claims that skip rows another process is taking, a click
locking its approval) are written out for each. Each public method is one transaction, and
every Slack side effect a state change causes is an outbox row written in that same
transaction, so a crash can lose neither the change nor what it has to tell Slack.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from bot.db.liveness import LOCK_CLASS, lock_key
from bot.integrity import link, request_digest
from bot.model import (
    Approval,
    Ballot,
    Deadline,
    Delivery,
    Firing,
    Item,
    Opening,
    Refused,
    Released,
    Run,
    Sent,
    VoteResult,
)

T = TypeVar("T")
Row = sqlite3.Row
# Runs ``fn(db)`` where the database is (SQLite: aiosqlite's thread; PostgreSQL: a pooled
# connection on a worker thread, see bot/db/postgres.py) and returns its result.
Hop = Callable[[Callable[[Any], Any]], Awaitable[Any]]

# Each entry upgrades the file by one version (PRAGMA user_version); never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    # 1: the first release
    """
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
        status TEXT NOT NULL,             -- pending | decided | resumed | failed
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
        event TEXT NOT NULL,
        user_id TEXT,
        run_id TEXT,
        interrupt_id TEXT,
        detail TEXT
    );
    """,
    # 2: the outbox; runs remember their thread by message key, their response_url and attempt
    """
    ALTER TABLE bot_runs ADD COLUMN thread_key TEXT;
    ALTER TABLE bot_runs ADD COLUMN response_url TEXT;
    ALTER TABLE bot_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    UPDATE bot_runs SET thread_key = 'legacy:' || thread_channel || ':' || thread_ts
        WHERE thread_ts IS NOT NULL;
    CREATE TABLE bot_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL DEFAULT 0,   -- send order: a replaced row moves to the back
        key TEXT UNIQUE,                  -- the logical message (approval:<id>, progress:…)
        kind TEXT NOT NULL,               -- post | update | ephemeral | dm | publish | respond
        ref TEXT,                         -- key of the message this row needs (thread, target)
        lane TEXT,                        -- one row in flight per lane: keeps a thread in order
        run_id TEXT,
        interrupt_id TEXT,
        payload TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL,             -- pending | sending | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,            -- on the sender's clock (0: at once)
        lease_until REAL,
        failing_since REAL,               -- the sender gives up retry_for seconds after this
        channel TEXT,                     -- where it landed (or the DM it goes to)
        ts TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX bot_outbox_open ON bot_outbox(status, seq);
    CREATE INDEX bot_outbox_seq ON bot_outbox(seq);
    INSERT INTO bot_outbox(key, kind, payload, status, next_at, channel, ts, created_at,
                           updated_at)
        SELECT 'approval:' || interrupt_id, 'post', '{}', 'sent', 0, channel, ts, created_at,
               created_at
        FROM bot_approvals WHERE ts IS NOT NULL;
    INSERT OR IGNORE INTO bot_outbox(key, kind, payload, status, next_at, channel, ts,
                                     created_at, updated_at)
        SELECT thread_key, 'post', '{}', 'sent', 0, thread_channel, thread_ts, created_at,
               created_at
        FROM bot_runs WHERE thread_ts IS NOT NULL;
    """,
    # 3: deadlines (reminders, escalations, timeouts) and the rules each approval was opened with
    """
    ALTER TABLE bot_approvals ADD COLUMN rules TEXT;
    ALTER TABLE bot_approvals ADD COLUMN posted_at REAL;
    CREATE TABLE bot_deadlines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        interrupt_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,               -- remind | escalate | timeout
        level INTEGER NOT NULL DEFAULT 0, -- escalation level, or reminder number
        due_at REAL NOT NULL,
        status TEXT NOT NULL,             -- pending | firing | fired | cancelled
        lease_until REAL,
        fired_at REAL,
        UNIQUE (interrupt_id, kind, level)
    );
    CREATE INDEX bot_deadlines_due ON bot_deadlines(status, due_at);
    CREATE INDEX bot_approvals_pending ON bot_approvals(status, created_at);
    CREATE INDEX bot_audit_run ON bot_audit(run_id, id);
    CREATE INDEX bot_approvals_decided ON bot_approvals(decided_at);
    """,
    # 4: the HTTP API remembers each Idempotency-Key (per token) and the answer it was given
    """
    CREATE TABLE bot_api_requests (
        token TEXT NOT NULL,              -- the token's name in the policy file
        key TEXT NOT NULL,                -- the client's Idempotency-Key
        fingerprint TEXT NOT NULL,        -- SHA-256 of the path and the body
        status INTEGER,                   -- NULL while the first request is being answered
        response TEXT,                    -- the JSON body it was answered with
        created_at REAL NOT NULL,
        PRIMARY KEY (token, key)
    );
    CREATE INDEX bot_api_requests_age ON bot_api_requests(created_at);
    """,
    # 5: the first open row of a lane is looked up when a row is queued
    """
    CREATE INDEX bot_outbox_lane ON bot_outbox(lane, status, seq);
    """,
    # 6: pruning finds a finished run's outbox rows (bot/db/ops.py)
    """
    CREATE INDEX bot_outbox_run ON bot_outbox(run_id);
    """,
    # 7: what the bot knew of an interrupt besides its value (its response_schema, the graph's
    # private field names), and the data a decision carries (edited args, a response, a form's
    # answer), stored with the claim so a resume after a crash sends the same value
    """
    ALTER TABLE bot_approvals ADD COLUMN meta TEXT;
    ALTER TABLE bot_approvals ADD COLUMN answer TEXT;
    """,
    # 8: a run being driven is leased to one process (several replicas on one database)
    """
    ALTER TABLE bot_runs ADD COLUMN owner TEXT;
    ALTER TABLE bot_runs ADD COLUMN lease_until REAL;
    CREATE INDEX bot_runs_lease ON bot_runs(status, lease_until);
    """,
    # 9: every lease names its owner (outbox rows being sent, with the version the owner
    # took; deadlines being fired), and the processes that prove they are alive with a lock
    # (bot/db/liveness.py): a dead one's leases are taken over at once
    """
    ALTER TABLE bot_outbox ADD COLUMN owner TEXT;
    ALTER TABLE bot_outbox ADD COLUMN claimed_version INTEGER;
    ALTER TABLE bot_deadlines ADD COLUMN owner TEXT;
    CREATE TABLE bot_owners (
        owner TEXT PRIMARY KEY,           -- host:pid:random, as in bot_runs.owner
        started_at REAL NOT NULL
    );
    """,
    # 10: an approval is bound to the exact request it showed (``digest``, bot/integrity.py);
    # a request that changed under its interrupt id is asked again as a new approval of the
    # same LangGraph interrupt (``graph_interrupt_id``). Audit rows carry the digest of the
    # request they are about, and the hash chain (``hash``; the rows already there are chained
    # by ``_chain_existing`` in the same transaction).
    """
    ALTER TABLE bot_approvals ADD COLUMN digest TEXT;
    ALTER TABLE bot_approvals ADD COLUMN graph_interrupt_id TEXT;
    UPDATE bot_approvals SET graph_interrupt_id = interrupt_id;
    CREATE INDEX bot_approvals_interrupt ON bot_approvals(graph_interrupt_id);
    ALTER TABLE bot_audit ADD COLUMN digest TEXT;
    ALTER TABLE bot_audit ADD COLUMN hash TEXT;
    """,
)
CHAIN_VERSION = 10  # the schema version that chains the audit table


@dataclass(frozen=True)
class RunLease:
    """Which process this is, and how long a run it drives stays its own without a renewal.

    Several processes share one database: a run is driven only by the process whose lease
    it holds (``bot_runs.owner``, until ``lease_until`` on ``clock``, the wall clock whatever
    clock the engine's deadlines use). The owner's lock says when it died (bot/db/liveness.py):
    its leases are taken over then; the time is the fallback for an owner whose death
    cannot be proven (another host that stopped answering)."""

    owner: str = field(default_factory=lambda: process_id())
    seconds: float = 30.0
    clock: Callable[[], float] = time.time

    def until(self) -> float:
        return self.clock() + self.seconds


# Outbox kinds whose call replaces what Slack shows: a late copy of an older one would undo a
# newer one (bot/background/outbox.py waits before retrying them after a timeout).
REPLACES = frozenset({"update", "publish"})


def process_id() -> str:
    """``host:pid:random``: unique to this process (never reused by a restart), and tells an
    operator reading ``bot_runs.owner`` which replica drives a run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


Judge = Callable[[Approval, Run], Ballot | Refused]
Render = Callable[[VoteResult], list[Item]]


def _run(row: Row, p: str = "") -> Run:
    return Run(
        row[p + "run_id"],
        row[p + "command"],
        json.loads(row[p + "input"]),
        row[p + "requester"],
        row[p + "channel"],
        row[p + "status"],
        row[p + "thread_key"],
        json.loads(row[p + "outcome"]) if row[p + "outcome"] else None,
        row[p + "created_at"],
        row[p + "response_url"],
        row[p + "attempt"],
    )


def _approval(row: Row) -> Approval:
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
        json.loads(row["rules"]) if row["rules"] else None,
        json.loads(row["meta"]) if row["meta"] else None,
        json.loads(row["answer"]) if row["answer"] is not None else None,
        row["digest"],
        row["graph_interrupt_id"],
    )


def _sent(db: Tx, sent: Sent) -> None:
    d, now, channel, ts = sent.delivery, sent.now, sent.channel, sent.ts
    db.execute(
        "UPDATE bot_outbox SET status=CASE WHEN version=? THEN 'sent' ELSE 'pending' "
        "END, attempts=attempts+1, channel=COALESCE(?, channel), ts=COALESCE(?, ts), "
        "lease_until=NULL, owner=NULL, error=NULL, next_at=?, updated_at=? WHERE id=?",
        (d.version, channel, ts, now, now, d.id),
    )
    if d.kind == "post" and d.key == f"approval:{d.interrupt_id}" and ts:
        # Deadlines count from the moment the message is in Slack, not from when it was
        # queued (they differ by minutes when Slack is down).
        db.execute(
            "UPDATE bot_deadlines SET due_at = due_at + (? - (SELECT created_at FROM "
            "bot_approvals WHERE interrupt_id=? AND posted_at IS NULL)) "
            "WHERE interrupt_id=? AND status='pending' AND EXISTS (SELECT 1 FROM "
            "bot_approvals WHERE interrupt_id=? AND posted_at IS NULL)",
            (sent.posted_at, d.interrupt_id, d.interrupt_id, d.interrupt_id),
        )
        db.execute(
            "UPDATE bot_approvals SET channel=?, ts=?, posted_at=COALESCE(posted_at, ?) "
            "WHERE interrupt_id=?",
            (channel, ts, sent.posted_at, d.interrupt_id),
        )


def _delivery(row: Row) -> Delivery:
    return Delivery(
        row["id"],
        row["key"],
        row["kind"],
        row["ref"],
        row["lane"],
        row["run_id"],
        row["interrupt_id"],
        {},  # read when the row is claimed: the sender looks at many rows, sends few
        row["version"],
        row["status"],
        row["attempts"],
        row["next_at"],
        row["lease_until"],
        row["failing_since"],
        row["channel"],
        row["ref_channel"],
        row["ref_ts"],
        row["ref_status"],
    )


_RUN_COLUMNS = (
    "run_id",
    "command",
    "input",
    "requester",
    "channel",
    "status",
    "thread_key",
    "outcome",
    "created_at",
    "response_url",
    "attempt",
)
# An approval with its run in one read; the run's columns carry an r_ prefix.
_APPROVAL_AND_RUN = (
    "SELECT a.*, "
    + ", ".join(f"r.{c} AS r_{c}" for c in _RUN_COLUMNS)
    + " FROM bot_approvals a JOIN bot_runs r USING (run_id) WHERE a.interrupt_id=?"
)

_INSERT_ITEM = (
    "INSERT INTO bot_outbox(seq, key, kind, ref, lane, run_id, interrupt_id, payload, channel, "
    "status, next_at, created_at, updated_at) VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM "
    "bot_outbox), ?,?,?,?,?,?,?,?, 'pending', ?,?,?) "
)
_IGNORE = "ON CONFLICT(key) DO NOTHING"
# The row written, and "<status>:<owner>" of the first row of its lane waiting or in flight
# (an earlier one; on SQLite the row itself when there is none): "sending:<this process>"
# says the row will be taken when that one is recorded as delivered. On PostgreSQL that row
# is locked (FOR SHARE) until this transaction ends: its delivery record, in a transaction
# of its own, waits for this one's commit and then takes this row next; a record that
# committed first leaves the row no longer in flight, read again after the lock, and this
# row is then left for a pass (see ``bot.db.postgres.translate``).
_AHEAD = (
    "(SELECT e.status || ':' || COALESCE(e.owner, '') FROM bot_outbox e "
    "WHERE e.lane = bot_outbox.lane AND e.status IN ('pending', 'sending') "
    "ORDER BY e.seq LIMIT 1 /* FOR SHARE */) AS ahead"
)
_QUEUED = " RETURNING id, status, " + _AHEAD
_REPLACE = (
    "ON CONFLICT(key) DO UPDATE SET payload=excluded.payload, version=bot_outbox.version+1, "
    "seq=excluded.seq, "
    "status=CASE bot_outbox.status WHEN 'sending' THEN 'sending' ELSE 'pending' END, attempts=0, "
    "next_at=excluded.next_at, error=NULL, failing_since=NULL, created_at=excluded.created_at, "
    "updated_at=excluded.updated_at"
)

# Outbox rows as the sender reads them (``_delivery``): each with the message it refers to.
_DELIVERIES = """
SELECT o.id, o.key, o.kind, o.ref, o.lane, o.run_id, o.interrupt_id, o.version, o.status,
       o.attempts, o.next_at, o.lease_until, o.failing_since, o.channel,
       p.channel AS ref_channel, p.ts AS ref_ts, p.status AS ref_status
FROM bot_outbox o LEFT JOIN bot_outbox p ON p.key = o.ref
"""

# A claimed row as ``_delivery`` reads it, with the message it refers to, and its payload.
_CLAIMED = """RETURNING id, key, kind, ref, lane, run_id, interrupt_id, version, status,
    attempts, next_at, lease_until, failing_since, channel,
    (SELECT p.channel FROM bot_outbox p WHERE p.key = bot_outbox.ref) AS ref_channel,
    (SELECT p.ts FROM bot_outbox p WHERE p.key = bot_outbox.ref) AS ref_ts,
    (SELECT p.status FROM bot_outbox p WHERE p.key = bot_outbox.ref) AS ref_status,
    payload
"""
# Take a waiting row for ``owner`` in one statement, when it may go now: due, first of its
# lane (no earlier row of the lane waiting or in flight), and its message in Slack.
_MAY_GO = """status = 'pending' AND next_at <= ?
AND NOT EXISTS (SELECT 1 FROM bot_outbox e WHERE e.lane = bot_outbox.lane
                AND e.status IN ('pending', 'sending') AND e.seq < bot_outbox.seq)
AND (ref IS NULL OR EXISTS (SELECT 1 FROM bot_outbox p WHERE p.key = bot_outbox.ref
                            AND p.status = 'sent' AND p.ts IS NOT NULL))
"""
_TAKE = "UPDATE bot_outbox SET status='sending', lease_until=?, owner=?, claimed_version=version "
# A new row taken by its own insert (for the owner and lease given) when it may go at once:
# nothing of its lane waiting or in flight, its message (if any) in Slack. The row as
# ``_delivery`` reads it, and the first of its lane otherwise (``_AHEAD``).
_NEW_MAY_GO = (
    "(NOT EXISTS (SELECT 1 FROM bot_outbox WHERE lane = ? AND status IN ('pending', 'sending')) "
    "AND (CAST(? AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM bot_outbox p WHERE p.key = ? "
    "AND p.status = 'sent' AND p.ts IS NOT NULL)))"
)
_INSERT_TAKEN = (
    "INSERT INTO bot_outbox(seq, key, kind, ref, lane, run_id, interrupt_id, payload, channel, "
    "next_at, created_at, updated_at, status, owner, lease_until, claimed_version) VALUES ("
    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM bot_outbox), ?,?,?,?,?,?,?,?, ?,?,?, "
    f"CASE WHEN {_NEW_MAY_GO} THEN 'sending' ELSE 'pending' END, "
    f"CASE WHEN {_NEW_MAY_GO} THEN ? END, CASE WHEN {_NEW_MAY_GO} THEN ? END, 1) "
    + _IGNORE
    + " "
    + _CLAIMED.rstrip()
    + ", "
    + _AHEAD
)
# A row this transaction queued (by id).
_TAKE_QUEUED = _TAKE + "WHERE id = ? AND " + _MAY_GO + _CLAIMED
# The next waiting row of a lane whose row was just delivered.
_TAKE_NEXT = (
    _TAKE
    + """WHERE id = (SELECT id FROM bot_outbox WHERE lane = ? AND status = 'pending'
            ORDER BY seq LIMIT 1) AND """
    + _MAY_GO
    + _CLAIMED
)

# Due deadlines (or ones whose firer's lease ran out), taken for firing. On PostgreSQL the
# rows are locked as they are chosen, skipping any another process is taking, and the claim
# is checked again on the row it locked: each deadline fires in one process.
_CLAIM_DEADLINES = (
    "UPDATE bot_deadlines SET status='firing', lease_until=?, owner=? WHERE id IN ("
    "SELECT id FROM bot_deadlines WHERE (status='pending' AND due_at <= ?) OR "
    "(status='firing' AND lease_until < ?) ORDER BY due_at LIMIT ?) "
    "RETURNING id, interrupt_id, run_id, kind, level, due_at"
)
_CLAIM_DEADLINES_PG = (
    "UPDATE bot_deadlines SET status='firing', lease_until=?, owner=? WHERE id IN ("
    "SELECT id FROM bot_deadlines WHERE (status='pending' AND due_at <= ?) OR "
    "(status='firing' AND lease_until < ?) ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED) "
    "AND ((status='pending' AND due_at <= ?) OR (status='firing' AND lease_until < ?)) "
    "RETURNING id, interrupt_id, run_id, kind, level, due_at"
)
_CLAIM_OUTBOX = (
    "UPDATE bot_outbox SET status='sending', lease_until=?, updated_at=?, owner=?, "
    "claimed_version=version "
    "WHERE id IN (SELECT value FROM json_each(?)) AND ((status='pending' AND "
    "next_at <= ?) OR (status='sending' AND lease_until < ?)) "
    "RETURNING id, version, payload"
)
_CLAIM_OUTBOX_PG = (
    "UPDATE bot_outbox SET status='sending', lease_until=?, updated_at=?, owner=?, "
    "claimed_version=version "
    "WHERE id IN (SELECT id FROM bot_outbox WHERE id = ANY(?) FOR UPDATE SKIP LOCKED) "
    "AND ((status='pending' AND next_at <= ?) OR (status='sending' AND lease_until < ?)) "
    "RETURNING id, version, payload"
)
# Runs left 'running' by a process that stopped or died (no owner, or its lease ended).
_TAKE_RUNS = (
    "UPDATE bot_runs SET owner=?, lease_until=? WHERE run_id IN (SELECT run_id FROM bot_runs "
    "WHERE status='running' AND (owner IS NULL OR lease_until < ?) ORDER BY updated_at "
    "LIMIT ?{lock}) AND status='running' AND (owner IS NULL OR lease_until < ?) RETURNING *"
)

_OPEN = (
    _DELIVERIES
    + """WHERE o.status IN ('pending', 'sending')
ORDER BY o.seq LIMIT ?
"""
)


class Store:
    """Each public method is one transaction and one thread hop (see ``bot.db.sqlite``): the SQL
    runs synchronously on aiosqlite's thread; writes go through the ``Writer`` the
    checkpointer uses, which commits them in groups under the saver's lock."""

    def __init__(
        self,
        read: Hop,
        writer: Hop,
        *,
        postgres: bool = False,
        lease: RunLease | None = None,
        on_outbox: Callable[[], None] = lambda: None,
        audit_key: bytes | None = None,
    ) -> None:
        self._hop = read  # SQLite: bot.db.sqlite.OneHop; PostgreSQL: bot.db.postgres.Database.read
        self._writer = writer  # SQLite: shared with the checkpointer, commits in groups
        self._postgres = postgres  # the few statements whose semantics differ (claims)
        # A click or a deadline reads its approval to decide on it. SQLite runs one write
        # transaction at a time; PostgreSQL runs them side by side, so there the row is
        # locked as it is read and a second click waits for the first, then sees its result.
        self._for_update = _APPROVAL_AND_RUN + (" FOR UPDATE OF a" if postgres else "")
        self.lease = lease or RunLease()
        self._on_outbox = on_outbox  # wakes the sender after a commit that queued Slack work
        self._on_runs: Callable[[], None] = lambda: None  # a run waits to be taken over
        self._fast: FastPath | None = None
        self._audit_key = audit_key  # APPROVALS_AUDIT_KEY: the chain's hashes are HMACs

    def set_outbox_listener(self, listener: Callable[[], None]) -> None:
        self._on_outbox = listener

    def set_runs_listener(self, listener: Callable[[], None]) -> None:
        self._on_runs = listener

    def set_fast_path(self, fast: FastPath) -> None:
        """Let transactions that queue Slack work hand the sender rows it may send at once."""
        self._fast = fast

    async def setup(self) -> None:
        """Bring the database to the newest schema, one version at a time, in one
        transaction (on PostgreSQL under an advisory lock: replicas starting together
        migrate one after the other, and the later ones find nothing left to do)."""

        def migrate(db: Tx) -> None:
            prepare = getattr(db, "prepare_migrations", None)
            if prepare is not None:
                prepare()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                if number == CHAIN_VERSION:
                    _chain_existing(db, self._audit_key)
                db.execute(f"PRAGMA user_version={number}")

        def row_factory(db: sqlite3.Connection) -> None:
            db.row_factory = Row

        if not self._postgres:
            await self._hop(row_factory)
        await self._write(migrate)

    # -- plumbing -------------------------------------------------------------------------
    async def _write(self, fn: Callable[[Tx], T], wakes: bool = False) -> T:
        """Run ``fn`` as one transaction; ``wakes`` when it may have queued outbox rows.

        Rows it queued that may go at once (first in their lane, their message already in
        Slack) are claimed for this process in the same transaction and handed to the
        sender: no second read or claim behind everyone else's transactions. If the process
        dies before sending them, their lease runs out and any sender takes them again. The
        sender (and, on PostgreSQL, the other processes) is woken only for rows left behind
        a row of their thread that is not this process's in flight: the rest are sent, or
        taken when the row ahead of them is recorded as delivered (``outbox_sent_many``).

        The audit rows ``fn`` writes are chained at the very end (``_chain``): the chain's
        lock is held from there to the commit only."""
        fast = self._fast if wakes and self._fast is not None and self._fast.active() else None
        owner = self.lease.owner
        if fast is None:
            tx = partial(self._chained, fn)
            if wakes and self._postgres:
                result = await self._writer(partial(_then_notify, tx, "outbox"))
            else:
                result = await self._writer(tx)
            if wakes:
                self._on_outbox()
            return result

        def run(db: sqlite3.Connection) -> tuple[T, list[Delivery], bool]:
            tx = Tx(db)
            now = fast.clock()
            tx.claim = (owner, now + fast.lease)
            out = fn(tx)
            keys = [(i,) for i, _ in tx.queued]
            taken = tx.taken + _take(tx, _TAKE_QUEUED, keys, now, fast.lease, owner)
            claimed = {d.id for d in taken}
            ours = f"sending:{owner}"  # behind a row this process is sending: taken after it
            left = any(i not in claimed and ahead != ours for i, ahead in tx.queued) or any(
                ahead != ours for ahead in tx.behind
            )
            if left:
                _notify(tx, "outbox")  # other processes may send what this one cannot yet
            _chain(tx, self._audit_key)
            return out, taken, left

        result, taken, left = await self._writer(run)
        if taken:
            fast.take(taken)
        if left:
            self._on_outbox()
        return result

    def _chained(self, fn: Callable[[Tx], T], db: sqlite3.Connection) -> T:
        """``fn`` as one transaction, its audit rows chained at its end."""
        tx = Tx(db)
        result = fn(tx)
        _chain(tx, self._audit_key)
        return result

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        """A read: one hop, no lock (a single statement never lands inside our writes)."""
        params = tuple(args)
        return await self._hop(lambda db: db.execute(sql, params).fetchall())

    async def _one(self, sql: str, args: Iterable[Any]) -> Row | None:
        rows = await self._all(sql, args)
        return rows[0] if rows else None

    # -- runs -----------------------------------------------------------------------------
    async def create_run(
        self,
        run_id: str,
        command: str,
        input: dict[str, Any],
        requester: str,
        channel: str,
        now: float,
        response_url: str | None = None,
    ) -> Run:
        def tx(db: Tx) -> None:
            db.execute(
                "INSERT INTO bot_runs(run_id, command, input, requester, channel, status, "
                "response_url, created_at, updated_at, owner, lease_until) "
                "VALUES (?,?,?,?,?, 'running', ?,?,?,?,?)",
                (
                    run_id,
                    command,
                    json.dumps(input),
                    requester,
                    channel,
                    response_url,
                    now,
                    now,
                    self.lease.owner,
                    self.lease.until(),
                ),
            )
            _audit(
                db,
                "run_started",
                now,
                user=requester,
                run_id=run_id,
                detail={"command": command, "input": input},
            )

        await self._write(tx)
        return Run(
            run_id, command, input, requester, channel, "running", None, None, now, response_url
        )

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._one("SELECT * FROM bot_runs WHERE run_id=?", (run_id,))
        return _run(row) if row else None

    async def runs_by(self, requester: str, limit: int = 10) -> list[Run]:
        rows = await self._all(
            "SELECT * FROM bot_runs WHERE requester=? ORDER BY created_at DESC LIMIT ?",
            (requester, limit),
        )
        return [_run(r) for r in rows]

    async def next_attempt(self, run_id: str) -> int:
        """Count one more start of a run cut by a restart; returns the new attempt number."""

        def tx(db: Tx) -> int:
            row = db.execute(
                "UPDATE bot_runs SET attempt=attempt+1 WHERE run_id=? RETURNING attempt",
                (run_id,),
            ).fetchone()
            return int(row[0]) if row else 1

        return await self._write(tx)

    # -- run leases (several processes on one database) -----------------------------------
    async def runs_take(self, limit: int) -> list[Run]:
        """Take runs left 'running' with no owner (a process stopped) or whose owner's lease
        ended (it died): this process drives them on. Each is taken by one process."""
        lease = self.lease
        now = lease.clock()
        sql = _TAKE_RUNS.format(lock=" FOR UPDATE SKIP LOCKED" if self._postgres else "")

        def tx(db: Tx) -> list[Run]:
            rows = db.execute(sql, (lease.owner, lease.until(), now, limit, now)).fetchall()
            return sorted((_run(r) for r in rows), key=lambda r: r.created_at)

        return await self._write(tx)

    async def runs_renew(self, run_ids: Sequence[str]) -> int:
        """Extend the lease of the runs this process is driving; returns how many it still
        held. A run held but not being driven (a bug left it) is not renewed: its lease
        ends and it is taken over."""
        lease = self.lease
        ids = json.dumps(list(run_ids))
        return await self._write(
            lambda db: (
                db.execute(
                    "UPDATE bot_runs SET lease_until=? WHERE owner=? AND status='running' "
                    "AND run_id IN (SELECT value FROM json_each(?) AS j)",
                    (lease.until(), lease.owner, ids),
                ).rowcount
            )
        )

    async def runs_held(self, run_ids: Sequence[str]) -> list[Run]:
        """Of these runs, the ones this process still holds, 'running', their leases renewed:
        runs it stopped driving (the database was away past the retry budget, or it was
        judged dead meanwhile) that it may drive again."""
        lease = self.lease
        ids = json.dumps(list(run_ids))

        def tx(db: Tx) -> list[Run]:
            rows = db.execute(
                "UPDATE bot_runs SET lease_until=? WHERE owner=? AND status='running' "
                "AND run_id IN (SELECT value FROM json_each(?) AS j) RETURNING *",
                (lease.until(), lease.owner, ids),
            ).fetchall()
            return sorted((_run(r) for r in rows), key=lambda r: r.created_at)

        return await self._write(tx)

    async def runs_release(self) -> int:
        """Let go of every run this process still holds (a graceful stop): the next process
        to look takes them over at once instead of waiting for the leases to end."""

        def tx(db: Tx) -> int:
            n = db.execute(
                "UPDATE bot_runs SET owner=NULL, lease_until=NULL WHERE owner=? "
                "AND status='running'",
                (self.lease.owner,),
            ).rowcount
            if n:
                _notify(db, "runs")
            return int(n)

        return await self._write(tx)

    # -- lease owners (bot/db/liveness.py proves which are alive) ----------------------------
    async def owner_started(self, now: float) -> None:
        """Register this process, once it holds its liveness lock: from now on its leases are
        taken over as soon as that lock is free."""
        await self._write(
            lambda db: db.execute(
                "INSERT INTO bot_owners(owner, started_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (self.lease.owner, now),
            )
        )

    async def owner_registered(self) -> bool:
        """Whether this process is still registered: not reaped by another that took it for
        dead (``release_dead``)."""
        row = await self._one("SELECT 1 FROM bot_owners WHERE owner=?", (self.lease.owner,))
        return row is not None

    async def owners(self) -> list[str]:
        """The other registered processes, alive or not."""
        rows = await self._all(
            "SELECT owner FROM bot_owners WHERE owner <> ? ORDER BY started_at",
            (self.lease.owner,),
        )
        return [r[0] for r in rows]

    async def release_dead(self, dead: Sequence[str], hold: float) -> Released:
        """Let go of every lease of these owners, whose death was proven, and forget them:
        their runs wait to be taken (``runs_take``), their deadlines are due again, and the
        outbox rows they were sending are sent again at once. A replacing row (an update, a
        home view) holding a newer version than the dead owner took waits ``hold`` seconds
        first: the older copy the owner had on its way may still land, and must land before
        the newer one, not on top of it.

        On PostgreSQL the proof is taken again inside the transaction: each owner's liveness
        key as a transaction advisory lock, which nobody gets while the owner holds its
        session lock. An owner that holds it again is alive and left alone; one reaped cannot
        take it again until this transaction has committed, and then finds its row gone
        (bot/db/liveness.py)."""
        now = self.lease.clock()
        replacing = ", ".join(f"'{k}'" for k in sorted(REPLACES))

        def tx(db: Tx) -> Released:
            gone = [o for o in dead if not self._postgres or _lock_free(db, o)]
            if not gone:
                return Released()
            owners = json.dumps(gone)
            runs = db.execute(
                "UPDATE bot_runs SET owner=NULL, lease_until=NULL WHERE status='running' AND "
                "owner IN (SELECT value FROM json_each(?) AS d)",
                (owners,),
            ).rowcount
            deadlines = db.execute(
                "UPDATE bot_deadlines SET status='pending', owner=NULL, lease_until=NULL "
                "WHERE status='firing' AND owner IN (SELECT value FROM json_each(?) AS d)",
                (owners,),
            ).rowcount
            outbox = db.execute(
                "UPDATE bot_outbox SET status='pending', owner=NULL, lease_until=NULL, "
                f"next_at=CASE WHEN kind IN ({replacing}) AND version <> claimed_version "
                "THEN ? ELSE 0 END WHERE status='sending' AND "
                "owner IN (SELECT value FROM json_each(?) AS d)",
                (now + hold, owners),
            ).rowcount
            db.execute(
                "DELETE FROM bot_owners WHERE owner IN (SELECT value FROM json_each(?) AS d)",
                (owners,),
            )
            for what, n in (("runs", runs), ("deadlines", deadlines), ("outbox", outbox)):
                if n:
                    _notify(db, what)
            return Released(runs, outbox, deadlines, tuple(gone))

        return await self._write(tx)

    async def progress(
        self, run: Run, item: Item, retried: Item, thread: Item | None, now: float
    ) -> None:
        """A progress line, posted once per key. A key seen before is a step re-run after a
        crash: ``retried`` (an edit of the earlier reply) is queued instead. ``thread`` is the
        run's first message, queued when the run has none yet."""

        def tx(db: Tx) -> None:
            if thread is not None:
                _queue(db, [thread], now)
                db.execute(
                    "UPDATE bot_runs SET thread_key=? WHERE run_id=? AND thread_key IS NULL",
                    (thread.key, run.run_id),
                )
            if not _queue(db, [item], now):
                _queue(db, [retried], now)

        await self._write(tx, wakes=True)

    async def pause(
        self,
        run: Run,
        interrupts: Sequence[tuple[str, Any, dict[str, Any] | None]],
        now: float,
        open_: Callable[[Approval], Opening],
        resumed: str | None = None,
        changed: Callable[[Approval], list[Item]] = lambda old: [],
    ) -> list[Approval]:
        """The run waits for people: store one approval per (interrupt id, value, meta) (a node
        LangGraph replays raises the same id, stored once, posted once) and queue its
        message. An approval is bound to the request it showed (its digest): when a re-run
        raised a known id with another request, the approval still open (or decided, not yet
        resumed) is closed as superseded, its decision void, ``changed(old)`` says how its
        message shows that, and the new request is opened as an approval of its own
        (``<interrupt id>-<n>``: its own message, votes and deadlines)."""

        def tx(db: Tx) -> tuple[list[Approval], bool]:
            """The approvals opened, and whether the run is still to be taken (a decision
            waits): returned, not collected outside, so a transaction run again after a lost
            connection counts nothing twice."""
            if resumed:
                _mark_resumed(db, resumed, run.run_id, now)
            opened: list[Approval] = []
            deadlines = False
            thread_key = run.thread_key
            for interrupt_id, value, meta in interrupts:
                digest = request_digest(value, meta)
                approval = Approval(
                    interrupt_id,
                    run.run_id,
                    value,
                    "pending",
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    now,
                    meta=meta or None,
                    digest=digest,
                    graph_interrupt_id=interrupt_id,
                )
                old = None
                if not _open_approval(db, approval):
                    found = _superseded(db, interrupt_id, digest)
                    if found is None:
                        continue  # the same request again: stored once, posted once
                    old, version = found
                    approval = replace(approval, interrupt_id=f"{interrupt_id}-{version}")
                    _open_approval(db, approval)
                    _audit(
                        db,
                        "request_changed",
                        now,
                        run_id=run.run_id,
                        interrupt_id=old.interrupt_id,
                        digest=old.digest,
                        detail={"new_digest": digest, "new_id": approval.interrupt_id},
                    )
                    _queue(db, changed(old), now)
                iid = approval.interrupt_id
                opened.append(approval)
                _audit(
                    db,
                    "requested",
                    now,
                    user=run.requester,
                    run_id=run.run_id,
                    interrupt_id=iid,
                    digest=digest,
                    detail=None if old is None else {"replaces": old.interrupt_id},
                )
                opening = open_(approval)
                if opening.rules is not None:
                    db.execute(
                        "UPDATE bot_approvals SET rules=? WHERE interrupt_id=?",
                        (json.dumps(opening.rules), iid),
                    )
                _schedule(db, iid, run.run_id, opening.deadlines)
                deadlines = deadlines or bool(opening.deadlines)
                _queue(db, opening.items, now)
                thread_key = thread_key or f"approval:{iid}"
            # The run lets its lease go. A decision another process claimed while this one
            # drove the run is still to be resumed: the run stays 'running', to be taken.
            row = db.execute(
                "UPDATE bot_runs SET status=CASE WHEN EXISTS (SELECT 1 FROM bot_approvals "
                "WHERE run_id=? AND status='decided') THEN 'running' ELSE 'waiting' END, "
                "updated_at=?, thread_key=COALESCE(thread_key, ?), owner=NULL, lease_until=NULL "
                "WHERE run_id=? RETURNING status",
                (run.run_id, now, thread_key, run.run_id),
            ).fetchone()
            more = row is not None and row[0] == "running"
            if more:
                _notify(db, "runs")
            if deadlines:
                _notify(db, "deadlines")
            return opened, more

        opened, more = await self._write(tx, wakes=True)
        if more:
            self._on_runs()
        return opened

    async def finish(
        self,
        run_id: str,
        status: str,
        outcome: dict[str, Any],
        now: float,
        render: Callable[[Run, list[Approval]], list[Item]],
        resumed: str | None = None,
    ) -> None:
        """End a run and queue the updates that show its outcome, in one transaction."""

        def tx(db: Tx) -> None:
            if resumed:
                _mark_resumed(db, resumed, run_id, now)
            row = db.execute(
                "UPDATE bot_runs SET status=?, updated_at=?, outcome=?, owner=NULL, "
                "lease_until=NULL WHERE run_id=? RETURNING *",
                (status, now, json.dumps(outcome), run_id),
            ).fetchone()
            if row is None:
                return
            approvals = db.execute(
                "SELECT * FROM bot_approvals WHERE run_id=? ORDER BY created_at", (run_id,)
            ).fetchall()
            _queue(db, render(_run(row), [_approval(a) for a in approvals]), now)
            _audit(db, "run_" + status, now, run_id=run_id, detail=outcome)

        await self._write(tx, wakes=True)

    async def fail_approval(
        self, interrupt_id: str, now: float, reason: str, code: str, items: Sequence[Item]
    ) -> None:
        """The approval's message can never be posted: close it and its run, and queue
        the words that tell the requester."""

        def tx(db: Tx) -> None:
            row = db.execute(
                "UPDATE bot_approvals SET status='failed' WHERE interrupt_id=? "
                "AND status='pending' RETURNING run_id, digest",
                (interrupt_id,),
            ).fetchone()
            if row is None:
                return
            run_id = row[0]
            db.execute(
                "UPDATE bot_runs SET status='failed', updated_at=?, outcome=?, owner=NULL, "
                "lease_until=NULL WHERE run_id=?",
                (now, json.dumps({"status": "failed", "text": reason}), run_id),
            )
            _audit(
                db,
                "post_failed",
                now,
                run_id=run_id,
                interrupt_id=interrupt_id,
                detail={"error": code},
                digest=row[1],
            )
            _queue(db, items, now)

        await self._write(tx, wakes=True)

    # -- approvals ------------------------------------------------------------------------
    async def get_approval(self, interrupt_id: str) -> Approval | None:
        row = await self._one("SELECT * FROM bot_approvals WHERE interrupt_id=?", (interrupt_id,))
        return _approval(row) if row else None

    async def approval_and_run(self, interrupt_id: str) -> tuple[Approval, Run] | None:
        row = await self._one(_APPROVAL_AND_RUN, (interrupt_id,))
        return (_approval(row), _run(row, "r_")) if row else None

    async def pending_page(self, before: float | None, limit: int) -> list[tuple[Approval, Run]]:
        """Pending approvals with their runs, newest first, created before ``before`` (one
        page; the caller pages on while it filters)."""
        rows = await self._all(
            _APPROVAL_AND_RUN.replace("WHERE a.interrupt_id=?", "WHERE a.status='pending'")
            + (" AND a.created_at < ?" if before is not None else "")
            + " ORDER BY a.created_at DESC LIMIT ?",
            ((before,) if before is not None else ()) + (limit,),
        )
        return [(_approval(r), _run(r, "r_")) for r in rows]

    async def count_pending(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM bot_approvals WHERE status='pending'", ())
        return int(row[0]) if row else 0

    async def recent_decisions(self, limit: int) -> list[Approval]:
        rows = await self._all(
            "SELECT * FROM bot_approvals WHERE status IN ('decided', 'resumed') "
            "ORDER BY decided_at DESC LIMIT ?",
            (limit,),
        )
        return [_approval(r) for r in rows]

    async def runs_waiting_by(self, requester: str, limit: int) -> list[Run]:
        rows = await self._all(
            "SELECT * FROM bot_runs WHERE requester=? AND status IN ('waiting', 'running') "
            "ORDER BY created_at DESC LIMIT ?",
            (requester, limit),
        )
        return [_run(r) for r in rows]

    async def run_history(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM bot_audit WHERE run_id=? ORDER BY id", (run_id,))
        return [dict(r) for r in rows]

    async def approvals_of(self, run_id: str) -> list[Approval]:
        rows = await self._all(
            "SELECT * FROM bot_approvals WHERE run_id=? ORDER BY created_at", (run_id,)
        )
        return [_approval(r) for r in rows]

    async def record(
        self, event: str, now: float, items: Sequence[Item] = (), **audit: Any
    ) -> None:
        """An audit row and the Slack side effects it causes, together."""

        def tx(db: Tx) -> None:
            _audit(db, event, now, **audit)
            _queue(db, items, now)

        await self._write(tx, wakes=bool(items))

    async def tell(self, items: Sequence[Item], now: float) -> None:
        """Queue Slack side effects that change no state (an answer to a stale click)."""
        if items:
            await self._write(lambda db: _queue(db, items, now), wakes=True)

    async def decide(
        self,
        interrupt_id: str,
        now: float,
        judge: Judge,
        render: Render,
        unknown: Callable[[], list[Item]],
    ) -> VoteResult | Refused | None:
        """One click, one transaction: load the approval and its run, let ``judge`` authorise,
        record the vote, claim the decision when it is reached (a conditional UPDATE, so
        exactly one caller ever sees ``claimed``), audit, and queue what ``render`` says Slack
        must show. ``judge`` and ``render`` are pure and run on the database thread. Returns
        what happened: the vote, the refusal, a result with no vote for an approval no longer
        pending, or None for an unknown approval."""

        def tx(db: Tx) -> VoteResult | Refused | None:
            row = db.execute(self._for_update, (interrupt_id,)).fetchone()
            if row is None:
                _queue(db, unknown(), now)
                return None
            approval, run = _approval(row), _run(row, "r_")
            if approval.status != "pending":
                closed = VoteResult(False, approval, run, 0)
                _queue(db, render(closed), now)
                return closed
            verdict = judge(approval, run)
            if isinstance(verdict, Refused):
                _audit(
                    db,
                    "refused",
                    now,
                    user=verdict.user,
                    run_id=run.run_id,
                    interrupt_id=interrupt_id,
                    detail=verdict.detail,
                    digest=approval.digest,
                )
                _queue(db, verdict.items, now)
                return verdict
            result = _vote(db, approval, run, verdict, now, self.lease)
            _queue(db, render(result), now)
            return result

        return await self._write(tx, wakes=True)

    async def mark_resumed(self, interrupt_id: str, run_id: str, now: float) -> None:
        await self._write(lambda db: _mark_resumed(db, interrupt_id, run_id, now))

    async def reopen(
        self,
        interrupt_id: str,
        now: float,
        render: Callable[[Approval, Run], list[Item]],
        detail: dict[str, Any],
    ) -> Approval | None:
        """The graph refused a claimed decision's value (LangGraph saved nothing): the
        approval is pending again, as if nobody had decided. Its votes are forgotten, the
        deadlines the claim cancelled are due again, the run waits, and ``render`` says what
        Slack must show. Returns the reopened approval (None: it was not ``decided``)."""

        def tx(db: Tx) -> Approval | None:
            row = db.execute(
                "UPDATE bot_approvals SET status='pending', choice=NULL, approved=NULL, "
                "decided_by=NULL, comment=NULL, decided_at=NULL, answer=NULL "
                "WHERE interrupt_id=? AND status='decided' RETURNING run_id",
                (interrupt_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM bot_votes WHERE interrupt_id=?", (interrupt_id,))
            db.execute(
                "UPDATE bot_deadlines SET status='pending' WHERE interrupt_id=? "
                "AND status='cancelled'",
                (interrupt_id,),
            )
            db.execute(
                "UPDATE bot_runs SET status='waiting', updated_at=? WHERE run_id=?",
                (now, row[0]),
            )
            found = db.execute(_APPROVAL_AND_RUN, (interrupt_id,)).fetchone()
            approval, run = _approval(found), _run(found, "r_")
            _audit(
                db,
                "resume_refused",
                now,
                run_id=run.run_id,
                interrupt_id=interrupt_id,
                detail=detail,
                digest=approval.digest,
            )
            _queue(db, render(approval, run), now)
            return approval

        return await self._write(tx, wakes=True)

    # -- the terminal, the HTTP API and the audit export (reads) ----------------------------
    async def pending_approvals(
        self, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[Approval, Run]]:
        """Pending approvals with their runs, oldest first, after the (created_at,
        interrupt_id) of the last one seen: a cursor that never skips approvals opened in the
        same instant (one pause opens several)."""
        sql = _APPROVAL_AND_RUN.replace("WHERE a.interrupt_id=?", "WHERE a.status='pending'")
        args: tuple[Any, ...] = ()
        if after is not None:
            sql += " AND (a.created_at > ? OR (a.created_at = ? AND a.interrupt_id > ?))"
            args = (after[0], after[0], after[1])
        rows = await self._all(
            sql + " ORDER BY a.created_at, a.interrupt_id LIMIT ?", (*args, limit)
        )
        return [(_approval(r), _run(r, "r_")) for r in rows]

    async def approval_ids(self, prefix: str, limit: int) -> list[str]:
        """Interrupt ids that start with ``prefix`` (the terminal takes a unique prefix)."""
        rows = await self._all(
            "SELECT interrupt_id FROM bot_approvals WHERE interrupt_id >= ? AND interrupt_id < ? "
            "ORDER BY interrupt_id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        )
        return [r[0] for r in rows]

    async def outbox_open_for_run(self, run_id: str, since: float) -> int:
        """Rows of a run queued (or replaced) since ``since`` that Slack has not had yet: a
        decision made outside the bot waits for these before its process exits."""
        row = await self._one(
            "SELECT COUNT(*) FROM bot_outbox WHERE run_id=? AND created_at >= ? "
            "AND status IN ('pending', 'sending')",
            (run_id, since),
        )
        return int(row[0]) if row else 0

    async def audit_mark(self) -> int:
        """The newest audit row's id: what a decision writes comes after it."""
        row = await self._one("SELECT COALESCE(MAX(id), 0) FROM bot_audit", ())
        return int(row[0]) if row else 0

    async def audit_after(self, mark: int, interrupt_id: str, user: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT * FROM bot_audit WHERE id > ? AND interrupt_id=? AND user_id=? ORDER BY id",
            (mark, interrupt_id, user),
        )
        return [dict(r) for r in rows]

    async def audit_page(self, since: float, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Audit rows at or after ``since``, in the order they were written, after ``after_id``."""
        rows = await self._all(
            "SELECT * FROM bot_audit WHERE at >= ? AND id > ? ORDER BY id LIMIT ?",
            (since, after_id, limit),
        )
        return [dict(r) for r in rows]

    async def audit_chain(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Audit rows in the chain's order (by id) after ``after_id``: what ``verify`` walks."""
        rows = await self._all(
            "SELECT id, at, event, user_id, run_id, interrupt_id, detail, digest, hash "
            "FROM bot_audit WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [dict(r) for r in rows]

    async def latest_checkpoints(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Each run's newest LangGraph checkpoint id (its thread's; ids sort by time)."""
        rows = await self._all(
            "SELECT thread_id, MAX(checkpoint_id) FROM checkpoints WHERE checkpoint_ns='' "
            "AND thread_id IN (SELECT value FROM json_each(?) AS j) GROUP BY thread_id",
            (json.dumps(list(run_ids)),),
        )
        return {r[0]: r[1] for r in rows}

    # -- the HTTP API's Idempotency-Keys (its own table, written only by bot/web/api.py) ---------
    async def api_request_begin(
        self, token: str, key: str, fingerprint: str, now: float, keep: float, stale: float
    ) -> tuple[str, int | None, str | None] | None:
        """Take an Idempotency-Key for a token: None when it is new (the caller answers it);
        else the first request's fingerprint, status and response (status None: still being
        answered). Keys older than ``keep`` seconds are forgotten first, and so are keys still
        unanswered after ``stale`` seconds (the process answering them stopped)."""

        def tx(db: Tx) -> tuple[str, int | None, str | None] | None:
            db.execute(
                "DELETE FROM bot_api_requests WHERE created_at < ? OR "
                "(status IS NULL AND created_at < ?)",
                (now - keep, now - stale),
            )
            row = db.execute(
                "SELECT fingerprint, status, response FROM bot_api_requests "
                "WHERE token=? AND key=?",
                (token, key),
            ).fetchone()
            if row is not None:
                return row[0], row[1], row[2]
            db.execute(
                "INSERT INTO bot_api_requests(token, key, fingerprint, created_at) "
                "VALUES (?,?,?,?)",
                (token, key, fingerprint, now),
            )
            return None

        return await self._write(tx)

    async def api_request_end(
        self, token: str, key: str, status: int, response: str
    ) -> tuple[int, str]:
        """Record a key's answer unless one is recorded already; returns the recorded one."""

        def tx(db: Tx) -> tuple[int, str]:
            db.execute(
                "UPDATE bot_api_requests SET status=?, response=? WHERE token=? AND key=? "
                "AND status IS NULL",
                (status, response, token, key),
            )
            row = db.execute(
                "SELECT status, response FROM bot_api_requests WHERE token=? AND key=?",
                (token, key),
            ).fetchone()
            return (row[0], row[1]) if row and row[0] is not None else (status, response)

        return await self._write(tx)

    async def api_request_forget(self, token: str, key: str) -> None:
        """Let a key be used again: its request failed before it could be answered."""
        await self._write(
            lambda db: db.execute(
                "DELETE FROM bot_api_requests WHERE token=? AND key=? AND status IS NULL",
                (token, key),
            )
        )

    # -- deadlines, for the scheduler ---------------------------------------------------------
    async def deadlines_claim(self, now: float, lease: float, limit: int) -> list[Deadline]:
        """Take due deadlines (or ones whose firer's lease ran out), oldest first."""

        def tx(db: Tx) -> list[Deadline]:
            owner = self.lease.owner
            if self._postgres:
                sql = _CLAIM_DEADLINES_PG
                args: tuple[Any, ...] = (now + lease, owner, now, now, limit, now, now)
            else:
                sql, args = _CLAIM_DEADLINES, (now + lease, owner, now, now, limit)
            rows = db.execute(sql, args).fetchall()
            return sorted((Deadline(*r) for r in rows), key=lambda d: (d.due_at, d.id))

        return await self._write(tx)

    async def next_deadline(self) -> float | None:
        row = await self._one(
            "SELECT MIN(t) FROM (SELECT MIN(due_at) AS t FROM bot_deadlines "
            "WHERE status='pending' UNION ALL SELECT MIN(lease_until) FROM bot_deadlines "
            "WHERE status='firing') AS d",
            (),
        )
        return None if row is None or row[0] is None else float(row[0])

    async def fire(
        self, d: Deadline, now: float, act: Callable[[Approval, Run], Firing]
    ) -> tuple[Firing, VoteResult | None] | None:
        """Carry out a due deadline in one transaction: nothing when its approval is no longer
        pending; otherwise what ``act`` says, and for a timeout the claim of its decision.
        Returns what was done, with the claimed result when a timeout decided."""

        def tx(db: Tx) -> tuple[Firing, VoteResult | None] | None:
            row = db.execute(self._for_update, (d.interrupt_id,)).fetchone()
            pending = row is not None and row["status"] == "pending"
            mine = db.execute(
                "UPDATE bot_deadlines SET status=?, fired_at=?, lease_until=NULL, owner=NULL "
                "WHERE id=? AND status='firing' AND owner=?",
                ("fired" if pending else "cancelled", now, d.id, self.lease.owner),
            ).rowcount
            if not pending or not mine:  # decided meanwhile, or taken over from this process
                return None
            approval, run = _approval(row), _run(row, "r_")
            firing = act(approval, run)
            result = None
            if firing.decision is not None:
                choice, approved = firing.decision
                claimed = db.execute(
                    "UPDATE bot_approvals SET status='decided', choice=?, approved=?, "
                    "decided_by=NULL, comment=NULL, answer=NULL, decided_at=? WHERE "
                    "interrupt_id=? AND "
                    "status='pending' RETURNING *",
                    (choice, int(approved), now, d.interrupt_id),
                ).fetchone()
                if claimed is not None:
                    drive = _claimed(db, run.run_id, d.interrupt_id, now, self.lease)
                    result = VoteResult(True, _approval(claimed), run, 0, drive=drive)
            _schedule(db, d.interrupt_id, d.run_id, firing.deadlines)
            if firing.deadlines:
                _notify(db, "deadlines")
            if firing.rules is not None:
                db.execute(
                    "UPDATE bot_approvals SET rules=? WHERE interrupt_id=?",
                    (json.dumps(firing.rules), d.interrupt_id),
                )
            _audit(
                db,
                firing.event,
                now,
                run_id=d.run_id,
                interrupt_id=d.interrupt_id,
                detail={"kind": d.kind, "level": d.level},
                digest=approval.digest,
            )
            _queue(db, firing.items, now)
            return firing, result

        return await self._write(tx, wakes=True)

    async def deadline_now(self, interrupt_id: str, kind: str, now: float) -> bool:
        """Bring the next pending deadline of ``kind`` forward to now ("Escalate now")."""

        def tx(db: Tx) -> bool:
            cur = db.execute(
                "UPDATE bot_deadlines SET due_at=? WHERE id=(SELECT id FROM bot_deadlines "
                "WHERE interrupt_id=? AND kind=? AND status='pending' ORDER BY due_at LIMIT 1)",
                (now, interrupt_id, kind),
            )
            if cur.rowcount == 1:
                _notify(db, "deadlines")
            return cur.rowcount == 1

        return await self._write(tx)

    # -- the outbox, for its sender ---------------------------------------------------------
    async def outbox_open(self, limit: int = 500) -> list[Delivery]:
        """Undelivered rows, oldest first, with the message each refers to: the sender needs
        the ones not yet due too, so that a later reply never overtakes an earlier one."""
        return [_delivery(r) for r in await self._all(_OPEN, (limit,))]

    async def outbox_claim(
        self, ids: Sequence[int], now: float, lease: float
    ) -> dict[int, tuple[int, dict[str, Any]]]:
        """Take rows for sending: id -> (version, payload). A row another process took
        meanwhile is not returned."""
        owner = self.lease.owner

        def tx(db: Tx) -> dict[int, tuple[int, dict[str, Any]]]:
            if self._postgres:
                sql = _CLAIM_OUTBOX_PG
                wanted: Any = list(ids)
            else:
                sql, wanted = _CLAIM_OUTBOX, json.dumps(list(ids))
            rows = db.execute(sql, (now + lease, now, owner, wanted, now, now)).fetchall()
            return {int(r[0]): (int(r[1]), json.loads(r[2])) for r in rows}

        return await self._write(tx)

    async def outbox_sent_many(
        self, done: Sequence[Sent], now: float, lease: float, follow: bool = True
    ) -> tuple[list[Delivery], bool]:
        """Delivered, in one transaction. A newer version queued meanwhile (a coalesced
        update) stays pending. An approval's post also records where the message landed and
        when (``posted_at``, on the deadlines' clock), and moves its deadlines to count from
        then.

        In the same transaction, the rows that were waiting on these (the next of each lane:
        a reply for its thread, an update for its post's ``ts``) are claimed and returned, so
        the sender goes straight on to them (unless ``follow`` is off: a stopping sender), and
        whether any waiting row was left."""

        def tx(db: Tx) -> tuple[list[Delivery], bool]:
            for sent in done:
                _sent(db, sent)
            if not follow:
                return [], False
            lanes = sorted({s.delivery.lane for s in done if s.delivery.lane})
            return _take(db, _TAKE_NEXT, [(x,) for x in lanes], now, lease, self.lease.owner), False

        return await self._write(tx)

    async def outbox_note_channel(self, d: Delivery, channel: str) -> None:
        """A DM's conversation is open: remember it so a retry skips conversations.open."""
        await self._write(
            lambda db: db.execute("UPDATE bot_outbox SET channel=? WHERE id=?", (channel, d.id))
        )

    async def outbox_retry(self, d: Delivery, now: float, next_at: float, error: str) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE bot_outbox SET status='pending', attempts=attempts+1, next_at=?, "
                "lease_until=NULL, owner=NULL, error=?, failing_since=COALESCE(failing_since, ?), "
                "updated_at=? WHERE id=? AND status='sending'",
                (next_at, error, now, now, d.id),
            )
        )

    async def outbox_failed(self, d: Delivery, now: float, error: str) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE bot_outbox SET status='failed', attempts=attempts+1, error=?, "
                "lease_until=NULL, owner=NULL, updated_at=? WHERE id=?",
                (error, now, d.id),
            )
        )


# -- statements shared by the transactions above; each runs inside the caller's ------------


@dataclass(frozen=True)
class FastPath:
    """The sender's side of the fast path: its clock and lease, and where rows go."""

    take: Callable[[list[Delivery]], None]
    active: Callable[[], bool]  # the sender is running (else rows wait for its first pass)
    clock: Callable[[], float]
    lease: float


def _take(
    db: Tx,
    claim: str,
    keys: Sequence[tuple[Any, ...]],
    now: float,
    lease: float,
    owner: str,
) -> list[Delivery]:
    """Claim for ``owner``, one statement each, the rows ``claim`` picks by ``keys`` (a row's
    id, or a lane) that may be sent now (``_MAY_GO``)."""
    taken = []
    for key in keys:
        row = db.execute(claim, (now + lease, owner, *key, now)).fetchone()
        if row is not None:
            taken.append(replace(_delivery(row), payload=json.loads(row["payload"])))
    return taken


def _queue(db: Tx, items: Sequence[Item], now: float) -> int:
    """Write outbox rows; returns how many were new or replaced (a known key is skipped).
    An update of an approval's message also updates each copy of it (escalation DMs). The
    ids of rows now waiting are kept on the transaction (``Tx.queued``) for the fast path,
    each with the first row of its lane as the insert found it (``_QUEUED``)."""
    written = 0
    queued: list[tuple[int, str | None]] | None = getattr(db, "queued", None)
    claim: tuple[str, float] | None = getattr(db, "claim", None)
    taken: list[Delivery] = getattr(db, "taken", [])
    behind: list[str | None] = getattr(db, "behind", [])
    for i in _with_copies(db, items):
        lane = i.ref or i.key
        args: tuple[Any, ...] = (
            i.key,
            i.kind,
            i.ref,
            lane,
            i.run_id,
            i.interrupt_id,
            json.dumps(i.payload),
            i.payload.get("channel") if i.kind == "post" else None,
            0.0,  # due at once; the sender keeps time for retries on its own clock
            now,
            now,
        )
        if claim is not None and not i.replace:
            may_go = (lane, i.ref, i.ref)
            args = (*args, *may_go, *may_go, claim[0], *may_go, claim[1])
            row = db.execute(_INSERT_TAKEN, args).fetchone()
        else:
            sql = _INSERT_ITEM + (_REPLACE if i.replace else _IGNORE) + _QUEUED
            row = db.execute(sql, args).fetchone()
        if row is None:
            continue
        written += 1
        if claim is not None and not i.replace:  # taken by its insert, or cannot go yet
            if row["status"] == "sending":
                taken.append(replace(_delivery(row), payload=dict(i.payload)))
            else:
                behind.append(row["ahead"])
        elif queued is not None and row["status"] == "pending":
            queued.append((int(row["id"]), row["ahead"]))
    return written


def _with_copies(db: Tx, items: Sequence[Item]) -> list[Item]:
    out = list(items)
    for i in items:
        if i.kind != "update" or not (i.ref or "").startswith("approval:"):
            continue
        prefix = "copy:" + (i.ref or "").removeprefix("approval:") + ":"
        copies = db.execute(
            "SELECT key FROM bot_outbox WHERE key >= ? AND key < ?", (prefix, prefix[:-1] + ";")
        ).fetchall()
        out += [replace(i, key=f"update:{c[0]}", ref=c[0]) for c in copies]
    return out


class Tx:
    """One store transaction as its statements see it: the connection's ``execute`` and
    ``executemany`` (anything else, such as PostgreSQL's ``notify``, is the connection's),
    and the audit rows it writes, kept for its end (``_chain``)."""

    __slots__ = ("_db", "audit", "behind", "claim", "queued", "taken")

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.audit: list[tuple[Any, ...]] = []  # integrity.CHAINED columns, in order
        # outbox rows it queued, waiting, and the first of each one's lane (``_queue``)
        self.queued: list[tuple[int, str | None]] = []
        # the fast path's owner and lease: new rows that may go at once are taken by their
        # insert (``_INSERT_TAKEN``) and kept here
        self.claim: tuple[str, float] | None = None
        self.taken: list[Delivery] = []
        self.behind: list[str | None] = []  # what each new row that could not go waits for

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._db.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _audit(
    db: Tx,
    event: str,
    now: float,
    *,
    user: str | None = None,
    run_id: str | None = None,
    interrupt_id: str | None = None,
    detail: Any = None,
    digest: str | None = None,
) -> None:
    """An audit row, written with the transaction's others at its end (``_chain``);
    ``digest`` is that of the request the row is about (an approval's)."""
    text = None if detail is None else json.dumps(detail, default=str)
    db.audit.append((float(now), event, user, run_id, interrupt_id, text, digest or None))


_INSERT_AUDIT = (
    "INSERT INTO bot_audit(at, event, user_id, run_id, interrupt_id, detail, digest, hash) "
    "VALUES (?,?,?,?,?,?,?,?)"
)


def _chain(db: Tx, key: bytes | None) -> None:
    """Append the transaction's audit rows to the chain: one read of the last row's hash,
    then the rows, each hashed over its content and the hash before it. On PostgreSQL the
    chain's advisory lock comes first (held until the commit, so replicas append one after
    the other); it is taken here, at the end, so it is held as briefly as can be."""
    if not db.audit:
        return
    lock = getattr(db, "lock_audit_chain", None)
    if lock is not None:
        lock()
    last = db.execute("SELECT hash FROM bot_audit ORDER BY id DESC LIMIT 1").fetchone()
    prev = (last[0] if last is not None else None) or ""
    rows = []
    for row in db.audit:
        prev = link(prev, row, key)
        rows.append((*row, prev))
    db.executemany(_INSERT_AUDIT, rows)
    db.audit.clear()


def _chain_existing(db: Tx, key: bytes | None) -> None:
    """Migration 10's step: chain the rows written before it, oldest first, and give the
    approvals already there their digests (from the request stored then)."""
    prev, after = "", 0
    for _ in range(1_000_000):  # pages of 1,000 rows: far above any real table
        rows = db.execute(
            "SELECT id, at, event, user_id, run_id, interrupt_id, detail, digest FROM bot_audit "
            "WHERE id > ? ORDER BY id LIMIT 1000",
            (after,),
        ).fetchall()
        if not rows:
            break
        hashes = []
        for r in rows:
            prev = link(prev, list(r)[1:], key)
            hashes.append((prev, r[0]))
        db.executemany("UPDATE bot_audit SET hash=? WHERE id=?", hashes)
        after = rows[-1][0]
    approvals = db.execute("SELECT interrupt_id, request, meta FROM bot_approvals").fetchall()
    db.executemany(
        "UPDATE bot_approvals SET digest=? WHERE interrupt_id=?",
        [
            (request_digest(json.loads(r[1]), json.loads(r[2]) if r[2] else None), r[0])
            for r in approvals
        ],
    )


def _vote(
    db: Tx, approval: Approval, run: Run, b: Ballot, now: float, lease: RunLease
) -> VoteResult:
    iid = approval.interrupt_id
    db.execute(
        "INSERT INTO bot_votes(interrupt_id, user_id, choice, comment, at) VALUES (?,?,?,?,?) "
        "ON CONFLICT(interrupt_id, user_id) DO UPDATE SET choice=excluded.choice, "
        "comment=excluded.comment, at=excluded.at",
        (iid, b.user, b.choice, b.comment, now),
    )
    voters = tuple(
        r[0]
        for r in db.execute(
            "SELECT user_id FROM bot_votes WHERE interrupt_id=? AND choice=? ORDER BY at",
            (iid, b.choice),
        )
    )
    claimed = None
    if len(voters) >= b.required:
        claimed = db.execute(
            "UPDATE bot_approvals SET status='decided', choice=?, approved=?, decided_by=?, "
            "comment=?, decided_at=?, answer=? WHERE interrupt_id=? AND status='pending' "
            "RETURNING *",
            (
                b.choice,
                int(b.approves),
                b.user,
                b.comment,
                now,
                None if b.answer is None else json.dumps(b.answer),
                iid,
            ),
        ).fetchone()
    drive = False
    if claimed is not None:
        drive = _claimed(db, run.run_id, iid, now, lease)
        approval = _approval(claimed)
    _audit(
        db,
        "decided" if claimed is not None else "vote",
        now,
        user=b.user,
        run_id=run.run_id,
        interrupt_id=iid,
        detail={"choice": b.choice, "comment": b.comment},
        digest=approval.digest,
    )
    return VoteResult(claimed is not None, approval, run, len(voters), voters, drive)


def _claimed(db: Tx, run_id: str, interrupt_id: str, now: float, lease: RunLease) -> bool:
    """A decision was claimed: the run runs again, leased to the claimer unless another
    process holds it (then False: that one resumes it after its step), and nothing more is
    due for the approval."""
    taken = db.execute(
        "UPDATE bot_runs SET status='running', updated_at=?, owner=?, lease_until=? "
        "WHERE run_id=? AND (owner IS NULL OR owner=? OR lease_until < ?)",
        (now, lease.owner, lease.until(), run_id, lease.owner, lease.clock()),
    ).rowcount
    if not taken:
        db.execute(
            "UPDATE bot_runs SET status='running', updated_at=? WHERE run_id=?", (now, run_id)
        )
    db.execute(
        "UPDATE bot_deadlines SET status='cancelled' WHERE interrupt_id=? AND status='pending'",
        (interrupt_id,),
    )
    return bool(taken)


def _lock_free(db: Tx, owner: str) -> bool:
    """PostgreSQL: take ``owner``'s liveness key until this transaction ends; False when its
    owner holds it (it is alive)."""
    key = (LOCK_CLASS, lock_key(owner))
    return bool(db.execute("SELECT pg_try_advisory_xact_lock(?, ?)", key).fetchone()[0])


def _notify(db: Tx | sqlite3.Connection, what: str) -> None:
    """Tell the other processes on the database, at commit, that ``what`` (outbox,
    deadlines, runs) has work for them (PostgreSQL's NOTIFY; SQLite: nothing, one process
    per file is the rule there and the idle polls cover the rest)."""
    notify = getattr(db, "notify", None)
    if notify is not None:
        notify(what)


def _then_notify(fn: Callable[[sqlite3.Connection], T], what: str, db: sqlite3.Connection) -> T:
    result = fn(db)
    _notify(db, what)
    return result


def _schedule(
    db: Tx,
    interrupt_id: str,
    run_id: str,
    deadlines: Sequence[tuple[str, int, float]],
) -> None:
    db.executemany(
        "INSERT INTO bot_deadlines(interrupt_id, run_id, kind, level, due_at, status) "
        "VALUES (?,?,?,?,?, 'pending') ON CONFLICT DO NOTHING",
        [(interrupt_id, run_id, kind, level, due) for kind, level, due in deadlines],
    )


def _mark_resumed(db: Tx, interrupt_id: str, run_id: str, now: float) -> None:
    row = db.execute(
        "UPDATE bot_approvals SET status='resumed' WHERE interrupt_id=? AND status='decided' "
        "RETURNING digest",
        (interrupt_id,),
    ).fetchone()
    if row is not None:
        _audit(db, "resumed", now, run_id=run_id, interrupt_id=interrupt_id, digest=row[0])


def _open_approval(db: Tx, a: Approval) -> bool:
    """Store a new approval; False when one with its id is there already."""
    return bool(
        db.execute(
            "INSERT INTO bot_approvals(interrupt_id, run_id, request, status, created_at, meta, "
            "digest, graph_interrupt_id) VALUES (?,?,?, 'pending', ?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (
                a.interrupt_id,
                a.run_id,
                json.dumps(a.request, default=repr),
                a.created_at,
                json.dumps(a.meta) if a.meta else None,
                a.digest,
                a.graph_interrupt_id,
            ),
        ).rowcount
        == 1
    )


def _superseded(db: Tx, interrupt_id: str, digest: str) -> tuple[Approval, int] | None:
    """LangGraph raised ``interrupt_id`` again: when the approval open for it (pending, or
    decided and not yet resumed) showed another request, close it as superseded (its
    decision void, nothing more due) and return it with the number of the new version;
    None when the request is the same (or nothing is open for it any more)."""
    row = db.execute(
        "SELECT *, (SELECT COUNT(*) FROM bot_approvals WHERE graph_interrupt_id=?) AS versions "
        "FROM bot_approvals WHERE graph_interrupt_id=? AND status IN ('pending', 'decided')",
        (interrupt_id, interrupt_id),
    ).fetchone()
    if row is None or row["digest"] == digest:
        return None
    closed = db.execute(
        "UPDATE bot_approvals SET status='superseded' WHERE interrupt_id=? "
        "AND status IN ('pending', 'decided')",
        (row["interrupt_id"],),
    ).rowcount
    if not closed:
        return None
    db.execute(
        "UPDATE bot_deadlines SET status='cancelled' WHERE interrupt_id=? AND status='pending'",
        (row["interrupt_id"],),
    )
    return _approval(row), int(row["versions"]) + 1


def _statements(script: str) -> list[str]:
    """Split a migration into statements (they hold no semicolons in strings or comments)."""
    return [s.strip() for s in script.split(";") if s.strip()]
