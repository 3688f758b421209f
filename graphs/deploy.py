"""The /deploy graph: plan -> approval (interrupt) -> deploy -> report, and its deploy backends.

Progress is written with LangGraph's stream writer (``stream_mode="custom"``) so the graph stays
free of Slack: the bot forwards each progress line as a reply in the approval message's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from graphs.approval import APPROVE, REJECT, Decision, request_approval

# ASCII only: "\d" would also take mathematical bold or Arabic-Indic digits.
SERVICE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}", re.ASCII)
VERSION_RE = re.compile(
    r"v?[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z][0-9A-Za-z.-]*)?(?:\+[0-9A-Za-z.-]+)?", re.ASCII
)
VERSION_MAX = 64
COMMAND = "/deploy"
USAGE = f"{COMMAND} <service> <version> [env]"


class UsageError(ValueError):
    """Bad slash-command arguments; the message is shown to the user as is."""


@dataclass(frozen=True)
class DeployArgs:
    """What ``/deploy`` was asked for, checked: only these reach a deploy backend."""

    service: str
    version: str
    env: str


def parse_args(text: str, envs: Sequence[str], default_env: str = "staging") -> DeployArgs:
    """Parse ``<service> <version> [env]`` and say exactly what is wrong when it can't."""
    words = text.split()
    if not words:
        raise UsageError(f"Tell me what to deploy: `{USAGE}`, e.g. `/deploy api 1.4.2 prod`.")
    if len(words) < 2:
        raise UsageError(f"Missing the version. Usage: `{USAGE}`.")
    if len(words) > 3:
        raise UsageError(f"Too many arguments ({len(words)}). Usage: `{USAGE}`.")
    service, version = words[0], words[1]
    env = words[2] if len(words) == 3 else default_env
    if not SERVICE_RE.fullmatch(service):
        raise UsageError(
            "The service name must be lowercase letters, digits and dashes "
            f"(at most 63, starting with a letter or digit). Usage: `{USAGE}`."
        )
    if len(version) > VERSION_MAX or not VERSION_RE.fullmatch(version):
        raise UsageError(f"The version must look like `1.4.2` or `v1.4.2-rc.1`. Usage: `{USAGE}`.")
    if env not in envs:
        raise UsageError(f"Unknown environment. Valid environments: {', '.join(envs)}.")
    return DeployArgs(service, version, env)


@dataclass(frozen=True)
class Step:
    """Which attempt of which step this is. A step cut by a crash runs again from its start
    when the bot restarts: ``key`` stays the same, ``attempt`` grows, so the deploy behind it
    can tell a repeat from a new deploy."""

    key: str = "local"
    attempt: int = 1


@dataclass(frozen=True)
class DeployResult:
    """How a deploy went, in words the report shows: a failed deploy is a result, not an
    exception, so the graph reports it like a success."""

    ok: bool
    detail: str


Progress = Callable[[str], None]


class DeployBackend(Protocol):
    """Runs one deploy, reporting progress lines; returns how it went (never raises for a
    failed deploy: a failure is an outcome, not a crash)."""

    async def deploy(
        self, args: DeployArgs, progress: Progress, step: Step = Step()
    ) -> DeployResult: ...


@dataclass(frozen=True)
class SimulatedBackend:
    """A deploy that only pretends: a few steps with pauses, for demos and tests. Every
    message about it says "(simulated)", so nobody mistakes it for a real deploy."""

    simulated: ClassVar[bool] = True
    steps: Sequence[str] = ("Pulling image", "Rolling out", "Running health checks")
    step_seconds: float = 1.0

    async def deploy(
        self, args: DeployArgs, progress: Progress, step: Step = Step()
    ) -> DeployResult:
        for i, name in enumerate(self.steps, 1):
            progress(f"{name}… ({i}/{len(self.steps)})")
            await asyncio.sleep(self.step_seconds)
        return DeployResult(True, f"{args.service} {args.version} is live on {args.env}")


@dataclass(frozen=True)
class CommandBackend:
    """Runs a configured argv (no shell), streaming its output lines as progress.

    Placeholders ``{service}``, ``{version}`` and ``{env}`` are filled per argument; the values
    were validated by ``parse_args``, and no shell ever sees them. The command's environment
    carries ``DEPLOY_IDEMPOTENCY_KEY`` (the same for every attempt of this run's deploy) and
    ``DEPLOY_ATTEMPT`` (1, then 2 after a restart cut the first one), so a script can make a
    repeated deploy safe.

    The command never outlives the step that started it: it runs in a process group of its
    own, killed whole when the step is cut (a timeout, a shutdown, a run taken away from this
    process), and on Linux the kernel kills it when the bot dies, however it dies (a SIGKILL
    too), so a restarted bot's repeat never runs beside it.
    """

    simulated: ClassVar[bool] = False
    argv: Sequence[str]
    timeout_seconds: float = 900.0
    max_progress_lines: int = 50

    async def deploy(
        self, args: DeployArgs, progress: Progress, step: Step = Step()
    ) -> DeployResult:
        values = {"service": args.service, "version": args.version, "env": args.env}
        argv = [part.format_map(values) for part in self.argv]
        env = {
            **os.environ,
            "DEPLOY_IDEMPOTENCY_KEY": step.key,
            "DEPLOY_ATTEMPT": str(step.attempt),
        }
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, killed whole
                preexec_fn=_die_with_parent(),
            )
        )
        try:
            proc = await asyncio.shield(spawn)
        except OSError as exc:
            return DeployResult(False, f"could not start {argv[0]}: {exc.strerror or exc}")
        except asyncio.CancelledError:  # cut while it started: it runs, so kill it whole
            with contextlib.suppress(OSError):
                started = await spawn
                _kill_group(started.pid)
                await started.wait()
            raise
        last = ""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                shown = 0
                assert proc.stdout is not None
                async for raw in proc.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    if not line:
                        continue
                    last = line
                    shown += 1
                    if shown <= self.max_progress_lines:
                        progress(line)
                code = await proc.wait()
        except TimeoutError:
            return DeployResult(False, f"timed out after {self.timeout_seconds:g} s")
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
                await proc.wait()
        if code != 0:
            return DeployResult(False, f"exit code {code}" + (f": {last}" if last else ""))
        return DeployResult(True, last or f"{args.service} {args.version} is live on {args.env}")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs between fork and exec (Linux): ask the kernel to SIGKILL it when
    the bot dies. Only a ctypes call and two syscalls run there: nothing that takes a lock
    another thread of the bot may hold. None elsewhere (no such call)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the bot died before the call: no signal will come
            os.kill(os.getpid(), signal.SIGKILL)

    return child


def _kill_group(pid: int) -> None:
    """SIGKILL the command and everything it started in its group."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pid, signal.SIGKILL)


@dataclass(frozen=True)
class DeployOptions:
    """Everything the /deploy graph needs from configuration."""

    envs: Sequence[str] = ("staging", "prod")
    default_env: str = "staging"
    backend: DeployBackend = field(default_factory=SimulatedBackend)

    def parse(self, text: str) -> dict[str, Any]:
        a = parse_args(text, self.envs, self.default_env)
        return {"service": a.service, "version": a.version, "env": a.env}


class Ran(TypedDict):
    """How the deploy step went, as the state keeps it."""

    ok: bool
    detail: str
    seconds: float


class Outcome(TypedDict):
    """What the finished run's message shows (the bot reads a graph's ``outcome`` key)."""

    status: str  # succeeded | failed | rejected | timed_out | cancelled
    text: str


class DeployState(TypedDict, total=False):
    """The deploy graph's state, checkpointed at every step: the request, the plan shown to
    approvers, the decision that came back, and the outcome the report is made of."""

    service: str
    version: str
    env: str
    requested_by: str
    plan: str
    decision: dict[str, Any]  # a Decision's fields (Decision.from_resume reads them back)
    result: Ran
    outcome: Outcome


def build_graph(options: DeployOptions) -> StateGraph[DeployState]:
    """The uncompiled /deploy graph; the bot compiles it with its checkpointer."""

    mark = " (simulated)" if getattr(options.backend, "simulated", False) else ""

    def plan(state: DeployState) -> DeployState:
        return {"plan": f"Deploy {state['service']} {state['version']} to {state['env']}"}

    def approval(state: DeployState) -> DeployState:
        decision = request_approval(
            title=f"Deploy {state['service']} {state['version']} to {state['env']}?{mark}",
            text=state["plan"] + ".",
            fields=[
                ("Service", state["service"]),
                ("Version", state["version"]),
                ("Environment", state["env"]),
            ],
            choices=(APPROVE, REJECT),
        )
        return {"decision": decision.__dict__}

    async def deploy(state: DeployState, config: RunnableConfig) -> DeployState:
        write = get_stream_writer()
        args = DeployArgs(state["service"], state["version"], state["env"])
        conf = config.get("configurable", {})
        step = Step(f"{conf.get('thread_id', 'local')}:deploy", int(conf.get("run_attempt", 1)))
        started = time.monotonic()
        result = await options.backend.deploy(args, lambda line: write({"progress": line}), step)
        return {
            "result": {
                "ok": result.ok,
                "detail": result.detail,
                "seconds": round(time.monotonic() - started, 1),
            }
        }

    def report(state: DeployState) -> DeployState:
        decision = Decision.from_resume(state.get("decision", {}))
        what = f"{state['service']} {state['version']} to {state['env']}{mark}"
        if not decision.approved:
            status = {"timeout": "timed_out", "cancelled": "cancelled"}.get(
                decision.choice, "rejected"
            )
            return {"outcome": {"status": status, "text": f"Not deployed: {what}"}}
        result = state["result"]
        if result["ok"]:
            text = f"Deployed {what} in {result['seconds']:g} s: {result['detail']}"
            return {"outcome": {"status": "succeeded", "text": text}}
        return {
            "outcome": {"status": "failed", "text": f"Deploy of {what} failed: {result['detail']}"}
        }

    def route(state: DeployState) -> str:
        return "deploy" if state.get("decision", {}).get("approved") else "report"

    g = StateGraph(DeployState)
    g.add_node("plan", plan)
    g.add_node("approval", approval)
    g.add_node("deploy", deploy)
    g.add_node("report", report)
    g.add_edge(START, "plan")
    g.add_edge("plan", "approval")
    g.add_conditional_edges("approval", route, ["deploy", "report"])
    g.add_edge("deploy", "report")
    g.add_edge("report", END)
    return g
