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

from collections.abc import Callable
from functools import partial

from bot.db.approvals import Approvals
from bot.db.audit import Audit, _chain
from bot.db.base import _APPROVAL_AND_RUN, Conn, Hop, RunLease, T, Tx, _notify, _then_notify
from bot.db.deadlines import Deadlines
from bot.db.events import SlackEvents
from bot.db.grants import Grants
from bot.db.keys import Keys
from bot.db.migrations import Migrations
from bot.db.outbox import _TAKE_QUEUED, FastPath, OutboxRows, _take
from bot.db.runs import Runs
from bot.db.sqlite import OneStatement
from bot.model import Delivery


class Store(Migrations, Runs, Approvals, Grants, Deadlines, OutboxRows, Keys, SlackEvents, Audit):
    """The store callers hold: one object, because transactions span aggregates (a decision
    writes its approval, vote, run, audit and outbox rows in one transaction, and every
    transaction ends by chaining its audit rows and handing the sender the outbox rows it may
    send at once). Each aggregate's methods, named SQL and row decoders live in its module:
    bot/db/migrations.py, runs.py, approvals.py, grants.py, deadlines.py, outbox.py, keys.py,
    events.py, audit.py; the plumbing they share in bot/db/base.py. Writes go through the
    ``Writer`` the checkpointer uses, which commits them in groups under the saver's lock
    (SQLite)."""

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

    async def _write(self, fn: Callable[[Tx], T], wakes: bool = False, one: bool = False) -> T:
        """Run ``fn`` as one transaction; ``wakes`` when it may have queued outbox rows;
        ``one`` when it runs a single statement and writes no audit row (on SQLite it then
        runs without BEGIN/COMMIT when it is alone: ``OneStatement``; the fast path adds no
        statement to a row its insert took).

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
                result = await self._writer(OneStatement(tx) if one else tx)
            if wakes:
                self._on_outbox()
            return result

        def run(db: Conn) -> tuple[T, list[Delivery], bool]:
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

        result, taken, left = await self._writer(OneStatement(run) if one else run)
        if taken:
            fast.take(taken)
        if left:
            self._on_outbox()
        return result

    def _chained(self, fn: Callable[[Tx], T], db: Conn) -> T:
        """``fn`` as one transaction, its audit rows chained at its end."""
        tx = Tx(db)
        result = fn(tx)
        _chain(tx, self._audit_key)
        return result
