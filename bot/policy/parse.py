"""The approval policy file (``approvals.toml``), strictly validated.

Nothing is read at import time; ``load_policy`` reads one file when called. Every mistake in
the file is one ``PolicyError`` line naming the file, the key and the fault, e.g.::

    approvals.toml: policy.deploy.prd: unknown env "prd" (deploy.envs: staging, prod)

What the file gives is in bot/policy/rules.py.
"""

from __future__ import annotations

import re
import tomllib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast
from zoneinfo import ZoneInfoNotFoundError

from bot.policy.faults import PolicyError, did_you_mean, dotted, kind_of, one_line, show
from bot.policy.rules import (
    ANYONE,
    DAYS,
    DECISIONS,
    FREEZE_ACTIONS,
    GRANT_SCOPES,
    ON_TIMEOUT,
    SUPERVISORS,
    ApiToken,
    Deployment,
    DeploySection,
    FreezeWindow,
    GrantRule,
    GrantScope,
    Level,
    OnTimeout,
    Policy,
    Rules,
    format_duration,
    id_kind,
    is_int,
    is_number,
    parse_duration,
    too_few,
    zone,
)
from bot.slackids import CHANNEL_ID

DEFAULT_PATH = Path("approvals.toml")
ENTRY_POINT_RE = re.compile(
    r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII
)
GRAPH_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*", re.ASCII)
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
HHMM_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)", re.ASCII)
BACKENDS = ("simulated", "command")
SCOPES = ("read", "decide")
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
DEPLOYMENT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*", re.ASCII)
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)
ASSISTANT_RE = re.compile(r"[^\s/]+")  # a graph id or an assistant id: "/" ends the deployment's
POLL_MIN, POLL_MAX = 0.5, 3600.0


def policy_path(env: Mapping[str, str], cwd: Path | None = None) -> Path | None:
    """Where the policy file is: ``APPROVALS_CONFIG`` if set (it must exist, which
    ``load_policy`` checks), else ``./approvals.toml`` if present, else None (defaults)."""
    if env.get("APPROVALS_CONFIG"):
        return Path(env["APPROVALS_CONFIG"])
    default = (cwd or Path.cwd()) / DEFAULT_PATH
    return default if default.is_file() else None


def load_policy(path: Path | None) -> Policy:
    """Read and validate the file; None gives the built-in defaults. A path that does not
    exist is an error (resolve an optional default with ``policy_path`` first)."""
    if path is None:
        return Policy()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(source, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        fault = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyError(source, "", f"cannot read: {fault}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, "", f"invalid TOML: {one_line(str(exc))}") from None
    return parse_policy(data, source)


TOP_KEYS = (
    "supervisors",
    "admins",
    "graphs",
    "deploy",
    "policy",
    "approvers",
    "api",
    "deployments",
)
DEPLOY_KEYS = (
    "envs",
    "default_env",
    "backend",
    "command",
    "command_timeout_seconds",
    "simulated_step_seconds",
)
RULE_KEYS = (
    "approvers",
    "min_approvals",
    "allow_self_approval",
    "reject_ends",
    "comment_required",
    "requesters",
    "channel",
    "remind_every",
    "escalation",
    "repeat",
    "timeout",
    "on_timeout",
    "allow_weaker_overrides",
    "freeze_approvers",
    "freeze",
    "grants",
)
GRANT_KEYS = ("scopes", "max", "tools")
LEVEL_KEYS = ("after", "notify")
FREEZE_KEYS = ("days", "dates", "from_date", "to_date", "from", "to", "tz", "action")
API_KEYS = ("tokens",)
TOKEN_KEYS = ("name", "token_sha256", "scopes", "as", "act_as")
TOKEN_SHAPE = "{ name = …, token_sha256 = …, scopes = […] }"
DEPLOYMENT_KEYS = (
    "name",
    "url",
    "api_key_env",
    "channel",
    "assistants",
    "watch",
    "poll",
    "requester_metadata",
)
KEY_IN_FILE = (
    "never put an API key in this file: set it in an environment variable and name that "
    'variable with api_key_env (e.g. api_key_env = "SUPPORT_LANGGRAPH_API_KEY")'
)


def parse_policy(data: Mapping[str, Any], source: str) -> Policy:
    """Validate parsed TOML; ``source`` names the file in every error."""
    return _Parser(source).policy(data)


class _Parser:
    """One reading of the file: its name for every fault, and what earlier tables said that
    later ones are checked against (the deploy envs, whether supervisors are set, the
    deployments whose [policy.<deployment>] sub-tables name assistants)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.envs: tuple[str, ...] = ()
        self.supervisors: tuple[str, ...] = ()
        self.deployments: dict[str, Deployment] = {}

    def fail(self, key: str, fault: str) -> PolicyError:
        return PolicyError(self.source, key, fault)

    # -- top level ------------------------------------------------------------------------------
    def policy(self, data: Mapping[str, Any]) -> Policy:
        for key, value in data.items():
            if key not in TOP_KEYS:
                raise self.unknown(dotted(key), key, value, TOP_KEYS)
        deploy = self.deploy(self.table(data, "deploy", "deploy")) if "deploy" in data else None
        self.envs = (deploy or DeploySection()).envs
        # before [policy], which may come first in the file but names their assistants
        deployments = self.deployments_of(data.get("deployments", []))
        self.deployments = {d.name: d for d in deployments}
        supervisors = self.ids(data.get("supervisors", []), "supervisors", {"user", "group"})
        self.supervisors = supervisors
        admins = self.ids(data.get("admins", []), "admins", {"user", "group"})
        entry_points = self.entry_points(data.get("graphs", []))
        layers: dict[tuple[str, str | None], dict[str, tuple[Any, str]]] = {}
        for graph, value in self.table(data, "policy", "policy").items():
            self.graph(graph, value, layers)
        deprecations = self.legacy(self.table(data, "approvers", "approvers"), layers)
        api_tokens = self.api(self.table(data, "api", "api"))
        policy = Policy(
            source=self.source,
            supervisors=supervisors,
            admins=admins,
            graph_entry_points=entry_points,
            deploy=deploy,
            deprecations=deprecations,
            api_tokens=api_tokens,
            deployments=deployments,
            layers=MappingProxyType({k: MappingProxyType(v) for k, v in layers.items()}),
        )
        self.check(policy)
        return policy

    def deploy(self, t: Mapping[str, Any]) -> DeploySection:
        for key, value in t.items():
            if key not in DEPLOY_KEYS:
                raise self.unknown(f"deploy.{dotted(key)}", key, value, DEPLOY_KEYS)
        base = DeploySection()
        envs = self.envs_of(t["envs"]) if "envs" in t else base.envs
        default_env = self.default_env(t, envs)
        backend = t.get("backend")
        if backend is not None and backend not in BACKENDS:
            raise self.fail(
                "deploy.backend", f'must be "simulated" or "command", got {show(backend)}'
            )
        command = self.command(t, backend)
        timeout = self.number(t, "command_timeout_seconds", "deploy", base.command_timeout_seconds)
        if timeout <= 0:
            raise self.fail(
                "deploy.command_timeout_seconds", f"must be more than 0, got {show(timeout)}"
            )
        step = self.number(t, "simulated_step_seconds", "deploy", base.simulated_step_seconds)
        if step < 0:
            raise self.fail("deploy.simulated_step_seconds", f"must be 0 or more, got {show(step)}")
        return DeploySection(envs, default_env, backend, command, timeout, step)

    def envs_of(self, v: Any) -> tuple[str, ...]:
        envs = self.strings(v, "deploy.envs", "environment names")
        if not envs:
            raise self.fail("deploy.envs", "must list at least one environment")
        for i, e in enumerate(envs):
            if not e or any(c.isspace() for c in e):
                raise self.fail(f"deploy.envs[{i}]", f"not an environment name: {show(e)}")
        return envs

    def default_env(self, t: Mapping[str, Any], envs: tuple[str, ...]) -> str:
        if "default_env" not in t:
            return "staging" if "staging" in envs else envs[0]
        default_env = self.string(t["default_env"], "deploy.default_env", "an environment")
        if default_env not in envs:
            raise self.fail(
                "deploy.default_env",
                f"unknown env {show(default_env)} (deploy.envs: {', '.join(envs)})",
            )
        return default_env

    def command(self, t: Mapping[str, Any], backend: Any) -> tuple[str, ...]:
        if "command" not in t:
            if backend == "command":
                raise self.fail("deploy.command", 'missing: deploy.backend = "command" needs it')
            return ()
        command = self.strings(t["command"], "deploy.command", "strings (argv)")
        if not command or not command[0]:
            raise self.fail("deploy.command", "must name a program: the list is empty")
        return command

    def entry_points(self, value: Any) -> tuple[str, ...]:
        items = self.strings(value, "graphs", '"module:attribute" strings')
        for i, item in enumerate(items):
            if not ENTRY_POINT_RE.fullmatch(item):
                raise self.fail(
                    f"graphs[{i}]", f'must look like "package.module:attribute", got {show(item)}'
                )
        return items

    def graph(
        self,
        graph: str,
        value: Any,
        layers: dict[tuple[str, str | None], dict[str, tuple[Any, str]]],
    ) -> None:
        path = f"policy.{dotted(graph)}"
        if not isinstance(value, Mapping):
            raise self.fail(
                path, "unknown key (rules go in [policy.default] or [policy.<graph>] tables)"
            )
        if not GRAPH_NAME_RE.fullmatch(graph):
            raise self.fail(
                path, 'not a graph name: lowercase letters, digits, "-" and "_" (e.g. "deploy")'
            )
        layer: dict[str, tuple[Any, str]] = {}
        layers[(graph, None)] = layer
        for key, v in value.items():
            where = f"{path}.{dotted(key)}"
            if key in RULE_KEYS:
                layer[key] = (self.rule(key, v, where), where)
                continue
            if not isinstance(v, Mapping):
                raise self.unknown(where, key, v, RULE_KEYS)
            self.sub_table(graph, key, where)
            sub_layer: dict[str, tuple[Any, str]] = {}
            layers[(graph, key)] = sub_layer
            for k, rv in v.items():
                w = f"{where}.{dotted(k)}"
                if k not in RULE_KEYS:
                    raise self.unknown(w, k, rv, RULE_KEYS)
                sub_layer[k] = (self.rule(k, rv, w), w)

    def sub_table(self, graph: str, key: str, where: str) -> None:
        """``[policy.<graph>.<key>]``: an env of a local graph, or an assistant of a
        deployment (one it serves, when it lists them)."""
        if graph == "default":
            raise self.fail(where, "unknown table (per-env rules go in [policy.<graph>.<env>])")
        deployment = self.deployments.get(graph)
        if deployment is not None:
            if deployment.assistants and key not in deployment.assistants:
                served = ", ".join(deployment.assistants)
                raise self.fail(
                    where,
                    f"unknown assistant {show(key)}: deployment {show(graph)} serves only "
                    f"{served} (its assistants = [...])",
                )
        elif key not in self.envs:
            raise self.fail(where, f"unknown env {show(key)} (deploy.envs: {', '.join(self.envs)})")

    def legacy(
        self, t: Mapping[str, Any], layers: dict[tuple[str, str | None], dict[str, tuple[Any, str]]]
    ) -> tuple[str, ...]:
        if not t:
            return ()
        for env, value in t.items():
            where = f"approvers.{dotted(env)}"
            if env not in self.envs:
                raise self.fail(
                    where, f"unknown env {show(env)} (deploy.envs: {', '.join(self.envs)})"
                )
            ids = self.ids(value, where, {"user", "group"})
            layer = layers.setdefault(("deploy", env), {})
            if "approvers" in layer:
                raise self.fail(where, f"also set as {layer['approvers'][1]}; keep only that one")
            layer["approvers"] = (ids, where)
        envs = ", ".join(t)
        return (
            f"{self.source}: [approvers] is deprecated: write approvers = [...] in "
            f"[policy.deploy.<env>] instead (for {envs})",
        )

    # -- the HTTP API's tokens -----------------------------------------------------------------
    def api(self, t: Mapping[str, Any]) -> tuple[ApiToken, ...]:
        for key, value in t.items():
            if key not in API_KEYS:
                raise self.unknown(f"api.{dotted(key)}", key, value, API_KEYS)
        raw = t.get("tokens", [])
        if not isinstance(raw, list):
            raise self.fail(
                "api.tokens", f"must be a list of tables ({TOKEN_SHAPE}), got {kind_of(raw)}"
            )
        tokens: list[ApiToken] = []
        for i, entry in enumerate(raw):
            where = f"api.tokens[{i}]"
            token = self.token(entry, where)
            for j, other in enumerate(tokens):
                if other.name == token.name:
                    raise self.fail(f"{where}.name", f"{show(token.name)} is listed twice")
                if other.token_sha256 == token.token_sha256:
                    raise self.fail(f"{where}.token_sha256", f"the same token as api.tokens[{j}]")
            tokens.append(token)
        return tuple(tokens)

    def token(self, t: Any, where: str) -> ApiToken:
        if not isinstance(t, Mapping):
            raise self.fail(where, f"must be a table ({TOKEN_SHAPE}), got {kind_of(t)}")
        for key, value in t.items():
            if key not in TOKEN_KEYS:
                raise self.unknown(f"{where}.{dotted(key)}", key, value, TOKEN_KEYS)
        name = self.token_name(t, where)
        digest = self.token_digest(t, where)
        scopes = self.token_scopes(t, where)
        as_user = self.token_as(t, where)
        act_as = self.token_act_as(t, where, as_user)
        deciding = as_user is not None or bool(act_as)
        if "decide" in scopes and not deciding:
            raise self.fail(
                where,
                'a token with the "decide" scope needs "as" (the Slack user it decides as) '
                'or "act_as" (the users a request may name)',
            )
        if deciding and "decide" not in scopes:
            key = "as" if as_user is not None else "act_as"
            raise self.fail(f"{where}.{key}", 'only a token with the "decide" scope decides')
        return ApiToken(name, digest, frozenset(scopes), as_user, act_as)

    def token_name(self, t: Mapping[str, Any], where: str) -> str:
        if "name" not in t:
            raise self.fail(f"{where}.name", "missing: every token needs a name (logs show it)")
        name = self.string(t["name"], f"{where}.name", "a name")
        if not TOKEN_NAME_RE.fullmatch(name):
            raise self.fail(
                f"{where}.name",
                f'must be letters, digits, ".", "-" or "_" (at most 64), got {show(name)}',
            )
        return name

    def token_digest(self, t: Mapping[str, Any], where: str) -> str:
        """The token's SHA-256; a fault never echoes the value (it may be the token itself)."""
        if "token_sha256" not in t:
            raise self.fail(
                f"{where}.token_sha256",
                "missing: the SHA-256 of the token, in hex (never the token)",
            )
        digest = t["token_sha256"]
        if (
            isinstance(digest, str)
            and SHA256_RE.fullmatch(digest.lower())
            and digest != digest.lower()
        ):
            raise self.fail(f"{where}.token_sha256", "hex digits are lower case")
        if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
            raise self.fail(
                f"{where}.token_sha256",
                "must be 64 hex digits: the SHA-256 of the token, not the token itself",
            )
        return digest

    def token_scopes(self, t: Mapping[str, Any], where: str) -> tuple[str, ...]:
        if "scopes" not in t:
            raise self.fail(f"{where}.scopes", 'missing: list what it may do: "read", "decide"')
        scopes = self.strings(t["scopes"], f"{where}.scopes", '"read" and/or "decide"')
        if not scopes:
            raise self.fail(f"{where}.scopes", 'must list "read" and/or "decide"')
        for i, scope in enumerate(scopes):
            if scope not in SCOPES:
                raise self.fail(
                    f"{where}.scopes[{i}]", f'must be "read" or "decide", got {show(scope)}'
                )
        self.no_repeats(scopes, f"{where}.scopes")
        return scopes

    def token_as(self, t: Mapping[str, Any], where: str) -> str | None:
        if "as" not in t:
            return None
        as_user = t["as"]
        if id_kind(as_user) != "user":
            raise self.fail(
                f"{where}.as", f"must be a Slack user id (U… or W…), got {show(as_user)}"
            )
        return str(as_user)

    def token_act_as(
        self, t: Mapping[str, Any], where: str, as_user: str | None
    ) -> tuple[str, ...]:
        if "act_as" not in t:
            return ()
        if as_user is not None:
            raise self.fail(f"{where}.act_as", 'give "as" or "act_as", not both')
        act_as = self.strings(t["act_as"], f"{where}.act_as", 'Slack user ids, or ["*"]')
        if not act_as:
            raise self.fail(f"{where}.act_as", 'must list Slack user ids, or be ["*"]')
        for i, user in enumerate(act_as):
            if user == ANYONE and len(act_as) > 1:
                raise self.fail(f"{where}.act_as[{i}]", '"*" (anyone) stands alone')
            if user != ANYONE and id_kind(user) != "user":
                raise self.fail(
                    f"{where}.act_as[{i}]",
                    f'must be a Slack user id (U… or W…) or "*", got {show(user)}',
                )
        self.no_repeats(act_as, f"{where}.act_as")
        return act_as

    # -- [[deployments]]: LangGraph Servers whose interrupts the bot answers ------------------
    def deployments_of(self, raw: Any) -> tuple[Deployment, ...]:
        if not isinstance(raw, list):
            raise self.fail(
                "deployments",
                f"must be [[deployments]] tables (one per LangGraph Server), got {kind_of(raw)}",
            )
        found: list[Deployment] = []
        for i, entry in enumerate(raw):
            where = f"deployments[{i}]"
            deployment = self.deployment(entry, where)
            for j, other in enumerate(found):
                if other.name == deployment.name:
                    raise self.fail(
                        f"{where}.name",
                        f"{show(deployment.name)} is also the name of deployments[{j}]: "
                        "each deployment needs a name of its own",
                    )
            found.append(deployment)
        return tuple(found)

    def deployment(self, t: Any, where: str) -> Deployment:
        if not isinstance(t, Mapping):
            raise self.fail(
                where,
                f"must be a table ([[deployments]] with name, url, channel), got {kind_of(t)}",
            )
        for key, value in t.items():
            if key == "api_key":  # the value is never shown: it is the key
                raise self.fail(f"{where}.api_key", KEY_IN_FILE)
            if key not in DEPLOYMENT_KEYS:
                raise self.unknown(f"{where}.{dotted(key)}", key, value, DEPLOYMENT_KEYS)
        name = self.deployment_name(t, where)
        url = self.deployment_url(t, where)
        api_key_env = self.api_key_env(t, where)
        if "channel" not in t:
            raise self.fail(
                f"{where}.channel", "missing: the Slack channel id (C… or G…) its approvals go to"
            )
        channel = self.channel(t["channel"], f"{where}.channel")
        assistants = self.assistants(t, where)
        watch = self.flag(t["watch"], f"{where}.watch") if "watch" in t else True
        poll = self.poll(t["poll"], f"{where}.poll") if "poll" in t else 2.0
        metadata = self.requester_metadata(t, where)
        return Deployment(
            name=name,
            url=url,
            api_key_env=api_key_env,
            channel=channel,
            assistants=assistants,
            watch=watch,
            poll_seconds=poll,
            requester_metadata=metadata,
        )

    def deployment_name(self, t: Mapping[str, Any], where: str) -> str:
        if "name" not in t:
            raise self.fail(
                f"{where}.name",
                "missing: every deployment needs a name (people type it in Slack: "
                "/approvals run <name>/<assistant>)",
            )
        name = self.string(t["name"], f"{where}.name", "a name")
        if not DEPLOYMENT_NAME_RE.fullmatch(name):
            raise self.fail(
                f"{where}.name",
                f'must be lower-case letters, digits and "-" (e.g. "support"), got {show(name)}',
            )
        if name == "default":
            raise self.fail(
                f"{where}.name",
                '"default" is taken by [policy.default] (the rules for everything): '
                "choose another name",
            )
        return name

    def deployment_url(self, t: Mapping[str, Any], where: str) -> str:
        """The server's base URL without a trailing slash. A fault shows the value only when it
        cannot hold a secret (no user, password or query)."""
        key = f"{where}.url"
        if "url" not in t:
            raise self.fail(
                key, 'missing: the LangGraph Server\'s address, e.g. "https://support.example.com"'
            )
        url = self.string(t["url"], key, "an http:// or https:// URL")
        try:
            parts = urllib.parse.urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if parts is not None and (parts.username is not None or parts.password is not None):
            raise self.fail(
                key,
                "must not hold a user name or password: name the environment variable holding "
                "the API key with api_key_env",
            )
        if parts is not None and (parts.query or parts.fragment or "?" in url or "#" in url):
            raise self.fail(key, "must be the server's base URL, without a query (?…) or #…")
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or not port_ok
            or any(c.isspace() for c in url)
        ):
            raise self.fail(
                key,
                'must be an http:// or https:// URL like "https://support.example.com", '
                f"got {show(url)}",
            )
        return url.rstrip("/")

    def api_key_env(self, t: Mapping[str, Any], where: str) -> str | None:
        """The NAME of the variable holding the key. A fault never shows the value: it may be
        the key itself, pasted in the wrong place."""
        if "api_key_env" not in t:
            return None
        name = t["api_key_env"]
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            raise self.fail(
                f"{where}.api_key_env",
                "must name the environment variable holding the API key (upper-case letters, "
                'digits and "_", e.g. "SUPPORT_LANGGRAPH_API_KEY"), never the key itself',
            )
        return name

    def assistants(self, t: Mapping[str, Any], where: str) -> tuple[str, ...]:
        if "assistants" not in t:
            return ()
        key = f"{where}.assistants"
        items = self.strings(t["assistants"], key, "graph ids or assistant ids")
        if not items:
            raise self.fail(
                key,
                "must list at least one graph id or assistant id (leave it out to serve all)",
            )
        for i, item in enumerate(items):
            if not ASSISTANT_RE.fullmatch(item):
                raise self.fail(
                    f"{key}[{i}]",
                    f'not a graph id or assistant id (no spaces or "/"): {show(item)}',
                )
        self.no_repeats(items, key)
        return items

    def poll(self, v: Any, where: str) -> float:
        seconds = self.duration(v, where)
        if seconds > POLL_MAX:
            raise self.fail(
                where, f'must be "1h" or less (the inbox looks that often), got {show(v)}'
            )
        if seconds < POLL_MIN:
            raise self.fail(where, f'must be "1s" or more, got {show(v)}')
        return seconds

    def requester_metadata(self, t: Mapping[str, Any], where: str) -> str | None:
        if "requester_metadata" not in t:
            return None
        key = t["requester_metadata"]
        if not isinstance(key, str) or not key or any(c.isspace() for c in key):
            raise self.fail(
                f"{where}.requester_metadata",
                f'must be a thread metadata key (e.g. "slack_user"), got {show(key)}',
            )
        return key

    # -- one rule -------------------------------------------------------------------------------
    def rule(self, key: str, v: Any, where: str) -> Any:
        """One rule's value, checked (``key`` is one of RULE_KEYS)."""
        read: dict[str, Callable[[Any, str], Any]] = {
            "approvers": self.deciders,
            "freeze_approvers": self.deciders,
            "requesters": self.requesters,
            "min_approvals": self.one_or_more,
            "repeat": self.zero_or_more,
            "allow_self_approval": self.flag,
            "reject_ends": self.flag,
            "allow_weaker_overrides": self.flag,
            "comment_required": self.comment_required,
            "channel": self.channel,
            "remind_every": self.duration_or_never,
            "timeout": self.duration_or_never,
            "on_timeout": self.on_timeout,
            "escalation": self.escalation,
            "freeze": self.freeze,
            "grants": self.grants,
        }
        return read[key](v, where)

    def deciders(self, v: Any, where: str) -> tuple[str, ...]:
        return self.ids(v, where, {"user", "group"})

    def requesters(self, v: Any, where: str) -> tuple[str, ...]:
        return self.ids(v, where, {"user", "group", "channel"})

    def one_or_more(self, v: Any, where: str) -> int:
        if not is_int(v) or v < 1:
            raise self.fail(where, f"must be a whole number ≥ 1, got {show(v)}")
        return int(v)

    def zero_or_more(self, v: Any, where: str) -> int:
        if not is_int(v) or v < 0:
            raise self.fail(where, f"must be a whole number ≥ 0, got {show(v)}")
        return int(v)

    def flag(self, v: Any, where: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(where, f"must be true or false, got {show(v)}")
        return v

    def comment_required(self, v: Any, where: str) -> frozenset[str]:
        items = self.strings(v, where, '"approve" and/or "reject"')
        for i, item in enumerate(items):
            if item not in DECISIONS:
                raise self.fail(f"{where}[{i}]", f'must be "approve" or "reject", got {show(item)}')
        self.no_repeats(items, where)
        return frozenset(items)

    def channel(self, v: Any, where: str) -> str:
        if not isinstance(v, str) or not CHANNEL_ID.fullmatch(v):
            raise self.fail(where, f"must be a Slack channel id (C… or G…), got {show(v)}")
        return v

    def duration_or_never(self, v: Any, where: str) -> float | None:
        return None if v == "never" else self.duration(v, where)

    def on_timeout(self, v: Any, where: str) -> OnTimeout:
        if v not in ON_TIMEOUT:
            raise self.fail(where, f'must be "reject", "approve" or "keep_waiting", got {show(v)}')
        return cast(OnTimeout, v)

    def escalation(self, v: Any, where: str) -> tuple[Level, ...]:
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            raise self.fail(
                where,
                f"must be a list of {{ after = ..., notify = [...] }} tables, got {kind_of(v)}",
            )
        levels: list[Level] = []
        for i, item in enumerate(v):
            at = f"{where}[{i}]"
            for k, x in item.items():
                if k not in LEVEL_KEYS:
                    raise self.unknown(f"{at}.{dotted(k)}", k, x, LEVEL_KEYS)
            for k in LEVEL_KEYS:
                if k not in item:
                    raise self.fail(f"{at}.{k}", "missing")
            after = self.duration(item["after"], f"{at}.after")
            if levels and after <= levels[-1].after_seconds:
                raise self.fail(
                    f"{at}.after",
                    f"must be later than {where}[{i - 1}].after "
                    f"({format_duration(levels[-1].after_seconds)}), got {show(item['after'])}",
                )
            notify = self.ids(
                item["notify"], f"{at}.notify", {"user", "group", "channel", SUPERVISORS}
            )
            if not notify:
                raise self.fail(f"{at}.notify", 'must name at least one id or "supervisors"')
            if SUPERVISORS in notify and not self.supervisors:
                raise self.fail(
                    f"{at}.notify",
                    '"supervisors" is used but the top-level supervisors = [...] is not set',
                )
            levels.append(Level(after, notify))
        return tuple(levels)

    def grants(self, v: Any, where: str) -> GrantRule:
        shape = '{ scopes = ["run", "requester", "channel"], max = "4h", tools = [...] }'
        if not isinstance(v, Mapping):
            raise self.fail(where, f"must be a table like {shape}, got {kind_of(v)}")
        for k, x in v.items():
            if k not in GRANT_KEYS:
                raise self.unknown(f"{where}.{dotted(k)}", k, x, GRANT_KEYS)
        for k in ("scopes", "max"):
            if k not in v:
                raise self.fail(f"{where}.{k}", f"missing (grants = {shape})")
        tools = self.grant_tools(v["tools"], f"{where}.tools") if "tools" in v else None
        return GrantRule(
            scopes=self.grant_scopes(v["scopes"], f"{where}.scopes"),
            max_seconds=self.duration(v["max"], f"{where}.max"),
            tools=tools,
        )

    def grant_scopes(self, v: Any, where: str) -> tuple[GrantScope, ...]:
        scopes = self.strings(v, where, "scopes")
        if not scopes:
            raise self.fail(where, 'must name at least one of "run", "requester", "channel"')
        for i, scope in enumerate(scopes):
            if scope not in GRANT_SCOPES:
                raise self.fail(
                    f"{where}[{i}]", f'must be "run", "requester" or "channel", got {show(scope)}'
                )
        self.no_repeats(scopes, where)
        return cast(tuple[GrantScope, ...], scopes)

    def grant_tools(self, v: Any, where: str) -> tuple[str, ...]:
        tools = self.strings(v, where, "tool names")
        if not tools:
            raise self.fail(where, "must name at least one tool (or leave it out: every tool)")
        self.no_repeats(tools, where)
        return tools

    def freeze(self, v: Any, where: str) -> tuple[FreezeWindow, ...]:
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            raise self.fail(
                where, f"must be a list of tables ({{ days = [...], ... }}), got {kind_of(v)}"
            )
        return tuple(self.window(item, f"{where}[{i}]") for i, item in enumerate(v))

    def window(self, t: Mapping[str, Any], at: str) -> FreezeWindow:
        for k, x in t.items():
            if k not in FREEZE_KEYS:
                raise self.unknown(f"{at}.{dotted(k)}", k, x, FREEZE_KEYS)
        self.window_picks(t, at)
        tz = self.window_tz(t["tz"], f"{at}.tz") if "tz" in t else "UTC"
        days = self.window_days(t["days"], f"{at}.days") if "days" in t else frozenset()
        dates = self.window_dates(t["dates"], f"{at}.dates") if "dates" in t else frozenset()
        from_date, to_date = self.window_range(t, at) if "from_date" in t else (None, None)
        start = self.clock(t["from"], f"{at}.from") if "from" in t else None
        end = self.clock(t["to"], f"{at}.to") if "to" in t else None
        if start is not None and end is not None and end < start:
            raise self.fail(
                f"{at}.to",
                f"is before from ({start.strftime('%H:%M')}); split a window past midnight in two",
            )
        action = t.get("action", "require_freeze_approvers")
        if action not in FREEZE_ACTIONS:
            raise self.fail(
                f"{at}.action",
                f'must be "refuse" or "require_freeze_approvers", got {show(action)}',
            )
        return FreezeWindow(at, tz, days, dates, from_date, to_date, start, end, action)

    def window_picks(self, t: Mapping[str, Any], at: str) -> None:
        """A window picks its days one way (days, dates or a date range), or only hours."""
        picks = [k for k in ("days", "dates", "from_date") if k in t]
        if "to_date" in t and "from_date" not in t:
            raise self.fail(f"{at}.from_date", "missing: to_date needs from_date")
        if len(picks) > 1:
            raise self.fail(f"{at}.{picks[1]}", f"cannot be combined with {picks[0]} in one window")
        if not picks and "from" not in t and "to" not in t:
            raise self.fail(at, "a freeze window needs days, dates, from_date/to_date or from/to")

    def window_tz(self, v: Any, where: str) -> str:
        tz = self.string(v, where, "a time zone name")
        try:
            zone(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise self.fail(
                where, f'unknown time zone {show(tz)} (use e.g. "Europe/Berlin" or "UTC")'
            ) from None
        return tz

    def window_days(self, v: Any, where: str) -> frozenset[int]:
        names = self.strings(v, where, "day names")
        if not names:
            raise self.fail(where, "must name at least one day")
        for i, name in enumerate(names):
            if name not in DAYS:
                guess = name.lower()[:3]
                hint = f'did you mean "{guess}"?' if guess in DAYS else ", ".join(DAYS)
                raise self.fail(f"{where}[{i}]", f"not a day: {show(name)} ({hint})")
        self.no_repeats(names, where)
        return frozenset(DAYS.index(n) for n in names)

    def window_dates(self, v: Any, where: str) -> frozenset[date]:
        if not isinstance(v, list) or not v:
            raise self.fail(where, f'must be a list of dates ("2026-12-24"), got {kind_of(v)}')
        return frozenset(self.date(x, f"{where}[{i}]") for i, x in enumerate(v))

    def window_range(self, t: Mapping[str, Any], at: str) -> tuple[date, date]:
        from_date = self.date(t["from_date"], f"{at}.from_date")
        if "to_date" not in t:
            raise self.fail(f"{at}.to_date", "missing: from_date needs to_date")
        to_date = self.date(t["to_date"], f"{at}.to_date")
        if to_date < from_date:
            raise self.fail(f"{at}.to_date", f"is before from_date ({from_date.isoformat()})")
        if "from" in t or "to" in t:
            raise self.fail(
                f"{at}.{'from' if 'from' in t else 'to'}",
                "hours apply to days or dates; a from_date/to_date range is whole days",
            )
        return from_date, to_date

    # -- checks across keys and levels, on every merged rule set ------------------------------
    def check(self, policy: Policy) -> None:
        for graph, env in policy.layers:
            rules, origins = policy.merged(graph, env)
            self.check_rules(policy, rules, origins)

    def check_rules(self, policy: Policy, rules: Rules, origins: dict[str, str]) -> None:
        if rules.escalation and rules.timeout_seconds is not None:
            last = rules.escalation[-1].after_seconds
            if rules.timeout_seconds <= last:
                at = f"{origins['escalation']}[{len(rules.escalation) - 1}]"
                raise self.fail(
                    origins["timeout"],
                    f"{format_duration(rules.timeout_seconds)} must be after the last escalation "
                    f"level ({format_duration(last)} at {at}.after)",
                )
        if rules.repeat and not rules.escalation:
            raise self.fail(origins["repeat"], "there are no escalation levels to repeat")
        if too_few(rules.approvers, rules.min_approvals):
            where = origins.get("min_approvals") or origins["approvers"]
            raise self.fail(
                where,
                f"needs {rules.min_approvals} approvals but approvers lists only "
                f"{len(rules.approvers)} ({origins['approvers']})",
            )
        for w in rules.freeze:
            if w.action == "require_freeze_approvers" and not rules.freeze_approvers:
                raise self.fail(
                    w.where,
                    'needs freeze_approvers (action "require_freeze_approvers" is the default; '
                    'or set action = "refuse")',
                )

    # -- value shapes ---------------------------------------------------------------------------
    def unknown(self, where: str, key: str, value: Any, known: Iterable[str]) -> PolicyError:
        what = "table" if isinstance(value, Mapping) else "key"
        known = list(known)
        hint = did_you_mean(key, known) or f"(known: {', '.join(known)})"
        return self.fail(where, f"unknown {what} {hint}")

    def table(self, data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        v = data.get(key, {})
        if not isinstance(v, Mapping):
            raise self.fail(where, f"must be a table ([{key}]), got {kind_of(v)}")
        return v

    def string(self, v: Any, where: str, what: str) -> str:
        if not isinstance(v, str):
            raise self.fail(where, f"must be {what} (a string), got {show(v)}")
        return v

    def strings(self, v: Any, where: str, what: str) -> tuple[str, ...]:
        if not isinstance(v, list):
            raise self.fail(where, f"must be a list of {what}, got {kind_of(v)}")
        for i, x in enumerate(v):
            if not isinstance(x, str):
                raise self.fail(f"{where}[{i}]", f"must be a string, got {show(x)}")
        return tuple(v)

    def number(self, t: Mapping[str, Any], key: str, table: str, default: float) -> float:
        v = t.get(key, default)
        if not is_number(v):
            raise self.fail(f"{table}.{key}", f"must be a number of seconds, got {show(v)}")
        return float(v)

    def ids(self, v: Any, where: str, kinds: set[str]) -> tuple[str, ...]:
        what = _id_words(kinds)
        if not isinstance(v, list):
            raise self.fail(where, f"must be a list of {what}, got {kind_of(v)}")
        for i, x in enumerate(v):
            kind = id_kind(x)
            if kind not in kinds:
                if kind is None and isinstance(x, str) and id_kind(x.upper()) in kinds:
                    fault = f"Slack ids are upper case: {show(x)}"
                elif kind is not None and kind != SUPERVISORS:
                    fault = f"{show(x)} is a {kind} id; this list takes {what}"
                else:
                    fault = f"{show(x)} is not one of {what}"
                raise self.fail(f"{where}[{i}]", fault)
        self.no_repeats(v, where)
        return tuple(v)

    def no_repeats(self, items: Iterable[str], where: str) -> None:
        seen: set[str] = set()
        for i, x in enumerate(items):
            if x in seen:
                raise self.fail(f"{where}[{i}]", f"{show(x)} is listed twice")
            seen.add(x)

    def duration(self, v: Any, where: str) -> float:
        try:
            return parse_duration(v)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def date(self, v: Any, where: str) -> date:
        if isinstance(v, date) and not isinstance(v, datetime):
            return v
        if isinstance(v, str) and DATE_RE.fullmatch(v):
            try:
                return date.fromisoformat(v)
            except ValueError:
                pass
        raise self.fail(where, f'must be a date like "2026-12-24", got {show(v)}')

    def clock(self, v: Any, where: str) -> time:
        if isinstance(v, time) and v.tzinfo is None:
            return v.replace(second=0, microsecond=0)
        if isinstance(v, str) and (m := HHMM_RE.fullmatch(v)):
            return time(int(m[1]), int(m[2]))
        raise self.fail(where, f'must be a time like "16:00" (24-hour), got {show(v)}')


def _id_words(kinds: set[str]) -> str:
    names = [n for n in ("user", "group", "channel") if n in kinds]
    words = (
        "Slack "
        + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1])
        + " ids"
    )
    return words + ', or "supervisors"' if SUPERVISORS in kinds else words
