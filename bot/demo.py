"""`python -m bot demo`: the local Slack workspace and the bot in one process, on one port,
with generated credentials and nothing to configure."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
from pathlib import Path

from bot.app.listeners import approvals
from bot.config import Settings, SettingsError, deploy_options
from bot.db.liveness import lock_folder
from bot.localslack import LocalSlack
from bot.policy.parse import parse_policy
from bot.runtime import BotRuntime
from graphs import registry

log = logging.getLogger(__name__)

# bob and dan approve prod; carol is the supervisor a stuck prod approval escalates to after
# 30 seconds; staging: anyone but the requester. (The same rules as a file: README.)
DEMO_POLICY = {
    "graphs": ["graphs.agent:specs"],  # the example agent, registered as a team's own would be
    "supervisors": ["U0CAROL"],
    "admins": ["U0CAROL"],
    "deploy": {"backend": "simulated"},
    "policy": {
        "deploy": {
            "prod": {
                "approvers": ["U0BOB", "U0DAN"],
                "remind_every": "2m",
                "escalation": [{"after": "30s", "notify": ["supervisors"]}],
                "timeout": "15m",
                "on_timeout": "reject",
            }
        },
        # the example agent: an approver may let the rest of a run's emails (or all of a
        # requester's, for up to 4 hours) go without asking again: "Approve & allow…"
        "agent": {"grants": {"scopes": ["run", "requester"], "max": "4h", "tools": ["send_email"]}},
    },
}


# --agents URL: a LangGraph Server answered in #deploys (README "Agents on a LangGraph Server").
AGENTS = {
    "name": "agents",
    "channel": "C0DEPLOYS",
    "poll": "1s",
    "requester_metadata": "slack_user",
}


def demo_settings(port: int, db: Path, agents: str | None = None) -> Settings:
    deployments = [{**AGENTS, "url": agents}] if agents else []
    policy = parse_policy({**DEMO_POLICY, "deployments": deployments}, "demo policy")
    return Settings(
        bot_token="xoxb-demo-" + secrets.token_hex(12),
        signing_secret=secrets.token_hex(16),
        api_url=f"http://127.0.0.1:{port}/api/",
        db_path=db,
        port=port,
        deploy=deploy_options(policy),
        policy=policy,
    )


def workspace_file(db: Path) -> Path:
    return db.with_name(db.name + ".workspace.json")


def forget(db: Path) -> None:
    """--fresh: remove the bot's database, its processes' lock files (bot/db/liveness.py) and
    the workspace's messages."""
    for path in (
        db,
        db.with_name(db.name + "-wal"),
        db.with_name(db.name + "-shm"),
        workspace_file(db),
    ):
        path.unlink(missing_ok=True)
    shutil.rmtree(lock_folder(db), ignore_errors=True)


async def run_demo(
    port: int,
    db: Path,
    fresh: bool,
    stop: asyncio.Event,
    rate_limits: bool = False,
    agents: str | None = None,
) -> None:
    if fresh:
        forget(db)
    settings = demo_settings(port, db, agents)
    commands = [
        {"command": s.command, "description": s.description, "usage_hint": s.usage}
        for s in registry(settings.deploy).values()
        if s.command.startswith("/")
    ] + [approvals.SPEC]
    ws = LocalSlack(
        signing_secret=settings.signing_secret,
        bot_token=settings.bot_token,
        request_url=f"http://127.0.0.1:{port}/slack/events",
        commands=commands,
        state_path=workspace_file(db),
    )
    ws.set_rate_limits(rate_limits)
    runtime = await BotRuntime.open(settings)
    ws.web_app.add_routes(runtime.routes())
    try:
        await ws.start(host="127.0.0.1", port=port)
    except OSError as exc:
        await runtime.close()
        raise SettingsError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port"
        ) from None
    await runtime.begin()
    print(
        f"\n  Local Slack workspace: {ws.url}/   (Ctrl-C to stop)\n"
        f"  You are alice; type /deploy api 1.4.2 prod in #deploys, then switch to bob.\n"
        + (f"  Agents on {agents}: /approvals run agents/agent <text>\n" if agents else ""),
        flush=True,
    )
    await stop.wait()
    log.info("stopping")
    await ws.stop()
    await runtime.close()
