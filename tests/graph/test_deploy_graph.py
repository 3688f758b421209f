"""The /deploy graph with a real AsyncSqliteSaver on a temporary file."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from graphs.approval import Decision
from graphs.deploy import (
    CommandBackend,
    DeployArgs,
    DeployOptions,
    SimulatedBackend,
    build_graph,
)
from tests.faults.support import gone_within

INPUT = {"service": "api", "version": "1.4.2", "env": "prod", "requested_by": "U0ALICE"}


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    async with aiosqlite.connect(tmp_path / "g.db") as conn:
        s = AsyncSqliteSaver(conn)
        await s.setup()
        yield s


async def run(graph: Any, value: Any, cfg: dict[str, Any]) -> list[str]:
    return [c["progress"] async for c in graph.astream(value, cfg, stream_mode="custom")]


async def test_approve_runs_deploy_and_reports(saver: AsyncSqliteSaver) -> None:
    opts = DeployOptions(backend=SimulatedBackend(step_seconds=0))
    g = build_graph(opts).compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "t1"}}
    assert await run(g, INPUT, cfg) == []
    state = await g.aget_state(cfg)
    (intr,) = state.interrupts
    assert intr.value["fields"][0] == ["Service", "api"]
    resume = {
        "choice": "approve",
        "approved": True,
        "decided_by": "U0BOB",
        "comment": None,
        "decided_at": "2026-11-21T12:03:00+00:00",
    }
    progress = await run(g, Command(resume={intr.id: resume}), cfg)
    assert len(progress) == 3
    state = await g.aget_state(cfg)
    assert not state.next and not state.interrupts
    assert state.values["outcome"]["status"] == "succeeded"
    assert Decision.from_resume(state.values["decision"]).decided_by == "U0BOB"


async def test_reject_skips_deploy(saver: AsyncSqliteSaver) -> None:
    g = build_graph(DeployOptions(backend=SimulatedBackend(step_seconds=0))).compile(
        checkpointer=saver
    )
    cfg = {"configurable": {"thread_id": "t2"}}
    await run(g, INPUT, cfg)
    (intr,) = (await g.aget_state(cfg)).interrupts
    progress = await run(
        g,
        Command(
            resume={
                intr.id: {
                    "choice": "reject",
                    "approved": False,
                    "decided_by": "U0BOB",
                    "comment": "not today",
                }
            }
        ),
        cfg,
    )
    assert progress == []
    values = (await g.aget_state(cfg)).values
    assert values["outcome"]["status"] == "rejected"
    assert "result" not in values


async def test_interrupt_id_is_stable_across_a_replay(tmp_path: Path) -> None:
    """A new process (new connection, new compiled graph) sees the same interrupt id, and
    invoking with no input replays the node to the same interrupt: the basis for posting once."""
    db = tmp_path / "r.db"
    opts = DeployOptions(backend=SimulatedBackend(step_seconds=0))
    cfg = {"configurable": {"thread_id": "t3"}}
    async with aiosqlite.connect(db) as conn:
        s = AsyncSqliteSaver(conn)
        await s.setup()
        g = build_graph(opts).compile(checkpointer=s)
        await run(g, INPUT, cfg)
        first = (await g.aget_state(cfg)).interrupts[0].id
    async with aiosqlite.connect(db) as conn:
        g = build_graph(opts).compile(checkpointer=AsyncSqliteSaver(conn))
        assert (await g.aget_state(cfg)).interrupts[0].id == first
        await run(g, None, cfg)
        assert [i.id for i in (await g.aget_state(cfg)).interrupts] == [first]


def test_decision_from_bare_values() -> None:
    assert Decision.from_resume(True).approved
    assert not Decision.from_resume("reject").approved
    assert Decision.from_resume("approve").approved


ARGS = DeployArgs("api", "1.4.2", "prod")


async def test_command_backend_streams_lines(tmp_path: Path) -> None:
    script = tmp_path / "deploy.py"
    script.write_text("import sys\nprint('deploying', *sys.argv[1:], flush=True)\nprint('done')\n")
    lines: list[str] = []
    result = await CommandBackend(
        [sys.executable, str(script), "{service}", "{version}", "{env}"]
    ).deploy(ARGS, lines.append)
    assert result.ok and result.detail == "done"
    assert lines == ["deploying api 1.4.2 prod", "done"]


async def test_command_backend_failure_and_timeout(tmp_path: Path) -> None:
    fail = tmp_path / "fail.py"
    fail.write_text("import sys\nprint('no capacity')\nsys.exit(3)\n")
    result = await CommandBackend([sys.executable, str(fail)]).deploy(ARGS, lambda _: None)
    assert not result.ok and result.detail == "exit code 3: no capacity"

    hang = tmp_path / "hang.py"
    hang.write_text("import time\nprint('starting', flush=True)\ntime.sleep(60)\n")
    lines: list[str] = []
    result = await CommandBackend([sys.executable, str(hang)], timeout_seconds=0.5).deploy(
        ARGS, lines.append
    )
    assert not result.ok and "timed out" in result.detail
    assert lines == ["starting"]

    missing = await CommandBackend([str(tmp_path / "nope")]).deploy(ARGS, lambda _: None)
    assert not missing.ok and "could not start" in missing.detail


async def test_a_cut_command_step_kills_the_whole_process_group(tmp_path: Path) -> None:
    """Cancelling the step (a shutdown, a run taken away) kills the command and what it
    started (its process group), not the command alone."""
    pids = tmp_path / "pids"
    script = tmp_path / "deploy.sh"
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $$ $! > {pids}\necho started\nwait\n")
    script.chmod(0o755)
    step = asyncio.create_task(CommandBackend([str(script)]).deploy(ARGS, lambda _: None))
    for _ in range(500):
        if pids.exists() and len(pids.read_text().split()) == 2:
            break
        await asyncio.sleep(0.01)
    shell, child = (int(p) for p in pids.read_text().split())
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):  # a child left holding the pipe would hold it up
            await step
    assert await gone_within([shell, child], 1.0), "the command's child outlived the step"
