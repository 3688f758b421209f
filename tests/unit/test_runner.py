"""bot/runner.py's LocalRunner against real small graphs on a real checkpointer: what a
thread waits at, a stream that pauses at every parallel branch's interrupt once, progress
keyed by task and position, a resume that finishes, a resume value the graph refuses, a
graph's own failure raised as itself, and a thread cut between a step's writes and its
checkpoint going on from those writes."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send, interrupt
from pydantic import BaseModel, Field

from bot.runner import (
    Event,
    Finished,
    GraphThread,
    LocalRunner,
    Paused,
    Progress,
    ResumeRefused,
)


class Refund(BaseModel):
    amount: int = Field(ge=1)


class State(TypedDict, total=False):
    item: str
    results: Annotated[list[str], operator.add]
    outcome: dict[str, Any]


def fan_out() -> Any:
    """Two parallel branches, each asking, then a step that reports progress twice."""

    def fan(state: State) -> list[Send]:
        return [Send("ask", {"item": x}) for x in ("api", "web")]

    def ask(state: State) -> State:
        item = state["item"]
        return {"results": [f"{item}:{interrupt(f'Ship {item}?')}"]}

    def ship(state: State) -> State:
        write = get_stream_writer()
        write({"progress": "rolling out"})
        write({"progress": "done"})
        return {"outcome": {"status": "succeeded", "text": ",".join(sorted(state["results"]))}}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_node("ship", ship)
    g.add_conditional_edges(START, fan, ["ask"])
    g.add_edge("ask", "ship")
    g.add_edge("ship", END)
    return g.compile(checkpointer=InMemorySaver())


def form() -> Any:
    def ask(state: State) -> State:
        answer = interrupt({"order": "A-1"}, response_schema=Refund)
        return {"outcome": {"status": "succeeded", "text": str(answer.amount)}}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g.compile(checkpointer=InMemorySaver())


def broken() -> Any:
    def fail(state: State) -> State:
        raise RuntimeError("the graph's own bug")

    g = StateGraph(State)
    g.add_node("fail", fail)
    g.add_edge(START, "fail")
    g.add_edge("fail", END)
    return g.compile(checkpointer=InMemorySaver())


async def events(runner: LocalRunner, thread: GraphThread, **how: Any) -> list[Event]:
    return [e async for e in runner.stream(thread, **how)]


async def test_a_stream_pauses_at_every_branch_then_resumes_to_the_end() -> None:
    runner = LocalRunner({"ship": fan_out()})
    thread = GraphThread("t1", "ship", 1)
    fresh = await runner.state(thread)
    assert not fresh.started and fresh.pending == ()

    (paused,) = await events(runner, thread, start={})
    assert isinstance(paused, Paused)
    asked = {p.value: p for p in paused.interrupts}
    assert sorted(asked) == ["Ship api?", "Ship web?"]  # each branch's interrupt, once
    assert all(p.response_schema is None for p in paused.interrupts)

    now = await runner.state(thread)
    assert now.started and {p.id for p in now.pending} == {p.id for p in paused.interrupts}

    resume = {p.id: "yes" if p.value == "Ship api?" else "no" for p in paused.interrupts}
    *progress, end = await events(runner, thread, resume=resume)
    assert [p.line for p in progress if isinstance(p, Progress)] == ["rolling out", "done"]
    keys = [p.key for p in progress if isinstance(p, Progress)]
    task = keys[0].rsplit(":", 1)[0]
    assert keys == [f"{task}:0", f"{task}:1"]  # the task's id and the line's position
    assert isinstance(end, Finished)
    assert end.values["outcome"]["text"] == "api:yes,web:no"
    assert (await runner.state(thread)).pending == ()


async def test_a_refused_resume_value_is_raised_as_its_refusal_and_saves_nothing() -> None:
    runner = LocalRunner({"form": form()})
    thread = GraphThread("t2", "form", 1)
    (paused,) = await events(runner, thread, start={})
    assert isinstance(paused, Paused)
    (pending,) = paused.interrupts
    assert pending.value == {"order": "A-1"}
    assert pending.response_schema is not None and "amount" in str(pending.response_schema)

    with pytest.raises(ResumeRefused) as refused:
        await events(runner, thread, resume={pending.id: {"amount": 0}})
    assert refused.value.errors and any(name == "amount" for name, _ in refused.value.errors)
    assert [p.id for p in (await runner.state(thread)).pending] == [pending.id]

    (end,) = await events(runner, thread, resume={pending.id: {"amount": 5}})
    assert isinstance(end, Finished) and end.values["outcome"]["text"] == "5"


async def test_a_failing_graph_raises_its_own_exception() -> None:
    runner = LocalRunner({"broken": broken()})
    with pytest.raises(RuntimeError, match="own bug"):
        await events(runner, GraphThread("t3", "broken", 1), start={})


class CountedSaver(InMemorySaver):
    """Counts the reads of a thread's checkpoint that reach the saver."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def aget_tuple(self, config: Any) -> Any:
        self.reads += 1
        return await super().aget_tuple(config)


async def test_a_stream_after_a_checked_state_reads_no_checkpoint_again() -> None:
    """The engine checks a thread's state before it resumes; the stream that follows goes
    on from that read (one read of the checkpoint per resume, not two) and ends as a stream
    that reads for itself does."""
    saver = CountedSaver()
    g = StateGraph(State)
    g.add_node("ask", lambda s: {"outcome": {"status": "succeeded", "text": interrupt("Ship?")}})
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    runner = LocalRunner({"ship": g.compile(checkpointer=saver)})
    for n, after in enumerate((True, False)):
        thread = GraphThread(f"t{n}", "ship", 1)
        (paused,) = await events(runner, thread, start={})
        assert isinstance(paused, Paused)
        state = await runner.state(thread)
        (pending,) = state.pending
        saver.reads = 0
        how: dict[str, Any] = {"after": state} if after else {}
        (end,) = await events(runner, thread, resume={pending.id: "yes"}, **how)
        assert isinstance(end, Finished) and end.values["outcome"]["text"] == "yes"
        assert saver.reads == (0 if after else 1)
        assert (await runner.state(thread)).pending == ()


async def test_a_thread_that_already_ended_is_continued_to_its_own_final_values() -> None:
    """A replica killed after the graph's last checkpoint, before the run was marked done:
    the process that takes the run over continues it from that checkpoint, where nothing is
    left to run, so LangGraph streams nothing. The end is still the thread's own values (its
    outcome, not a bare "Done.")."""
    runner = LocalRunner({"form": form()})
    thread = GraphThread("t4", "form", 1)
    (paused,) = await events(runner, thread, start={})
    assert isinstance(paused, Paused)
    (pending,) = paused.interrupts
    (end,) = await events(runner, thread, resume={pending.id: {"amount": 7}})
    assert isinstance(end, Finished)

    taken_over = await runner.state(GraphThread("t4", "form", 2))
    assert taken_over.started and taken_over.pending == ()
    (again,) = await events(runner, GraphThread("t4", "form", 2), after=taken_over)
    assert isinstance(again, Finished)
    assert again.values["outcome"] == {"status": "succeeded", "text": "7"}


class ProcessDied(Exception):
    """Stands for a process killed while it saved a checkpoint."""


class CutSaver(InMemorySaver):
    """LangGraph's in-memory saver that never saves the checkpoint of step ``cut_at``, as a
    process killed while it wrote it: the writes of the step before are saved, the
    checkpoint after them is not."""

    def __init__(self) -> None:
        super().__init__()
        self.cut_at: int | None = None

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if metadata.get("step") == self.cut_at:
            raise ProcessDied
        return await super().aput(config, checkpoint, metadata, new_versions)


@pytest.mark.parametrize("after", [True, False], ids=["after-state", "own-read"])
async def test_a_thread_cut_between_a_steps_writes_and_its_checkpoint_goes_on_from_them(
    after: bool,
) -> None:
    """A replica killed after the answered node's writes were saved, before the checkpoint
    that follows them: the thread waits at nothing, and whoever takes the run over
    continues it. The stream goes on from those writes: the next step runs once and the
    end is the graph's own outcome. (With ``after``, it used to end at once with the values
    from before the answer, and the run showed "Done." without deploying: ``state`` had
    handed the stream the checkpoint LangGraph's ``aget_state`` had applied the writes to.)"""
    saver = CutSaver()
    shipped: list[int] = []

    def ship(state: State, config: RunnableConfig) -> State:
        shipped.append(int(config["configurable"]["run_attempt"]))
        return {"results": ["shipped"]}

    g = StateGraph(State)
    g.add_node("ask", lambda s: {"item": str(interrupt("Ship?"))})
    g.add_node("ship", ship)
    g.add_node("report", lambda s: {"outcome": {"status": "succeeded", "text": s["item"]}})
    g.add_edge(START, "ask")
    g.add_edge("ask", "ship")
    g.add_edge("ship", "report")
    g.add_edge("report", END)
    runner = LocalRunner({"ship": g.compile(checkpointer=saver)})
    thread = GraphThread(f"cut-{after}", "ship", 1)
    (paused,) = await events(runner, thread, start={})
    assert isinstance(paused, Paused)
    (pending,) = paused.interrupts
    latest = await saver.aget_tuple({"configurable": {"thread_id": thread.thread_id}})
    assert latest is not None
    saver.cut_at = latest.metadata["step"] + 1  # the checkpoint after "ask" answers

    with pytest.raises(ProcessDied):
        await events(runner, thread, resume={pending.id: "yes"})
    saver.cut_at = None
    assert shipped == []

    taken_over = GraphThread(thread.thread_id, "ship", 2)
    state = await runner.state(taken_over)
    assert state.started and state.pending == ()  # the answer is in the saved writes
    how: dict[str, Any] = {"after": state} if after else {}
    (end,) = await events(runner, taken_over, **how)
    assert isinstance(end, Finished)
    assert end.values["outcome"] == {"status": "succeeded", "text": "yes"}
    assert end.values["results"] == ["shipped"]
    assert shipped == [2]  # once, by the process that took the run over
