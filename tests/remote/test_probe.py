"""``probe`` (bot/remote/probe.py) and ``check-config`` against a real LangGraph Server: a
right key, a wrong or missing one, nothing listening, no answer, and an assistant the policy
file lists that the server lacks. What the server has is read with the SDK, not from the
probe's own words."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from langgraph_sdk.client import LangGraphClient

from bot.policy.rules import Deployment
from bot.remote.probe import probe
from tests.remote.conftest import SERVER_KEY
from tests.remote.server import GRAPHS, LangGraphServer
from tests.scenario.test_cli import free_port

KEY_ENV = "TEST_LANGGRAPH_KEY"


def of(server_url: str, **fields: object) -> Deployment:
    base: dict[str, object] = {"name": "tests", "url": server_url, "channel": "C0AGENTS"}
    return Deployment(**{**base, **fields})  # type: ignore[arg-type]


async def test_reachable_and_the_key_accepted(
    langgraph_server: LangGraphServer, client: LangGraphClient
) -> None:
    on_server = await client.assistants.search(limit=100)
    names = tuple(a["name"] for a in on_server)
    assert sorted(a["graph_id"] for a in on_server) == sorted(GRAPHS)

    found = await probe(of(langgraph_server.url, api_key_env=KEY_ENV), SERVER_KEY, 10)
    assert (found.reachable, found.key_accepted, found.missing, found.ok) == (True, True, (), True)
    assert found.assistants == names
    assert found.words == f"reachable, key accepted, {len(names)} assistants: {', '.join(names)}"
    assert SERVER_KEY not in repr(found)

    # the assistants it lists, by graph id or by an assistant's own id, are all there
    listed = ("plain", on_server[0]["assistant_id"])
    found = await probe(of(langgraph_server.url, assistants=listed), SERVER_KEY, 10)
    assert found.ok and found.missing == ()


async def test_a_wrong_or_missing_key_is_not_accepted(langgraph_server: LangGraphServer) -> None:
    with_env = of(langgraph_server.url, api_key_env=KEY_ENV)
    wrong = await probe(with_env, "wrong-key", 10)
    assert (wrong.reachable, wrong.key_accepted, wrong.ok) == (True, False, False)
    assert wrong.words == f"reachable, but the key in {KEY_ENV} was not accepted (401)"
    unset = await probe(with_env, None, 10)
    assert (unset.key_accepted, unset.ok) == (False, False)
    assert unset.words == f"reachable, but no key sent: {KEY_ENV} is not set (401)"
    pasted = await probe(with_env, "ключ\n", 10)  # never sent: no header can carry it
    assert (pasted.reachable, pasted.key_accepted, pasted.ok) == (False, False, False)
    assert pasted.words == (
        f"not tried: the key in {KEY_ENV} holds characters an HTTP header cannot carry"
    )
    none = await probe(of(langgraph_server.url), None, 10)
    assert none.key_accepted is False
    assert none.words == (
        "reachable, but it wants an API key (401): name the variable holding it with api_key_env"
    )


async def test_nothing_listening_is_connection_refused_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    found = await probe(of(url), None, 10)
    assert (found.reachable, found.key_accepted, found.ok) == (False, None, False)
    assert found.words == f"not reachable: connection refused at {url} (is the server running?)"


async def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as mute:  # connections complete in its backlog; nothing reads them
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        url = f"http://127.0.0.1:{mute.getsockname()[1]}"
        found = await probe(of(url), None, 0.5)
    assert (found.reachable, found.key_accepted, found.ok) == (False, None, False)
    assert found.words == f"not reachable: timed out ({url} did not answer within 0.5 s)"


async def test_a_listed_assistant_the_server_lacks(langgraph_server: LangGraphServer) -> None:
    d = of(langgraph_server.url, api_key_env=KEY_ENV, assistants=("plain", "agnet", "triage"))
    found = await probe(d, SERVER_KEY, 10)
    assert (found.reachable, found.key_accepted, found.ok) == (True, True, False)
    assert found.missing == ("agnet", "triage")
    assert found.words.endswith("; not on the server: agnet, triage (listed in its assistants)")


def check_config(path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "APPROVALS_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", "check-config", *args, str(path)],
        cwd=path.parent,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_tries_each_deployment(
    langgraph_server: LangGraphServer, tmp_path: Path
) -> None:
    path = tmp_path / "approvals.toml"
    path.write_text(
        "[[deployments]]\n"
        'name = "tests"\n'
        f'url = "{langgraph_server.url}/"\n'
        f'api_key_env = "{KEY_ENV}"\n'
        'channel = "C0AGENTS"\n'
        'assistants = ["plain", "form"]\n'
        "[policy.tests.plain]\n"
        'approvers = ["U0BOB"]\n'
    )
    head = (
        f"deployment tests: {langgraph_server.url}, channel C0AGENTS, assistants: plain, form, "
        f"key: {KEY_ENV} is set"
    )
    done = check_config(path, **{KEY_ENV: SERVER_KEY})
    assert SERVER_KEY not in done.stdout + done.stderr
    assert (done.returncode, done.stderr) == (0, "")
    ok, deployment, tried = done.stdout.splitlines()
    off = "graphs: none; /deploy is off (no [deploy] table)"
    assert ok == f"ok: {path}: 1 rule set, 0 escalation levels; {off}"
    assert deployment == head
    assert tried.startswith(f"  reachable, key accepted, {len(GRAPHS)} assistants: ")

    done = check_config(path, **{KEY_ENV: "wrong-key"})
    assert done.returncode == 1
    assert done.stdout.splitlines()[1:] == [
        head,
        f"  reachable, but the key in {KEY_ENV} was not accepted (401)",
    ]
    assert done.stderr == "error: deployment failed: tests\n"

    done = check_config(path, "--offline")  # not tried, so the unset key is no failure
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1:] == [
        head.replace("is set", "is not set"),
        "  not tried (--offline)",
    ]
