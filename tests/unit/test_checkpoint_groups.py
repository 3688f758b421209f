"""PostgreSQL checkpoint writes committed in groups (bot/db/postgres.py ``RetryingSaver``):
writes asked for together share one transaction, each caller gets its own answer after the
commit, and a write that fails fails alone."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from langchain_core.runnables import RunnableConfig

from bot.db.postgres import RetryingSaver, open_saver


def config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": "c1"}}


async def stored(saver: RetryingSaver) -> set[str]:
    async with saver._pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT thread_id FROM checkpoint_writes")
        return {r["thread_id"] for r in await cur.fetchall()}


async def test_writes_asked_for_together_are_grouped_and_all_land(pg_url: str) -> None:
    saver, pool = await open_saver(pg_url)
    groups: list[int] = []
    run = saver._grouped._run

    async def counted(writes: list[Any]) -> list[tuple[bool, Any]]:
        groups.append(len(writes))
        return await run(writes)

    saver._grouped._run = counted  # measurement only: the group sizes
    try:
        threads = [f"t{i}" for i in range(20)]
        await asyncio.gather(
            *(saver.aput_writes(config(t), [("a", i)], "task") for i, t in enumerate(threads))
        )
        assert await stored(saver) == set(threads)
        assert sum(groups) == 20 and max(groups) > 1  # the first alone, the rest together
        # LangGraph runs on copies of the checkpointer: they share the groups
        assert copy.copy(saver)._grouped is saver._grouped
    finally:
        await saver.aclose()
        await pool.close()


async def test_a_write_that_fails_fails_alone(pg_url: str) -> None:
    saver, pool = await open_saver(pg_url)
    try:
        bad: RunnableConfig = {"configurable": {"thread_id": "bad", "checkpoint_ns": ""}}
        results = await asyncio.gather(
            saver.aput_writes(config("one"), [("a", 1)], "task"),
            saver.aput_writes(config("two"), [("a", 2)], "task"),
            saver.aput_writes(bad, [("a", 3)], "task"),  # no checkpoint_id: a KeyError
            saver.aput_writes(config("three"), [("a", 4)], "task"),
            return_exceptions=True,
        )
        assert [type(r) for r in results] == [type(None), type(None), KeyError, type(None)]
        assert await stored(saver) == {"one", "two", "three"}
    finally:
        await saver.aclose()
        await pool.close()
