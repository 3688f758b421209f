"""The approval loop over the real wire: signed slash commands and block_actions /
view_submission payloads go to the running Bolt app over HTTP; the bot talks to the local
workspace's Web API; everything is stored in a real SQLite file, and again in PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from bot.interrupts import normalise, resume_value
from bot.model import Ballot, VoteResult, decision_of
from graphs.deploy import CommandBackend, SimulatedBackend, build_graph
from tests.conftest import BACKENDS, Bot, Harness
from tests.reads import audit_events, runs_with_status

DEPLOYS = "#deploys"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["text"]["text"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def message_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


async def deploy(h: Harness, text: str = "api 1.4.2 prod", user: str = "alice") -> dict[str, Any]:
    delivery = await h.ws.slash(user, "/deploy", text, channel=DEPLOYS)
    assert delivery.status == 200
    return await h.wait(lambda: (m := h.approval_message()) and buttons(m) and m)


async def audit(h: Harness) -> list[str]:
    return [e["event"] for e in await audit_events(h.bot.runtime.store)]


async def test_approve_resumes_deploys_and_shows_outcome(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    assert buttons(msg) == ["Approve", "Reject", "Reject with reason…", "Withdraw"]
    assert "Deploy api 1.4.2 to prod?" in message_text(msg)
    assert "<@U0ALICE>" in message_text(msg)

    delivery = await h.ws.click("bob", msg, "Approve")
    assert delivery.status == 200
    done = await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    assert done
    final = h.approval_message()
    assert buttons(final) == []
    assert "*Approved* by <@U0BOB>" in message_text(final)
    replies = h.ws.replies(DEPLOYS, final["ts"])[1:]
    assert [r["text"] for r in replies] == [
        "Pulling image… (1/3)",
        "Rolling out… (2/3)",
        "Running health checks… (3/3)",
    ]
    await h.idle()
    events = await audit(h)
    assert events == ["run_started", "requested", "decided", "resumed", "run_done"]


async def test_reject_with_reason_through_the_modal(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    await h.ws.click("bob", msg, "Reject with reason…")
    view = await h.wait(lambda: next(iter(h.ws.open_views("bob")), None))
    assert view["title"]["text"] == "Reject with reason"

    empty = await h.ws.submit_modal("bob", view, {"reason": "   "})
    assert empty.errors == {
        "reason": "Please say why you are rejecting this; the requester will see it."
    }
    ok = await h.ws.submit_modal("bob", view, {"reason": "not on a Friday <!channel> & co"})
    assert ok.status == 200 and not ok.errors
    await h.wait(lambda: "❌" in message_text(h.approval_message()))
    await h.idle()
    final = message_text(h.approval_message())
    assert "Rejected* by <@U0BOB>" in final
    assert "not on a Friday &lt;!channel&gt; &amp; co" in final
    assert "<!channel>" not in final
    assert h.ws.replies(DEPLOYS, h.approval_message()["ts"])[1:] == []  # no deploy ran
    run = (await runs_with_status(h.bot.runtime.store, "done"))[0]
    assert run.outcome["status"] == "rejected"


async def test_self_approval_is_refused(harness: Harness) -> None:
    h = harness
    msg = await deploy(h, "api 1.4.2 staging")
    await h.ws.click("alice", msg, "Approve")
    note = await h.wait(lambda: h.ws.ephemerals("alice"))
    assert "second pair of eyes" in note[-1]["text"]
    await h.idle()
    assert buttons(h.approval_message())  # still pending
    assert "refused" in await audit(h)
    # and anyone else may approve a staging deploy
    await h.ws.click("carol", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))


async def test_unauthorised_approver_is_told_who_can(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    await h.ws.click("carol", msg, "Approve")
    note = await h.wait(lambda: h.ws.ephemerals("carol"))
    assert note[-1]["text"] == "Only <@U0BOB> or <@U0DAN> can decide this request."
    await h.idle()
    assert buttons(h.approval_message())


async def test_twenty_concurrent_clicks_resume_exactly_once(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    users = ["bob", "dan"] * 10
    deliveries = await asyncio.gather(*(h.ws.click(u, msg, "Approve") for u in users))
    assert all(d.status == 200 for d in deliveries)
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    events = await audit(h)
    assert events.count("decided") == 1 and events.count("resumed") == 1
    replies = h.ws.replies(DEPLOYS, h.approval_message()["ts"])[1:]
    assert len(replies) == 3  # one deploy
    told = h.ws.ephemerals("bob") + h.ws.ephemerals("dan")
    assert len(told) == 19
    assert all(e["text"].startswith("Already approved by <@U0") for e in told)


async def test_stale_and_unknown_buttons_never_resume(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    # the old copy of the message still has its buttons, as a stale client would
    await h.ws.click("dan", msg, "Reject")
    note = await h.wait(lambda: h.ws.ephemerals("dan"))
    assert note[-1]["text"].startswith("Already approved by <@U0BOB>")

    forged = json.loads(json.dumps(msg))
    for b in forged["blocks"]:
        for e in b.get("elements", []):
            if e.get("type") == "button":
                e["value"] = "0" * 32
    await h.ws.click("dan", forged, "Approve")
    await h.wait(lambda: len(h.ws.ephemerals("dan")) == 2)
    assert "don't know this request" in h.ws.ephemerals("dan")[-1]["text"]
    await h.idle()
    assert (await audit(h)).count("resumed") == 1


async def test_usage_errors_are_ephemeral(harness: Harness) -> None:
    h = harness
    bad = await h.ws.slash("alice", "/deploy", "api", channel=DEPLOYS)
    assert bad.status == 200
    assert "Missing the version" in bad.json["text"]
    unknown = await h.ws.slash("alice", "/deploy", "api 1.4.2 qa", channel=DEPLOYS)
    assert "Valid environments: staging, prod" in unknown.json["text"]
    assert h.approval_message() is None
    assert [e["text"] for e in h.ws.ephemerals("alice")][-1].startswith("Unknown environment")


async def test_signatures_and_timestamps_are_checked(harness: Harness) -> None:
    h = harness
    body = "command=%2Fdeploy&text=api+1.4.2&user_id=U0ALICE&channel_id=C0DEPLOYS"
    now = int(time.time())
    good = h.ws.sign(body.encode(), now)
    bad = {**good, "X-Slack-Signature": "v0=" + "0" * 64}
    assert (await h.ws.deliver_raw(body, "application/x-www-form-urlencoded", bad)).status == 401
    unsigned = await h.ws.deliver_raw(body, "application/x-www-form-urlencoded", {})
    assert unsigned.status == 401
    old = h.ws.sign(body.encode(), now - 301)
    assert (await h.ws.deliver_raw(body, "application/x-www-form-urlencoded", old)).status == 401
    await h.idle()
    assert h.approval_message() is None


async def test_malformed_payloads_get_4xx_and_the_bot_keeps_working(harness: Harness) -> None:
    h = harness
    now = int(time.time())
    for body in (
        "payload=%7Bnot+json",
        "payload=%5B%5D",
        "payload=%7B%22type%22%3A%22block_actions%22%7D",
    ):
        resp = await h.ws.deliver_raw(
            body, "application/x-www-form-urlencoded", h.ws.sign(body.encode(), now)
        )
        assert 400 <= resp.status < 500, (body, resp.status)
    await deploy(h)  # still alive


async def test_rate_limited_post_is_retried(harness: Harness) -> None:
    h = harness
    h.ws.fail_next("chat.postMessage", status=429, retry_after=1)
    msg = await deploy(h)
    statuses = [c.status for c in h.ws.calls_to("chat.postMessage")]
    assert statuses[:2] == [429, 200]
    assert msg


async def test_server_error_is_retried(harness: Harness) -> None:
    h = harness
    h.ws.fail_next("chat.update", status=500)
    msg = await deploy(h)
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    assert 500 in [c.status for c in h.ws.calls_to("chat.update")]


async def test_second_instance_on_the_same_db_continues_a_pending_approval(
    harness: Harness,
) -> None:
    h = harness
    msg = await deploy(h)
    first = h.bot
    await h.start_bot()  # a second process would do the same: same file, new connection
    assert h.bot is not first
    await h.ws.click("bob", msg, "Approve")  # goes to the second instance
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    events = [e["event"] for e in await audit_events(first.runtime.store)]
    assert events.count("resumed") == 1
    assert len([m for m in h.ws.messages(DEPLOYS) if m.get("blocks")]) == 1


async def claim_as_bob(bot: Bot, iid: str) -> VoteResult:
    """Bob's approval claimed in ``bot``'s store, as a click would, and nothing after it:
    the bot takes no more requests (it stands for a process about to die)."""
    await bot.runner.cleanup()
    result = await bot.runtime.store.decide(
        iid,
        time.time(),
        lambda a, r: Ballot(
            user="U0BOB", choice="approve", approves=True, comment=None, required=1
        ),
        lambda result: [],
        list,
    )
    assert isinstance(result, VoteResult) and result.claimed
    return result


async def test_claimed_but_not_resumed_is_resumed_once_on_restart(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    iid = msg["blocks"][-1]["elements"][0]["value"]
    old = h.bot
    # The process dies right after the claim commits: nothing after it ran.
    await claim_as_bob(old, iid)
    await old.runtime.close()
    h.bots.remove(old)

    await h.start_bot()  # recovery runs at start-up
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    events = [e["event"] for e in await audit_events(h.bot.runtime.store)]
    assert events.count("resumed") == 1
    assert len(h.ws.replies(DEPLOYS, msg["ts"])) == 1 + 3
    assert len([m for m in h.ws.messages(DEPLOYS) if m.get("blocks")]) == 1


class ProcessDied(Exception):
    """Stands for a process killed while it saved a checkpoint."""


async def test_a_resume_cut_before_the_answers_checkpoint_deploys_once_on_restart(
    harness: Harness,
) -> None:
    """The process that claimed a decision dies in its resume after LangGraph saved the
    answered node's writes and before the checkpoint after them (a window of one checkpoint
    write; a replica SIGKILLed under load hit it). The thread then waits at nothing, so
    the restarted bot takes the decision for one resumed before the crash and continues the
    thread: it must go on from those writes and deploy once, not end at once as "Done."."""
    h = harness
    msg = await deploy(h)
    iid = msg["blocks"][-1]["elements"][0]["value"]
    old = h.bot
    result = await claim_as_bob(old, iid)
    decided, run = result.approval, result.run
    decision = decision_of(decided)
    assert decision is not None
    # Its resume, on its own checkpointer, as far as the process got: LangGraph's own
    # stream, whose checkpoint after the answered step is never saved.
    saver = old.runtime.backend.saver
    config: Any = {"configurable": {"thread_id": run.run_id}}
    latest = await saver.aget_tuple(config)
    assert latest is not None
    cut_at = latest.metadata["step"] + 1

    async def aput(config: Any, checkpoint: Any, metadata: Any, versions: Any) -> Any:
        if metadata.get("step") == cut_at:
            raise ProcessDied
        return await saver.aput(config, checkpoint, metadata, versions)

    dying = copy.copy(saver)
    setattr(dying, "aput", aput)  # noqa: B010 (this instance's, not the class's)
    assert old.runtime.settings.deploy is not None
    graph = build_graph(old.runtime.settings.deploy).compile(checkpointer=dying)
    value = resume_value(normalise(decided.request, decided.meta), decision)
    with pytest.raises(ProcessDied):
        async for _ in graph.astream(Command(resume={decided.graph_interrupt_id: value}), config):
            pass
    state = await graph.aget_state(config)
    assert not state.interrupts and state.tasks[0].result  # the answer's writes were saved
    await old.runtime.close()
    h.bots.remove(old)

    await h.start_bot()  # recovery runs at start-up
    ended = ("✅ Deployed", "✅ Done.")  # Done.: ended without its outcome (the bug)
    await h.wait(lambda: any(e in message_text(h.approval_message()) for e in ended))
    await h.idle()
    assert "✅ Deployed api 1.4.2 to prod" in message_text(h.approval_message())
    events = [e["event"] for e in await audit_events(h.bot.runtime.store)]
    assert events.count("decided") == 1 and events.count("resumed") == 1
    assert events[-1] == "run_done"
    texts = [r["text"] for r in h.ws.replies(DEPLOYS, msg["ts"])[1:]]
    steps = ("Pulling image", "Rolling out", "Running health checks")
    assert [sum(t.startswith(name) for t in texts) for name in steps] == [1, 1, 1], texts


async def test_pending_approval_survives_a_restart_without_reposting(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    old = h.bots.pop()
    await old.stop()
    await h.start_bot()
    await h.idle()
    assert len([m for m in h.ws.messages(DEPLOYS) if m.get("blocks")]) == 1
    await h.ws.click("dan", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))


async def test_run_cut_mid_step_continues_on_next_start(harness: Harness) -> None:
    h = harness
    old = h.bots.pop()
    await old.stop()
    slow = await h.start_bot(backend=SimulatedBackend(step_seconds=30))
    msg = await deploy(h)
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: len(h.ws.replies(DEPLOYS, msg["ts"])) >= 2)  # first step running
    await slow.runner.cleanup()
    assert await slow.runtime.close(grace=0) >= 1  # the grace period runs out at once
    h.bots.remove(slow)

    await h.start_bot()
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    texts = [r["text"] for r in h.ws.replies(DEPLOYS, msg["ts"])]
    assert any(t.startswith("♻️ The bot restarted") for t in texts)
    await h.idle()
    assert (await audit(h)).count("decided") == 1


async def test_bot_not_in_channel_tells_the_requester(harness: Harness) -> None:
    h = harness
    h.ws.fail_next("chat.postMessage", status=200, error="not_in_channel")
    d = await h.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    assert d.status == 200
    note = await h.wait(lambda: h.ws.ephemerals("alice"))
    assert "invite me with `/invite @approvals`" in note[-1]["text"]
    await h.idle()
    (run,) = await runs_with_status(h.bot.runtime.store, "failed")
    assert run.outcome and "invite me" in run.outcome["text"]


async def test_expired_trigger_asks_to_click_again(harness: Harness) -> None:
    h = harness
    msg = await deploy(h)
    h.ws.fail_next("views.open", status=200, error="expired_trigger_id")
    await h.ws.click("bob", msg, "Reject with reason…")
    note = await h.wait(lambda: h.ws.ephemerals("bob"))
    assert "please click again" in note[-1]["text"].lower()
    assert h.ws.open_views("bob") == []


async def test_app_home_lists_what_each_person_can_decide(harness: Harness) -> None:
    h = harness
    await deploy(h)
    for user in ("bob", "carol", "alice"):
        assert (await h.ws.open_home(user)).status == 200
    bob = await h.wait(lambda: h.ws.home("bob"))
    assert "1 of the newest 1 open requests are yours to decide" in json.dumps(bob)
    assert "Deploy api 1.4.2 to prod?" in json.dumps(bob)
    carol = await h.wait(lambda: h.ws.home("carol"))
    assert "Nothing is waiting for you" in json.dumps(carol)
    alice = json.dumps(await h.wait(lambda: h.ws.home("alice")), ensure_ascii=False)
    assert "`/deploy api 1.4.2 prod` waiting" in alice

    # bob approves from his Home: the buttons work there too, and the Home is redrawn
    await h.ws.click("bob", bob["id"], "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    assert "*Approved* by <@U0BOB>" in message_text(h.approval_message())
    await h.wait(lambda: "Recent decisions" in json.dumps(h.ws.home("bob")))


async def test_command_backend_failure_is_shown_on_the_message(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    script = tmp_path / "deploy.py"
    script.write_text(
        "import sys\nprint('rolling', sys.argv[1], sys.argv[2], flush=True)\n"
        "print('health check failed', flush=True)\nsys.exit(2)\n"
    )
    old = h.bots.pop()
    await old.stop()
    await h.start_bot(
        backend=CommandBackend([sys.executable, str(script), "{service}", "{version}"])
    )
    msg = await deploy(h)
    await h.ws.click("dan", msg, "Approve")
    await h.wait(lambda: "💥" in message_text(h.approval_message()))
    assert "exit code 2: health check failed" in message_text(h.approval_message())
    replies = [r["text"] for r in h.ws.replies(DEPLOYS, msg["ts"])[1:]]
    assert replies == ["rolling api 1.4.2", "health check failed"]
    await h.idle()
    (run,) = await runs_with_status(h.bot.runtime.store, "failed")
    assert run.outcome["status"] == "failed"


async def test_a_service_named_payload_something_is_deployable(harness: Harness) -> None:
    """Bolt's own parser reads any form mentioning "payload" as an interactive payload; ours
    looks for the field, so this slash command reaches the listener."""
    h = harness
    msg = await deploy(h, "payload-api 1.2.3 prod")
    assert "Deploy payload-api 1.2.3 to prod?" in message_text(msg)
