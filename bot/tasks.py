"""Background work the app owns: every task is referenced until done, its failure logged, and
all of them awaited (then cancelled past a grace period) on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """The background tasks the app owns (see the module's notes): asyncio keeps only weak
    references to tasks, so an unreferenced one can vanish mid-run, and a stop must know what
    is still running to wait for it."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background; refused (and closed) once shutdown began."""
        if self._closing:
            coro.close()
            log.warning("shutting down: not starting %s", name)
            return None
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def idle(self) -> None:
        """Wait until no task is running (tests and benchmarks use this)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, grace: float) -> int:
        """Stop taking work, wait up to ``grace`` seconds, cancel the rest; returns how many
        were cancelled (their runs continue from the last checkpoint on the next start)."""
        self._closing = True
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        late = set(self._tasks)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        return len(late)


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Sleep until ``event`` is set or ``seconds`` pass; True when woken. The loops
    that sleep until their next due work (outbox, scheduler) and can be woken early."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


class Loop:
    """The one long-lived task of a component (the scheduler, the pruner, a listener, a lease
    keeper): started once, cancelled and awaited on stop."""

    def __init__(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._name = name
        self._body = body
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._body(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
