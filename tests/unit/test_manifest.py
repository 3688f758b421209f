"""manifest.yml stays in step with the code: its commands, scopes and events."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.app.listeners import approvals
from bot.app.manifest import manifest
from graphs import registry
from graphs.deploy import DeployOptions

MANIFEST = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifest.yml").read_text())


def test_every_registered_command_is_in_the_manifest() -> None:
    declared = {c["command"]: c for c in MANIFEST["features"]["slash_commands"]}
    for command, spec in registry(DeployOptions()).items():
        assert command in declared
        assert declared[command]["usage_hint"] == spec.usage
    assert declared["/approvals"]["usage_hint"] == approvals.USAGE


def test_scopes_settings_and_events() -> None:
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read",
        "chat:write",
        "commands",
        "im:history",
        "im:write",
        "users:read",
        "usergroups:read",
    }
    settings = MANIFEST["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["event_subscriptions"]["bot_events"] == [
        "app_home_opened",
        "app_mention",
        "message.im",
    ]
    assert "channels:history" not in MANIFEST["oauth_config"]["scopes"]["bot"]
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    assert MANIFEST["features"]["bot_user"]["display_name"] == "approvals"


def test_the_generated_manifest_matches_the_file() -> None:
    """`python -m bot manifest` and manifest.yml say the same (the file adds comments)."""
    generated = manifest(registry(DeployOptions()))
    assert generated["features"]["slash_commands"] == MANIFEST["features"]["slash_commands"]
    assert generated["oauth_config"] == MANIFEST["oauth_config"]
    assert generated["settings"] == MANIFEST["settings"]
    http = manifest(registry(DeployOptions()), "https://x.example/slack/events")
    assert http["settings"]["socket_mode_enabled"] is False
    assert all(c["url"].startswith("https://") for c in http["features"]["slash_commands"])


@pytest.mark.parametrize(
    ("deploy", "expected"),
    [
        ('[deploy]\nbackend = "simulated"\n', ["/deploy", "/approvals"]),
        ("", ["/approvals"]),  # no [deploy] table: /deploy is off, so not in the app
    ],
)
def test_manifest_command_prints_json_with_entry_point_commands(
    tmp_path: Path, deploy: str, expected: list[str]
) -> None:
    policy = tmp_path / "approvals.toml"
    policy.write_text('graphs = ["graphs.agent:specs"]\n' + deploy)
    env = {**os.environ, "APPROVALS_CONFIG": str(policy)}
    out = subprocess.run(
        [sys.executable, "-m", "bot", "manifest"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    commands = [c["command"] for c in json.loads(out.stdout)["features"]["slash_commands"]]
    assert commands == expected  # the agent is started with /approvals run
