"""Work committed in groups, shared by both drivers (bot/db/sqlite.py's ``Writer``,
bot/db/postgres.py's checkpoint writes): work asked for while a group is on its way joins the
next one, so many callers share one commit, and each caller returns only after the commit
that made its own work durable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

W = TypeVar("W")  # one caller's work, as ``run`` takes it

# Commits a group; gives each piece of work's outcome, in order: (True, result) or
# (False, the exception only that piece raised). Raising fails the whole group.
Run = Callable[[list[W]], Awaitable[Sequence[tuple[bool, Any]]]]


class Grouped(Generic[W]):
    """The queue of work waiting for the next group, and the one task committing groups."""

    def __init__(self, run: Run[W], name: str, most: int = 64) -> None:
        self._run = run
        self._name = name  # the committing task's name
        self._most = most  # bounds how long the last of a group waits for the first
        self._queue: list[tuple[W, asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def __call__(self, work: W) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name=self._name)
        return await future

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self._most], self._queue[self._most :]
            try:
                outcomes = await self._run([work for work, _ in group])
            except BaseException as exc:  # the group's commit failed: none of it was saved
                for _, future in group:
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                if future.done():  # its caller was cancelled; its work is committed anyway
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
