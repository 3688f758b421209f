"""What ``/approvals`` shows: read-only views over the store, worded for Slack (mrkdwn)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from bot.engine import Engine, command_line
from bot.interrupts import normalise
from bot.model import Approval, Run
from bot.policy.authz import may_decide, may_withdraw
from bot.policy.rules import Deployment
from bot.render import blocks
from bot.slack.client import SlackError
from graphs import GraphSpec
from graphs.deploy import COMMAND as DEPLOY

log = logging.getLogger(__name__)

PAGE = 200  # pending approvals read per page while looking for the ones a person may decide
SHOWN = 15  # lines in one answer (Slack cuts long ephemerals; the App Home pages the rest)
HELP = """*`/approvals`*: what is waiting, and what happened
• `/approvals list`: requests you can decide, with links
• `/approvals mine`: your requests still open
• `/approvals show <run>`: one run's history (who, what, when)
• `/approvals cancel <run>`: withdraw your request (admins: anyone's)
• `/approvals grants`: standing grants in force, with Revoke
• `/approvals run <graph> <text>`: start a graph ({graphs})
• `/approvals help`: this"""


def help_text(specs: Mapping[str, GraphSpec], remote: Sequence[Deployment] = ()) -> str:
    """``/approvals help``, naming the graphs there are (so /deploy only when it is on) and
    the assistants of each LangGraph Server (``<deployment>/<assistant>``)."""
    names = [f"`{s.name}`" for s in specs.values()]
    for d in remote:
        names += [f"`{d.name}/{a}`" for a in d.assistants] or [f"`{d.name}/<assistant>`"]
    example = "; e.g. `/approvals run deploy api 1.4.2`" if DEPLOY in specs else ""
    return HELP.format(graphs=f"here: {', '.join(names)}{example}")


class Queries:
    """The answers of ``/approvals``, read through the engine's store and rules. It keeps the
    workspace URL once ``auth.test`` gave it, for permalinks."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store
        self._url: str | None = None

    async def _link(self, a: Approval) -> str:
        """A permalink to the approval's message (``auth.test`` gives the workspace URL)."""
        if self._url is None:
            try:
                self._url = await self._engine.slack.workspace_url()
            except SlackError as exc:
                log.warning("no permalinks: auth.test failed: %s", exc.code)
                return ""
        if not (a.channel and a.ts and self._url):
            return ""
        return f"{self._url.rstrip('/')}/archives/{a.channel}/p{a.ts.replace('.', '')}"

    def _may_decide(self, a: Approval, run: Run, user: str) -> bool:
        request = normalise(a.request, a.meta)
        rules = self._engine.policy.rules_of(a, run)
        return may_decide(request, rules, run.requester, user, self._engine.groups.members)

    async def decidable(self, user: str) -> str:
        """Pending approvals ``user`` may decide, newest first."""
        found: list[tuple[Approval, Run]] = []
        before: float | None = None
        for _ in range(50):  # at most 10,000 pending looked at
            page = await self._store.pending_page(before, PAGE)
            found += [(a, r) for a, r in page if self._may_decide(a, r, user)]
            if len(found) >= SHOWN or len(page) < PAGE:
                break
            before = page[-1][0].created_at
        if not found:
            return "Nothing is waiting for you. 🎉"
        lines = [f"*Waiting for your decision* ({len(found[:SHOWN])} shown):"]
        for a, run in found[:SHOWN]:
            lines.append(await self._line(a, run))
        return "\n".join(lines)

    async def mine(self, user: str) -> str:
        runs = await self._store.runs_waiting_by(user, SHOWN)
        if not runs:
            return "You have no open requests."
        lines = ["*Your open requests:*"]
        for run in runs:
            for a in await self._store.approvals_of(run.run_id):
                if a.status == "pending":
                    lines.append(await self._line(a, run))
            if run.status == "running":
                line = blocks.escape(command_line(run))
                lines.append(f"• `{line}` is running · run `{run.run_id}`")
        return "\n".join(lines)

    async def _line(self, a: Approval, run: Run) -> str:
        title = blocks.escape(normalise(a.request, a.meta).title)
        link = await self._link(a)
        shown = f"<{link}|{title}>" if link else title
        return (
            f"• {shown} · asked by <@{run.requester}> {blocks.slack_date(a.created_at)}"
            f" · run `{run.run_id}`"
        )

    async def show(self, run_id: str) -> str:
        run = await self._store.get_run(run_id)
        if run is None:
            return f"I don't know a run `{blocks.escape(run_id)}`. `/approvals mine` lists yours."
        lines = [f"*`{blocks.escape(command_line(run))}`* · run `{run.run_id}` · {run.status}"]
        for e in await self._store.run_history(run_id):
            at = datetime.fromtimestamp(e["at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            who = f" <@{e['user_id']}>" if e["user_id"] else ""
            if e["event"] == "decided" and "grant" in json.loads(e["detail"] or "{}"):
                who += " (standing grant)"
            lines.append(f"• {at} {blocks.escape(e['event'])}{who}")
        return blocks.cut("\n".join(lines), 3000)

    async def cancel(self, run_id: str, user: str, channel: str) -> str:
        run = await self._store.get_run(run_id)
        if run is None:
            return f"I don't know a run `{blocks.escape(run_id)}`."
        if not may_withdraw(self._engine.policy.admins, run.requester, user):
            return f"Only <@{run.requester}>, who asked, or an admin can cancel this run."
        pending = [a for a in await self._store.approvals_of(run_id) if a.status == "pending"]
        if not pending:
            return "That run is not waiting for anyone; there is nothing to cancel."
        for a in pending:
            await self._engine.withdraw(a.interrupt_id, user, channel)
        return f"Withdrawn: `{blocks.escape(command_line(run))}`."
