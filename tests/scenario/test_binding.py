"""An approval is bound to the exact request it showed (bot/integrity.py's digest): a node that
re-runs and raises a known interrupt id with another value (here a price read before
``interrupt()``) resumes nothing; the old message says the request changed, the new request is
posted as an approval of its own, a click on the old message never decides it, and approving
the new one resumes once with the new value. Real graphs (parallel ``Send`` branches), real
Bolt over signed HTTP, both backends; the crash in the middle of a re-run is a real SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from bot.integrity import request_digest, short
from bot.localslack import LocalSlack
from bot.model import Ballot
from tests.conftest import BACKENDS, Harness
from tests.reads import audit_events, runs_with_status
from tests.scenario.test_approval_loop import DEPLOYS, buttons, message_text
from tests.scenario.test_cli import BotProcess
from tests.scenario.test_shapes import with_graphs

ENTRY = '''
import json
import operator
import time
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import Send, interrupt

from graphs import GraphSpec

PRICES = {"api": 1, "web": 1}  # what a price lookup answers now (the tests change it)
HERE = Path(__file__).parent


def price(item):
    """The price lookup: a file beside this module when there is one (a bot process), else
    PRICES (a bot in the test's own process)."""
    found = HERE / "prices.json"
    return json.loads(found.read_text())[item] if found.exists() else PRICES[item]


class State(TypedDict, total=False):
    requested_by: str
    item: str
    results: Annotated[list, operator.add]
    outcome: dict


def priced(hold=False):
    def fan(state):
        return [Send("ask", {"item": x}) for x in ("api", "web")]

    def ask(state):
        item = state["item"]
        p = price(item)  # computed again whenever the node re-runs
        decision = interrupt(f"Ship {item} at {p}?")
        if hold and item == "api":  # the process is killed here, mid-step, in one test
            (HERE / "api-holding").touch()
            for _ in range(600):
                if (HERE / "release").exists():
                    break
                time.sleep(0.05)
        return {"results": [f"{item}:{decision['choice']}:{p}"]}

    def done(state):
        return {"outcome": {"status": "succeeded", "text": ", ".join(sorted(state["results"]))}}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_node("done", done)
    g.add_conditional_edges(START, fan, ["ask"])
    g.add_edge("ask", "done")
    return g


specs = [
    GraphSpec("priced", "t", "<t>", lambda text: {}, priced),
    GraphSpec("held", "t", "<t>", lambda text: {}, lambda: priced(hold=True)),
]
'''
MODULE = "myteam_binding"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def prices(tmp_path: Path) -> Iterator[dict[str, int]]:
    """ENTRY on the path; yields its PRICES (change them to change what a re-run computes)."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(ENTRY))
    sys.path.insert(0, str(tmp_path))
    __import__(MODULE)
    yield sys.modules[MODULE].PRICES
    sys.path.remove(str(tmp_path))
    sys.modules.pop(MODULE, None)


@pytest.fixture
async def h(harness: Harness, prices: dict[str, int]) -> Harness:
    await with_graphs(harness, f"{MODULE}:specs")
    return harness


def asking(ws: LocalSlack, question: str) -> list[dict[str, Any]]:
    """The messages in #deploys asking ``question`` (with buttons or not)."""
    return [m for m in ws.messages(DEPLOYS) if question in message_text(m)]


def one(ws: LocalSlack, question: str) -> dict[str, Any] | None:
    found = asking(ws, question)
    return found[-1] if len(found) == 1 else None


def digest_of(question: str) -> str:
    return request_digest(question, None)


async def start(h: Harness) -> tuple[dict[str, Any], dict[str, Any]]:
    d = await h.ws.slash("alice", "/approvals", "run priced", channel=DEPLOYS)
    assert d.ok
    api = await h.wait(lambda: one(h.ws, "Ship api at 1?"))
    web = await h.wait(lambda: one(h.ws, "Ship web at 1?"))
    return api, web


async def events(h: Harness) -> list[dict[str, Any]]:
    return await audit_events(h.bot.runtime.store)


async def test_a_request_that_changed_before_its_decision_is_asked_again(
    h: Harness, prices: dict[str, int]
) -> None:
    api, web = await start(h)
    prices["web"] = 2
    # Deciding one branch re-runs the other: its node computes the price again and raises
    # the same interrupt id with another request.
    await h.ws.click("bob", api, "Approve")
    new = await h.wait(lambda: one(h.ws, "Ship web at 2?"))
    old = await h.wait(
        lambda: (
            (m := one(h.ws, "Ship web at 1?"))
            and "changed before it was decided" in (message_text(m))
            and m
        )
    )
    assert buttons(old) == [] and "Approve" in buttons(new)
    # Each message's context line shows the short form of the digest of what it asks.
    assert f"request `{short(digest_of('Ship web at 1?'))}`" in message_text(old)
    assert f"request `{short(digest_of('Ship web at 2?'))}`" in message_text(new)
    await h.idle()

    # A click on the old message (its buttons as a stale client still shows them) decides
    # nothing: the person is told why, the new request stays open.
    await h.ws.click("bob", web, "Reject")
    note = await h.wait(lambda: h.ws.ephemerals("bob"))
    assert "changed before it was decided" in note[-1]["text"]
    await h.idle()
    assert "Approve" in buttons(one(h.ws, "Ship web at 2?") or {"blocks": []})
    (waiting,) = await runs_with_status(h.bot.runtime.store, "waiting")

    # The new request, approved, resumes once, with the value it showed.
    await h.ws.click("bob", new, "Approve")
    shows = "api:approve:1, web:approve:2"
    await h.wait(lambda: shows in message_text(one(h.ws, "Ship web at 2?") or {"blocks": []}))
    await h.idle()
    (done,) = await runs_with_status(h.bot.runtime.store, "done")
    assert done.run_id == waiting.run_id and done.outcome == {"status": "succeeded", "text": shows}
    assert len(asking(h.ws, "Ship web at 2?")) == 1  # posted once
    audit = await events(h)
    assert [e["event"] for e in audit].count("resumed") == 2  # api, then the new web
    (changed,) = [e for e in audit if e["event"] == "request_changed"]
    new_id = json.loads(changed["detail"])["new_id"]
    assert changed["digest"] == digest_of("Ship web at 1?")
    assert json.loads(changed["detail"])["new_digest"] == digest_of("Ship web at 2?")
    requested = [e for e in audit if e["event"] == "requested" and e["interrupt_id"] == new_id]
    assert requested[0]["digest"] == digest_of("Ship web at 2?")
    (resumed,) = [e for e in audit if e["event"] == "resumed" and e["interrupt_id"] == new_id]
    assert resumed["digest"] == digest_of("Ship web at 2?")
    old_id = changed["interrupt_id"]
    assert [e["event"] for e in audit if e["interrupt_id"] == old_id] == [
        "requested",
        "request_changed",
    ]


async def test_a_claim_resumes_nothing_when_the_pending_request_changed(
    h: Harness, prices: dict[str, int]
) -> None:
    """A decision claimed, then the process stops before resuming it, and meanwhile a re-run
    (a crashed process's continue, cut before it stored what it raised) left another request
    pending under the same id: at resume time nothing is resumed; the request is asked
    again, once."""
    _, web = await start(h)
    web_id = web["blocks"][-1]["elements"][0]["value"]
    old = h.bot
    await old.runner.cleanup()
    result = await old.runtime.store.decide(
        web_id,
        time.time(),
        lambda a, r: Ballot(
            user="U0BOB", choice="approve", approves=True, comment=None, required=1
        ),
        lambda result: [],
        list,
    )
    assert result and result.claimed
    # The graph re-runs its interrupted nodes, as a process continuing the run would, and
    # that process dies before storing what they raised.
    prices["web"] = 2
    graph = old.runtime.engine.runner.local.graphs["priced"]  # type: ignore[attr-defined]
    cfg = {"configurable": {"thread_id": result.run.run_id}}
    async for _ in graph.astream(None, cfg, stream_mode="values"):
        pass
    await old.runtime.close()
    h.bots.remove(old)

    await h.start_bot(
        policy={"graphs": [f"{MODULE}:specs"], "policy": {"default": {"approvers": ["U0BOB"]}}}
    )
    new = await h.wait(lambda: one(h.ws, "Ship web at 2?"))
    await h.wait(
        lambda: "changed before it was decided" in message_text(one(h.ws, "Ship web at 1?") or {})
    )
    await h.idle()
    assert len(asking(h.ws, "Ship web at 2?")) == 1
    superseded = await h.bot.runtime.store.get_approval(web_id)
    assert superseded is not None and superseded.status == "superseded"
    assert [e["event"] for e in await events(h)].count("resumed") == 0
    (waiting,) = await runs_with_status(h.bot.runtime.store, "waiting")
    assert waiting.run_id == result.run.run_id

    api = one(h.ws, "Ship api at 1?")
    assert api is not None
    await h.ws.click("bob", api, "Approve")
    await h.ws.click("bob", new, "Approve")
    shows = "api:approve:1, web:approve:2"
    await h.wait(lambda: shows in message_text(one(h.ws, "Ship web at 2?") or {"blocks": []}))
    await h.idle()
    assert [e["event"] for e in await events(h)].count("resumed") == 2


# -- a real crash ------------------------------------------------------------------------------


def rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        return list(conn.execute(sql, args))


async def pending_requests(tmp_path: Path, db: Path, run_id: str) -> list[Any]:
    """The values pending in the run's checkpoint, read through LangGraph as the bot does."""
    module = __import__(MODULE)
    async with aiosqlite.connect(db) as conn:
        graph = module.priced().compile(checkpointer=AsyncSqliteSaver(conn))
        state = await graph.aget_state({"configurable": {"thread_id": run_id}})
    return sorted(str(i.value) for i in state.interrupts)


async def test_a_claim_recorded_then_a_crash_mid_rerun_resumes_nothing_changed(
    ws: LocalSlack,
    tmp_path: Path,
    prices: dict[str, int],
    reaper: list[asyncio.subprocess.Process],
) -> None:
    """bob approves api; while its step runs, web's node re-runs with a new price and raises
    web's id again; carol approves the old web message (claimed, waiting for the step); the
    process is SIGKILLed mid-step. After the restart carol's decision resumes nothing (it was
    for another price): the new request is posted once, and resumes once when approved."""
    db = tmp_path / "approvals.db"
    (tmp_path / "prices.json").write_text(json.dumps({"api": 1, "web": 1}))
    bot = BotProcess(ws, db, reaper)
    (tmp_path / "approvals.toml").write_text(
        f'graphs = ["{MODULE}:specs"]\n[deploy]\nbackend = "simulated"\n'
        '[policy.default]\napprovers = ["U0BOB", "U0CAROL"]\n'
    )
    await bot.start()
    await ws.slash("alice", "/approvals", "run held", channel=DEPLOYS)
    api = await ws.wait_for(lambda: one(ws, "Ship api at 1?"), timeout=10)
    web = await ws.wait_for(lambda: one(ws, "Ship web at 1?"), timeout=10)
    ((run_id,),) = rows(db, "SELECT run_id FROM bot_runs")

    (tmp_path / "prices.json").write_text(json.dumps({"api": 1, "web": 2}))
    await ws.click("bob", api, "Approve")
    await ws.wait_for(lambda: (tmp_path / "api-holding").exists(), timeout=10)
    for _ in range(200):  # web's re-run raised its new request into the checkpoint
        if await pending_requests(tmp_path, db, run_id) == ["Ship api at 1?", "Ship web at 2?"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(await pending_requests(tmp_path, db, run_id))
    await ws.click("carol", web, "Approve")
    await ws.wait_for(
        lambda: (
            rows(db, "SELECT status FROM bot_approvals WHERE status='decided'")
            == [
                ("decided",),
                ("decided",),
            ]
        ),
        timeout=10,
    )
    assert await bot.signal(signal.SIGKILL) == -signal.SIGKILL
    (tmp_path / "release").touch()

    await bot.start()
    new = await ws.wait_for(lambda: one(ws, "Ship web at 2?"), timeout=20)
    await ws.wait_for(
        lambda: "changed before it was decided" in message_text(one(ws, "Ship web at 1?") or {}),
        timeout=10,
    )
    await ws.wait_for(lambda: rows(db, "SELECT status FROM bot_runs") == [("waiting",)], timeout=20)
    statuses = dict(rows(db, "SELECT interrupt_id, status FROM bot_approvals"))
    web_id = web["blocks"][-1]["elements"][0]["value"]
    assert statuses[web_id] == "superseded"
    assert sorted(statuses.values()) == ["pending", "resumed", "superseded"]
    events = [e for (e,) in rows(db, "SELECT event FROM bot_audit ORDER BY id")]
    assert events.count("request_changed") == 1 and events.count("resumed") == 1
    assert "web:approve" not in json.dumps(ws.messages(DEPLOYS))

    await ws.click("bob", new, "Approve")
    shows = "api:approve:1, web:approve:2"
    await ws.wait_for(
        lambda: shows in message_text(one(ws, "Ship web at 2?") or {"blocks": []}), timeout=20
    )
    assert len(asking(ws, "Ship web at 2?")) == 1
    events = [e for (e,) in rows(db, "SELECT event FROM bot_audit ORDER BY id")]
    assert events.count("resumed") == 2
    assert await bot.signal(signal.SIGTERM) == 0
