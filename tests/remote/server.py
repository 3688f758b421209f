"""A real LangGraph Server for the tests: ``langgraph dev`` (langgraph-cli[inmem]) in a folder of
its own, on a free loopback port, serving the graphs in ``tests/remote/served/``, optionally
behind an API key. It runs from a venv of its own (``.venv-server``), as a deployment is
separate from the bot: langgraph-api pins jsonschema-rs below what the test extra's
schemathesis needs (see README "Test it").

The methods block (a start takes seconds): from a coroutine, ``await asyncio.to_thread(...)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.scenario.test_cli import free_port

REPO = Path(__file__).resolve().parents[2]
SERVER_VENV = REPO / ".venv-server"
SERVED = "tests.remote.served"
GRAPHS = {
    "hitl_per_call": f"{SERVED}.agents:per_call",
    "hitl_batched": f"{SERVED}.agents:batched",
    "form": f"{SERVED}.nodes:form",
    "plain": f"{SERVED}.nodes:plain",
    "approval": f"{SERVED}.nodes:approval",
    "inbox": f"{SERVED}.nodes:inbox",
}
AUTH = f"{SERVED}.auth:auth"
JOBS = 10  # runs at once, a deployment's default (`langgraph dev` alone runs one at a time)
START_SECONDS = 60.0  # ~2-3 s on an idle machine; the deadline is for a loaded CI host
STOP_SECONDS = 30.0
CLIENT_TIMEOUT = 30.0  # one SDK call; a hung server fails the test instead of stalling it
NO_SERVER = (
    "no LangGraph Server venv (.venv-server/bin/langgraph; create it with `python3 -m venv "
    ".venv-server && .venv-server/bin/pip install -e '.[langgraph-server]'`, as .ci/run "
    "does): remote tests skipped"
)


def server_executable() -> Path:
    """The venv's ``langgraph``; without it the test is skipped, saying why, except in CI
    (``CI`` set), where a remote test that cannot run fails."""
    exe = SERVER_VENV / "bin" / "langgraph"
    if exe.exists():
        return exe
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {exe} is missing: the remote tests must run")
    pytest.skip(NO_SERVER)


class LangGraphServer:
    """One ``langgraph dev`` process at a time on ``port`` in ``folder``: ``start``, ``stop``
    (SIGTERM: the server pickles its threads under ``folder/.langgraph_api`` and a later
    ``start`` has them back) and ``kill`` (SIGKILL: what changed since its last flush, every
    10 s, is lost). Its output goes to ``log``; the served tools' calls to ``tool_log``."""

    def __init__(self, executable: Path, folder: Path, api_key: str | None = None) -> None:
        self.executable = executable
        self.folder = folder
        self.api_key = api_key
        self.port = free_port()
        assert self.port != 2024, "langgraph dev's default port is taken on these machines"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.tool_log = folder / "tools.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.monotonic() when the process was spawned

    def config(self) -> dict[str, Any]:
        """The langgraph.json served."""
        config: dict[str, Any] = {"dependencies": [str(REPO)], "graphs": GRAPHS}
        if self.api_key is not None:
            config["auth"] = {"path": AUTH}
        return config

    def env(self) -> dict[str, str]:
        """This machine's environment without LangSmith/LangChain keys or tracing (nothing
        leaves the machine), the repository first on the path (its ``graphs`` and
        ``tests.remote.served``), and what the served graphs read."""
        ours = ("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "TEST_SERVER_API_KEY")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        env.update(
            PYTHONPATH=str(REPO),
            TEST_TOOL_LOG=str(self.tool_log),
            LOG_COLOR="false",
            LANGGRAPH_CLI_NO_ANALYTICS="1",
            LANGSMITH_TRACING="false",
        )
        if self.api_key is not None:
            env["TEST_SERVER_API_KEY"] = self.api_key
        return env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> float:
        """Spawn the server and wait until ``GET /ok`` answers; returns the seconds that took.
        The same port and folder each time, so threads saved by a ``stop`` are back."""
        assert not self.running, "already running"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "langgraph.json").write_text(json.dumps(self.config(), indent=2))
        with self.log.open("ab") as log:
            log.write(f"--- start on port {self.port}\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [
                    str(self.executable),
                    "dev",
                    "--no-browser",
                    "--no-reload",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--n-jobs-per-worker",
                    str(JOBS),
                    "--config",
                    str(self.folder / "langgraph.json"),
                ],
                cwd=self.folder,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaps everything
            )
        deadline = self.started_at + START_SECONDS
        for _ in range(int(START_SECONDS / 0.05)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"langgraph dev exited ({self.proc.returncode}):\n{self.tail()}")
            if self._ok():
                return time.monotonic() - self.started_at
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"langgraph dev did not answer /ok in {START_SECONDS} s:\n{self.tail()}")

    def _ok(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ok", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> float:
        """SIGTERM and wait: the server saves its threads on the way out. Returns the seconds
        it took to exit; one that does not within STOP_SECONDS is killed and fails."""
        assert self.proc is not None and self.running, "not running"
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"langgraph dev ignored SIGTERM for {STOP_SECONDS} s") from None
        return time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL its whole process group, and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_SECONDS)

    def client(self, api_key: str | None = None) -> LangGraphClient:
        """An SDK client of this server: with its own key by default, ``api_key`` another one,
        ``""`` none (never one from the environment)."""
        key = self.api_key if api_key is None else api_key
        return get_client(url=self.url, api_key=key or None, timeout=CLIENT_TIMEOUT)

    def tool_calls(self, thread_id: str | None = None) -> list[dict[str, Any]]:
        """What the served graphs really did (``served/effects.py``), oldest first: each
        ``{"name", "args", "thread_id"}``, of one thread when ``thread_id`` is given."""
        if not self.tool_log.exists():
            return []
        lines = self.tool_log.read_text(encoding="utf-8").splitlines()
        calls = [json.loads(line) for line in lines if line]
        return [c for c in calls if thread_id is None or c["thread_id"] == thread_id]

    def tail(self, limit: int = 16_000) -> str:
        """The end of the server's output, for a failure's report."""
        if not self.log.exists():
            return "(no output)"
        return self.log.read_bytes()[-limit:].decode("utf-8", "replace")
