"""The HTTP API (bot/api.py) on the running bot's own server, against the local workspace and a
real SQLite file: bearer tokens from the policy, pages of pending approvals, decisions with the
same rules, claim and message updates as a click, Idempotency-Keys, an HTTP decision racing a
click, and schemathesis checking the API against its OpenAPI document (no 5xx, ever)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.api import decide_promptly, plain
from bot.engine import Answer
from bot.localslack import LocalSlack
from bot.model import Approval, Run
from bot.tasks import TaskSet
from tests.conftest import Harness
from tests.reads import approvals_with_status, audit_events
from tests.scenario.test_approval_loop import buttons, deploy, message_text

CI = "apv_ci_1Nk9cWq3sTzD0lQ8"  # decides as U0BOB
PORTAL = "apv_portal_b7Yt2LmP0xRw"  # decides as whoever the request names
PAIR = "apv_pair_Qe4ZsV9kUu1N"  # may only decide, and only as U0DAN
READER = "apv_reader_H3jTg6AaXo5e"  # may only read


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


POLICY: dict[str, Any] = {
    "policy": {
        "deploy": {
            "prod": {"approvers": ["U0BOB", "U0DAN"], "comment_required": ["reject"]},
            "staging": {"min_approvals": 2},
        }
    },
    "api": {
        "tokens": [
            {
                "name": "ci",
                "token_sha256": sha256(CI),
                "scopes": ["read", "decide"],
                "as": "U0BOB",
            },
            {
                "name": "portal",
                "token_sha256": sha256(PORTAL),
                "scopes": ["read", "decide"],
                "act_as": ["*"],
            },
            {
                "name": "pair",
                "token_sha256": sha256(PAIR),
                "scopes": ["decide"],
                "act_as": ["U0DAN"],
            },
            {"name": "reader", "token_sha256": sha256(READER), "scopes": ["read"]},
        ]
    },
}


@pytest.fixture
async def h(ws: LocalSlack, tmp_path: Path) -> AsyncIterator[Harness]:
    """The harness with a bot whose policy has API tokens."""
    harness = Harness(ws, tmp_path / "approvals.db")
    await harness.start_bot(policy=POLICY)
    yield harness
    for bot in harness.bots:
        await bot.stop()


async def open_requests(h: Harness, *texts: str) -> None:
    """Several /deploy requests, each waited for until its approval message is in Slack."""
    for n, text in enumerate(texts, 1):
        assert (await h.ws.slash("alice", "/deploy", text, channel="#deploys")).status == 200
        await h.wait(
            lambda n=n: (
                sum(1 for m in h.ws.messages("#deploys") if m.get("blocks") and buttons(m)) >= n
            )
        )


def base(h: Harness) -> str:
    return h.bot.url.removesuffix("/slack/events")


async def pending_id(h: Harness) -> str:
    """The newest pending approval's id."""
    pending = await approvals_with_status(h.bot.runtime.store, "pending")
    return pending[-1].interrupt_id


async def call(
    h: Harness,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    key: str | None = "new",
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One request; ``key`` "new" sends a fresh Idempotency-Key, None sends none."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "POST" and key is not None:
        headers["Idempotency-Key"] = uuid.uuid4().hex if key == "new" else key
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, base(h) + path, headers=headers, data=data) as r,
    ):
        text = await r.text()
        return r.status, json.loads(text) if text else None, dict(r.headers)


async def decide(
    h: Harness, iid: str, token: str, body: dict[str, Any], key: str = "new"
) -> tuple[int, Any, dict[str, str]]:
    return await call(h, "POST", f"/api/approvals/{iid}/decision", token, body, key)


async def events(h: Harness, iid: str | None = None) -> list[str]:
    return [e["event"] for e in await audit_events(h.bot.runtime.store, iid)]


# -- the document, reading, tokens -----------------------------------------------------------


async def test_openapi_document_describes_exactly_the_api(h: Harness) -> None:
    status, doc, headers = await call(h, "GET", "/api/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert doc["openapi"] == "3.1.0"
    assert {p: sorted(ops) for p, ops in doc["paths"].items()} == {
        "/api/approvals": ["get"],
        "/api/approvals/{id}/decision": ["post"],
        "/api/openapi.json": ["get"],
    }
    decision = doc["paths"]["/api/approvals/{id}/decision"]["post"]
    assert sorted(decision["responses"]) == ["200", "202", "400", "401", "403", "404", "409", "422"]


async def test_pending_approvals_page_by_page(h: Harness) -> None:
    await open_requests(h, "api 1.0.1 prod", "api 1.0.2 prod", "api 1.0.3 prod")
    status, page, _ = await call(h, "GET", "/api/approvals?limit=2", READER)
    assert status == 200 and len(page["approvals"]) == 2 and page["next_cursor"]
    first = page["approvals"][0]
    assert first["title"].startswith("Deploy api 1.0.1 to prod?")
    assert first["choices"] == [
        {"id": "approve", "label": "Approve"},
        {"id": "reject", "label": "Reject"},
    ]
    assert first["requester"] == "U0ALICE" and first["channel"].startswith("C")
    assert first["created_at"].endswith("Z") and len(first["run_id"]) == 32
    assert {f["label"] for f in first["fields"]} >= {"Service", "Version"}
    assert "permalink" not in first
    status, rest, _ = await call(h, "GET", f"/api/approvals?cursor={page['next_cursor']}", CI)
    assert status == 200 and rest["next_cursor"] is None
    assert [a["title"][:25] for a in rest["approvals"]] == ["Deploy api 1.0.3 to prod?"]
    everyone = {a["id"] for a in page["approvals"] + rest["approvals"]}
    assert len(everyone) == 3
    for bad in ("limit=0", "limit=101", "limit=ten", "limit=1&limit=2", "cursor=abc", "cursor=!"):
        status, body, _ = await call(h, "GET", f"/api/approvals?{bad}", READER)
        assert status == 422, bad
        assert set(body) == {"error", "message"}


async def test_tokens_and_scopes(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    for token in (None, "nope", CI[:-1]):
        status, body, headers = await call(h, "GET", "/api/approvals", token)
        assert status == 401 and body["error"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await call(h, "GET", "/api/approvals", PAIR)
    assert (
        status == 403
        and body["message"] == "This token may not list approvals (its scopes: decide)."
    )
    status, body, _ = await decide(h, iid, READER, {"choice": "approve"})
    assert status == 403 and "may not decide approvals" in body["message"]
    # whom a token decides as
    status, body, _ = await decide(h, iid, CI, {"choice": "approve", "as": "U0DAN"})
    assert (status, body["message"]) == (403, "This token decides as U0BOB only.")
    status, body, _ = await decide(h, iid, PAIR, {"choice": "approve", "as": "U0BOB"})
    assert (status, body["message"]) == (403, "This token may not decide as U0BOB.")
    status, body, _ = await decide(h, iid, PORTAL, {"choice": "approve"})
    assert status == 422 and body["message"].startswith("Say whom you decide as")
    await h.idle()
    assert "decided" not in await events(h)


# -- deciding ------------------------------------------------------------------------------


async def test_a_decision_resumes_once_updates_slack_and_replays_by_key(h: Harness) -> None:
    msg = await deploy(h)
    iid = await pending_id(h)
    body = {"choice": "approve", "comment": "ship <it> & go"}
    status, answer, _ = await decide(h, iid, CI, body, key="deploy-1")
    assert status == 200
    assert answer["status"] == "decided" and answer["id"] == iid
    assert answer["text"].startswith("✅ Approved by @U0BOB ")
    assert answer["text"].endswith(" UTC: “ship <it> & go”")  # plain words, no mrkdwn
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    final = h.approval_message()
    assert buttons(final) == [] and "*Approved* by <@U0BOB>" in message_text(final)
    assert len(h.ws.replies("#deploys", msg["ts"])[1:]) == 3  # one deploy
    # the same key and body: the same answer, nothing decided again
    again, replay, headers = await decide(h, iid, CI, body, key="deploy-1")
    assert (again, replay, headers["Idempotent-Replayed"]) == (200, answer, "true")
    # the same key, another body
    status, reused, _ = await decide(h, iid, CI, {"choice": "reject"}, key="deploy-1")
    assert status == 409 and reused["error"] == "idempotency_key_reused"
    # a new key: already decided
    status, closed, _ = await decide(h, iid, CI, {"choice": "approve"})
    assert status == 409 and closed["error"] == "already_decided"
    assert closed["message"].startswith("Already approved by @U0BOB ")
    await h.idle()
    run = [e for e in await events(h, iid)]
    assert run.count("decided") == 1 and run.count("resumed") == 1
    assert run.count("api_decision") == 2  # the decision and the 409; the replay added none
    rows = [e for e in await audit_events(h.bot.runtime.store, iid) if e["event"] == "api_decision"]
    assert json.loads(rows[0]["detail"]) == {
        "token": "ci",
        "choice": "approve",
        "answer": "decided",
    }
    assert all(r["run_id"] for r in rows)


async def test_policy_refusals_say_why(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    status, body, _ = await decide(h, iid, PORTAL, {"choice": "approve", "as": "U0CAROL"})
    assert (status, body["error"]) == (403, "refused")
    assert body["message"] == "Only @U0BOB or @U0DAN can decide this request."
    status, body, _ = await decide(h, iid, PORTAL, {"choice": "reject", "as": "U0DAN"})
    assert status == 403 and "needs a comment" in body["message"]
    status, body, _ = await decide(
        h, iid, PORTAL, {"choice": "reject", "as": "U0DAN", "comment": "not today"}
    )
    assert status == 200 and body["text"].startswith("❌ Rejected by @U0DAN ")
    await h.wait(lambda: "❌" in message_text(h.approval_message()))


async def test_two_approvals_needed_answers_voted_then_decided(h: Harness) -> None:
    await deploy(h, "api 1.4.2 staging")
    iid = await pending_id(h)
    status, body, _ = await decide(h, iid, PORTAL, {"choice": "approve", "as": "U0BOB"})
    assert (status, body["status"], body["text"]) == (
        200,
        "voted",
        "Your vote is in: 1 of 2 approvals.",
    )
    status, body, _ = await decide(h, iid, PORTAL, {"choice": "approve", "as": "U0DAN"})
    assert (status, body["status"]) == (200, "decided")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))


async def test_requests_that_are_no_decision(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    path = f"/api/approvals/{iid}/decision"
    status, body, _ = await call(h, "POST", path, CI, {"choice": "approve"}, key=None)
    assert status == 400 and "Idempotency-Key" in body["message"]
    status, _, _ = await call(h, "POST", path, CI, {"choice": "approve"}, key="has space")
    assert status == 400
    for raw in (
        b"",
        b"not json",
        b"[]",
        b'{"choice": 1}',
        b'{"choice": "approve", "as": "bob"}',
        b'{"choice": "approve", "by": "U0BOB"}',
        b'{"choice": "approve", "comment": 5}',
        json.dumps({"choice": "approve", "comment": "x" * 3001}).encode(),
        b"\xff\xfe",
        b"[" * 100_000,
        b" " * (70 << 10),
    ):
        status, body, _ = await call(h, "POST", path, CI, raw=raw, key="same-key")
        assert status == 422, raw[:40]
        assert set(body) == {"error", "message"}
    status, body, _ = await call(h, "POST", path, CI, {"choice": "maybe"}, key="same-key")
    assert status == 422
    assert (
        body["message"]
        == '"maybe" is not a choice of this approval (its choices: approve, reject).'
    )
    for bad_id in ("0" * 32, "x", "not-an-id-!"):
        status, body, _ = await decide(h, bad_id, CI, {"choice": "approve"})
        assert status in (404,), bad_id
    # none of those was remembered under the key: it still decides
    status, body, _ = await call(h, "POST", path, CI, {"choice": "approve"}, key="same-key")
    assert status == 200 and body["status"] == "decided"


async def test_an_http_decision_racing_a_click_is_decided_once(h: Harness) -> None:
    outcomes: Counter[str] = Counter()
    for round_ in range(4):
        msg = await deploy(h, f"api 2.0.{round_} prod")
        iid = await pending_id(h)
        seen = len(h.ws.ephemerals("bob"))
        (status, body, _), delivery = await asyncio.gather(
            decide(h, iid, PORTAL, {"choice": "approve", "as": "U0DAN"}),
            h.ws.click("bob", msg, "Approve"),
        )
        assert delivery.status == 200
        await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
        await h.idle()
        audit = await audit_events(h.bot.runtime.store, iid)
        decided = [e for e in audit if e["event"] == "decided"]
        assert len(decided) == 1
        assert [e["event"] for e in audit].count("resumed") == 1
        assert len(h.ws.replies("#deploys", msg["ts"])[1:]) == 3  # one deploy
        if decided[0]["user_id"] == "U0DAN":
            outcomes["http"] += 1
            assert status == 200 and body["status"] == "decided"
            told = await h.wait(lambda: h.ws.ephemerals("bob")[seen:])  # noqa: B023
            assert told[-1]["text"].startswith("Already approved by <@U0DAN>")
        else:
            outcomes["click"] += 1
            assert (status, body["error"]) == (409, "already_decided")
            assert body["message"].startswith("Already approved by @U0BOB ")
    assert sum(outcomes.values()) == 4


async def test_no_token_or_body_in_the_logs(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # as `python -m bot run` logs
    await deploy(h)
    iid = await pending_id(h)
    secret_comment = "comment-words-that-must-not-be-logged"
    await decide(h, iid, CI, {"choice": "approve", "comment": secret_comment})
    await call(h, "GET", "/api/approvals", "wrong-" + CI)
    await call(h, "POST", f"/api/approvals/{iid}/decision", PORTAL, raw=b"{broken " + CI.encode())
    await h.idle()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "api: token ci: decided" in logged
    for secret in (CI, PORTAL, sha256(CI), secret_comment, "broken"):
        assert secret not in logged


# -- answering before the graph is done --------------------------------------------------------


class StubStore:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def audit_mark(self) -> int:
        return 0

    async def audit_after(self, mark: int, iid: str, user: str) -> list[dict[str, Any]]:
        return list(self.rows)

    async def approval_and_run(self, iid: str) -> tuple[Approval, Run]:
        approval = Approval(
            iid,
            "r1",
            "Ship it?",
            "decided",
            "C0D",
            "1.2",
            "approve",
            True,
            "U0BOB",
            None,
            1_767_225_600.0,
            1.0,
        )
        return approval, Run("r1", "/deploy", {}, "U0ALICE", "C0D", "running", None, None, 1.0)


class SlowEngine:
    """``Engine.decide`` that claims (or not), then runs on: a resumed graph that deploys."""

    def __init__(self, claims: bool) -> None:
        self.store = StubStore()
        self.claims = claims
        self.release = asyncio.Event()

    async def decide(self, iid: str, user: str, choice: str, comment: str | None) -> Answer:
        if self.claims:
            self.store.rows.append({"event": "decided"})
        await self.release.wait()
        return Answer("decided", "when the graph is done")


async def test_the_answer_comes_once_claimed_while_the_graph_runs_on() -> None:
    engine: Any = SlowEngine(claims=True)
    tasks = TaskSet()
    answer, work = await decide_promptly(engine, tasks, "i1", "U0BOB", "approve", None)
    assert answer is not None and answer.status == "decided"
    assert plain(answer.text) == "✅ Approved by @U0BOB 2026-01-01 00:00 UTC"
    assert work is not None and not work.done()
    engine.release.set()
    assert (await work).text == "when the graph is done"


async def test_no_answer_within_patience_leaves_the_decision_running() -> None:
    engine: Any = SlowEngine(claims=False)
    tasks = TaskSet()
    answer, work = await decide_promptly(
        engine, tasks, "i1", "U0BOB", "approve", None, patience=0.2
    )
    assert answer is None and work is not None and not work.done()
    engine.release.set()
    await tasks.idle()
    assert work.result().status == "decided"


# -- schemathesis --------------------------------------------------------------------------


def run_schemathesis(doc: dict[str, Any], url: str, examples: int, iid: str) -> Counter[str]:
    """Every operation, positive and negative cases (plus positive ones aimed at a real
    pending approval), checked for no 5xx and for answers the document allows. Runs on a
    worker thread: schemathesis calls are blocking, and the bot serves on the test's loop."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_dict(doc)
    # Aimed at a real pending approval, with choices and people that exist, so that cases
    # reach the engine: decided, refused by the policy, already decided.
    aimed = copy.deepcopy(doc)
    fields = aimed["components"]["schemas"]["DecisionRequest"]["properties"]
    fields["choice"] = {"enum": ["approve", "reject"]}
    fields["as"] = {"enum": ["U0BOB", "U0DAN", "U0CAROL", "U0ALICE"]}
    aimed_schema = schemathesis.openapi.from_dict(aimed)
    auth = {"Authorization": f"Bearer {PORTAL}"}
    strict = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    counts: Counter[str] = Counter()
    session = requests.Session()

    def exercise(strategy: Any, mode: str, checks: list[Any]) -> Any:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            response = case.call(base_url=url, session=session, headers=auth, timeout=10)
            counts[f"{case.operation.label} {mode}"] += 1
            counts[f"status {response.status_code}"] += 1
            case.validate_response(response, checks=checks)

        return check

    for result in schema.get_all_operations():
        operation = result.ok()
        runs: list[tuple[str, Any, list[Any]]] = [
            ("positive", operation.as_strategy(schemathesis.GenerationMode.POSITIVE), strict)
        ]
        if operation.path != "/api/openapi.json":  # it takes nothing that could be wrong
            negative = operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)
            runs.append(("negative", negative, [not_a_server_error, status_code_conformance]))
        if "{id}" in operation.path:
            found = aimed_schema.find_operation_by_path(operation.method, operation.path)
            assert found is not None
            runs.append(("aimed", found.as_strategy(path_parameters={"id": iid}), strict))
        for mode, strategy, checks in runs:
            exercise(strategy, mode, checks)()
    return counts


async def test_schemathesis_finds_no_server_error(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    _, doc, _ = await call(h, "GET", "/api/openapi.json")
    examples = 500 if os.environ.get("LONG_TESTS") == "1" else 50
    counts = await asyncio.to_thread(run_schemathesis, doc, base(h), examples, iid)
    print(sorted(counts.items()))  # shown with -s: how many cases each operation got
    assert not any(key.startswith("status 5") for key in counts)
    for label in ("GET /api/approvals", "POST /api/approvals/{id}/decision"):
        assert counts[f"{label} positive"] > 0 and counts[f"{label} negative"] > 0
    assert counts["POST /api/approvals/{id}/decision aimed"] > 0
    # whatever was thrown at it, the approval was decided at most once, and resumed as often
    await h.idle()
    happened = await events(h, iid)
    assert happened.count("decided") <= 1
    assert happened.count("resumed") == happened.count("decided")
