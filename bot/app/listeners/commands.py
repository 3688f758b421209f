"""Slash commands that start graphs: parse, ack (with usage help when the arguments are
wrong), start the run. ``/approvals run <name> <text>`` starts any registered graph the same
way (``start``). ``/deploy`` while it is off (no ``[deploy]`` table) is answered, not
ignored: the Slack app may still list it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.app.deps import Deps
from bot.render.messages import NOT_RECORDED
from graphs import GraphSpec, UsageError
from graphs.deploy import COMMAND as DEPLOY

IN_A_CHANNEL = (
    "Approvals happen where everyone can see them: run `{command}` in a channel "
    "(invite me there with `/invite @approvals`)."
)
DEPLOY_OFF = (
    "Deploys are not set up here, so `/deploy` does nothing. Whoever runs this bot can turn "
    "it on with a `[deploy]` table in its policy file, or take `/deploy` out of the Slack app. "
    "`/approvals run` lists what you can start."
)


def register(app: AsyncApp, deps: Deps) -> None:
    for spec in deps.specs.values():
        if spec.command.startswith("/"):  # the others start with `/approvals run <name>`
            app.command(spec.command)(_listener(spec, deps))
    if DEPLOY not in deps.specs:
        app.command(DEPLOY)(_deploy_off)


async def _deploy_off(ack: AsyncAck) -> None:
    await ack(text=DEPLOY_OFF, response_type="ephemeral")


def is_direct_message(command: dict[str, Any]) -> bool:
    """A DM or group DM: nobody but its members could see, or decide, the request."""
    channel = str(command.get("channel_id") or "")
    name = str(command.get("channel_name") or "")
    return channel.startswith("D") or name == "directmessage" or name.startswith("mpdm-")


def _listener(spec: GraphSpec, deps: Deps) -> Callable[..., Awaitable[None]]:
    async def on_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        await start(deps, spec, str(command.get("text") or ""), command, ack)

    return on_command


async def start(
    deps: Deps, spec: GraphSpec, text: str, command: dict[str, Any], ack: AsyncAck
) -> None:
    """Parse ``text`` for ``spec``, ack, and start the run as a task."""
    try:
        args = spec.parse(text)
    except UsageError as exc:
        await ack(text=str(exc), response_type="ephemeral")
        return
    channel = str(command["channel_id"])
    if is_direct_message(command):
        # Typed in a DM: post where the policy says, or refuse (nobody else would see it).
        target = deps.engine.channel_for(spec.command, args, "D")
        if target is None:
            await ack(text=IN_A_CHANNEL.format(command=spec.command), response_type="ephemeral")
            return
        channel = target
    await ack()
    user, url = command["user_id"], command.get("response_url")
    started = deps.engine.start(spec.command, args, user, channel, url)
    words = NOT_RECORDED["command"].format(command=f"`{spec.command}`")
    deps.tasks.spawn(
        deps.engine.for_person(started, user, channel, url, words),
        f"start {spec.command} by {user}",
    )


async def start_remote(
    deps: Deps, graph: str, text: str, command: dict[str, Any], ack: AsyncAck
) -> None:
    """``/approvals run <deployment>/<assistant> <text>``: a run of an assistant on a
    LangGraph Server, the text as the user's message. Posted where it was typed (typed in
    a DM: in the deployment's channel)."""
    name, _, assistant = graph.partition("/")
    deployment = deps.engine.policy.deployment(name)
    if deployment is None:
        known = ", ".join(f"`{d.name}`" for d in deps.engine.policy.deployments) or "none"
        await ack(
            text=f"I don't know a deployment `{name[:40]}` (here: {known}).",
            response_type="ephemeral",
        )
        return
    if not assistant or (deployment.assistants and assistant not in deployment.assistants):
        served = ", ".join(f"`{name}/{a}`" for a in deployment.assistants) or "any assistant"
        await ack(
            text=f"`{name}` serves {served}; e.g. `/approvals run {name}/agent <text>`.",
            response_type="ephemeral",
        )
        return
    if not text.strip():
        await ack(
            text=f"Say what to ask: `/approvals run {graph} <text>`.", response_type="ephemeral"
        )
        return
    channel = str(command["channel_id"])
    if is_direct_message(command):
        channel = deployment.channel
    await ack()
    user, url = command["user_id"], command.get("response_url")
    started = deps.engine.start(graph, {"text": text, "channel": channel}, user, channel, url)
    words = NOT_RECORDED["command"].format(command=f"`/approvals run {graph}`")
    deps.tasks.spawn(
        deps.engine.for_person(started, user, channel, url, words),
        f"start {graph} by {user}",
    )
