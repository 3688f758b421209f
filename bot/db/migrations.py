"""The bot's tables, as versioned migrations (``PRAGMA user_version``; PostgreSQL keeps the
version in a table of its own, see bot/db/postgres.py), and applying them at start-up.
"""

from __future__ import annotations

import json
import sqlite3

from bot.db.base import Base, Row, Tx
from bot.integrity import link, request_digest

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
    # 11: standing grants (bot/db/grants.py): an approver's "Approve & allow…" decides later
    # requests of the same graph and tools in a scope (a run, a requester's runs, a channel),
    # optionally for exactly the same arguments, until it expires or is revoked; a rule
    # needing n approvers needs n of them to ask for the same grant (``proposed`` till then)
    """
    CREATE TABLE bot_grants (
        grant_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,             -- the interrupt id it was made on
        command TEXT NOT NULL,
        rule TEXT NOT NULL,               -- the policy rule it was made under: "deploy.staging"
        tools TEXT NOT NULL,              -- JSON list of tool names ("request": not a tool call)
        scope TEXT NOT NULL,              -- run | requester | channel
        scope_value TEXT NOT NULL,
        args_digest TEXT,                 -- NULL: any arguments
        granted_by TEXT NOT NULL,         -- JSON list of user ids, in the order they asked
        needed INTEGER NOT NULL,
        status TEXT NOT NULL,             -- proposed | active | revoked | lapsed
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_by TEXT,
        revoked_at REAL,
        uses INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX bot_grants_live ON bot_grants(status, expires_at);
    CREATE INDEX bot_grants_source ON bot_grants(source);
    """,
    # 12: Slack events acted on, by event_id, so a retried event (``X-Slack-Retry-Num``, on
    # any replica, after a restart) acts once (bot/db/events.py); and an approval found by
    # where its message is (a mention in its thread names the message's ts)
    """
    CREATE TABLE bot_slack_events (
        event_id TEXT PRIMARY KEY,        -- the event_callback's event_id
        at REAL NOT NULL                  -- when it was acted on (forgotten a day later)
    );
    CREATE INDEX bot_slack_events_at ON bot_slack_events(at);
    CREATE INDEX bot_approvals_message ON bot_approvals(ts);
    """,
)


CHAIN_VERSION = 10  # the schema version that chains the audit table


class Migrations(Base):
    """Brings the database to the schema this release reads and writes."""

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


def _statements(script: str) -> list[str]:
    """Split a migration into statements (they hold no semicolons in strings or comments)."""
    return [s.strip() for s in script.split(";") if s.strip()]


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
