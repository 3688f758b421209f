"""Command line: ``python -m bot run`` (the bot), ``python -m bot demo`` (bot + local Slack),
``python -m bot check-config [--offline] [PATH]`` (validate the policy file and try its
deployments, then exit), and the terminal's ``pending``, ``approve``, ``reject``, ``decide``
and ``audit`` (bot/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bot import cli
from bot.app.ingress import quiet_bolt_logs
from bot.config import Settings, SettingsError

DESCRIPTION = (
    "Approvals for LangGraph, in Slack: the bot, a local demo workspace, and deciding from "
    "this terminal. 'python -m bot COMMAND --help' says more about one command."
)


class Described:
    """``add_subparsers()`` whose commands each get their one-line help as the description
    of their own --help (argparse shows it only in the list of commands otherwise)."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:  # argparse's own
        said = str(kwargs.get("help") or "")
        kwargs.setdefault("description", said[:1].upper() + said[1:] + "." if said else None)
        return self._sub.add_parser(name, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    # --help is for people at a terminal: plain text (the docstrings are for the code's readers)
    parser = argparse.ArgumentParser(prog="python -m bot", description=DESCRIPTION)
    sub = Described(parser.add_subparsers(dest="cmd", required=True))
    sub.add_parser("run", help="run the bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)")
    demo = sub.add_parser("demo", help="run a local Slack workspace and the bot, in a browser")
    demo.add_argument("--port", type=int, default=3000, help="default: %(default)s")
    demo.add_argument(
        "--db",
        type=Path,
        default=Path("approvals-demo.db"),
        help="SQLite file (default: %(default)s)",
    )
    demo.add_argument("--fresh", action="store_true", help="start from an empty workspace")
    demo.add_argument(
        "--rate-limits", action="store_true", help="enforce Slack's per-method rate limits (429)"
    )
    demo.add_argument(
        "--agents",
        metavar="URL",
        help="a LangGraph Server (e.g. langgraph dev) whose interrupts are answered in "
        "#deploys, as deployment 'agents'",
    )
    check = sub.add_parser(
        "check-config",
        help=(
            "check the policy file and the graphs it names as run would, and try its "
            "deployments, then exit (0 ok, 1 a deployment failed, 2 the file is not ok)"
        ),
    )
    check.add_argument(
        "path", nargs="?", type=Path, help="default: $APPROVALS_CONFIG, else ./approvals.toml"
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="do not try the [[deployments]] (their URL, key and assistants)",
    )
    man = sub.add_parser("manifest", help="print the Slack app manifest (JSON), every command")
    man.add_argument("--url", help="HTTP mode: the public https://…/slack/events URL")
    cli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.cmd == "check-config":
        return _check_config(args.path, offline=args.offline)
    if args.cmd == "manifest":
        return _manifest(args.url)
    # psycopg_pool logs each failed reconnection of an outage, with the server's address:
    # bot/db/retry.py says once per outage what matters, without it.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    if args.cmd in cli.COMMANDS:
        return cli.main(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # No request body in any log line, including the ones Bolt writes itself.
    quiet_bolt_logs(logging.getLogger())
    # One line per request is noise here (httpx: langgraph-sdk's calls to a LangGraph Server,
    # every inbox poll; what matters is said once per outage by bot/remote/runner.py).
    for noisy in ("slack_bolt", "aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Bolt reads SLACK_BOT_TOKEN itself and warns that our client (which carries the same
    # token, plus SLACK_API_URL and retry handlers) wins: expected, so not worth a warning.
    logging.getLogger("slack_bolt.AsyncApp").addFilter(
        lambda record: "`token` will be unused" not in record.getMessage()
    )
    try:
        if args.cmd == "run":
            settings = Settings.from_env()
            from bot.runtime import BotRuntime, serve

            async def run(stop: asyncio.Event) -> None:
                await serve(await BotRuntime.open(settings), stop)

            return _until_signal(run)
        from bot.demo import run_demo

        return _until_signal(
            lambda stop: run_demo(
                args.port, args.db, args.fresh, stop, args.rate_limits, args.agents
            )
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _manifest(url: str | None) -> int:
    """Print the manifest, with the commands of the policy file's entry points too."""
    from bot.app.manifest import render
    from bot.config import deploy_options, read_policy
    from bot.policy.parse import policy_path
    from graphs import EntryPointError, registry

    try:
        policy = read_policy(policy_path(os.environ))
        specs = registry(deploy_options(policy), policy.graph_entry_points)
    except (SettingsError, EntryPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(specs, url))
    return 0


def _check_config(path: Path | None, *, offline: bool = False) -> int:
    """Validate the policy file as ``run`` would, without starting the bot: the file, the
    deploy backend, and the graphs it names (imported and built, nothing run). ``ok: …`` on
    stdout and exit 0, or the one-line fault on stderr and exit 2. Deprecations are warnings
    on stderr. Then each deployment, tried unless ``offline``: exit 1 when one fails."""
    from bot.config import deploy_options, graph_specs
    from bot.policy.faults import PolicyError
    from bot.policy.parse import load_policy, policy_path
    from graphs import EntryPointError, compile_spec

    path = path or policy_path(os.environ)
    try:
        policy = load_policy(path)
        for line in policy.deprecations:
            print(f"warning: {line}", file=sys.stderr)
        deploy = deploy_options(policy, require_backend=True)
        specs = graph_specs(policy, deploy)
        for spec in specs.values():
            compile_spec(spec, None)
    except (PolicyError, SettingsError, EntryPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sets, levels = policy.rule_sets, policy.escalation_levels
    graphs = ", ".join(s.name for s in specs.values()) or "none"
    off = "; /deploy is off (no [deploy] table)" if deploy is None else ""
    print(
        f"ok: {path}: {sets} rule set{'s' * (sets != 1)}, "
        f"{levels} escalation level{'s' * (levels != 1)}; graphs: {graphs}{off}"
    )
    return cli.check_deployments(policy, os.environ, cli.Terminal.std(), offline=offline)


def _until_signal(body: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``body`` until SIGTERM or Ctrl-C sets its stop event; then it shuts down itself."""

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await body(stop)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
