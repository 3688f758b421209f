"""Prometheus metrics at ``GET /metrics``, on a registry per app (no module-level state).

Two kinds: what this process observed (decision latency, Slack calls and errors, how late
deadlines fired, what pruning deleted), fed by one-line hooks in the engine, the Slack port,
the scheduler and the pruner; and what the database holds (approvals and runs by state,
outbox depth and the age of its oldest undelivered row), read at scrape time with a few
group-by queries. Nothing here carries a token, a secret, a user id or message text, so the
endpoint needs no Slack signature.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.db.ops import OpsStore, Pruned, Snapshot
from bot.model import Approval, grant_note

log = logging.getLogger(__name__)

# Seconds from an approval being opened to its decision: people take minutes to hours.
DECISION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
# Seconds a deadline fired after it was due: milliseconds normally, longer after a restart.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
APPROVAL_STATES = ("pending", "decided", "resumed", "failed", "superseded")
RUN_STATES = ("running", "waiting", "done", "failed")
OUTBOX_STATES = ("pending", "sending", "failed")
SCRAPE_TIMEOUT = 5.0  # seconds the database gets to answer a scrape's counts
# An error label is a Slack-style code or "other": a response_url's 4xx body is free text.
ERROR_LABEL = re.compile(r"[a-z0-9_]{1,48}")


def outcome(approval: Approval) -> str:
    """A decision as a label with few values (choice ids are the graph's own)."""
    if approval.choice in ("timeout", "cancelled"):
        return approval.choice
    if grant_note(approval) is not None:
        return "granted"  # approved by a standing grant, not by a person at the time
    return "approved" if approval.approved else "rejected"


class StoreCollector(Collector):
    """The database's counts, read by ``refresh`` (async, before each scrape) and yielded by
    ``collect`` (which Prometheus' client calls synchronously)."""

    def __init__(self, ops: OpsStore, clock: Callable[[], float]) -> None:
        self._ops = ops
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._at = 0.0

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                self._snapshot = await self._ops.snapshot()
        except Exception as exc:  # the scrape still answers, with approvals_store_up 0
            log.warning("metrics: could not read the database: %s", type(exc).__name__)
            self._snapshot = None
        self._at = self._clock()

    def describe(self) -> Iterable[Metric]:
        return []  # known only at scrape time; nothing here can clash with the other metrics

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot
        yield GaugeMetricFamily(
            "approvals_store_up",
            "1 when the last scrape could read the database's counts, else 0.",
            value=0 if snap is None else 1,
        )
        if snap is None:
            return
        yield _by_label(
            "approvals_by_state",
            "Approvals in the database by state (pending: waiting for a person).",
            "state",
            APPROVAL_STATES,
            snap.approvals,
        )
        yield _by_label(
            "approvals_runs_by_status",
            "Graph runs in the database by status (running, waiting for an approval, done, "
            "failed).",
            "status",
            RUN_STATES,
            snap.runs,
        )
        yield _by_label(
            "approvals_outbox_rows",
            "Outbox rows (Slack calls to make) not yet delivered, or given up on (failed).",
            "status",
            OUTBOX_STATES,
            snap.outbox,
        )
        yield GaugeMetricFamily(
            "approvals_outbox_depth",
            "Slack calls queued and not yet delivered (outbox rows pending or sending).",
            value=snap.outbox.get("pending", 0) + snap.outbox.get("sending", 0),
        )
        oldest = snap.oldest_undelivered
        yield GaugeMetricFamily(
            "approvals_outbox_oldest_age_seconds",
            "How long the oldest undelivered outbox row has waited (0: none waiting).",
            value=0.0 if oldest is None else max(0.0, self._at - oldest),
        )


def _by_label(
    name: str, doc: str, label: str, known: Iterable[str], counts: dict[str, int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value in dict.fromkeys([*known, *counts]):  # known states first, zeros included
        family.add_metric([value], counts.get(value, 0))
    return family


class Metrics:
    """The app's metrics and the hooks that feed them."""

    def __init__(
        self,
        ops: OpsStore,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
        process: bool = True,
    ) -> None:
        self.registry = r = registry  # this app's: two bots in one process never share one
        self.decision_seconds = Histogram(
            "approvals_decision_seconds",
            "Seconds from an approval being opened to its decision, by outcome.",
            ["outcome"],
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.slack_calls = Counter(
            "approvals_slack_api_calls",
            "Slack Web API calls made, by method (response_url answers as 'response_url').",
            ["method"],
            registry=r,
        )
        self.slack_errors = Counter(
            "approvals_slack_api_errors",
            "Slack calls that failed, by method and error (Slack's code, http_5xx, timeout, "
            "connection_error).",
            ["method", "error"],
            registry=r,
        )
        self.scheduler_lag = Histogram(
            "approvals_scheduler_lag_seconds",
            "Seconds a reminder, escalation or timeout fired after it was due, by kind.",
            ["kind"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.pruned_runs = Counter(
            "approvals_pruned_runs",
            "Finished runs deleted (with their checkpoints) after the retention period.",
            registry=r,
        )
        self.deployment_calls = Counter(
            "approvals_deployment_calls",
            "Calls to a LangGraph Server, by deployment and outcome (ok, refused, conflict, "
            "unreachable).",
            ["deployment", "outcome"],
            registry=r,
        )
        self.inbox_looked = Gauge(
            "approvals_inbox_last_look_timestamp_seconds",
            "When each deployment's inbox last finished a look (its lag: now minus this).",
            ["deployment"],
            registry=r,
        )
        self.store = StoreCollector(ops, clock)
        r.register(self.store)
        if process:  # memory, CPU, file descriptors, GC: the usual process health
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    # -- hooks ------------------------------------------------------------------------------
    def decided(self, approval: Approval) -> None:
        """An approval was decided (claimed) in this process."""
        if approval.decided_at is not None:
            seconds = max(0.0, approval.decided_at - approval.created_at)
            self.decision_seconds.labels(outcome(approval)).observe(seconds)

    def slack_call(self, method: str, error: str | None) -> None:
        """One Slack call ended: ``error`` is its SlackError code, None when it succeeded."""
        self.slack_calls.labels(method).inc()
        if error is not None:
            label = error if ERROR_LABEL.fullmatch(error) else "other"
            self.slack_errors.labels(method, label).inc()

    def deployment_call(self, deployment: str, outcome: str) -> None:
        self.deployment_calls.labels(deployment, outcome).inc()

    def inbox_look(self, deployment: str, at: float) -> None:
        self.inbox_looked.labels(deployment).set(at)

    def deadline_fired(self, kind: str, lag: float) -> None:
        self.scheduler_lag.labels(kind).observe(max(0.0, lag))

    def pruned(self, pruned: Pruned) -> None:
        self.pruned_runs.inc(pruned.runs)

    # -- the endpoint -----------------------------------------------------------------------
    async def render(self) -> bytes:
        await self.store.refresh()
        return generate_latest(self.registry)

    def routes(self) -> list[web.RouteDef]:
        async def metrics(_: web.Request) -> web.Response:
            body = await self.render()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

        return [web.get("/metrics", metrics)]
