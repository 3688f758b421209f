"""Settings from the environment and the policy file (approvals.toml, see bot/policy/).

Reading happens only in ``Settings.from_env`` (called by the CLI), never at import time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from langgraph.types import Durability

from bot.policy.faults import PolicyError
from bot.policy.parse import load_policy, policy_path
from bot.policy.rules import Policy
from graphs import EntryPointError, GraphSpec, registry
from graphs.deploy import CommandBackend, DeployBackend, DeployOptions, SimulatedBackend

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
NO_BACKEND = (
    'deploy.backend is not set: name "command" (your deploy script, see the README) or '
    '"simulated" (nothing is deployed; every message says so)'
)
NOTHING_TO_RUN = (
    "no graphs to run: add a [deploy] table (the built-in /deploy), "
    'graphs = ["package.module:specs"] (your own; README: "Bring your own graph") or '
    "[[deployments]] (agents on a LangGraph Server)"
)


class SettingsError(Exception):
    """A configuration problem, reported as one line and exit code 2."""


@dataclass(frozen=True)
class OutboxOptions:
    """The sender's tunables in one place, so the runtime and the tests set them without
    reaching into the loop."""

    retry_for: float = 3600.0  # give a transient failure this long before calling it permanent
    backoff_first: float = 0.5
    backoff_max: float = 30.0
    # Longer than the longest single delivery (two calls and their timeouts). A row is taken
    # from a sender after it only when the sender's death cannot be proven (leases.py).
    lease: float = 25.0
    concurrency: int = 16
    batch: int = 500
    idle_poll: float = 30.0  # rows another process queued are seen at least this often
    coalesce: float = 0.003  # after a wake-up, let a burst of commits arrive before looking
    # A call that timed out may still be applied by Slack later. An update (or home publish)
    # that timed out is tried again only after this long, so that its late copy lands before
    # the retry instead of overwriting newer content (a later update) with older.
    late_landing: float = 10.0


@dataclass(frozen=True)
class Settings:
    """Everything the bot reads from its environment and policy file, read once at start-up
    (``from_env``) and passed down, so a test or the demo builds one and gets a bot
    configured exactly so."""

    bot_token: str
    signing_secret: str
    app_token: str | None = None
    api_url: str = DEFAULT_API_URL
    db_path: Path = Path("approvals.db")
    host: str = "127.0.0.1"
    port: int = 3000
    grace_seconds: float = 10.0
    deploy: DeployOptions | None = field(default_factory=DeployOptions)  # None: /deploy is off
    policy: Policy = field(default_factory=Policy)
    slack_timeout: float = 10.0  # one Web API call; the outbox retries past it
    outbox: OutboxOptions = field(default_factory=OutboxOptions)
    pace: bool = True  # pace calls to Slack's rate-limit tiers
    durability: Durability = "sync"  # when LangGraph writes checkpoints; see the README
    # /healthz, /readyz and /metrics on a port of their own (Socket Mode has no other HTTP
    # port; in HTTP mode they are on PORT as well). None: no such port.
    health_port: int | None = None
    retention_days: float = 30.0  # finished runs and their checkpoints are kept this long; 0: ever
    # PostgreSQL (several replicas) instead of the SQLite file; holds a password: never log it.
    database_url: str | None = field(default=None, repr=False)
    run_lease: float = 30.0  # fallback: taken over after this when a death cannot be proven
    # How long database work that fails transiently (a failover, a restart, a deadlock, a
    # locked SQLite file) is tried again before it counts as failed (bot/db/retry.py).
    db_retry_seconds: float = 60.0
    sqlite_busy_seconds: float = 5.0  # a locked file is waited for this long per try
    # APPROVALS_AUDIT_KEY: the audit chain's hashes are HMACs with it; a secret: never log it.
    audit_key: bytes | None = field(default=None, repr=False)
    # Each [[deployments]] entry's API key, from the variable it names; secrets: never log them.
    deployment_keys: Mapping[str, str | None] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
            if not env.get(name):
                raise SettingsError(f"{name} is not set")
        database_url = env.get("DATABASE_URL") or None
        if database_url and not database_url.startswith(("postgresql://", "postgres://")):
            # Never echoed: it may hold a password.
            raise SettingsError("DATABASE_URL must be a postgresql://… URL")
        run_lease = _int(env, "APPROVALS_RUN_LEASE_SECONDS", 30)
        if run_lease < 3:
            raise SettingsError(f"APPROVALS_RUN_LEASE_SECONDS must be 3 or more, got {run_lease}")
        port, health_port = _int(env, "PORT", 3000), _port(env, "APPROVALS_HEALTH_PORT")
        if health_port == port:
            raise SettingsError(f"APPROVALS_HEALTH_PORT must differ from PORT ({port})")
        policy = read_policy(policy_path(env))
        timeout = float(_int(env, "APPROVALS_SLACK_TIMEOUT", 10))
        db_retry = _int(env, "APPROVALS_DB_RETRY_SECONDS", 60)
        if db_retry < 0:
            raise SettingsError(f"APPROVALS_DB_RETRY_SECONDS must be 0 or more, got {db_retry}")
        return cls(
            bot_token=env["SLACK_BOT_TOKEN"],
            signing_secret=env["SLACK_SIGNING_SECRET"],
            app_token=env.get("SLACK_APP_TOKEN") or None,
            api_url=normalise_api_url(env.get("SLACK_API_URL") or DEFAULT_API_URL),
            db_path=Path(env.get("APPROVALS_DB") or "approvals.db"),
            host=env.get("APPROVALS_HOST") or "127.0.0.1",
            port=port,
            health_port=health_port,
            retention_days=_retention(env),
            database_url=database_url,
            run_lease=float(run_lease),
            db_retry_seconds=float(db_retry),
            grace_seconds=float(_int(env, "APPROVALS_GRACE_SECONDS", 10)),
            deploy=deploy_options(policy, require_backend=True),
            policy=policy,
            slack_timeout=timeout,
            outbox=OutboxOptions(
                retry_for=float(_int(env, "APPROVALS_SLACK_RETRY_SECONDS", 3600)),
                lease=2 * timeout + 5,
            ),
            pace=env.get("APPROVALS_PACE", "1") not in ("0", "false", "no", "off"),
            durability=_durability(env.get("APPROVALS_DURABILITY") or "sync"),
            audit_key=audit_key(env),
            deployment_keys=deployment_keys(policy, env),
        )


AUDIT_KEY_MIN = 16


def audit_key(env: Mapping[str, str]) -> bytes | None:
    """``APPROVALS_AUDIT_KEY`` as the key of the audit chain's HMAC (None: unset). Never
    echoed: it is a secret."""
    raw = env.get("APPROVALS_AUDIT_KEY") or ""
    if not raw:
        return None
    if len(raw) < AUDIT_KEY_MIN:
        raise SettingsError(
            f"APPROVALS_AUDIT_KEY must be at least {AUDIT_KEY_MIN} characters (make one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return raw.encode()


def read_policy(path: Path | None) -> Policy:
    """The validated policy file (defaults when there is none); deprecations are logged."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None
    for line in policy.deprecations:
        log.warning("%s", line)
    return policy


def deploy_options(policy: Policy, *, require_backend: bool = False) -> DeployOptions | None:
    """The /deploy graph's options from the ``[deploy]`` table; None when there is none (then
    there is no /deploy). ``bot run`` must name a backend: a deploy bot that only pretends
    must say so."""
    d = policy.deploy
    if d is None:
        return None
    backend: DeployBackend
    if d.backend == "command":
        backend = CommandBackend(argv=d.command, timeout_seconds=d.command_timeout_seconds)
    elif d.backend == "simulated" or not require_backend:
        backend = SimulatedBackend(step_seconds=d.simulated_step_seconds)
    else:
        where = policy.source or "approvals.toml (none found)"
        raise SettingsError(f"{where}: {NO_BACKEND}")
    return DeployOptions(envs=d.envs, default_env=d.default_env, backend=backend)


def graph_specs(policy: Policy, deploy: DeployOptions | None) -> dict[str, GraphSpec]:
    """Every graph the bot runs (/deploy when ``deploy`` is set, then the policy's entry
    points), checked against the policy's ``[policy.<graph>]`` tables: what ``bot run``
    starts with, and what ``check-config`` checks. None at all is an error only when there
    are no ``[[deployments]]`` either: then the bot would have nothing to answer for."""
    try:
        specs = registry(deploy, policy.graph_entry_points)
        policy.check_graphs(specs)
    except (EntryPointError, PolicyError) as exc:
        raise SettingsError(str(exc)) from None
    if not specs and not policy.deployments:
        raise SettingsError(f"{policy.source or 'approvals.toml (none found)'}: {NOTHING_TO_RUN}")
    return specs


def deployment_keys(policy: Policy, env: Mapping[str, str]) -> dict[str, str | None]:
    """Each deployment's API key, by deployment name, from the variable its ``api_key_env``
    names (None: it names none, or the variable is unset or empty). The values are secrets:
    never log them."""
    return {
        d.name: (env.get(d.api_key_env) or None) if d.api_key_env else None
        for d in policy.deployments
    }


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


def _port(env: Mapping[str, str], name: str) -> int | None:
    if not env.get(name):
        return None
    port = _int(env, name, 0)
    if not 0 < port < 65536:
        raise SettingsError(f"{name} must be a TCP port (1-65535), got {port}")
    return port


def _retention(env: Mapping[str, str]) -> float:
    days = _int(env, "APPROVALS_RETENTION_DAYS", 30)
    if days < 0:
        raise SettingsError(f"APPROVALS_RETENTION_DAYS must be 0 (keep forever) or more: {days}")
    return float(days)


def _durability(raw: str) -> Durability:
    if raw not in ("sync", "async", "exit"):
        raise SettingsError(f"APPROVALS_DURABILITY must be sync, async or exit, got {raw!r}")
    return raw  # type: ignore[return-value]
