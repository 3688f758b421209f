"""/deploy is optional: with no [deploy] table it is not registered, /deploy typed anyway is
answered in plain words, and nothing the bot shows mentions it. The policy file's mistakes
around it are one line, the same from `run` (Settings, then the graphs) and from
`check-config`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.app.listeners.commands import DEPLOY_OFF
from bot.config import NO_BACKEND, NOTHING_TO_RUN, Settings, SettingsError, graph_specs
from bot.policy.rules import DEPLOY_OFF as RULES_WITHOUT_DEPLOY
from tests.conftest import SECRET, TOKEN, Bot, Harness, settings_for
from tests.scenario.test_approval_loop import message_text

AGENT = 'graphs = ["graphs.agent:specs"]\n'


async def without_deploy(h: Harness) -> Bot:
    """The bot with the example agent only: settings as `Settings.from_env` makes them from a
    policy file without a [deploy] table."""
    await h.bots.pop().stop()
    policy = {"graphs": ["graphs.agent:specs"], "policy": {"default": {"approvers": ["U0BOB"]}}}
    settings = dataclasses.replace(
        settings_for(h.ws, h.db, h.database_url, policy=policy), deploy=None
    )
    bot = await Bot.start(settings)
    h.bots.append(bot)
    h.ws.request_url = bot.url
    return bot


async def test_without_a_deploy_table_nothing_offers_deploy(harness: Harness) -> None:
    h = harness
    bot = await without_deploy(h)
    assert "/deploy" not in bot.runtime.engine.commands

    typed = await h.ws.slash("alice", "/deploy", "api 1.4.2 prod", channel="#deploys")
    assert typed.json == {"text": DEPLOY_OFF, "response_type": "ephemeral"}
    assert "[deploy]" in DEPLOY_OFF and "_" not in DEPLOY_OFF  # plain words, no error code
    await h.idle()
    assert await bot.runtime.store.runs_by("U0ALICE") == []
    assert h.ws.messages("#deploys") == []

    helped = (await h.ws.slash("alice", "/approvals", "help")).json or {}
    assert "deploy" not in helped["text"] and "here: `agent`" in helped["text"]
    await h.ws.open_home("alice")
    home = json.dumps(await h.wait(lambda: h.ws.home("alice")), ensure_ascii=False)
    assert "deploy" not in home
    assert "`/approvals run <graph> <text>` starts one: `agent`." in home

    # the graphs there are still run
    await h.ws.slash("alice", "/approvals", "run agent email the team", channel="#deploys")
    msg = await h.wait(lambda: h.approval_message())
    assert "Run send_email?" in message_text(msg)


def write(folder: Path, text: str) -> dict[str, str]:
    path = folder / "approvals.toml"
    path.write_text(text)
    return {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "APPROVALS_CONFIG": str(path)}


def run_says(env: dict[str, str]) -> str | None:
    """What `python -m bot run` stops with before it opens anything (None: it would start)."""
    try:
        settings = Settings.from_env(env)
        graph_specs(settings.policy, settings.deploy)
    except SettingsError as exc:
        return str(exc)
    return None


def check_config_says(path: Path, capsys: pytest.CaptureFixture[str]) -> str | None:
    """What `python -m bot check-config PATH` says is wrong (None: ok)."""
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    if code == 0:
        assert out.startswith(f"ok: {path}: ") and err == ""
        return None
    assert (code, out) == (2, "")
    *warnings, error = err.splitlines()  # deprecations are warnings before it
    assert all(w.startswith("warning: ") for w in warnings)
    return error.removeprefix("error: ")


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        (AGENT, None),  # no [deploy] table: /deploy is off, the bot starts
        (AGENT + '[deploy]\nbackend = "simulated"\n', None),
        (AGENT + "[deploy]\n", NO_BACKEND),  # as before
        (AGENT + '[deploy]\nenvs = ["prod"]\n', "deploy.backend is not set"),
        (
            AGENT + '[policy.deploy.prod]\napprovers = ["U0BOB"]\n',
            f"policy.deploy: {RULES_WITHOUT_DEPLOY}",
        ),
        (AGENT + '[approvers]\nprod = ["U0BOB"]\n', f"approvers: {RULES_WITHOUT_DEPLOY}"),
        ("", NOTHING_TO_RUN),  # nothing at all to run
    ],
)
def test_run_and_check_config_say_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fault: str | None
) -> None:
    env = write(tmp_path, text)
    said = run_says(env)
    assert said == check_config_says(tmp_path / "approvals.toml", capsys)
    if fault is None:
        assert said is None
    else:
        assert said is not None and said.startswith(f"{tmp_path / 'approvals.toml'}: {fault}")
    if text == AGENT:
        assert Settings.from_env(env).deploy is None


def test_deployments_alone_are_something_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy file with [[deployments]] and no local graph starts (the bot answers the
    deployment's agents); with neither, it is still "nothing to run"."""
    text = '[[deployments]]\nname = "support"\nurl = "http://127.0.0.1:9"\nchannel = "C0AGENTS"\n'
    env = write(tmp_path, text)
    assert run_says(env) is None
    settings = Settings.from_env(env)
    assert graph_specs(settings.policy, settings.deploy) == {}
    assert main(["check-config", "--offline", str(tmp_path / "approvals.toml")]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "graphs: none" in out and "deployment support: " in out
    assert NOTHING_TO_RUN.endswith("or [[deployments]] (agents on a LangGraph Server)")
