"""``/approvals``: list, mine, show, cancel, grants, run, help. Reads are answered in the ack
(they are a few milliseconds of SQLite); a cancel resumes graphs, so it runs as a task and answers
through the command's response_url."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.app.deps import Deps
from bot.app.listeners import NotAnswered, commands, read_before_ack
from bot.app.listing import Queries, help_text
from bot.render.blocks import context, grant_blocks
from bot.render.messages import NO_LOOKUP, NOT_RECORDED
from graphs import by_name

COMMAND = "/approvals"
USAGE = "list | mine | show <run> | cancel <run> | grants | run <graph> <text> | help"
DESCRIPTION = "What is waiting for you, your requests, a run's history"
GRANTS_SHOWN = 40  # grants in one answer (a message holds 50 blocks)
SPEC = {"command": COMMAND, "description": DESCRIPTION, "usage_hint": USAGE}


def register(app: AsyncApp, deps: Deps) -> None:
    queries = Queries(deps.engine)

    async def on_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        words = str(command.get("text") or "").split()
        verb, rest = (words[0].lower(), words[1:]) if words else ("help", [])
        user, channel = str(command["user_id"]), str(command["channel_id"])
        if verb in ("list", "mine") or (verb == "show" and len(rest) == 1):
            lookup = {"list": queries.decidable, "mine": queries.mine, "show": queries.show}
            try:
                text = await read_before_ack(lookup[verb](rest[0] if verb == "show" else user))
            except NotAnswered:
                text = NO_LOOKUP
        elif verb == "grants":
            await _grants(deps, user, ack)
            return
        elif verb == "cancel" and len(rest) == 1:
            await ack(text="Withdrawing…", response_type="ephemeral")
            url = command.get("response_url")
            cancel = _cancel(deps, queries, rest[0], user, channel, url)
            deps.tasks.spawn(
                deps.engine.for_person(cancel, user, channel, url, NOT_RECORDED["cancel"]),
                f"/approvals cancel by {user}",
            )
            return
        elif verb == "run":
            usage = await _run(deps, rest, command, ack)
            if usage is None:
                return
            text = usage
        elif verb in ("show", "cancel"):
            text = f"Usage: `/approvals {verb} <run>` (the run id is on `/approvals mine`)."
        elif verb == "help":
            text = help_text(deps.specs, deps.engine.policy.deployments)
        else:
            text = f"I don't know `{verb[:40]}`. Usage: `/approvals {USAGE}`.\n\n"
            text += help_text(deps.specs, deps.engine.policy.deployments)
        await ack(text=text, response_type="ephemeral")

    app.command(COMMAND)(on_command)


async def _run(deps: Deps, rest: list[str], command: dict[str, Any], ack: AsyncAck) -> str | None:
    """``/approvals run <graph> <text>``: started (and acked: None), or the usage to answer.
    ``<deployment>/<assistant>`` names an assistant on a LangGraph Server."""
    if rest and "/" in rest[0]:
        await commands.start_remote(deps, rest[0], " ".join(rest[1:]), command, ack)
        return None
    known = ", ".join(f"`{s.name}`" for s in deps.specs.values())
    if not rest:
        return f"Usage: `/approvals run <graph> <text>`. Graphs: {known}."
    spec = by_name(deps.specs, rest[0])
    if spec is None:
        return f"I don't know a graph `{rest[0][:40]}`. Graphs: {known}."
    await commands.start(deps, spec, " ".join(rest[1:]), command, ack)
    return None


async def _grants(deps: Deps, user: str, ack: AsyncAck) -> None:
    """``/approvals grants``: the live standing grants, each with Revoke where ``user`` may."""
    if not deps.engine.policy.grants_on:
        text = "Standing grants are off here: no rule of the policy allows them."
        await ack(text=text, response_type="ephemeral")
        return
    try:
        lines = await read_before_ack(deps.engine.grant_lines(user))
    except NotAnswered:
        await ack(text=NO_LOOKUP, response_type="ephemeral")
        return
    if not lines:
        text = "No standing grant is active. An approver makes one with *Approve & allow…*."
        await ack(text=text, response_type="ephemeral")
        return
    head = f"*Standing grants* ({len(lines)}): each approves matching requests until it ends."
    shown = grant_blocks(lines[:GRANTS_SHOWN])
    more = len(lines) - GRANTS_SHOWN
    tail = [context(f"…and {more} more (the App Home lists yours).")] if more > 0 else []
    text = f"{len(lines)} standing grants"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}, *shown, *tail]
    await ack(text=text, blocks=blocks, response_type="ephemeral")


async def _cancel(
    deps: Deps, queries: Queries, run_id: str, user: str, channel: str, url: str | None
) -> None:
    text = await queries.cancel(run_id, user, channel)
    if url:
        await deps.engine.respond(url, text)
