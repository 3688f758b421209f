"""compose.yaml is not run in CI (no Docker here); this keeps its shape honest: three bots in
HTTP mode on PostgreSQL, probed on the health port, configured only with settings that exist."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_three_http_bots_on_postgres() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    bot, db = compose["services"]["bot"], compose["services"]["postgres"]
    assert bot["deploy"]["replicas"] == 3
    assert bot["command"] == ["python", "-m", "bot", "run"]
    env = bot["environment"]
    assert "SLACK_APP_TOKEN" not in env  # HTTP mode
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert env["DATABASE_URL"].endswith("@postgres:5432/" + db["environment"]["POSTGRES_DB"])
    port = env["APPROVALS_HEALTH_PORT"]
    assert f":{port}/healthz" in " ".join(bot["healthcheck"]["test"])
    readme = (ROOT / "README.md").read_text()
    for name in env:
        assert f"`{name}`" in readme, f"{name} is not documented"
    # Every setting is accepted by this release (the URL is not connected to here).
    settings = Settings.from_env(
        {k: v for k, v in env.items() if k != "APPROVALS_CONFIG"}
        | {"APPROVALS_CONFIG": str(ROOT / "approvals.example.toml")}
    )
    assert (settings.host, settings.port, settings.health_port) == ("0.0.0.0", 3000, 9100)
    assert settings.database_url == env["DATABASE_URL"]
    assert "approvals:approvals" not in repr(settings)  # the password never reaches a log
