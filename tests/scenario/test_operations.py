"""What the operator sees: /healthz and /readyz (HTTP and Socket Mode, and readiness following
Slack's auth.test), /metrics after a real approval, and retention pruning on a fake clock.
The real bot over real HTTP on 127.0.0.1, the local workspace as Slack, a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings, SettingsError
from bot.localslack import LocalSlack
from bot.runtime import BotRuntime, serve
from tests.conftest import BACKENDS, SECRET, TOKEN, Bot, FakeClock, Harness, settings_for
from tests.reads import runs_with_status
from tests.scenario.test_approval_loop import DEPLOYS, deploy, message_text
from tests.scenario.test_escalation import posted

MINUTE = 60.0
DAY = 86_400.0
REMINDING = {"policy": {"deploy": {"prod": {"approvers": ["U0BOB"], "remind_every": "15m"}}}}


def base_url(bot: Bot) -> str:
    return bot.url.removesuffix("/slack/events")


async def get(url: str) -> tuple[int, Any]:
    """GET ``url``: (status, JSON body, or the text for anything else)."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


Page = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Page:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(page: Page, name: str, **labels: str) -> float | None:
    return page.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def timed(
    ws: LocalSlack, tmp_path: Path, clock: FakeClock, database_url: str | None
) -> AsyncIterator[Harness]:
    """A harness whose bot runs on the fake clock."""
    h = Harness(ws, tmp_path / "approvals.db", database_url)
    yield h
    for bot in h.bots:
        await bot.stop()


# -- health --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_healthz_and_readyz_in_http_mode(harness: Harness, backend: str) -> None:
    url = base_url(harness.bot)
    status, live = await get(url + "/healthz")
    assert status == 200 and live["ok"] is True and live["loop_lag_seconds"] >= 0
    status, ready = await get(url + "/readyz")
    assert status == 200, ready
    assert ready["ready"] is True and "reason" not in ready
    checks = ready["checks"]
    assert {name: c["ok"] for name, c in checks.items()} == {
        "started": True,
        "database": True,
        "migrations": True,
        "slack": True,
    }
    assert checks["migrations"]["version"] == checks["migrations"]["expected"] >= 6
    assert len(harness.ws.calls_to("auth.test")) == 1
    await get(url + "/readyz")
    assert len(harness.ws.calls_to("auth.test")) == 1  # remembered for a while


async def test_readyz_follows_slack_auth_test(timed: Harness, clock: FakeClock) -> None:
    h = timed
    bot = await h.start_bot(clock=clock)
    url = base_url(bot) + "/readyz"
    assert (await get(url))[0] == 200
    h.ws.fail_next("auth.test", status=200, error="invalid_auth")  # the token is revoked
    assert (await get(url))[0] == 200  # the good answer is believed for 30 s
    clock.now += 31
    status, body = await get(url)
    assert status == 503
    assert body["ready"] is False
    assert body["reason"] == "Slack auth.test failed: invalid_auth"
    assert body["checks"]["slack"] == {"ok": False, "reason": body["reason"]}
    assert body["checks"]["database"]["ok"] is True
    assert TOKEN not in str(body) and SECRET not in str(body)
    assert (await get(base_url(bot) + "/healthz"))[0] == 200  # alive all the same

    assert (await get(url))[0] == 503  # and the failure for 5 s, while the token is fixed
    clock.now += 6
    status, body = await get(url)
    assert status == 200, body
    assert body["ready"] is True
    assert len(h.ws.calls_to("auth.test")) == 3 and len(h.ws.faults("auth.test")) == 1


async def test_health_port_in_socket_mode(ws: LocalSlack, tmp_path: Path) -> None:
    """Socket Mode has no HTTP port of its own: APPROVALS_HEALTH_PORT serves the operator's
    routes, from before the connection (alive, not ready) until the stop."""
    ws.request_url = None
    ws.hold("apps.connections.open")  # Slack's socket is not reachable yet
    settings = dataclasses.replace(
        settings_for(ws, tmp_path / "a.db"), app_token=ws.app_token, health_port=0
    )
    runtime = await BotRuntime.open(settings)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(runtime, stop))
    try:
        url = await ws.wait_for(lambda: runtime.health_url, timeout=10)
        assert url.startswith("http://127.0.0.1:")
        assert (await get(url + "/healthz"))[0] == 200
        status, body = await get(url + "/readyz")
        assert (status, body["reason"]) == (503, "starting up")

        ws.release("apps.connections.open")
        await ws.wait_for(lambda: ws.socket.connected, timeout=10)

        async def ready() -> bool:
            return (await get(url + "/readyz"))[0] == 200

        await wait_async(ready)
        status, page = await get(url + "/metrics")
        assert status == 200 and "approvals_store_up 1.0" in page
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(url + "/healthz")  # closed with the bot


async def wait_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll an async predicate until it is true, within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"{predicate.__name__} still false after {timeout}s")
        await asyncio.sleep(0.02)


# -- metrics -------------------------------------------------------------------------------


async def test_metrics_after_a_full_approval(timed: Harness, clock: FakeClock) -> None:
    h = timed
    bot = await h.start_bot(clock=clock, policy=REMINDING)
    msg = await deploy(h)
    await h.wait(lambda: posted(h))
    await clock.advance(16 * MINUTE, bot)  # the reminder was due at 15 min: fires 60 s late
    await h.wait(
        lambda: any("Still waiting" in r["text"] for r in h.ws.replies(DEPLOYS, msg["ts"]))
    )
    h.ws.fail_next("chat.update", status=500)  # one error Slack makes, retried by the outbox
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()), timeout=10)
    await h.idle()

    url = base_url(bot) + "/metrics"

    async def drained() -> bool:
        page = samples((await get(url))[1])
        return value(page, "approvals_outbox_depth") == 0

    await wait_async(drained, timeout=10)
    status, text = await get(url)
    assert status == 200
    page = samples(text)

    # opened at t0, decided 16 minutes later on the bot's clock
    assert value(page, "approvals_decision_seconds_count", outcome="approved") == 1
    assert value(page, "approvals_decision_seconds_sum", outcome="approved") == 16 * MINUTE
    assert value(page, "approvals_decision_seconds_bucket", outcome="approved", le="600.0") == 0
    assert value(page, "approvals_decision_seconds_bucket", outcome="approved", le="1800.0") == 1

    assert value(page, "approvals_scheduler_lag_seconds_count", kind="remind") == 1
    assert value(page, "approvals_scheduler_lag_seconds_sum", kind="remind") == 60.0

    assert value(page, "approvals_by_state", state="resumed") == 1
    assert value(page, "approvals_by_state", state="pending") == 0
    assert value(page, "approvals_runs_by_status", status="done") == 1
    assert value(page, "approvals_outbox_oldest_age_seconds") == 0
    assert value(page, "approvals_store_up") == 1

    posts = value(page, "approvals_slack_api_calls_total", method="chat.postMessage")
    assert posts == len(h.ws.calls_to("chat.postMessage")) >= 5  # message, thread, 3 lines
    updates = value(page, "approvals_slack_api_calls_total", method="chat.update")
    assert updates == len(h.ws.calls_to("chat.update")) >= 2
    error = {"method": "chat.update", "error": "internal_error"}
    assert value(page, "approvals_slack_api_errors_total", **error) == 1
    assert value(page, "approvals_pruned_runs_total") == 0
    assert value(page, "process_resident_memory_bytes") > 0

    for secret in (TOKEN, SECRET, "U0BOB", "U0ALICE", "api 1.4.2"):
        assert secret not in text


async def test_metrics_while_slack_is_down(timed: Harness, clock: FakeClock) -> None:
    """Undelivered rows show as depth and age on the bot's clock."""
    h = timed
    bot = await h.start_bot(clock=clock)
    h.ws.hold("chat.postMessage")
    await h.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    await h.wait(lambda: h.ws.holding("chat.postMessage"))
    clock.now += 90
    _, text = await get(base_url(bot) + "/metrics")
    page = samples(text)
    assert value(page, "approvals_outbox_depth") >= 1
    assert value(page, "approvals_outbox_oldest_age_seconds") == 90
    assert value(page, "approvals_by_state", state="pending") == 1
    h.ws.release("chat.postMessage")
    await h.wait(lambda: h.approval_message())


# -- retention -----------------------------------------------------------------------------


def rows(h: Harness, sql: str, *args: Any) -> int:
    return int(h.query(sql, args)[0][0])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pruning_removes_old_finished_runs_and_their_checkpoints(
    timed: Harness, clock: FakeClock, backend: str
) -> None:
    h = timed
    bot = await h.start_bot(clock=clock)
    rt = bot.runtime
    msg = await deploy(h)
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()), timeout=10)
    await h.idle()
    (old,) = await runs_with_status(rt.store, "done")

    clock.now += 20 * DAY
    waiting = await deploy(h, "web 2.0.0 prod")  # still pending when the old run goes
    (pending,) = await runs_with_status(rt.store, "waiting")
    db = h  # LangGraph's savers name their tables differently
    writes = "writes" if h.database_url is None else "checkpoint_writes"
    one = "SELECT COUNT(*) FROM {} WHERE {}=?"
    assert rows(db, one.format("checkpoints", "thread_id"), old.run_id) > 0
    assert rows(db, one.format(writes, "thread_id"), old.run_id) > 0
    sent_before = rows(db, one.format("bot_outbox", "run_id"), old.run_id)
    audit_before = rows(db, one.format("bot_audit", "run_id"), old.run_id)
    assert sent_before > 0 and audit_before == 5

    passes = rt.pruner.passes
    clock.now += 11 * DAY  # the old run finished 31 days ago, the pending one started 11
    rt.pruner.wake()
    await h.wait(lambda: rt.pruner.passes > passes)
    await h.wait(lambda: rows(db, one.format("bot_runs", "run_id"), old.run_id) == 0)

    assert rows(db, one.format("checkpoints", "thread_id"), old.run_id) == 0
    assert rows(db, one.format(writes, "thread_id"), old.run_id) == 0
    assert rows(db, one.format("bot_approvals", "run_id"), old.run_id) == 0
    assert rows(db, one.format("bot_outbox", "run_id"), old.run_id) == 0
    assert rows(db, "SELECT COUNT(*) FROM bot_votes") == 0  # the old run's vote went too
    assert rows(db, one.format("bot_audit", "run_id"), old.run_id) == audit_before
    assert rows(db, one.format("checkpoints", "thread_id"), pending.run_id) > 0
    assert (await rt.store.get_run(pending.run_id)).status == "waiting"  # type: ignore[union-attr]
    _, text = await get(base_url(bot) + "/metrics")
    assert value(samples(text), "approvals_pruned_runs_total") == 1

    # the run that was waiting still works; done now, it is kept for its own 30 days
    await h.ws.click("dan", waiting, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()), timeout=10)
    await h.idle()
    passes = rt.pruner.passes
    clock.now += 2 * 3600
    rt.pruner.wake()
    await h.wait(lambda: rt.pruner.passes > passes)
    assert (await rt.store.get_run(pending.run_id)).status == "done"  # type: ignore[union-attr]


async def test_retention_zero_keeps_everything(timed: Harness, clock: FakeClock) -> None:
    h = timed
    bot = await h.start_bot(clock=clock, retention_days=0)
    msg = await deploy(h)
    await h.ws.click("bob", msg, "Approve")
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()), timeout=10)
    await h.idle()
    assert not bot.runtime.pruner.enabled
    assert (await bot.runtime.pruner.prune(clock.now + 3650 * DAY)).runs == 0
    assert len(await runs_with_status(bot.runtime.store, "done")) == 1


# -- settings ------------------------------------------------------------------------------


ENV = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET}


def test_operations_settings(tmp_path: Path) -> None:
    env = {**ENV, "APPROVALS_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text('[deploy]\nbackend = "simulated"\n')
    s = Settings.from_env(env)
    assert (s.health_port, s.retention_days, s.host) == (None, 30.0, "127.0.0.1")
    s = Settings.from_env({**env, "APPROVALS_HEALTH_PORT": "9100", "APPROVALS_RETENTION_DAYS": "0"})
    assert (s.health_port, s.retention_days) == (9100, 0.0)
    for name, raw in [
        ("APPROVALS_HEALTH_PORT", "70000"),
        ("APPROVALS_HEALTH_PORT", "x"),
        ("APPROVALS_RETENTION_DAYS", "-1"),
        ("APPROVALS_HEALTH_PORT", "3000"),  # PORT's
        ("DATABASE_URL", "mysql://root:secret@127.0.0.1/test"),
        ("APPROVALS_RUN_LEASE_SECONDS", "1"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**env, name: raw})
