"""Settings from the environment and the policy file (approvals.toml).

Reading happens only in ``Settings.from_env`` (called by the CLI), never at import time.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.types import Durability

from bot.outbox import OutboxOptions
from graphs.deploy import CommandBackend, DeployBackend, DeployOptions, SimulatedBackend

DEFAULT_API_URL = "https://slack.com/api/"


class SettingsError(Exception):
    """A configuration problem, reported as one line and exit code 2."""


@dataclass(frozen=True)
class Settings:
    bot_token: str
    signing_secret: str
    app_token: str | None = None
    api_url: str = DEFAULT_API_URL
    db_path: Path = Path("approvals.db")
    host: str = "127.0.0.1"
    port: int = 3000
    grace_seconds: float = 10.0
    deploy: DeployOptions = field(default_factory=DeployOptions)
    slack_timeout: float = 10.0  # one Web API call; the outbox retries past it
    outbox: OutboxOptions = field(default_factory=OutboxOptions)
    pace: bool = True  # pace calls to Slack's rate-limit tiers
    durability: Durability = "sync"  # when LangGraph writes checkpoints; see the README

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
            if not env.get(name):
                raise SettingsError(f"{name} is not set")
        config_path = env.get("APPROVALS_CONFIG")
        if config_path and not Path(config_path).is_file():
            raise SettingsError(f"APPROVALS_CONFIG: no such file: {config_path}")
        path = Path(config_path or "approvals.toml")
        policy = load_policy(path) if path.is_file() else {}
        timeout = float(_int(env, "APPROVALS_SLACK_TIMEOUT", 10))
        return cls(
            bot_token=env["SLACK_BOT_TOKEN"],
            signing_secret=env["SLACK_SIGNING_SECRET"],
            app_token=env.get("SLACK_APP_TOKEN") or None,
            api_url=normalise_api_url(env.get("SLACK_API_URL") or DEFAULT_API_URL),
            db_path=Path(env.get("APPROVALS_DB") or "approvals.db"),
            port=_int(env, "PORT", 3000),
            grace_seconds=float(_int(env, "APPROVALS_GRACE_SECONDS", 10)),
            deploy=deploy_options(policy, path),
            slack_timeout=timeout,
            pace=env.get("APPROVALS_PACE", "1") not in ("0", "false", "no", "off"),
            durability=_durability(env.get("APPROVALS_DURABILITY") or "sync"),
            outbox=OutboxOptions(
                retry_for=float(_int(env, "APPROVALS_SLACK_RETRY_SECONDS", 3600)),
                lease=2 * timeout + 5,
            ),
        )


def normalise_api_url(url: str) -> str:
    """slack-sdk joins base_url and method by plain concatenation: it needs the trailing slash."""
    return url if url.endswith("/") else url + "/"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


def _durability(raw: str) -> Durability:
    if raw not in ("sync", "async", "exit"):
        raise SettingsError(f"APPROVALS_DURABILITY must be sync, async or exit, got {raw!r}")
    return raw  # type: ignore[return-value]


def load_policy(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from None


def deploy_options(
    policy: Mapping[str, Any], source: Path | str = "approvals.toml"
) -> DeployOptions:
    """Turn the ``[deploy]`` and ``[approvers]`` tables into the /deploy graph's options.

    ```toml
    [deploy]
    envs = ["staging", "prod"]          # allowed environments, first is not special
    default_env = "staging"
    backend = "simulated"               # or "command"
    command = ["./deploy.sh", "{service}", "{version}", "{env}"]
    command_timeout_seconds = 900
    simulated_step_seconds = 1.0

    [approvers]     # env -> user ids; an unlisted env: anyone but the requester
    prod = ["U0BOB", "U0DAN"]
    ```
    """
    section = policy.get("deploy", {})
    envs = tuple(section.get("envs", ("staging", "prod")))
    default_env = section.get("default_env", "staging" if "staging" in envs else envs[0])
    if not envs or default_env not in envs:
        raise SettingsError(f"{source}: deploy.default_env {default_env!r} is not in deploy.envs")
    approvers = {str(k): tuple(map(str, v)) for k, v in policy.get("approvers", {}).items()}
    return DeployOptions(
        envs=envs, default_env=default_env, approvers=approvers, backend=_backend(section, source)
    )


def _backend(section: Mapping[str, Any], source: Path | str) -> DeployBackend:
    kind = section.get("backend", "simulated")
    if kind == "simulated":
        return SimulatedBackend(step_seconds=float(section.get("simulated_step_seconds", 1.0)))
    if kind == "command":
        argv = section.get("command")
        if not argv or not all(isinstance(a, str) for a in argv):
            raise SettingsError(f"{source}: deploy.command must be a list of strings")
        return CommandBackend(
            argv=tuple(argv), timeout_seconds=float(section.get("command_timeout_seconds", 900))
        )
    raise SettingsError(f"{source}: deploy.backend must be 'simulated' or 'command', not {kind!r}")
