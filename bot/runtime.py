"""Wiring: open the database, compile the graphs, build the engine and the Bolt app; and the
two ways to serve it (HTTP, Socket Mode) with a graceful stop. The operator's endpoints
(/healthz, /readyz, /metrics) are on the bot's HTTP port, and on APPROVALS_HEALTH_PORT when
set (Socket Mode has no other port)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot.app import endpoint
from bot.app.bolt import create_app
from bot.app.deps import Deps
from bot.background.inbox import Inbox, Watch
from bot.background.leases import LeaseKeeper
from bot.background.outbox import Outbox, Pacer
from bot.background.retention import Pruner
from bot.background.scheduler import Scheduler
from bot.config import Settings, SettingsError, graph_specs
from bot.db.base import RunLease
from bot.db.connect import Backend, open_backend
from bot.db.store import Store
from bot.engine import Engine
from bot.remote.connections import connect
from bot.remote.runner import Connection, RemoteRunner
from bot.runner import LocalRunner, Routes
from bot.slack.client import WebApiPort, http_session, web_client
from bot.slack.groups import GroupCache
from bot.tasks import TaskSet
from bot.web import api
from bot.web.health import Health
from bot.web.metrics import Metrics
from graphs import EntryPointError, compile_spec

log = logging.getLogger(__name__)

RELEASE_SECONDS = 5.0  # a stop waits this long for a blinking database to take its runs back


@dataclass
class BotRuntime:
    """The composition root: every long-lived part of one bot process, built once by
    ``open`` in dependency order and stopped by ``close`` (new work first, the database
    last), so that nothing else builds a part of its own or outlives the stop."""

    settings: Settings
    backend: Backend  # SQLite or PostgreSQL: the checkpointer, the store, how to close
    store: Store
    engine: Engine
    outbox: Outbox
    scheduler: Scheduler
    tasks: TaskSet
    app: AsyncApp
    session: aiohttp.ClientSession
    metrics: Metrics
    health: Health
    pruner: Pruner
    leases: LeaseKeeper
    connections: dict[str, Connection] = field(default_factory=dict)  # LangGraph Servers
    inboxes: list[Inbox] = field(default_factory=list)
    started: bool = False  # begin() is done: recovery ran, the outbox and scheduler run
    health_url: str | None = None  # where serve() put the operator's port (tests, logs)
    _stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list, repr=False)

    @classmethod
    async def open(cls, settings: Settings, clock: Callable[[], float] = time.time) -> BotRuntime:
        # someone's entry point or policy that does not fit: one line, before any I/O
        specs = graph_specs(settings.policy, settings.deploy)
        backend = await open_backend(settings, RunLease(seconds=settings.run_lease))
        saver, store, ops = backend.saver, backend.store, backend.ops
        try:
            graphs = {cmd: compile_spec(spec, saver) for cmd, spec in specs.items()}
        except EntryPointError as exc:
            await backend.close()
            raise SettingsError(str(exc)) from None
        except BaseException:
            await backend.close()
            raise
        if settings.deploy is None:
            log.info(
                "/deploy is off (no [deploy] table in %s); graphs: %s",
                settings.policy.source or "the policy",
                ", ".join(s.name for s in specs.values()),
            )
        metrics = Metrics(ops, CollectorRegistry(), clock=clock)
        session = http_session(settings.slack_timeout)
        client = web_client(settings.bot_token, settings.api_url, session)
        slack = WebApiPort(client, session, metrics.slack_call)
        tasks = TaskSet()
        deployments = settings.policy.deployments
        connections = connect(deployments, settings.deployment_keys, metrics.deployment_call)
        remote = RemoteRunner(connections)
        engine = Engine(
            store=store,
            slack=slack,
            runner=Routes(
                LocalRunner(graphs, settings.durability), dict.fromkeys(connections, remote)
            ),
            commands=list(graphs),
            tasks=tasks,
            policy=settings.policy,
            groups=GroupCache(slack, clock),
            clock=clock,
            on_decided=metrics.decided,
            private={cmd: spec.private for cmd, spec in specs.items()},
        )
        remote.set_listener(engine.waiting_for)
        scheduler = Scheduler(
            store,
            engine.fire_deadline,
            clock=clock,
            lease=2 * settings.run_lease,  # a deadline a dead process was firing: taken again
            observe_lag=metrics.deadline_fired,
        )
        engine.set_deadline_listener(scheduler.wake)
        # The outbox keeps Slack's time (rate limits, backoff) on the wall clock, whatever
        # clock the engine's deadlines use.
        outbox = Outbox(
            store,
            slack,
            engine.on_delivery_failed,
            stamp=clock,
            pacer=Pacer(time.time, enabled=settings.pace),
            options=settings.outbox,
        )
        store.set_outbox_listener(outbox.wake)
        store.set_fast_path(outbox.fast_path())
        leases = LeaseKeeper(
            store,
            backend.liveness,
            engine.recover,
            engine.driving,
            released=(outbox.wake, scheduler.wake),
            # A dead process's update may land up to a call's timeout and the late-landing
            # margin after it died: a newer version of it waits that long.
            hold=settings.slack_timeout + settings.outbox.late_landing,
            abandon=engine.abandon,
        )
        store.set_runs_listener(leases.wake)
        engine.set_runs_listener(leases.wake)
        app = create_app(Deps(engine, tasks, specs), client, settings.signing_secret)
        pruner = Pruner(ops, saver, settings.retention_days, clock=clock, on_pruned=metrics.pruned)
        runtime: BotRuntime

        def started() -> bool:
            return runtime.started

        keys = settings.deployment_keys
        health = Health(
            ops,
            slack,
            started,
            clock=clock,
            deployments=[(d, keys.get(d.name)) for d in deployments],
        )
        inboxes = [
            Inbox(
                connections[d.name],
                Watch(
                    name=d.name,
                    channel=d.channel,
                    assistants=d.assistants,
                    watch=d.watch,
                    poll_seconds=d.poll_seconds,
                    requester_metadata=d.requester_metadata,
                ),
                engine,
                tasks,
                clock=clock,
                observe_look=metrics.inbox_look,
            )
            for d in deployments
        ]
        runtime = cls(
            settings,
            backend,
            store,
            engine,
            outbox,
            scheduler,
            tasks,
            app,
            session,
            metrics,
            health,
            pruner,
            leases,
            connections,
            inboxes,
        )
        return runtime

    async def begin(self) -> None:
        """Start the work that runs without requests: the outbox sender, the deadline
        scheduler, and recovery of decisions and runs a previous process left unfinished."""
        self.outbox.start()
        self.backend.listen(
            {"outbox": self.outbox.wake, "deadlines": self.scheduler.wake, "runs": self.leases.wake}
        )
        # What a stopped or dead process left (runs, Slack calls, deadlines): taken over here.
        await self.leases.look()
        self.leases.start()
        self.scheduler.start()
        self.pruner.start()
        for inbox in self.inboxes:
            inbox.start()
        self.started = True

    def routes(self) -> list[web.RouteDef]:
        """/slack/events, the HTTP API under /api (bot/web/api.py), and the operator's routes."""
        slack = endpoint.routes(self.app, self.settings.signing_secret)
        tokens = self.settings.policy.api_tokens
        return slack + api.routes(self.engine, self.tasks, tokens) + self.ops_routes()

    def ops_routes(self) -> list[web.RouteDef]:
        """/healthz, /readyz and /metrics: no Slack signature, nothing secret."""
        return self.health.routes() + self.metrics.routes()

    async def serve_ops(self, port: int) -> None:
        """The operator's routes on a port of their own, until ``close``."""
        app = web.Application()
        app.add_routes(self.ops_routes())
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, port)
        await site.start()
        self._stops.append(runner.cleanup)
        bound = runner.addresses[0][1]  # the port itself when ``port`` was 0
        self.health_url = f"http://{self.settings.host}:{bound}"
        log.info("health and metrics on %s (/healthz, /readyz, /metrics)", self.health_url)

    async def close(self, grace: float | None = None) -> int:
        """Let running graph steps finish within the grace period, cancel the rest (they
        continue from their checkpoint on the next start), close the database. Returns how
        many tasks were cut."""
        grace = self.settings.grace_seconds if grace is None else grace
        self.started = False
        await self.pruner.stop()
        await self.health.close()
        for inbox in self.inboxes:
            await inbox.stop()
        await self.leases.stop()
        cancelled = await self.tasks.close(grace)
        if cancelled:
            log.warning(
                "%d task(s) cut after %.0f s; their runs continue on the next start",
                cancelled,
                grace,
            )
        await self.scheduler.stop()
        cut = await self.outbox.stop(grace)
        if cut:
            log.warning("%d Slack call(s) cut; they are sent on the next start", cut)
        for stop in reversed(self._stops):
            await stop()
        self._stops.clear()
        await self.session.close()
        for conn in self.connections.values():
            await conn.client.aclose()
        try:  # the runs cut here are taken over at once by the next process to look
            async with asyncio.timeout(RELEASE_SECONDS):  # it is tried again through a blink
                await self.store.runs_release()
        except Exception as exc:  # the database is gone: their leases end on their own
            log.warning("could not let go of this process's runs: %s", type(exc).__name__)
        await self.backend.close()
        return cancelled


async def serve(runtime: BotRuntime, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set: Socket Mode when an app token is configured, else HTTP."""
    s = runtime.settings
    # Everything allocated so far (modules, graphs, the app) lives as long as the process:
    # keep the collector from walking it again on every collection.
    gc.freeze()
    if s.health_port is not None:  # first: liveness answers while Slack is still unreachable
        await runtime.serve_ops(s.health_port)
    if s.app_token:
        handler = AsyncSocketModeHandler(runtime.app, s.app_token)
        # slack-sdk retries the connection forever while Slack is unreachable: keep
        # listening for the stop signal meanwhile.
        connecting = asyncio.create_task(handler.connect_async(), name="socket-mode-connect")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done():
            connecting.result()  # a refusal (invalid_auth, …) ends the process here
            log.info("connected in Socket Mode")
            await runtime.begin()
            await stopping
        log.info("stopping: closing the Socket Mode connection")
        await handler.close_async()
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
    else:
        app = web.Application()
        app.add_routes(runtime.routes())
        runner = web.AppRunner(app, shutdown_timeout=5)
        await runner.setup()
        await web.TCPSite(runner, s.host, s.port).start()
        log.info("listening on http://%s:%s/slack/events", s.host, s.port)
        await runtime.begin()
        await stop.wait()
        log.info("stopping: no new requests; running steps get %.0f s", s.grace_seconds)
        await runner.cleanup()  # stop taking requests first
    await runtime.close()
