"""Wiring: open the database, compile the graphs, build the engine and the Bolt app; and the
two ways to serve it (HTTP, Socket Mode) with a graceful stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite
from aiohttp import web
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot import http
from bot.app import create_app
from bot.config import Settings
from bot.deps import Deps
from bot.engine import Engine
from bot.slack import WebApiPort, web_client
from bot.store import Store
from bot.tasks import TaskSet
from graphs import registry

log = logging.getLogger(__name__)


@dataclass
class BotRuntime:
    settings: Settings
    conn: aiosqlite.Connection
    store: Store
    engine: Engine
    tasks: TaskSet
    app: AsyncApp

    @classmethod
    async def open(cls, settings: Settings, clock: Callable[[], float] = time.time) -> BotRuntime:
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(settings.db_path)
        await conn.execute("PRAGMA busy_timeout=30000")  # a second process on the same file
        saver = AsyncSqliteSaver(conn)
        await saver.setup()  # WAL mode, checkpoint tables
        store = Store(conn, saver.lock)
        await store.setup()
        specs = registry(settings.deploy)
        graphs = {cmd: spec.build().compile(checkpointer=saver) for cmd, spec in specs.items()}
        client = web_client(settings.bot_token, settings.api_url)
        tasks = TaskSet()
        engine = Engine(
            store=store, slack=WebApiPort(client), graphs=graphs, tasks=tasks, clock=clock
        )
        app = create_app(Deps(engine, tasks, specs), client, settings.signing_secret)
        return cls(settings, conn, store, engine, tasks, app)

    def routes(self) -> list[web.RouteDef]:
        return http.routes(self.app, self.settings.signing_secret)

    async def close(self) -> None:
        """Let running graph steps finish within the grace period, then close the database."""
        cancelled = await self.tasks.close(self.settings.grace_seconds)
        if cancelled:
            log.warning(
                "%d task(s) cut after %.0f s; their runs continue on the next start",
                cancelled,
                self.settings.grace_seconds,
            )
        await self.conn.close()


async def serve(runtime: BotRuntime, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set: Socket Mode when an app token is configured, else HTTP."""
    s = runtime.settings
    if s.app_token:
        handler = AsyncSocketModeHandler(runtime.app, s.app_token)
        await handler.connect_async()
        log.info("connected in Socket Mode")
        await runtime.engine.recover()
        await stop.wait()
        await handler.close_async()
    else:
        app = web.Application()
        app.add_routes(runtime.routes())
        runner = web.AppRunner(app, shutdown_timeout=5)
        await runner.setup()
        await web.TCPSite(runner, s.host, s.port).start()
        log.info("listening on http://%s:%s/slack/events", s.host, s.port)
        await runtime.engine.recover()
        await stop.wait()
        await runner.cleanup()  # stop taking requests first
    await runtime.close()
