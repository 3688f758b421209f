"""The remote fixture and its graphs over the real wire, with langgraph-sdk only (no bot): what a
LangGraph Server (``langgraph dev``, langgraph-api 0.16.7) sends and takes, what it refuses, and
what the served graphs really did (their own tool log). Each test works on threads of its own,
tagged in their metadata; ``-s`` shows the figures some of them print."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import AuthenticationError, ConflictError, NotFoundError

from tests.remote.conftest import SERVER_KEY
from tests.remote.server import LangGraphServer

T = TypeVar("T")
LONG = bool(os.environ.get("LONG_TESTS"))
TASK = "email the team\nstatus: shipping today"  # two tool calls: send_email, post_status


async def eventually(predicate: Callable[[], T], timeout: float = 10.0) -> T:  # noqa: ASYNC109
    """Poll a sync predicate until it returns something truthy (at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {timeout} s: {predicate}")


async def new_thread(client: LangGraphClient, **metadata: Any) -> str:
    thread = await client.threads.create(metadata={"test": uuid.uuid4().hex, **metadata})
    return thread["thread_id"]


async def stream(
    client: LangGraphClient, thread_id: str, graph: str, **run: Any
) -> list[tuple[str, Any]]:
    """One run streamed to its end (an interrupt, or done): ``(event, data)`` in order."""
    modes = ["custom", "values", "tasks"]
    parts = client.runs.stream(
        thread_id, graph, stream_mode=modes, multitask_strategy="reject", **run
    )
    return [(p.event, p.data) async for p in parts]


async def pending(client: LangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    """The thread's pending interrupts, from ``Thread.interrupts`` ({task_id: [...]})."""
    thread = await client.threads.get(thread_id)
    return [i for found in thread["interrupts"].values() for i in found]


async def interrupted_since(
    client: LangGraphClient, metadata: dict[str, Any], cursor: str | None, page: int = 2
) -> tuple[list[dict[str, Any]], str | None]:
    """Interrupted threads updated after ``cursor`` (an ``updated_at``), newest first, and the
    next cursor. The server has no "updated after" filter: page by ``offset`` through
    ``sort_by="updated_at"`` descending until a thread is not newer than the cursor."""
    after = datetime.fromisoformat(cursor) if cursor else None
    found: list[dict[str, Any]] = []
    for offset in range(0, 1000, page):
        threads = await client.threads.search(
            status="interrupted",
            metadata=metadata,
            sort_by="updated_at",
            sort_order="desc",
            limit=page,
            offset=offset,
        )
        newer = [
            t for t in threads if after is None or datetime.fromisoformat(t["updated_at"]) > after
        ]
        found += newer
        if len(threads) < page or len(newer) < len(threads):
            break
    return found, (found[0]["updated_at"] if found else cursor)


async def test_a_run_streams_progress_and_its_interrupt_then_resumes_by_id(
    client: LangGraphClient, langgraph_server: LangGraphServer
) -> None:
    tid = await new_thread(client, requester="U0ALICE")
    parts = await stream(client, tid, "plain", input={"subject": "api 1.4.2"})
    assert [d for e, d in parts if e == "custom"] == [{"progress": "checking"}]
    values = [d for e, d in parts if e == "values"]
    (asked,) = values[-1]["__interrupt__"]  # plain dicts over the wire
    assert asked == {"value": "Ship it?", "id": asked["id"], "response_schema": None}
    task = next(d for e, d in parts if e == "tasks" and d.get("interrupts"))
    assert task["name"] == "ask_plain" and task["interrupts"][0]["id"] == asked["id"]
    # the thread as a poller finds it: interrupted, its interrupts by task id
    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted"
    assert thread["interrupts"] == {task["id"]: [{"id": asked["id"], "value": "Ship it?"}]}
    assert thread["metadata"]["requester"] == "U0ALICE"
    assert thread["metadata"]["graph_id"] == "plain"  # the server adds graph and assistant ids
    assert langgraph_server.tool_calls(tid) == []

    parts = await stream(client, tid, "plain", command={"resume": {asked["id"]: "approve"}})
    # the node runs again from its start: its "before" event comes again
    assert [d for e, d in parts if e == "custom"] == [
        {"progress": "checking"},
        {"progress": "shipped"},
    ]
    assert [d for e, d in parts if e == "values"][-1] == {
        "subject": "api 1.4.2",
        "answer": "approve",
    }
    thread = await client.threads.get(tid)
    assert (thread["status"], thread["interrupts"]) == ("idle", {})
    calls = langgraph_server.tool_calls(tid)
    assert [(c["name"], c["args"]) for c in calls] == [("ship", {"answer": "approve"})]


async def test_interrupted_threads_are_found_by_search_with_a_cursor(
    client: LangGraphClient,
) -> None:
    tag = {"test": uuid.uuid4().hex}
    first = [await new_thread(client, **tag) for _ in range(3)]
    await asyncio.gather(*(client.runs.wait(t, "plain", input={}) for t in first))
    found, cursor = await interrupted_since(client, tag, None)  # over two pages
    assert sorted(t["thread_id"] for t in found) == sorted(first)
    updated = [datetime.fromisoformat(t["updated_at"]) for t in found]
    assert updated == sorted(updated, reverse=True)  # newest first
    assert all(t["status"] == "interrupted" and t["interrupts"] for t in found)
    # one answered (no longer interrupted), one new: only the new one is after the cursor
    (answered,) = await pending(client, first[0])
    newest = await new_thread(client, **tag)
    await asyncio.gather(
        client.runs.wait(first[0], "plain", command={"resume": {answered["id"]: "reject"}}),
        client.runs.wait(newest, "plain", input={}),
    )
    found, cursor2 = await interrupted_since(client, tag, cursor)
    assert [t["thread_id"] for t in found] == [newest]
    assert cursor and cursor2 and datetime.fromisoformat(cursor2) > datetime.fromisoformat(cursor)
    found, _ = await interrupted_since(client, tag, cursor2)
    assert found == []


async def test_hitl_per_call_one_interrupt_per_call_edit_and_respond(
    client: LangGraphClient, langgraph_server: LangGraphServer
) -> None:
    tid = await new_thread(client)
    parts = await stream(client, tid, "hitl_per_call", input={"messages": [("user", TASK)]})
    # both gated calls are pending at once, one task each; each `values` chunk carries only
    # the interrupt just raised, so a client must collect them all (or read the thread)
    chunks = [d["__interrupt__"] for e, d in parts if e == "values" and "__interrupt__" in d]
    assert [len(c) for c in chunks] == [1, 1]
    asked = {i["value"]["name"]: i for i in await pending(client, tid)}
    assert sorted(asked) == ["post_status", "send_email"]
    assert sorted(i["id"] for c in chunks for i in c) == sorted(i["id"] for i in asked.values())
    thread = await client.threads.get(tid)
    assert len(thread["interrupts"]) == 2  # two task ids
    email = asked["send_email"]["value"]
    assert email["type"] == "tool_approval" and email["tool_call_id"].startswith("call-0-")
    assert email["args"] == {
        "to": "team@example.com",
        "subject": "email the team",
        "body": "email the team",
    }
    schema = next(i for c in chunks for i in c if i["value"]["name"] == "send_email")
    assert {"approve", "edit", "reject", "respond"} == {
        d["properties"]["type"]["const"]
        for name, d in schema["response_schema"]["$defs"].items()
        if name.endswith("Decision")
    }

    # one answered: the other stays pending
    respond = {"type": "respond", "message": "no status today"}
    await client.runs.wait(
        tid, "hitl_per_call", command={"resume": {asked["post_status"]["id"]: respond}}
    )
    assert [i["id"] for i in await pending(client, tid)] == [asked["send_email"]["id"]]
    edited = {"to": "ops@example.com", "subject": "Shipping", "body": "Today."}
    edit = {"type": "edit", "edited_action": {"name": "send_email", "args": edited}}
    final = await client.runs.wait(
        tid, "hitl_per_call", command={"resume": {asked["send_email"]["id"]: edit}}
    )
    assert final["messages"][-1]["content"].startswith("Done:")
    assert "no status today" in final["messages"][-1]["content"]
    calls = langgraph_server.tool_calls(tid)
    assert [(c["name"], c["args"]) for c in calls] == [
        ("send_email", edited)
    ]  # post_status never ran


async def test_hitl_batched_one_interrupt_for_the_turn(
    client: LangGraphClient, langgraph_server: LangGraphServer
) -> None:
    tid = await new_thread(client)
    parts = await stream(client, tid, "hitl_batched", input={"messages": [("user", TASK)]})
    (asked,) = [d for e, d in parts if e == "values"][-1]["__interrupt__"]
    assert asked["response_schema"] is None
    requests = asked["value"]["action_requests"]
    assert [(r["name"], r["args"]) for r in requests] == [
        (
            "send_email",
            {"to": "team@example.com", "subject": "email the team", "body": "email the team"},
        ),
        ("post_status", {"text": "shipping today"}),
    ]
    assert [c["allowed_decisions"] for c in asked["value"]["review_configs"]] == [
        ["approve", "edit", "reject", "respond"]
    ] * 2
    edited = {"to": "ops@example.com", "subject": "Shipping", "body": "Today."}
    decisions = [
        {"type": "edit", "edited_action": {"name": "send_email", "args": edited}},
        {"type": "reject", "message": "not now"},
    ]
    await client.runs.wait(
        tid, "hitl_batched", command={"resume": {asked["id"]: {"decisions": decisions}}}
    )
    calls = langgraph_server.tool_calls(tid)
    assert [(c["name"], c["args"]) for c in calls] == [("send_email", edited)]
    assert await pending(client, tid) == []


async def test_a_form_refuses_a_wrong_answer_and_takes_a_right_one(
    client: LangGraphClient, langgraph_server: LangGraphServer
) -> None:
    tid = await new_thread(client)
    parts = await stream(client, tid, "form", input={"subject": "A-7"})
    (asked,) = [d for e, d in parts if e == "values"][-1]["__interrupt__"]
    assert asked["value"] == {"order": "A-7"}
    schema = asked["response_schema"]  # JSON Schema, as Pydantic writes it
    assert schema["title"] == "Refund" and schema["required"] == ["amount", "reason"]
    assert schema["properties"]["amount"] | {} == {
        "description": "Euros to refund",
        "maximum": 500,
        "minimum": 1,
        "title": "Amount",
        "type": "integer",
    }
    # A wrong answer fails the run: runs.wait raises a bare Exception("ValidationError: ..."),
    # the thread's status becomes "error" with no interrupts listed, so a search for
    # interrupted threads no longer finds it; the checkpoint keeps the interrupt pending.
    wrong = {asked["id"]: {"amount": 900, "reason": "late"}}
    with pytest.raises(Exception, match=r"^ValidationError: 1 validation error for Refund"):
        await client.runs.wait(tid, "form", command={"resume": wrong})
    thread = await client.threads.get(tid)
    assert (thread["status"], thread["interrupts"]) == ("error", {})
    assert await client.threads.search(status="interrupted", metadata=thread["metadata"]) == []
    state = await client.threads.get_state(tid)
    assert [i["id"] for i in state["interrupts"]] == [asked["id"]]
    right = {asked["id"]: {"amount": 90, "reason": "late"}}
    final = await client.runs.wait(tid, "form", command={"resume": right})
    assert final["answer"] == {"amount": 90, "reason": "late", "note": ""}
    calls = langgraph_server.tool_calls(tid)
    assert [(c["name"], c["args"]) for c in calls] == [("refund", final["answer"])]


async def test_the_projects_request_and_an_agent_inbox_request(
    client: LangGraphClient, langgraph_server: LangGraphServer
) -> None:
    tid = await new_thread(client)
    await client.runs.wait(tid, "approval", input={"subject": "api 1.4.2"})
    (asked,) = await pending(client, tid)
    assert asked["value"]["kind"] == "slack_approval" and asked["value"]["version"] == 1
    assert asked["value"]["title"] == "Deploy api 1.4.2?"
    assert [c["id"] for c in asked["value"]["choices"]] == ["approve", "reject"]
    decision = {"choice": "reject", "approved": False, "decided_by": "U0BOB", "comment": "no"}
    final = await client.runs.wait(tid, "approval", command={"resume": {asked["id"]: decision}})
    assert final["answer"] == {"choice": "reject", "approved": False, "by": "U0BOB"}
    assert [c["name"] for c in langgraph_server.tool_calls(tid)] == ["deploy"]

    tid = await new_thread(client)
    await client.runs.wait(tid, "inbox", input={})
    (asked,) = await pending(client, tid)
    (request,) = asked["value"]
    assert request["action_request"]["action"] == "send_email"
    assert request["config"]["allow_respond"] is True and request["description"]
    answer = [{"type": "response", "args": "next week"}]
    await client.runs.wait(tid, "inbox", command={"resume": {asked["id"]: answer}})
    calls = langgraph_server.tool_calls(tid)
    assert [(c["name"], c["args"]) for c in calls] == [("inbox", {"response": answer})]


async def test_a_second_resume_while_the_first_runs_is_refused(
    client: LangGraphClient, langgraph_server: LangGraphServer, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    tid = await new_thread(client)
    await client.runs.wait(tid, "plain", input={"hold": str(release)})
    (asked,) = await pending(client, tid)
    first = await client.runs.create(
        tid, "plain", command={"resume": {asked["id"]: "approve"}}, multitask_strategy="reject"
    )
    await eventually(lambda: langgraph_server.tool_calls(tid))  # the first is in its step
    with pytest.raises(ConflictError) as refused:
        await client.runs.create(
            tid, "plain", command={"resume": {asked["id"]: "reject"}}, multitask_strategy="reject"
        )
    assert refused.value.response.status_code == 409
    # runs.wait takes another path in the SDK: the same refusal is a bare httpx error
    with pytest.raises(httpx.HTTPStatusError) as refused_wait:
        await client.runs.wait(
            tid, "plain", command={"resume": {asked["id"]: "reject"}}, multitask_strategy="reject"
        )
    assert refused_wait.value.response.status_code == 409
    assert not isinstance(refused_wait.value, ConflictError)
    release.touch()
    await client.runs.join(tid, first["run_id"])
    calls = langgraph_server.tool_calls(tid)
    assert [(c["name"], c["args"]) for c in calls] == [("ship", {"answer": "approve"})]


async def test_a_resume_after_the_answer_is_taken_and_acts_no_more(
    client: LangGraphClient, langgraph_server: LangGraphServer
) -> None:
    """Nothing on the server refuses a resume of an interrupt no longer pending (0.16.7 knows
    no ``strict_resume``; the SDK sends it and it is ignored): the run is created, succeeds,
    and the graph does not act again; keyed by id, it answers no other interrupt. But while
    another interrupt of the thread is pending, the server then lists the answered one as
    pending again (``Thread.interrupts``, so ``threads.search``), where ``get_state`` does
    not: a poller must not take it for a new question."""
    tid = await new_thread(client)
    await client.runs.wait(tid, "hitl_per_call", input={"messages": [("user", TASK)]})
    asked = {i["value"]["name"]: i["id"] for i in await pending(client, tid)}
    approve = {"type": "approve"}
    status_answer = {"resume": {asked["post_status"]: approve}}
    await client.runs.wait(tid, "hitl_per_call", command=status_answer)
    assert [i["id"] for i in await pending(client, tid)] == [asked["send_email"]]
    for extra in ({}, {"strict_resume": True}):
        again = await client.runs.create(
            tid, "hitl_per_call", command=status_answer, multitask_strategy="reject", **extra
        )
        await client.runs.join(tid, again["run_id"])
        assert (await client.runs.get(tid, again["run_id"]))["status"] == "success"
    assert [c["name"] for c in langgraph_server.tool_calls(tid)] == ["post_status"]
    listed = await client.threads.search(status="interrupted", ids=[tid])
    assert sorted(i["id"] for v in listed[0]["interrupts"].values() for i in v) == sorted(
        asked.values()
    )
    state = await client.threads.get_state(tid)
    assert [i["id"] for i in state["interrupts"]] == [asked["send_email"]]

    email_answer = {"resume": {asked["send_email"]: approve}}
    done = await client.runs.wait(tid, "hitl_per_call", command=email_answer)
    stale = await client.runs.wait(tid, "hitl_per_call", command=email_answer)
    assert stale == done and done["messages"][-1]["content"].startswith("Done:")
    thread = await client.threads.get(tid)
    assert (thread["status"], thread["interrupts"]) == ("idle", {})
    assert [c["name"] for c in langgraph_server.tool_calls(tid)] == ["post_status", "send_email"]
    runs = await client.runs.list(tid, limit=20)
    assert Counter(r["status"] for r in runs) == {"success": 6}


@pytest.mark.parametrize(
    "strategy",
    [
        "reject",
        # the SDK's default; its twenty runs take ~0.5 s each, one after another (~12 s)
        pytest.param(None, marks=pytest.mark.skipif(not LONG, reason="LONG_TESTS=1 runs it")),
    ],
)
async def test_twenty_resumes_at_once_on_one_thread(
    client: LangGraphClient, langgraph_server: LangGraphServer, strategy: str | None
) -> None:
    """What exactly-once must guard: with "reject" the server refuses the resumes that find a
    run active (409); with the default ("enqueue") it queues all twenty, and each later one
    finds nothing pending. Either way the graph acts once, on the first run's answer."""
    tid = await new_thread(client)
    await client.runs.wait(tid, "plain", input={})
    (asked,) = await pending(client, tid)
    options = {} if strategy is None else {"multitask_strategy": strategy}

    async def resume(n: int) -> tuple[str, dict[str, Any]] | None:
        answer = f"answer {n}"
        try:
            run = await client.runs.create(
                tid, "plain", command={"resume": {asked["id"]: answer}}, **options
            )
        except ConflictError:
            return None
        return answer, run

    began = time.monotonic()
    created = [r for r in await asyncio.gather(*(resume(n) for n in range(20))) if r]
    took = time.monotonic() - began
    for _, run in created:
        await client.runs.join(tid, run["run_id"])
    statuses = Counter(r["status"] for r in await client.runs.list(tid, limit=50))
    calls = langgraph_server.tool_calls(tid)
    print(
        f"multitask_strategy={strategy}: {len(created)} of 20 resumes created in {took:.2f} s, "
        f"runs on the thread {dict(statuses)}, the graph acted {len(calls)}x"
    )
    first_answer, _ = min(created, key=lambda c: c[1]["created_at"])
    assert [(c["name"], c["args"]) for c in calls] == [("ship", {"answer": first_answer})]
    if strategy == "reject":
        assert 1 <= len(created) < 20
    else:
        assert len(created) == 20 and statuses == {"success": 21}


async def test_a_wrong_or_missing_key_is_refused(langgraph_server: LangGraphServer) -> None:
    for key in ("wrong-key", SERVER_KEY[:-1], ""):
        sdk = langgraph_server.client(api_key=key)
        try:
            with pytest.raises(AuthenticationError) as refused:
                await sdk.threads.search(limit=1)
            assert refused.value.response.status_code == 401
            with pytest.raises(AuthenticationError):
                await sdk.threads.create()
            with pytest.raises(AuthenticationError):
                async for _ in sdk.runs.stream(None, "plain", input={}):
                    pass
            with pytest.raises(httpx.HTTPStatusError) as refused_wait:  # not AuthenticationError
                await sdk.runs.wait(None, "plain", input={})
            assert refused_wait.value.response.status_code == 401
        finally:
            await sdk.aclose()


async def test_sigterm_keeps_threads_sigkill_loses_what_was_not_flushed(
    own_server: LangGraphServer,
) -> None:
    """SIGTERM saves every thread, and a new start has them back, interrupted and resumable.
    SIGKILL loses whatever changed since the in-memory runtime last wrote its pickles (every
    10 s from its start): a thread created since is gone (404), and one answered since is
    back at its interrupt, though its graph acted on the answer."""
    started = await asyncio.to_thread(own_server.start)
    sdk = own_server.client()
    try:
        tag = {"test": uuid.uuid4().hex}
        kept = await new_thread(sdk, **tag)
        await sdk.runs.wait(kept, "plain", input={})
        (asked,) = await pending(sdk, kept)
    finally:
        await sdk.aclose()
    stopped = await asyncio.to_thread(own_server.stop)
    restarted = await asyncio.to_thread(own_server.start)
    sdk = own_server.client()
    try:
        found = await sdk.threads.search(status="interrupted", metadata=tag)
        assert [t["thread_id"] for t in found] == [kept]
        assert await pending(sdk, kept) == [asked]
        answer = {"resume": {asked["id"]: "approve"}}
        assert (await sdk.runs.wait(kept, "plain", command=answer))["answer"] == "approve"
        lost = await new_thread(sdk)
        await sdk.runs.wait(lost, "plain", input={})
        (lost_asked,) = await pending(sdk, lost)
    finally:
        await sdk.aclose()
    await asyncio.to_thread(own_server.kill)
    unflushed = time.monotonic() - own_server.started_at < 10  # no flush since the restart
    again = await asyncio.to_thread(own_server.start)
    sdk = own_server.client()
    try:
        if unflushed:
            assert await pending(sdk, kept) == [asked]  # its answer lost
            with pytest.raises(NotFoundError):
                await sdk.threads.get(lost)
            lost_answer = {"resume": {lost_asked["id"]: "approve"}}
            with pytest.raises(NotFoundError):
                await sdk.runs.create(lost, "plain", command=lost_answer)
        else:  # a flush came between: both are back as they were
            assert (await sdk.threads.get(kept))["status"] == "idle"
            assert await pending(sdk, lost) == [lost_asked]
    finally:
        await sdk.aclose()
    assert [(c["name"], c["thread_id"]) for c in own_server.tool_calls()] == [("ship", kept)]
    print(
        f"start {started:.2f} s, SIGTERM exit {stopped:.2f} s, restart {restarted:.2f} s, "
        f"start after SIGKILL {again:.2f} s; killed before the first flush: {unflushed}"
    )
