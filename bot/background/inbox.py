"""A LangGraph Server's inbox: every ``poll`` seconds, the threads of one deployment that
changed since the last look, newest first, until one is not newer than the cursor.

The server has no "updated after" filter, so the cursor is the newest ``updated_at`` seen:
``threads.search`` sorted by ``updated_at`` descending, a small first page (a quiet
deployment costs this one request), larger pages after it while every thread is newer. The
first look, and one every five minutes, is a sweep: the interrupted threads and those of the
runs waiting here, not a deployment's whole history.
Each changed thread is then one of:

- interrupted, unknown here, and the deployment is watched: a run is made of it (once across
  replicas: the run id is the thread's) and its interrupts are posted (``Engine.adopt``);
- the thread of a run waiting here whose interrupts are not the ones asked in Slack any more
  (someone answered them from another client): its messages say so, and the run follows the
  graph on (``Engine.follow``); nothing is sent to the server;
- anything else (a run this bot drives, one that ended): nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from langgraph_sdk.schema import Thread, ThreadSelectField, ThreadStatus

from bot.engine import Engine
from bot.remote.runner import Connection, run_id_of, thread_id_of, transient
from bot.runner import GraphRefused
from bot.slackids import USER_ID
from bot.tasks import TaskSet

log = logging.getLogger(__name__)

FIRST_PAGE = 10  # what a quiet poll asks for
SWEEP_SECONDS = 300.0  # a look at every interrupted thread this often (see ``look``)
PAGE = 100  # further pages while every thread is newer than the cursor
MAX_PAGES = 10_000  # a million threads changed since the last look: far above any real one
FIELDS: list[ThreadSelectField] = ["thread_id", "status", "updated_at", "metadata", "interrupts"]


@dataclass
class Watch:
    """What the inbox of one deployment needs from its ``[[deployments]]`` entry."""

    name: str
    channel: str
    assistants: Collection[str] = ()  # graph ids or assistant ids; empty: every one
    watch: bool = True
    poll_seconds: float = 2.0
    requester_metadata: str | None = None

    def serves(self, metadata: Mapping[str, Any]) -> bool:
        if not self.assistants:
            return True
        return bool({metadata.get("graph_id"), metadata.get("assistant_id")} & set(self.assistants))


@dataclass
class Inbox:
    """One deployment's poller. ``observe_lag(name, seconds)``: how old the newest complete
    look is, after each look (a gauge on /metrics)."""

    conn: Connection
    watch: Watch
    engine: Engine
    tasks: TaskSet
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    observe_look: Callable[[str, float], None] = lambda name, at: None
    cursor: str | None = field(default=None, init=False)
    at_cursor: set[str] = field(default_factory=set, init=False)  # threads seen at the cursor
    swept_at: float = field(default=0.0, init=False)
    requests: int = field(default=0, init=False)  # searches made (the benchmark reads it)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"inbox-{self.watch.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        for _ in range(2**62):  # until stopped
            try:
                await self.look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, GraphRefused):
                    log.warning("inbox %s: %s", self.watch.name, exc.words)
                elif transient(exc):
                    log.info("inbox %s: not answering (%s)", self.watch.name, type(exc).__name__)
                else:
                    # The class only: a server's message may quote what was sent.
                    log.error("inbox %s: look failed (%s)", self.watch.name, type(exc).__name__)
            await self.sleep(self.watch.poll_seconds)

    async def look(self) -> int:
        """One look: the threads changed since the cursor, each handled once, oldest first.
        The first look, and one every ``SWEEP_SECONDS``, is a sweep instead: every
        interrupted thread and the threads of the runs waiting here (answered elsewhere
        while the bot was away, or missed by a look: a thread that left the interrupted
        list mid-page, a server whose timestamps commit out of order). Returns how many
        threads it handled."""
        now = self.clock()
        if self.cursor is None or now - self.swept_at >= SWEEP_SECONDS:
            changed = await self._sweep()
            self.swept_at = now
        else:
            changed = await self._changed()
            if changed:
                newest = str(changed[0]["updated_at"])
                if newest != self.cursor:
                    self.cursor, self.at_cursor = newest, set()
                self.at_cursor |= {
                    str(t["thread_id"]) for t in changed if t["updated_at"] == newest
                }
        for thread in reversed(changed):
            await self._one(thread)
        self.observe_look(self.watch.name, self.clock())
        return len(changed)

    async def _sweep(self) -> list[dict[str, Any]]:
        """Newest first, every interrupted thread and the threads of this deployment's runs
        waiting here, each once. The cursor moves to the newest thread of all, read before
        them: what changes meanwhile is newer, and the next look finds it. A deployment's
        old, finished threads are never read."""
        top = await self.conn.call("the thread list", partial(self._page, 1, 0))
        self.requests += 1
        if top:
            self.cursor = str(top[0]["updated_at"])
            self.at_cursor = {str(top[0]["thread_id"])}
        found: dict[str, dict[str, Any]] = {}
        for pages in (self._all_interrupted(), self._waiting_here()):
            async for page in pages:
                for t in page:
                    found.setdefault(str(t["thread_id"]), dict(t))
        return sorted(found.values(), key=lambda t: str(t["updated_at"]), reverse=True)

    async def _all_interrupted(self) -> AsyncIterator[list[Thread]]:
        for offset in range(0, PAGE * MAX_PAGES, PAGE):
            page = await self.conn.call(
                "the thread list", partial(self._page, PAGE, offset, "interrupted")
            )
            self.requests += 1
            yield page
            if len(page) < PAGE:
                return

    async def _waiting_here(self) -> AsyncIterator[list[Thread]]:
        after = ""
        for _ in range(MAX_PAGES):
            run_ids = await self.engine.store.runs_waiting_on(self.watch.name, after, PAGE)
            if not run_ids:
                return
            after = run_ids[-1]
            ids = [thread_id_of(r) for r in run_ids]
            page = await self.conn.call("the thread list", partial(self._by_ids, ids))
            self.requests += 1
            yield page

    async def _changed(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset, limit = 0, FIRST_PAGE
        for _ in range(MAX_PAGES):
            page = await self.conn.call("the thread list", partial(self._page, limit, offset))
            self.requests += 1
            newer = [dict(t) for t in page if self._newer(t)]
            found += newer
            if len(page) < limit or len(newer) < len(page):
                break
            offset, limit = offset + limit, PAGE
        return found

    async def _page(
        self, limit: int, offset: int, status: ThreadStatus | None = None
    ) -> list[Thread]:
        return await self.conn.client.threads.search(
            status=status,
            sort_by="updated_at",
            sort_order="desc",
            limit=limit,
            offset=offset,
            select=FIELDS,
        )

    async def _by_ids(self, ids: list[str]) -> list[Thread]:
        return await self.conn.client.threads.search(ids=ids, limit=len(ids), select=FIELDS)

    def _newer(self, thread: Mapping[str, Any]) -> bool:
        if self.cursor is None:
            return True
        at = str(thread.get("updated_at"))
        return at > self.cursor or (at == self.cursor and thread["thread_id"] not in self.at_cursor)

    async def _one(self, thread: Mapping[str, Any]) -> None:
        metadata = thread.get("metadata") or {}
        if not self.watch.serves(metadata):
            return
        run_id = run_id_of(str(thread["thread_id"]))
        run = await self.engine.store.get_run(run_id)
        if run is None:
            if self.watch.watch and thread.get("status") == "interrupted":
                graph = f"{self.watch.name}/{metadata.get('graph_id') or 'agent'}"
                key = self.watch.requester_metadata
                who = metadata.get(key) if key else None
                requester = who if isinstance(who, str) and USER_ID.fullmatch(who) else ""
                self.tasks.spawn(
                    self.engine.adopt(run_id, graph, requester, self.watch.channel, "outside"),
                    f"adopt-{run_id}",
                )
            return
        if run.status != "waiting":
            return  # driven here (its resume, its stream) or ended
        approvals = await self.engine.store.approvals_of(run_id)
        asked = {a.graph_interrupt_id for a in approvals if a.status == "pending"}
        known = {a.graph_interrupt_id for a in approvals}
        listed = {
            i.get("id")
            for found in (thread.get("interrupts") or {}).values()
            for i in found
            if isinstance(i, Mapping)
        }
        # The thread's own list may still show an interrupt answered here while another
        # waits (``get_state`` does not): only unknown ones are new.
        if thread.get("status") != "interrupted" or not asked <= listed or listed - known:
            self.tasks.spawn(self.engine.follow(run_id), f"follow-{run_id}")
