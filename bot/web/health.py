"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness), JSON, 200 or 503.

Liveness says only that the process answers: its event loop ran this handler. It never looks
at the database or Slack, so an orchestrator does not restart a healthy process because a
dependency is down. Readiness says whether this process can do its work now: it has started
(recovery done; in Socket Mode, connected), the database answers a trivial query, its schema
is migrated, and Slack accepts the bot token (``auth.test``, remembered for a short while so
that frequent probes do not become frequent Slack calls). A failing check is named in the
body in plain words; no token, secret or request data is ever in it. Each LangGraph Server
(``[[deployments]]``) is reported under ``deployments`` (reachable, key accepted: the last
verdict of probes run in the background) without making the bot unready: its runs wait for
it, everything else works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from bot.db.ops import OpsStore
from bot.jsontypes import JSONObject
from bot.policy.rules import Deployment
from bot.remote.probe import Probe, probe
from bot.slack.client import SlackError, SlackPort


@dataclass(frozen=True)
class Check:
    """One readiness check's verdict: the probe answers with all of them, so an operator sees
    which part is not ready and why, not just a 503."""

    ok: bool
    reason: str = ""  # plain words, when not ok
    detail: JSONObject | None = None

    def as_json(self) -> JSONObject:
        out: JSONObject = {"ok": self.ok, **(self.detail or {})}
        if not self.ok:
            out["reason"] = self.reason
        return out


class Health:
    """The answers of /healthz and /readyz. It holds the last auth.test verdict for a while,
    because probes come every few seconds and each would otherwise cost a Slack call (and
    Slack's rate limit), and a lock so concurrent probes share one call."""

    def __init__(
        self,
        ops: OpsStore,
        slack: SlackPort,
        started: Callable[[], bool],
        *,
        clock: Callable[[], float] = time.time,
        auth_ttl: float = 30.0,
        auth_fail_ttl: float = 5.0,
        timeout: float = 2.0,
        deployments: Sequence[tuple[Deployment, str | None]] = (),
    ) -> None:
        self._ops = ops
        self._slack = slack
        self._started = started
        self._clock = clock
        self._auth_ttl = auth_ttl  # how long a good auth.test is believed
        self._auth_fail_ttl = auth_fail_ttl  # and a failed one (shorter: recover quickly)
        self._timeout = timeout  # each check; probes themselves time out after a second or two
        self._auth: tuple[float, Check] | None = None  # (checked at, result)
        self._auth_lock = asyncio.Lock()  # concurrent probes share one auth.test call
        # LangGraph Servers (with their keys): reported, never making the bot unready (its
        # Slack side and its own graphs work without them; their runs wait for them).
        self._deployments = tuple(deployments)
        self._probes: dict[str, tuple[float, Probe]] = {}
        self._probing: asyncio.Task[None] | None = None

    async def live(self) -> JSONObject:
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(0)  # one trip round the loop: how busy it is right now
        return {"ok": True, "time": time.time(), "loop_lag_seconds": loop.time() - before}

    async def ready(self) -> tuple[bool, JSONObject]:
        started = Check(True) if self._started() else Check(False, "starting up")
        database, migrations = await self._database()
        slack = await self._slack_auth()
        checks = {
            "started": started,
            "database": database,
            "migrations": migrations,
            "slack": slack,
        }
        failed = [c.reason for c in checks.values() if not c.ok]
        body: JSONObject = {
            "ready": not failed,
            "checks": {name: c.as_json() for name, c in checks.items()},
        }
        if failed:
            body["reason"] = "; ".join(failed)
        if self._deployments:
            body["deployments"] = await self._remote()
        return not failed, body

    async def _remote(self) -> JSONObject:
        """Each deployment's last verdict (reachable, key accepted, in plain words). The
        probes run in the background, all at once, when the verdicts are older than the
        auth.test one would be: /readyz never waits on a server that is down."""
        now = self._clock()
        stale = [
            d
            for d, _ in self._deployments
            if (kept := self._probes.get(d.name)) is None
            or now - kept[0] >= (self._auth_ttl if kept[1].ok else self._auth_fail_ttl)
        ]
        if stale and (self._probing is None or self._probing.done()):
            self._probing = asyncio.create_task(self._probe_all(), name="readyz-deployments")
        found: JSONObject = {}
        for deployment, _ in self._deployments:
            kept = self._probes.get(deployment.name)
            if kept is None:
                found[deployment.name] = {"ok": None, "words": "not tried yet"}
                continue
            verdict = kept[1]
            found[deployment.name] = {
                "ok": verdict.ok,
                "reachable": verdict.reachable,
                "key_accepted": verdict.key_accepted,
                "words": verdict.words,
            }
        return found

    async def close(self) -> None:
        """Stop a probe still on its way (the bot is stopping)."""
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)

    async def _probe_all(self) -> None:
        async def one(deployment: Deployment, key: str | None) -> None:
            verdict = await probe(deployment, key, self._timeout)
            self._probes[deployment.name] = (self._clock(), verdict)

        await asyncio.gather(*(one(d, k) for d, k in self._deployments))

    async def _database(self) -> tuple[Check, Check]:
        expected = self._ops.schema_expected
        try:
            async with asyncio.timeout(self._timeout):
                version = await self._ops.schema_version()
        except TimeoutError:
            down = Check(False, f"the database did not answer within {self._timeout:g} s")
            return down, Check(False, "schema version unknown")
        except Exception as exc:  # the class only: a driver's message may name a host or user
            down = Check(False, f"the database is unreachable ({type(exc).__name__})")
            return down, Check(False, "schema version unknown")
        detail: JSONObject = {"version": version, "expected": expected}
        if version < expected:
            why = f"database schema is at version {version}, this release needs {expected}"
            return Check(True), Check(False, why, detail)
        return Check(True), Check(True, detail=detail)

    async def _slack_auth(self) -> Check:
        async with self._auth_lock:
            now = self._clock()
            if self._auth is not None:
                at, check = self._auth
                if now - at < (self._auth_ttl if check.ok else self._auth_fail_ttl):
                    return check
            try:
                async with asyncio.timeout(self._timeout):
                    await self._slack.workspace_url()  # auth.test
                check = Check(True)
            except TimeoutError:
                check = Check(False, f"Slack auth.test did not answer within {self._timeout:g} s")
            except SlackError as exc:
                check = Check(False, f"Slack auth.test failed: {exc.code}")
            self._auth = (now, check)
            return check

    def routes(self) -> list[web.RouteDef]:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response(await self.live())

        async def readyz(_: web.Request) -> web.Response:
            ok, body = await self.ready()
            return web.json_response(body, status=200 if ok else 503)

        return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
