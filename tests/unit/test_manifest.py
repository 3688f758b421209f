"""manifest.yml stays in step with the code: its commands, scopes and events."""

from pathlib import Path

import yaml

from bot.listeners import approvals
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
        "chat:write",
        "commands",
        "im:write",
        "users:read",
        "usergroups:read",
    }
    settings = MANIFEST["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    assert MANIFEST["features"]["bot_user"]["display_name"] == "approvals"
