"""The policy file (bot/policy/): every mistake is one line naming the file, the key and the
fault; rules merge default <- graph <- graph.env; a graph's own settings never weaken the
policy unless it allows that; freeze windows hold in their own time zone; check-config."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.policy.faults import PolicyError
from bot.policy.parse import load_policy, parse_policy, policy_path
from bot.policy.rules import (
    Deployment,
    FreezeWindow,
    Level,
    Policy,
    Rules,
    describe,
    format_duration,
    freeze_at,
    parse_duration,
    remote_command,
)
from graphs.approval import approval_payload
from tests.scenario.test_cli import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "approvals.example.toml"
BERLIN = ZoneInfo("Europe/Berlin")

BRIEF = """
supervisors = ["U0CAROL"]
admins = ["U0ERIN"]
graphs = ["myteam.agents:specs"]

[deploy]
envs = ["staging", "prod"]

[policy.default]
min_approvals = 1
allow_self_approval = false

[policy.deploy]
reject_ends = false
remind_every = "1h"

[policy.deploy.prod]
approvers = ["U0BOB", "U0DAN", "S0RELEASE"]
min_approvals = 2
reject_ends = true
comment_required = ["reject"]
requesters = ["U0ALICE", "S0DEVS", "C0DEPLOYS"]
channel = "C0DEPLOYS"
remind_every = "15m"
escalation = [
  { after = "30m", notify = ["U0CAROL"] },
  { after = "1h",  notify = ["supervisors"] },
]
repeat = 0
timeout = "2h"
on_timeout = "reject"
allow_weaker_overrides = false
freeze_approvers = ["U0CTO"]
freeze = [
  { days = ["sat", "sun"], tz = "Europe/Berlin" },
  { days = ["fri"], from = "16:00", to = "23:59", tz = "Europe/Berlin" },
  { dates = ["2026-12-24", "2026-12-31"] },
  { from_date = "2026-12-20", to_date = "2027-01-02", action = "refuse" },
]
"""


def parse(text: str) -> Policy:
    return parse_policy(tomllib.loads(text), "approvals.toml")


def at(tz: ZoneInfo, *when: int) -> float:
    return datetime(*when, tzinfo=tz).timestamp()  # type: ignore[misc]


# -- every mistake: one line, naming the file, the key and the fault ------------------------

PROD = "[policy.deploy.prod]\n"
ESC = 'escalation = [{ after = "1h", notify = ["U0CAROL"] }]\n'
FROZEN = 'freeze_approvers = ["U0CTO"]\nfreeze = [{ days = ["sat"] }]\n'

MISTAKES = [
    # unknown keys and tables, with a suggestion when one is close
    (
        '[approver]\nprod = ["U0BOB"]',
        'approver: unknown table (did you mean "approvers"?)',
    ),
    ('supervisor = ["U0CAROL"]', 'supervisor: unknown key (did you mean "supervisors"?)'),
    (
        "colour = 1",
        "colour: unknown key (known: supervisors, admins, graphs, deploy, policy, approvers, api, "
        "deployments)",
    ),
    ('[deploy]\nbackned = "command"', 'deploy.backned: unknown key (did you mean "backend"?)'),
    (
        PROD + "min_approval = 2",
        'policy.deploy.prod.min_approval: unknown key (did you mean "min_approvals"?)',
    ),
    (
        "[policy.default]\nescalate = []",
        'policy.default.escalate: unknown key (did you mean "escalation"?)',
    ),
    (
        "[policy]\nmin_approvals = 2",
        "policy.min_approvals: unknown key (rules go in [policy.default] or [policy.<graph>] "
        "tables)",
    ),
    (
        "[policy.default.prod]\nmin_approvals = 2",
        "policy.default.prod: unknown table (per-env rules go in [policy.<graph>.<env>])",
    ),
    (
        "[policy.Deploy]\nmin_approvals = 2",
        'policy.Deploy: not a graph name: lowercase letters, digits, "-" and "_" (e.g. "deploy")',
    ),
    (
        PROD + 'escalation = [{ after = "1h", notfy = ["U0CAROL"] }]',
        'policy.deploy.prod.escalation[0].notfy: unknown key (did you mean "notify"?)',
    ),
    (
        PROD + 'freeze_approvers = ["U0CTO"]\nfreeze = [{ days = ["sat"], acton = "refuse" }]',
        'policy.deploy.prod.freeze[0].acton: unknown key (did you mean "action"?)',
    ),
    # envs
    (
        "[policy.deploy.prd]\nmin_approvals = 2",
        'policy.deploy.prd: unknown env "prd" (deploy.envs: staging, prod)',
    ),
    (
        '[deploy]\nenvs = ["qa", "live"]\n[policy.deploy.prod]\nmin_approvals = 1',
        'policy.deploy.prod: unknown env "prod" (deploy.envs: qa, live)',
    ),
    (
        '[approvers]\nprd = ["U0BOB"]',
        'approvers.prd: unknown env "prd" (deploy.envs: staging, prod)',
    ),
    (
        '[deploy]\ndefault_env = "dev"',
        'deploy.default_env: unknown env "dev" (deploy.envs: staging, prod)',
    ),
    ("[deploy]\nenvs = []", "deploy.envs: must list at least one environment"),
    ('[deploy]\nenvs = ["pro d"]', 'deploy.envs[0]: not an environment name: "pro d"'),
    # wrong types
    (
        '[approvers]\nprod = "U0BOB"',
        "approvers.prod: must be a list of Slack user or group ids, got a string",
    ),
    (
        '[policy.default]\nmin_approvals = "two"',
        'policy.default.min_approvals: must be a whole number ≥ 1, got "two"',
    ),
    (
        "[policy.default]\nmin_approvals = 0",
        "policy.default.min_approvals: must be a whole number ≥ 1, got 0",
    ),
    (
        "[policy.default]\nmin_approvals = true",
        "policy.default.min_approvals: must be a whole number ≥ 1, got true",
    ),
    (
        '[policy.default]\nallow_self_approval = "no"',
        'policy.default.allow_self_approval: must be true or false, got "no"',
    ),
    ("[policy.default]\nrepeat = -1", "policy.default.repeat: must be a whole number ≥ 0, got -1"),
    (
        '[policy.default]\ncomment_required = "reject"',
        'policy.default.comment_required: must be a list of "approve" and/or "reject", got a '
        "string",
    ),
    (
        '[policy.default]\ncomment_required = ["deny"]',
        'policy.default.comment_required[0]: must be "approve" or "reject", got "deny"',
    ),
    (
        '[policy.default]\non_timeout = "ignore"',
        'policy.default.on_timeout: must be "reject", "approve" or "keep_waiting", got "ignore"',
    ),
    (
        '[policy.default]\nchannel = "#deploys"',
        'policy.default.channel: must be a Slack channel id (C… or G…), got "#deploys"',
    ),
    (
        '[policy.default]\ntimeout = "2 hours"',
        'policy.default.timeout: must be a duration like "90s", "30m", "2h" or "1d", got "2 hours"',
    ),
    (
        "[policy.default]\nremind_every = 900",
        'policy.default.remind_every: must be a duration like "90s", "30m", "2h" or "1d", got 900',
    ),
    ('[policy.default]\ntimeout = "0m"', 'policy.default.timeout: must be longer than 0, got "0m"'),
    (
        PROD + '[policy.deploy.prod.escalation]\nafter = "1h"',
        "policy.deploy.prod.escalation: must be a list of { after = ..., notify = [...] } tables,"
        " got a table",
    ),
    ('deploy = "prod"', "deploy: must be a table ([deploy]), got a string"),
    (
        '[deploy]\nbackend = "ssh"',
        'deploy.backend: must be "simulated" or "command", got "ssh"',
    ),
    (
        '[deploy]\nbackend = "command"',
        'deploy.command: missing: deploy.backend = "command" needs it',
    ),
    (
        '[deploy]\ncommand = "./deploy.sh {env}"',
        "deploy.command: must be a list of strings (argv), got a string",
    ),
    (
        '[deploy]\ncommand_timeout_seconds = "15m"',
        'deploy.command_timeout_seconds: must be a number of seconds, got "15m"',
    ),
    (
        'graphs = ["myteam.agents"]',
        'graphs[0]: must look like "package.module:attribute", got "myteam.agents"',
    ),
    # ids that are not Slack-shaped
    (
        PROD + 'approvers = ["bob"]',
        'policy.deploy.prod.approvers[0]: "bob" is not one of Slack user or group ids',
    ),
    (
        PROD + 'approvers = ["U0BOB", "u0dan"]',
        'policy.deploy.prod.approvers[1]: Slack ids are upper case: "u0dan"',
    ),
    (
        PROD + 'approvers = ["C0DEPLOYS"]',
        'policy.deploy.prod.approvers[0]: "C0DEPLOYS" is a channel id; this list takes Slack '
        "user or group ids",
    ),
    (
        PROD + 'approvers = ["U0BOB", "U0BOB"]',
        'policy.deploy.prod.approvers[1]: "U0BOB" is listed twice',
    ),
    (
        PROD + 'requesters = ["@alice"]',
        'policy.deploy.prod.requesters[0]: "@alice" is not one of Slack user, group or channel ids',
    ),
    (
        'supervisors = ["supervisors"]',
        'supervisors[0]: "supervisors" is not one of Slack user or group ids',
    ),
    ("admins = [42]", "admins[0]: 42 is not one of Slack user or group ids"),
    # escalation
    (
        PROD + 'escalation = [{ after = "1h", notify = ["U0CAROL"] }, '
        '{ after = "30m", notify = ["U0DAN"] }]',
        "policy.deploy.prod.escalation[1].after: must be later than "
        'policy.deploy.prod.escalation[0].after (1h), got "30m"',
    ),
    (
        PROD + 'escalation = [{ after = "1h" }]',
        "policy.deploy.prod.escalation[0].notify: missing",
    ),
    (
        PROD + 'escalation = [{ after = "1h", notify = [] }]',
        'policy.deploy.prod.escalation[0].notify: must name at least one id or "supervisors"',
    ),
    (
        PROD + 'escalation = [{ after = "1h", notify = ["supervisors"] }]',
        'policy.deploy.prod.escalation[0].notify: "supervisors" is used but the top-level '
        "supervisors = [...] is not set",
    ),
    (
        PROD + ESC + 'timeout = "45m"',
        "policy.deploy.prod.timeout: 45m must be after the last escalation level "
        "(1h at policy.deploy.prod.escalation[0].after)",
    ),
    (
        '[policy.default]\ntimeout = "1h"\n' + PROD + ESC,
        "policy.default.timeout: 1h must be after the last escalation level "
        "(1h at policy.deploy.prod.escalation[0].after)",
    ),
    (PROD + "repeat = 2", "policy.deploy.prod.repeat: there are no escalation levels to repeat"),
    # cross-key checks on the merged rules
    (
        '[policy.default]\nmin_approvals = 3\n[policy.deploy.prod]\napprovers = ["U0BOB", "U0DAN"]',
        "policy.default.min_approvals: needs 3 approvals but approvers lists only 2 "
        "(policy.deploy.prod.approvers)",
    ),
    (
        '[approvers]\nprod = ["U0BOB"]\n[policy.deploy.prod]\napprovers = ["U0DAN"]',
        "approvers.prod: also set as policy.deploy.prod.approvers; keep only that one",
    ),
    # freeze windows
    (
        PROD + 'freeze = [{ days = ["sat"] }]',
        'policy.deploy.prod.freeze[0]: needs freeze_approvers (action "require_freeze_approvers" '
        'is the default; or set action = "refuse")',
    ),
    (
        PROD + 'freeze = [{ days = ["saturday"], action = "refuse" }]',
        'policy.deploy.prod.freeze[0].days[0]: not a day: "saturday" (did you mean "sat"?)',
    ),
    (
        PROD + 'freeze = [{ days = ["sa"], action = "refuse" }]',
        'policy.deploy.prod.freeze[0].days[0]: not a day: "sa" (mon, tue, wed, thu, fri, sat, sun)',
    ),
    (
        PROD + 'freeze = [{ days = ["sat"], tz = "Europe/Berln", action = "refuse" }]',
        'policy.deploy.prod.freeze[0].tz: unknown time zone "Europe/Berln" (use e.g. '
        '"Europe/Berlin" or "UTC")',
    ),
    (
        PROD + 'freeze = [{ days = ["fri"], from = "4pm", action = "refuse" }]',
        'policy.deploy.prod.freeze[0].from: must be a time like "16:00" (24-hour), got "4pm"',
    ),
    (
        PROD + 'freeze = [{ days = ["fri"], from = "22:00", to = "06:00", action = "refuse" }]',
        "policy.deploy.prod.freeze[0].to: is before from (22:00); split a window past midnight "
        "in two",
    ),
    (
        PROD + 'freeze = [{ days = ["fri"], dates = ["2026-12-24"], action = "refuse" }]',
        "policy.deploy.prod.freeze[0].dates: cannot be combined with days in one window",
    ),
    (
        PROD + 'freeze = [{ dates = ["24.12.2026"], action = "refuse" }]',
        'policy.deploy.prod.freeze[0].dates[0]: must be a date like "2026-12-24", got "24.12.2026"',
    ),
    (
        PROD + 'freeze = [{ from_date = "2026-12-20", action = "refuse" }]',
        "policy.deploy.prod.freeze[0].to_date: missing: from_date needs to_date",
    ),
    (
        PROD + 'freeze = [{ from_date = "2026-12-20", to_date = "2026-12-01", action = "refuse" }]',
        "policy.deploy.prod.freeze[0].to_date: is before from_date (2026-12-20)",
    ),
    (
        PROD + 'freeze = [{ from_date = "2026-12-20", to_date = "2027-01-02", from = "08:00", '
        'action = "refuse" }]',
        "policy.deploy.prod.freeze[0].from: hours apply to days or dates; a from_date/to_date "
        "range is whole days",
    ),
    (
        PROD + 'freeze = [{ tz = "UTC", action = "refuse" }]',
        "policy.deploy.prod.freeze[0]: a freeze window needs days, dates, from_date/to_date or "
        "from/to",
    ),
    (
        PROD + 'freeze = [{ days = ["sat"], action = "block" }]',
        'policy.deploy.prod.freeze[0].action: must be "refuse" or "require_freeze_approvers", '
        'got "block"',
    ),
]


@pytest.mark.parametrize(("text", "line"), MISTAKES, ids=[m[1].split(":")[0] for m in MISTAKES])
def test_each_mistake_is_one_line_naming_file_key_and_fault(text: str, line: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(text)
    assert str(caught.value) == f"approvals.toml: {line}"
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert caught.value.source == "approvals.toml"
    assert f"{caught.value.key}: {caught.value.fault}" == line


def test_file_faults(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match=r"nope\.toml: no such file$"):
        load_policy(missing)
    bad = tmp_path / "approvals.toml"
    bad.write_text('[deploy]\nenvs = ["staging"\nbackend = 1\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(bad)
    assert str(caught.value).startswith(f"{bad}: invalid TOML: ")
    assert "\n" not in str(caught.value)


# -- defaults, paths, the whole example -------------------------------------------------------


def test_no_file_gives_defaults(tmp_path: Path) -> None:
    assert policy_path({}, cwd=tmp_path) is None
    policy = load_policy(None)
    assert policy == Policy() == dataclasses.replace(parse(""), source=None)
    assert policy.deploy is None  # no [deploy] table: no /deploy
    deploy = parse("[deploy]").deploy
    assert deploy is not None and deploy.envs == ("staging", "prod")
    assert deploy.default_env == "staging"
    assert deploy.backend is None  # not named: `bot run` refuses to start
    rules = policy.rules("deploy", "prod")
    assert rules == Rules(scope="deploy.prod")
    assert (rules.approvers, rules.min_approvals, rules.allow_self_approval) == ((), 1, False)
    assert rules.reject_ends and rules.comment_required == frozenset()
    assert rules.timeout_seconds is None and rules.deadlines(100.0) == []
    assert policy.deprecations == () and policy.rule_sets == 0


def test_policy_path(tmp_path: Path) -> None:
    assert policy_path({"APPROVALS_CONFIG": "/etc/x.toml"}, cwd=tmp_path) == Path("/etc/x.toml")
    (tmp_path / "approvals.toml").write_text("")
    assert policy_path({}, cwd=tmp_path) == tmp_path / "approvals.toml"


def test_the_example_file_is_valid_and_says_what_it_shows() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.deprecations == ()
    prod = policy.rules("deploy", "prod")
    assert prod.approvers == ("U0BOB", "U0DAN", "S0RELEASE")
    assert prod.escalation[-1] == Level(3600.0, ("U0CAROL",))
    assert prod.comment_required == frozenset({"reject"})
    assert policy.rules("deploy", "staging").requesters == ("S0DEVS", "C0DEPLOYS")
    policy.check_graphs(["/deploy"])


def test_deploy_section() -> None:
    d = parse(
        '[deploy]\nenvs = ["qa", "live"]\nbackend = "command"\n'
        'command = ["./d.sh", "{env}"]\ncommand_timeout_seconds = 60\n'
    ).deploy
    assert (d.envs, d.default_env, d.backend, d.command) == (
        ("qa", "live"),
        "qa",
        "command",
        ("./d.sh", "{env}"),
    )
    assert d.command_timeout_seconds == 60.0 and d.simulated_step_seconds == 1.0


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 5m ", 300)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("", 'must be a duration like "90s", "30m", "2h" or "1d", got ""'),
        ("2 hours", 'must be a duration like "90s", "30m", "2h" or "1d", got "2 hours"'),
        ("1.5h", 'must be a duration like "90s", "30m", "2h" or "1d", got "1.5h"'),
        ("30m1h", 'must be a duration like "90s", "30m", "2h" or "1d", got "30m1h"'),
        ("90", 'must be a duration like "90s", "30m", "2h" or "1d", got "90"'),
        (90, 'must be a duration like "90s", "30m", "2h" or "1d", got 90'),
        ("0s", 'must be longer than 0, got "0s"'),
    ],
)
def test_duration_errors(text: str, fault: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)  # type: ignore[arg-type]
    assert str(caught.value) == fault


def test_format_duration() -> None:
    assert [format_duration(s) for s in (90, 1800, 5400, 86400 + 60, 0)] == [
        "1m30s",
        "30m",
        "1h30m",
        "1d1m",
        "0s",
    ]


# -- merging the levels -----------------------------------------------------------------------


def test_rules_merge_default_graph_env() -> None:
    policy = parse(BRIEF)
    prod = policy.rules("deploy", "prod")
    assert prod.scope == "deploy.prod"
    assert prod.approvers == ("U0BOB", "U0DAN", "S0RELEASE")
    assert prod.min_approvals == 2 and prod.reject_ends and prod.remind_every == 900
    assert prod.escalation == (Level(1800, ("U0CAROL",)), Level(3600, ("U0CAROL",)))
    assert prod.timeout_seconds == 7200 and prod.channel == "C0DEPLOYS"
    assert len(prod.freeze) == 4 and prod.freeze[3].action == "refuse"
    staging = policy.rules("/deploy", "staging")  # no env table: default <- graph
    assert staging.scope == "deploy.staging"
    assert (staging.approvers, staging.reject_ends, staging.remind_every) == ((), False, 3600)
    assert policy.rules("deploy").reject_ends is False
    assert policy.rules("other", "prod") == Rules(scope="other.prod", supervisors=("U0CAROL",))
    assert policy.graphs == ("deploy",) and policy.rule_sets == 3
    assert policy.escalation_levels == 2
    assert (policy.supervisors, policy.admins) == (("U0CAROL",), ("U0ERIN",))
    assert policy.graph_entry_points == ("myteam.agents:specs",)


def test_legacy_approvers_table_still_works_with_a_deprecation_line() -> None:
    policy = parse('[approvers]\nprod = ["U0123ABCD", "U0456EFGH"]\n')
    assert policy.rules("deploy", "prod").approvers == ("U0123ABCD", "U0456EFGH")
    assert policy.rules("deploy", "staging").approvers == ()
    assert policy.deprecations == (
        "approvals.toml: [approvers] is deprecated: write approvers = [...] in "
        "[policy.deploy.<env>] instead (for prod)",
    )
    # beside a new-style env table that sets other keys
    both = parse('[approvers]\nprod = ["U0BOB"]\n[policy.deploy.prod]\ntimeout = "1h"\n')
    assert both.rules("deploy", "prod").approvers == ("U0BOB",)
    assert both.rules("deploy", "prod").timeout_seconds == 3600


def test_check_graphs() -> None:
    policy = parse("[policy.deplyo]\nmin_approvals = 1\n")
    with pytest.raises(PolicyError) as caught:
        policy.check_graphs(["/deploy"])
    assert (
        str(caught.value) == 'approvals.toml: policy.deplyo: unknown graph (did you mean "deploy"?)'
    )
    parse(BRIEF).check_graphs(["/deploy"])


def test_rules_round_trip_through_json() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    assert Rules.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules
    assert Rules.from_dict({}) == Rules()


# -- a graph's request_approval(...) settings -------------------------------------------------


def test_payload_defaults_are_not_overrides() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    assert rules.merge_request(approval_payload(title="Ship?")) == (rules, [])


def test_stricter_settings_apply() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    merged, notes = rules.merge_request(
        approval_payload(
            title="x", approvers=["U0BOB", "U0DAN"], min_approvals=2, timeout_seconds=600
        )
    )
    assert notes == []
    assert (merged.approvers, merged.min_approvals, merged.timeout_seconds) == (
        ("U0BOB", "U0DAN"),
        2,
        600,
    )
    anyone = Rules(allow_self_approval=True)  # a list where the policy has none narrows it
    merged, notes = anyone.merge_request({"approvers": ["U0X"], "allow_self_approval": False})
    assert (merged.approvers, merged.allow_self_approval, notes) == (("U0X",), False, [])


def test_weaker_settings_are_ignored_and_named() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    merged, notes = rules.merge_request(
        approval_payload(
            title="x",
            approvers=["U0BOB", "U0EVE"],
            allow_self_approval=True,
            timeout_seconds=86400,
            escalate_after_seconds=60,
            escalate_to=["U0EVE"],
        )
    )
    assert merged == rules
    assert notes == [
        'deploy.prod: request\'s approvers=["U0BOB", "U0EVE"] ignored: not all of them are '
        "policy approvers (allow_weaker_overrides = false)",
        "deploy.prod: request's allow_self_approval=true ignored: the policy forbids it "
        "(allow_weaker_overrides = false)",
        "deploy.prod: request's timeout_seconds=86400 ignored: the policy ends it after 2h "
        "(allow_weaker_overrides = false)",
        "deploy.prod: request's escalate_after_seconds=60 ignored: it would replace the "
        "policy's escalation (allow_weaker_overrides = false)",
    ]
    fewer, notes = Rules(min_approvals=2, approvers=("S0OPS",)).merge_request({"min_approvals": 3})
    assert fewer.min_approvals == 3 and notes == []
    fewer, notes = Rules(min_approvals=3, approvers=("S0OPS",)).merge_request({"min_approvals": 2})
    assert fewer.min_approvals == 3
    assert notes == [
        "default: request's min_approvals=2 ignored: the policy needs 3 "
        "(allow_weaker_overrides = false)"
    ]


def test_weaker_settings_apply_when_the_policy_allows_them() -> None:
    rules = Rules(
        approvers=("U0BOB", "U0DAN", "S0OPS"),
        min_approvals=3,
        timeout_seconds=3600,
        escalation=(Level(600, ("U0CAROL",)),),
        allow_weaker_overrides=True,
    )
    merged, notes = rules.merge_request(
        {
            "approvers": ["U0EVE", "U0BOB"],
            "min_approvals": 2,
            "allow_self_approval": True,
            "timeout_seconds": 7200,
            "escalate_after_seconds": 1200,
            "escalate_to": ["U0DAN"],
        }
    )
    assert notes == []
    assert merged == Rules(
        approvers=("U0EVE", "U0BOB"),
        min_approvals=2,
        allow_self_approval=True,
        timeout_seconds=7200,
        escalation=(Level(1200, ("U0DAN",)),),
        allow_weaker_overrides=True,
    )
    # min_approvals=1 is the payload's default, so it reads as "not set"
    assert rules.merge_request({"min_approvals": 1}) == (rules, [])


def test_narrowing_below_min_approvals_is_ignored() -> None:
    rules = Rules(approvers=("U0BOB", "U0DAN"), min_approvals=2)
    merged, notes = rules.merge_request({"approvers": ["U0BOB"]})
    assert merged.approvers == ("U0BOB", "U0DAN")
    assert notes == [
        'default: request\'s approvers=["U0BOB"] ignored: fewer than min_approvals (2)'
    ]
    merged, notes = rules.merge_request({"min_approvals": 5})
    assert merged.min_approvals == 2
    assert notes == ["default: request's min_approvals=5 ignored: only 2 approvers"]


def test_timeout_weakens_depending_on_on_timeout() -> None:
    reject = Rules(timeout_seconds=3600)
    assert reject.merge_request({"timeout_seconds": 600})[0].timeout_seconds == 600
    assert reject.merge_request({"timeout_seconds": 7200})[0].timeout_seconds == 3600
    assert Rules().merge_request({"timeout_seconds": 60})[0].timeout_seconds == 60
    approve = Rules(timeout_seconds=3600, on_timeout="approve")
    assert approve.merge_request({"timeout_seconds": 600})[0].timeout_seconds == 3600
    assert approve.merge_request({"timeout_seconds": 7200})[0].timeout_seconds == 7200
    assert Rules(on_timeout="approve").merge_request({"timeout_seconds": 60})[1] == [
        "default: request's timeout_seconds=60 ignored: on_timeout = approve: a shorter "
        "timeout approves sooner (allow_weaker_overrides = false)"
    ]


def test_escalate_after_maps_onto_one_level() -> None:
    rules = Rules(supervisors=("U0CAROL",), timeout_seconds=3600)
    merged, notes = rules.merge_request({"escalate_after_seconds": 600, "escalate_to": ["S0OPS"]})
    assert (merged.escalation, notes) == ((Level(600.0, ("S0OPS",)),), [])
    merged, _ = rules.merge_request({"escalate_after_seconds": 600, "escalate_to": []})
    assert merged.escalation == (Level(600.0, ("U0CAROL",)),)  # default: the supervisors
    merged, notes = rules.merge_request({"escalate_after_seconds": 7200})
    assert merged.escalation == () and notes == [
        "default: request's escalate_after_seconds=7200 ignored: not before the timeout"
    ]
    merged, notes = Rules().merge_request({"escalate_after_seconds": 60})
    assert merged.escalation == () and "nobody to notify" in notes[0]


def test_malformed_settings_are_ignored_never_raised() -> None:
    merged, notes = Rules().merge_request(
        {
            "approvers": "U0BOB",
            "min_approvals": "2",
            "allow_self_approval": "yes",
            "timeout_seconds": -1,
            "escalate_after_seconds": 60,
            "escalate_to": ["bob"],
        }
    )
    assert merged == Rules()
    assert [n.split(" ignored")[0] for n in notes] == [
        'default: request\'s approvers="U0BOB"',
        'default: request\'s min_approvals="2"',
        'default: request\'s allow_self_approval="yes"',
        "default: request's timeout_seconds=-1",
        'default: request\'s escalate_to=["bob"]',
    ]


# -- schedule ---------------------------------------------------------------------------------


def test_deadlines_and_escalation_repeats() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    assert rules.deadlines(1000.0) == [
        ("remind", 1, 1900.0),
        ("escalate", 0, 2800.0),
        ("escalate", 1, 4600.0),
        ("timeout", 0, 8200.0),
    ]
    assert rules.next_reminder(7, 0) == 6300 and rules.next_reminder(8, 0) is None
    again = Rules(
        escalation=(Level(1800, ("U0A",)), Level(3600, ("U0B",))), repeat=2, timeout_seconds=10000
    )
    assert [lv.after_seconds for lv in again.escalation_schedule()] == [
        1800,
        3600,
        5400,
        7200,
        9000,
    ]


# -- freeze windows ---------------------------------------------------------------------------


def test_freeze_windows_in_their_time_zone() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    weekend, friday, dates, holidays = rules.freeze
    # Friday 23:30 UTC in winter is already Saturday 00:30 in Berlin
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 1, 16, 23, 30)) == weekend
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 1, 16, 22, 59)) == friday
    # Friday afternoon: 16:00 Berlin is 15:00 UTC in winter, 14:00 UTC in summer
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 1, 16, 14, 59)) is None
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 1, 16, 15, 0)) == friday
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 7, 3, 14, 0)) == friday
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 7, 3, 13, 59)) is None
    assert freeze_at(rules, at(BERLIN, 2026, 7, 3, 23, 59, 59)) == friday  # "to" is inclusive
    assert freeze_at(rules, at(BERLIN, 2026, 7, 1, 12, 0)) is None  # a Wednesday
    # dates in UTC (no tz); a refuse window wins over another that is active too
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 12, 17, 23, 59)) is None  # a Thursday
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2026, 12, 24, 10, 0)) == holidays
    assert dates.active_at(at(ZoneInfo("UTC"), 2026, 12, 24, 10, 0))
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2027, 1, 2, 23, 59)) == holidays  # inclusive
    assert freeze_at(rules, at(ZoneInfo("UTC"), 2027, 1, 4, 0, 0)) is None  # a Monday
    assert friday.describe() == "fri 16:00-23:59 (Europe/Berlin)"
    assert holidays.describe() == "2026-12-20 to 2027-01-02 (UTC)"


def test_freeze_across_daylight_saving_changes() -> None:
    night = FreezeWindow(days=frozenset({6}), end=time(2, 30), tz="Europe/Berlin")
    utc = ZoneInfo("UTC")
    # 2026-03-29: Berlin skips 02:00-03:00; 00:59 UTC is 01:59 CET, 01:00 UTC is 03:00 CEST
    assert night.active_at(at(utc, 2026, 3, 29, 0, 59))
    assert not night.active_at(at(utc, 2026, 3, 29, 1, 0))
    # 2026-10-25: 02:00-03:00 happens twice (00:xx UTC in CEST, 01:xx UTC in CET)
    assert night.active_at(at(utc, 2026, 10, 25, 0, 30))
    assert night.active_at(at(utc, 2026, 10, 25, 1, 30))
    assert not night.active_at(at(utc, 2026, 10, 25, 1, 31))


def test_during_freeze_only_freeze_approvers_decide() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    weekend = rules.freeze[0]
    frozen = rules.during_freeze(weekend)
    assert (frozen.approvers, frozen.min_approvals, frozen.allow_self_approval) == (
        ("U0CTO",),
        1,
        False,
    )
    with pytest.raises(ValueError, match="refuse"):
        rules.during_freeze(rules.freeze[3])


def test_freeze_dates_accept_toml_dates_and_times() -> None:
    policy = parse(
        '[policy.default]\nfreeze_approvers = ["U0CTO"]\n'
        "freeze = [{ dates = [2026-12-24], from = 08:00:00, to = 12:00:00 }]\n"
    )
    (w,) = policy.rules("default").freeze
    assert w.describe() == "2026-12-24 08:00-12:00 (UTC)"
    assert w.active_at(at(ZoneInfo("UTC"), 2026, 12, 24, 12, 0))
    assert not w.active_at(at(ZoneInfo("UTC"), 2026, 12, 24, 12, 1))


# -- who --------------------------------------------------------------------------------------


def test_describe() -> None:
    assert describe(parse(BRIEF).rules("deploy", "prod")) == (
        "Needs 2 of <@U0BOB>, <@U0DAN>, <!subteam^S0RELEASE>"
    )
    assert describe(Rules(approvers=("U0BOB",))) == "Needs approval from <@U0BOB>"
    assert describe(Rules(approvers=("S0OPS",), min_approvals=2)) == ("Needs 2 of <!subteam^S0OPS>")
    assert describe(Rules()) == "Needs 1 approval from anyone but the requester"
    assert describe(Rules(min_approvals=2)) == "Needs 2 approvals from anyone but the requester"
    assert describe(Rules(allow_self_approval=True)) == "Needs 1 approval from anyone"


def test_may_request() -> None:
    rules = parse(BRIEF).rules("deploy", "prod")
    assert rules.may_request("U0ALICE", "C0OTHER")
    assert rules.may_request("U0MALLORY", "C0DEPLOYS")
    assert rules.may_request("U0MALLORY", "C0OTHER", user_groups={"S0DEVS"})
    assert not rules.may_request("U0MALLORY", "C0OTHER")
    assert Rules().may_request("U0ANY", "C0ANY")
    assert rules.has_groups and not Rules(approvers=("U0BOB",)).has_groups


# -- python -m bot check-config ---------------------------------------------------------------


def check_config(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "APPROVALS_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", "check-config", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "approvals.toml"
    brief = BRIEF.replace('graphs = ["myteam.agents:specs"]', "")
    good.write_text(brief.replace("[deploy]\n", '[deploy]\nbackend = "simulated"\n'))
    done = check_config(str(good), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"ok: {good}: 3 rule sets, 2 escalation levels; graphs: deploy\n"

    # as `bot run` says: a [deploy] table must name its backend
    good.write_text(brief)
    done = check_config(str(good), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"error: {good}: deploy.backend is not set: ")

    example = check_config(str(EXAMPLE), cwd=tmp_path)
    assert (example.returncode, example.stderr) == (0, "")
    assert example.stdout.startswith(f"ok: {EXAMPLE}: ")

    bad = tmp_path / "bad.toml"
    bad.write_text('[approver]\nprod = ["U0BOB"]\n')
    done = check_config(cwd=tmp_path, APPROVALS_CONFIG=str(bad))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f'error: {bad}: approver: unknown table (did you mean "approvers"?)\n'

    typo = tmp_path / "typo.toml"
    typo.write_text('[deploy]\nbackend = "simulated"\n[policy.deplyo]\nmin_approvals = 1\n')
    done = check_config(str(typo), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f'error: {typo}: policy.deplyo: unknown graph (did you mean "deploy"?)\n'

    done = check_config(str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        2,
        f"error: {tmp_path / 'missing.toml'}: no such file\n",
    )


def test_check_config_cli_default_path_and_deprecations(tmp_path: Path) -> None:
    done = check_config(cwd=tmp_path)  # no file: no /deploy and no graphs of one's own
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: approvals.toml (none found): no graphs to run: add a [deploy] table (the "
        'built-in /deploy), graphs = ["package.module:specs"] (your own; README: "Bring '
        'your own graph") or [[deployments]] (agents on a LangGraph Server)\n'
    )
    path = tmp_path / "approvals.toml"
    path.write_text('[approvers]\nprod = ["U0BOB"]\n[deploy]\nbackend = "simulated"\n')
    done = check_config(cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"ok: {path}: 1 rule set, 0 escalation levels; graphs: deploy\n"
    assert done.stderr.startswith("warning: ") and "[approvers] is deprecated" in done.stderr


# -- [api] tokens -------------------------------------------------------------------------------

HASH = "a" * 64
OTHER = "b" * 64


def token(**fields: object) -> str:
    """An [api] table with one token: name "ci", HASH, read + decide as U0CI, then ``fields``."""
    base: dict[str, object] = {
        "name": "ci",
        "token_sha256": HASH,
        "scopes": ["read", "decide"],
        "as": "U0CI",
    }
    base.update(fields)
    cells = ", ".join(f"{k} = {json.dumps(v)}" for k, v in base.items() if v is not None)
    return f"[api]\ntokens = [{{ {cells} }}]\n"


API_MISTAKES = [
    ("[api]\ntoken = []", 'api.token: unknown key (did you mean "tokens"?)'),
    (
        '[api]\ntokens = "x"',
        "api.tokens: must be a list of tables ({ name = …, token_sha256 = …, scopes = […] }), "
        "got a string",
    ),
    (
        '[api]\ntokens = ["x"]',
        "api.tokens[0]: must be a table ({ name = …, token_sha256 = …, scopes = […] }), got a "
        "string",
    ),
    (token(scope=["read"]), 'api.tokens[0].scope: unknown key (did you mean "scopes"?)'),
    (token(name=None), "api.tokens[0].name: missing: every token needs a name (logs show it)"),
    (
        token(name="c i"),
        'api.tokens[0].name: must be letters, digits, ".", "-" or "_" (at most 64), got "c i"',
    ),
    (
        token(token_sha256=None),
        "api.tokens[0].token_sha256: missing: the SHA-256 of the token, in hex (never the token)",
    ),
    (
        token(token_sha256="secret-token-pasted-here"),
        "api.tokens[0].token_sha256: must be 64 hex digits: the SHA-256 of the token, not the "
        "token itself",
    ),
    (token(token_sha256="A" * 64), "api.tokens[0].token_sha256: hex digits are lower case"),
    (token(scopes=None), 'api.tokens[0].scopes: missing: list what it may do: "read", "decide"'),
    (token(scopes=[]), 'api.tokens[0].scopes: must list "read" and/or "decide"'),
    (
        token(scopes=["read", "write"]),
        'api.tokens[0].scopes[1]: must be "read" or "decide", got "write"',
    ),
    (token(scopes=["read", "read"]), 'api.tokens[0].scopes[1]: "read" is listed twice'),
    (token(**{"as": "bob"}), 'api.tokens[0].as: must be a Slack user id (U… or W…), got "bob"'),
    (
        token(**{"as": "S0RELEASE"}),
        'api.tokens[0].as: must be a Slack user id (U… or W…), got "S0RELEASE"',
    ),
    (token(act_as=["U0BOB"]), 'api.tokens[0].act_as: give "as" or "act_as", not both'),
    (
        token(**{"as": None}),
        'api.tokens[0]: a token with the "decide" scope needs "as" (the Slack user it decides '
        'as) or "act_as" (the users a request may name)',
    ),
    (
        token(**{"as": None, "act_as": []}),
        'api.tokens[0].act_as: must list Slack user ids, or be ["*"]',
    ),
    (
        token(**{"as": None, "act_as": ["U0BOB", "*"]}),
        'api.tokens[0].act_as[1]: "*" (anyone) stands alone',
    ),
    (
        token(**{"as": None, "act_as": ["C0DEPLOYS"]}),
        'api.tokens[0].act_as[0]: must be a Slack user id (U… or W…) or "*", got "C0DEPLOYS"',
    ),
    (
        token(scopes=["read"]),
        'api.tokens[0].as: only a token with the "decide" scope decides',
    ),
    (
        "[api]\ntokens = [\n"
        f'  {{ name = "ci", token_sha256 = "{HASH}", scopes = ["read"] }},\n'
        f'  {{ name = "ci", token_sha256 = "{OTHER}", scopes = ["read"] }},\n]',
        'api.tokens[1].name: "ci" is listed twice',
    ),
    (
        "[api]\ntokens = [\n"
        f'  {{ name = "ci", token_sha256 = "{HASH}", scopes = ["read"] }},\n'
        f'  {{ name = "cd", token_sha256 = "{HASH}", scopes = ["read"] }},\n]',
        "api.tokens[1].token_sha256: the same token as api.tokens[0]",
    ),
]


@pytest.mark.parametrize(("text", "line"), API_MISTAKES, ids=[m[1] for m in API_MISTAKES])
def test_each_api_token_mistake_is_one_line(text: str, line: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(text)
    assert str(caught.value) == f"approvals.toml: {line}"
    assert "\n" not in str(caught.value)


def test_a_pasted_token_is_never_echoed() -> None:
    with pytest.raises(PolicyError) as caught:
        parse(token(token_sha256="apv_s3cr3t"))
    assert "s3cr3t" not in str(caught.value)


def test_api_tokens() -> None:
    assert parse("").api_tokens == () == Policy().api_tokens
    inline = parse(
        "[api]\ntokens = [\n"
        f'  {{ name = "ci", token_sha256 = "{HASH}", scopes = ["read", "decide"], '
        'as = "U0CIBOT" },\n'
        f'  {{ name = "portal", token_sha256 = "{OTHER}", scopes = ["decide"], act_as = ["*"] }},\n'
        f'  {{ name = "pair", token_sha256 = "{"c" * 64}", scopes = ["decide"], '
        'act_as = ["U0BOB", "U0DAN"] },\n'
        f'  {{ name = "dash.board", token_sha256 = "{"d" * 64}", scopes = ["read"] }},\n'
        "]\n"
    )
    ci, portal, pair, board = inline.api_tokens
    assert (ci.name, ci.as_user, ci.scopes) == ("ci", "U0CIBOT", frozenset({"read", "decide"}))
    assert ci.may_act_as("U0CIBOT") and not ci.may_act_as("U0BOB")
    assert portal.may_act_as("U0BOB") and portal.may_act_as("W0ANY")
    assert pair.may_act_as("U0DAN") and not pair.may_act_as("U0CAROL")
    assert board.scopes == frozenset({"read"}) and not board.may_act_as("U0BOB")
    tables = parse(f'[[api.tokens]]\nname = "ci"\ntoken_sha256 = "{HASH}"\nscopes = ["read"]\n')
    assert tables.api_tokens[0].name == "ci"


# -- [[deployments]]: agents on a LangGraph Server ---------------------------------------------

SUPPORT = """
[[deployments]]
name = "support"
url = "https://support.example.com"
api_key_env = "SUPPORT_LANGGRAPH_API_KEY"
channel = "C0AGENTS"
assistants = ["agent"]
watch = true
poll = "2s"
requester_metadata = "slack_user"
"""


def deployment(**fields: object) -> str:
    """One [[deployments]] table: name "support", its url and channel, then ``fields``
    (None leaves a key out)."""
    base: dict[str, object] = {
        "name": "support",
        "url": "https://support.example.com",
        "channel": "C0AGENTS",
    }
    base.update(fields)
    lines = [f"{k} = {json.dumps(v)}" for k, v in base.items() if v is not None]
    return "[[deployments]]\n" + "\n".join(lines) + "\n"


BAD_URL = (
    'deployments[0].url: must be an http:// or https:// URL like "https://support.example.com", '
    "got "
)
DEPLOYMENT_MISTAKES = [
    (
        '[deployments]\nname = "support"',
        "deployments: must be [[deployments]] tables (one per LangGraph Server), got a table",
    ),
    (
        'deployments = ["support"]',
        "deployments[0]: must be a table ([[deployments]] with name, url, channel), got a string",
    ),
    (deployment(urll="x"), 'deployments[0].urll: unknown key (did you mean "url"?)'),
    (
        deployment(colour="blue"),
        "deployments[0].colour: unknown key (known: name, url, api_key_env, channel, assistants, "
        "watch, poll, requester_metadata)",
    ),
    (
        deployment(api_key="lsv2_pt_s3cr3t"),
        "deployments[0].api_key: never put an API key in this file: set it in an environment "
        "variable and name that variable with api_key_env (e.g. api_key_env = "
        '"SUPPORT_LANGGRAPH_API_KEY")',
    ),
    (
        deployment(name=None),
        "deployments[0].name: missing: every deployment needs a name (people type it in Slack: "
        "/approvals run <name>/<assistant>)",
    ),
    (deployment(name=7), "deployments[0].name: must be a name (a string), got 7"),
    (
        deployment(name="Support"),
        'deployments[0].name: must be lower-case letters, digits and "-" (e.g. "support"), got '
        '"Support"',
    ),
    (
        deployment(name="sup_port"),
        'deployments[0].name: must be lower-case letters, digits and "-" (e.g. "support"), got '
        '"sup_port"',
    ),
    (
        deployment(name="-support"),
        'deployments[0].name: must be lower-case letters, digits and "-" (e.g. "support"), got '
        '"-support"',
    ),
    (
        deployment(name="default"),
        'deployments[0].name: "default" is taken by [policy.default] (the rules for everything): '
        "choose another name",
    ),
    (
        deployment() + deployment(url="https://other.example.com"),
        'deployments[1].name: "support" is also the name of deployments[0]: each deployment '
        "needs a name of its own",
    ),
    (
        deployment(url=None),
        "deployments[0].url: missing: the LangGraph Server's address, e.g. "
        '"https://support.example.com"',
    ),
    (
        deployment(url=["https://a"]),
        "deployments[0].url: must be an http:// or https:// URL (a string), got a list",
    ),
    (
        deployment(url="support.example.com"),
        BAD_URL + '"support.example.com"',
    ),
    (
        deployment(url="ftp://support.example.com"),
        BAD_URL + '"ftp://support.example.com"',
    ),
    (
        deployment(url="https://"),
        BAD_URL + '"https://"',
    ),
    (
        deployment(url="https://support.example.com:99999"),
        BAD_URL + '"https://support.example.com:99999"',
    ),
    (
        deployment(url="https://support.example .com"),
        BAD_URL + '"https://support.example .com"',
    ),
    (
        deployment(url="https://bot:s3cr3t@support.example.com"),
        "deployments[0].url: must not hold a user name or password: name the environment "
        "variable holding the API key with api_key_env",
    ),
    (
        deployment(url="https://support.example.com/?api_key=s3cr3t"),
        "deployments[0].url: must be the server's base URL, without a query (?…) or #…",
    ),
    (
        deployment(api_key_env="lsv2_pt_s3cr3t"),
        "deployments[0].api_key_env: must name the environment variable holding the API key "
        '(upper-case letters, digits and "_", e.g. "SUPPORT_LANGGRAPH_API_KEY"), never the key '
        "itself",
    ),
    (
        deployment(api_key_env=True),
        "deployments[0].api_key_env: must name the environment variable holding the API key "
        '(upper-case letters, digits and "_", e.g. "SUPPORT_LANGGRAPH_API_KEY"), never the key '
        "itself",
    ),
    (
        deployment(channel=None),
        "deployments[0].channel: missing: the Slack channel id (C… or G…) its approvals go to",
    ),
    (
        deployment(channel="#agents"),
        'deployments[0].channel: must be a Slack channel id (C… or G…), got "#agents"',
    ),
    (
        deployment(channel="U0BOB"),
        'deployments[0].channel: must be a Slack channel id (C… or G…), got "U0BOB"',
    ),
    (
        deployment(assistants="agent"),
        "deployments[0].assistants: must be a list of graph ids or assistant ids, got a string",
    ),
    (
        deployment(assistants=[]),
        "deployments[0].assistants: must list at least one graph id or assistant id (leave it "
        "out to serve all)",
    ),
    (deployment(assistants=["agent", 3]), "deployments[0].assistants[1]: must be a string, got 3"),
    (
        deployment(assistants=["support/agent"]),
        'deployments[0].assistants[0]: not a graph id or assistant id (no spaces or "/"): '
        '"support/agent"',
    ),
    (
        deployment(assistants=["my agent"]),
        'deployments[0].assistants[0]: not a graph id or assistant id (no spaces or "/"): '
        '"my agent"',
    ),
    (
        deployment(assistants=["agent", "agent"]),
        'deployments[0].assistants[1]: "agent" is listed twice',
    ),
    (deployment(watch="yes"), 'deployments[0].watch: must be true or false, got "yes"'),
    (
        deployment(poll=2),
        'deployments[0].poll: must be a duration like "90s", "30m", "2h" or "1d", got 2',
    ),
    (
        deployment(poll="500ms"),
        'deployments[0].poll: must be a duration like "90s", "30m", "2h" or "1d", got "500ms"',
    ),
    (deployment(poll="0s"), 'deployments[0].poll: must be longer than 0, got "0s"'),
    (
        deployment(poll="2h"),
        'deployments[0].poll: must be "1h" or less (the inbox looks that often), got "2h"',
    ),
    (
        deployment(requester_metadata=""),
        'deployments[0].requester_metadata: must be a thread metadata key (e.g. "slack_user"), '
        'got ""',
    ),
    (
        deployment(requester_metadata="slack user"),
        'deployments[0].requester_metadata: must be a thread metadata key (e.g. "slack_user"), '
        'got "slack user"',
    ),
    # rules per deployment and assistant
    (
        deployment(assistants=["agent", "triage"]) + "[policy.support.agnet]\nmin_approvals = 1\n",
        'policy.support.agnet: unknown assistant "agnet": deployment "support" serves only agent, '
        "triage (its assistants = [...])",
    ),
    (
        deployment() + "[policy.support.agent]\nmin_approval = 2\n",
        'policy.support.agent.min_approval: unknown key (did you mean "min_approvals"?)',
    ),
    (
        deployment() + '[policy.support.agent]\napprovers = ["bob"]\n',
        'policy.support.agent.approvers[0]: "bob" is not one of Slack user or group ids',
    ),
]


@pytest.mark.parametrize(
    ("text", "line"), DEPLOYMENT_MISTAKES, ids=[m[1][:60] for m in DEPLOYMENT_MISTAKES]
)
def test_each_deployment_mistake_is_one_line(text: str, line: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(text)
    assert str(caught.value) == f"approvals.toml: {line}"
    assert "\n" not in str(caught.value)
    assert "s3cr3t" not in str(caught.value)  # a key pasted anywhere is never echoed


def test_deployments() -> None:
    policy = parse(SUPPORT + deployment(name="ops-2", url="http://10.0.0.7:2024///"))
    support, ops = policy.deployments
    assert support == Deployment(
        name="support",
        url="https://support.example.com",
        api_key_env="SUPPORT_LANGGRAPH_API_KEY",
        channel="C0AGENTS",
        assistants=("agent",),
        watch=True,
        poll_seconds=2.0,
        requester_metadata="slack_user",
    )
    # the defaults; no trailing slash kept
    assert ops == Deployment(name="ops-2", url="http://10.0.0.7:2024", channel="C0AGENTS")
    assert (ops.api_key_env, ops.assistants, ops.watch, ops.poll_seconds) == (None, (), True, 2.0)
    assert ops.requester_metadata is None
    assert policy.deployment("support") is support and policy.deployment("ops-2") is ops
    assert policy.deployment("nope") is None and Policy().deployments == ()
    other = parse(deployment(poll="1h", watch=False, channel="G0PRIVATE")).deployments[0]
    assert (other.poll_seconds, other.watch, other.channel) == (3600.0, False, "G0PRIVATE")


def test_a_deployment_serves_its_assistants_or_all() -> None:
    listed = Deployment(name="s", url="http://x", channel="C0A", assistants=("agent", "a1b2"))
    assert listed.serves("agent") and listed.serves("agent", "some-uuid")
    assert listed.serves("other-graph", "a1b2")  # by the assistant's own id
    assert not listed.serves("other-graph") and not listed.serves("other-graph", "c3d4")
    everything = Deployment(name="s", url="http://x", channel="C0A")
    assert everything.serves("anything") and everything.serves("anything", "any-id")


def test_remote_commands_name_deployment_and_assistant() -> None:
    assert remote_command("support/agent") == ("support", "agent")
    assert remote_command("/support/agent") == ("support", "agent")
    assert remote_command("support/a/b") == ("support", "a/b")
    for local in ("deploy", "/deploy", "support/", "/agent", ""):
        assert remote_command(local) is None


RULED = """
[policy.default]
min_approvals = 1
timeout = "1d"

[policy.support]
approvers = ["U0BOB", "U0DAN"]
comment_required = ["reject"]

[policy.support.agent]
min_approvals = 2
timeout = "2h"
"""


def test_rules_merge_default_deployment_assistant() -> None:
    # [policy.support.*] before [[deployments]] in the file: deployments are read first
    policy = parse(RULED + SUPPORT)
    agent = policy.rules_for("support/agent", {"messages": []})
    assert agent.scope == "support.agent"
    assert (agent.approvers, agent.min_approvals) == (("U0BOB", "U0DAN"), 2)
    assert agent.timeout_seconds == 7200 and agent.comment_required == frozenset({"reject"})
    assert policy.rules("support/agent") == agent
    assert policy.rules_for("support/agent", {"env": "prod"}) == agent  # an arg is not an env
    rules, origins = policy.merged("support/agent", None)
    assert rules == agent
    assert origins == {
        "min_approvals": "policy.support.agent.min_approvals",
        "timeout": "policy.support.agent.timeout",
        "approvers": "policy.support.approvers",
        "comment_required": "policy.support.comment_required",
    }
    # another assistant of the deployment: default <- deployment
    other = policy.rules_for("support/triage", {})
    assert other.scope == "support.triage" and other.min_approvals == 1
    assert other.approvers == ("U0BOB", "U0DAN") and other.timeout_seconds == 86400
    # with assistants = [] left out, any assistant may have a table of its own
    open_ = parse(RULED.replace("agent", "any-graph") + deployment())
    assert open_.rules("support/any-graph").min_approvals == 2
    # the env tables of local graphs are still checked against deploy.envs
    with pytest.raises(PolicyError, match=r'policy\.deploy\.prd: unknown env "prd"'):
        parse(SUPPORT + "[policy.deploy.prd]\nmin_approvals = 1\n")
    with pytest.raises(PolicyError, match=r'policy\.other\.agent: unknown env "agent"'):
        parse(SUPPORT + "[policy.other.agent]\nmin_approvals = 1\n")


def test_cross_checks_hold_for_an_assistants_merged_rules() -> None:
    with pytest.raises(PolicyError) as caught:
        parse(
            SUPPORT + '[policy.support]\napprovers = ["U0BOB"]\n[policy.support.agent]\n'
            "min_approvals = 2\n"
        )
    assert str(caught.value) == (
        "approvals.toml: policy.support.agent.min_approvals: needs 2 approvals but approvers "
        "lists only 1 (policy.support.approvers)"
    )


def test_check_graphs_knows_deployments() -> None:
    policy = parse(RULED + SUPPORT)
    policy.check_graphs([])  # a deployment's tables name no local graph
    typo = parse(SUPPORT + "[policy.suport]\nmin_approvals = 1\n")
    with pytest.raises(PolicyError) as caught:
        typo.check_graphs(["/deploy"])
    assert str(caught.value) == (
        'approvals.toml: policy.suport: unknown graph (did you mean "support"?)'
    )
    far = parse(SUPPORT + "[policy.zzz]\nmin_approvals = 1\n")
    with pytest.raises(PolicyError) as caught:
        far.check_graphs(["/deploy", "agent"])
    assert str(caught.value) == (
        "approvals.toml: policy.zzz: unknown graph (graphs: agent, deploy; deployments: support)"
    )


def test_the_examples_commented_deployment_parses_as_the_issue_shows_it() -> None:
    """The example file keeps [[deployments]] and its rules commented (a deployment it named
    would be tried by check-config); uncommented, they are valid and say what they show."""
    lines = EXAMPLE.read_text().splitlines()
    block = []
    for line in lines[lines.index("# [[deployments]]") :]:
        if not line.startswith("#"):
            break
        toml = line.removeprefix("# ")
        if toml.startswith("[") or re.match(r"\w+ = ", toml):  # not the prose between
            block.append(toml)
    policy = parse("\n".join(block))
    assert policy.deployments == parse(SUPPORT).deployments
    assert policy.rules("support/agent").scope == "support.agent"
    assert policy.rule_sets == 2


def test_deployment_keys_come_from_the_environment_only() -> None:
    from bot.config import deployment_keys

    policy = parse(SUPPORT + deployment(name="open") + deployment(name="unset", api_key_env="NOPE"))
    env = {"SUPPORT_LANGGRAPH_API_KEY": "k-123", "NOPE": ""}
    assert deployment_keys(policy, env) == {"support": "k-123", "open": None, "unset": None}
    assert deployment_keys(Policy(), env) == {}


def test_check_config_offline_lists_deployments_without_trying_them(tmp_path: Path) -> None:
    path = tmp_path / "approvals.toml"
    path.write_text(
        RULED
        + SUPPORT
        + deployment(name="open", url="http://127.0.0.1:9/", channel="G0OPS")
        + deployment(name="unset", assistants=["a", "b"], api_key_env="UNSET_KEY")
    )
    done = check_config("--offline", str(path), cwd=tmp_path, SUPPORT_LANGGRAPH_API_KEY="k-s3cr3t")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"ok: {path}: 3 rule sets, 0 escalation levels; graphs: none; /deploy is off "
        "(no [deploy] table)\n"
        "deployment support: https://support.example.com, channel C0AGENTS, assistants: agent, "
        "key: SUPPORT_LANGGRAPH_API_KEY is set\n"
        "  not tried (--offline)\n"
        "deployment open: http://127.0.0.1:9, channel G0OPS, assistants: all, key: none (no "
        "api_key_env)\n"
        "  not tried (--offline)\n"
        "deployment unset: https://support.example.com, channel C0AGENTS, assistants: a, b, key: "
        "UNSET_KEY is not set\n"
        "  not tried (--offline)\n"
    )
    assert "s3cr3t" not in done.stdout + done.stderr
    # online, with nothing listening: a failed try is exit 1
    url = f"http://127.0.0.1:{free_port()}"
    path.write_text(deployment(name="open", url=url + "/"))
    done = check_config(str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines()[1:] == [
        f"deployment open: {url}, channel C0AGENTS, assistants: all, key: none (no api_key_env)",
        f"  not reachable: connection refused at {url} (is the server running?)",
    ]
    assert done.stderr == "error: deployment failed: open\n"
