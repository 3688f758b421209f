"""Deciding from a terminal (bot/cli.py) while the bot runs on the same SQLite file: each
command runs as the CLI does (its own event loop and database connection, here on a worker
thread, once as a real process), decides through the engine with the same rules and claim as a
click, updates the Slack message itself, and says what happened in plain words."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot import cli
from bot.localslack import LocalSlack
from tests.conftest import SECRET, TOKEN, Harness, settings_for
from tests.reads import approvals_with_status, audit_events
from tests.scenario.test_approval_loop import buttons, deploy, message_text
from tests.scenario.test_cli import run_env

POLICY: dict[str, Any] = {
    "policy": {
        "deploy": {"prod": {"approvers": ["U0BOB", "U0DAN"], "comment_required": ["reject"]}}
    }
}


@pytest.fixture
async def h(ws: LocalSlack, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(ws, tmp_path / "approvals.db")
    await harness.start_bot(policy=POLICY)
    yield harness
    for bot in harness.bots:
        await bot.stop()


@dataclass
class Script:
    """Answers typed at the prompts, in order; then the end of input."""

    answers: list[str]
    prompts: list[str] = field(default_factory=list)

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


@dataclass
class Result:
    code: int
    out: str
    err: str
    prompts: list[str]


async def terminal(
    h: Harness, *argv: str, env: dict[str, str] | None = None, answers: tuple[str, ...] = ()
) -> Result:
    """``python -m bot ARGV`` as the CLI runs it, on a worker thread (its own event loop and
    connection to the bot's file) while the bot serves on the test's loop."""
    script = Script(list(answers))
    out, err = io.StringIO(), io.StringIO()
    settings = settings_for(h.ws, h.db, policy=POLICY)
    term = cli.Terminal(out, err, script)
    code = await asyncio.to_thread(cli.run, cli.parse(argv), env or {}, term, settings)
    return Result(code, out.getvalue(), err.getvalue(), script.prompts)


async def pending_id(h: Harness) -> str:
    pending = await approvals_with_status(h.bot.runtime.store, "pending")
    return pending[-1].interrupt_id


async def audit(h: Harness, iid: str | None = None) -> list[dict[str, Any]]:
    return await audit_events(h.bot.runtime.store, iid)


# -- listing ---------------------------------------------------------------------------------


async def test_pending_lists_one_approval_a_line(h: Harness) -> None:
    empty = await terminal(h, "pending")
    assert (empty.code, empty.out) == (0, "Nothing is waiting for a decision.\n")
    await deploy(h)
    iid = await pending_id(h)
    run_id = (await h.bot.runtime.store.get_approval(iid)).run_id  # type: ignore[union-attr]
    listed = await terminal(h, "pending")
    assert listed.code == 0
    (line,) = listed.out.splitlines()
    assert line.startswith(f"{iid}  Deploy api 1.4.2 to prod?")
    assert "  by U0ALICE  " in line and " ago  " in line and line.endswith(f"  run {run_id}")


# -- deciding --------------------------------------------------------------------------------


async def test_approve_by_prefix_updates_slack_and_resumes_once(h: Harness) -> None:
    msg = await deploy(h)
    iid = await pending_id(h)
    done = await terminal(
        h, "approve", iid[:8], "--as", "U0BOB", "--comment", "ship <it> & go", env={"USER": "ops"}
    )
    assert done.code == 0, done
    first = done.out.splitlines()[0]
    assert first.startswith("✅ Approved by @U0BOB ") and first.endswith(" UTC: “ship <it> & go”")
    assert "still queued" not in done.out  # this process sent its Slack updates itself
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    final = h.approval_message()
    assert buttons(final) == [] and "*Approved* by <@U0BOB>" in message_text(final)
    assert len(h.ws.replies("#deploys", msg["ts"])[1:]) == 3  # the deploy ran once
    events = await audit(h, iid)
    names = [e["event"] for e in events]
    assert names.count("decided") == 1 and names.count("resumed") == 1
    (typed,) = [e for e in events if e["event"] == "terminal_decision"]
    assert typed["user_id"] == "U0BOB" and typed["run_id"]
    assert json.loads(typed["detail"]) == {
        "choice": "approve",
        "answer": "decided",
        "os_user": "ops",
    }
    # a click on the old buttons is told who decided
    await h.ws.click("dan", msg, "Approve")
    told = await h.wait(lambda: h.ws.ephemerals("dan"))
    assert told[-1]["text"].startswith("Already approved by <@U0BOB>")


async def test_reject_needs_a_reason_and_says_it(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    with pytest.raises(SystemExit) as usage:
        cli.parse(["reject", iid])  # argparse: --reason is required (exit 2)
    assert usage.value.code == 2
    blank = await terminal(h, "reject", iid, "--reason", "   ", "--as", "U0DAN")
    assert blank.code == 2 and blank.err == "error: --reason must say why (the requester sees it)\n"
    done = await terminal(
        h, "reject", iid, "--reason", "not on a Friday", env={"APPROVALS_USER": "U0DAN"}
    )
    assert done.code == 0
    assert done.out.startswith("❌ Rejected by @U0DAN ") and "“not on a Friday”" in done.out
    await h.wait(lambda: "❌" in message_text(h.approval_message()))


async def test_refused_closed_and_unknown_exit_1_usage_exits_2(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    refused = await terminal(h, "approve", iid, "--as", "U0CAROL")
    assert refused.code == 1
    assert refused.out == "Only @U0BOB or @U0DAN can decide this request.\n"
    assert (await terminal(h, "approve", iid, "--as", "U0BOB")).code == 0
    closed = await terminal(h, "approve", iid, "--as", "U0DAN")
    assert closed.code == 1 and closed.out.startswith("Already approved by @U0BOB ")
    unknown = await terminal(h, "approve", "abcdef0123", "--as", "U0DAN")
    assert unknown.code == 1
    assert unknown.out == "I don't know an approval whose id starts with abcdef0123.\n"
    for argv, env, err in [
        (("approve", iid), {}, "error: say who decides: --as U… or APPROVALS_USER"),
        (("approve", iid, "--as", "bob"), {}, "error: 'bob' is not a Slack user id"),
        (("approve", iid), {"APPROVALS_USER": "#ops"}, "error: '#ops' is not a Slack user id"),
        (("approve", iid[:5], "--as", "U0BOB"), {}, "error: '" + iid[:5] + "' is not an"),
        (("approve", "\x1b[31m!", "--as", "U0BOB"), {}, "error: ' [31m!' is not an approval id"),
    ]:
        result = await terminal(h, *argv, env=env)
        assert result.code == 2 and result.err.startswith(err), (argv, result.err)
    await h.idle()
    assert [e["event"] for e in await audit(h, iid)].count("decided") == 1


class Ids:
    """A store that knows only some approval ids (interrupt ids are random: no test can make
    two share a start on purpose)."""

    def __init__(self, *ids: str) -> None:
        self.ids = sorted(ids)

    async def approval_ids(self, prefix: str, limit: int) -> list[str]:
        return [i for i in self.ids if i.startswith(prefix)][:limit]


async def test_an_id_or_a_unique_prefix_names_an_approval() -> None:
    store: Any = Ids("abcdef01", "abcdef02", "abcdef0", "123456789")
    assert await cli.resolve_id(store, "123456") == "123456789"
    assert await cli.resolve_id(store, "abcdef0") == "abcdef0"  # a whole id wins
    assert await cli.resolve_id(store, "fedcba") is None
    with pytest.raises(cli.Usage, match="more than one approval's id starts with abcdef"):
        await cli.resolve_id(store, "abcdef")
    with pytest.raises(cli.Usage, match="at least 6 characters"):
        await cli.resolve_id(store, "abcde")


async def test_interactive_decide_reasks_until_answers_fit(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    done = await terminal(
        h,
        "decide",
        "--as",
        "U0DAN",
        answers=("0", iid[:7], "maybe", "Reject", "", "too risky today"),
    )
    assert done.code == 0, done
    assert done.prompts == [
        "Which one? (1-1, or the start of its id): ",
        "Which one? (1-1, or the start of its id): ",
        "Which choice? (1-2, or its id): ",
        "Which choice? (1-2, or its id): ",
        "Comment (required): ",  # the policy wants a reason to reject prod
        "Comment (required): ",
    ]
    out = done.out
    assert "Give a number from 1 to 1, or at least 6 characters of one id above." in out
    assert "Choices: 1. Approve  2. Reject" in out
    assert "  Service: api" in out
    assert "This choice needs a comment" in out
    assert "❌ Rejected by @U0DAN " in out and "“too risky today”" in out
    await h.wait(lambda: "❌" in message_text(h.approval_message()))


async def test_interactive_decide_stops_cleanly(h: Harness) -> None:
    nothing = await terminal(h, "decide", "--as", "U0DAN")
    assert (nothing.code, nothing.out) == (0, "Nothing is waiting for a decision.\n")
    await deploy(h)
    eof = await terminal(h, "decide", "--as", "U0DAN", answers=("1",))
    assert eof.code == 1 and eof.out.endswith("Stopped; nothing was decided.\n")
    tired = await terminal(h, "decide", "--as", "U0DAN", answers=("x", "y", "z", "1"))
    assert tired.code == 2 and "no usable answer after 3 tries" in tired.err
    await h.idle()
    assert "decided" not in [e["event"] for e in await audit(h)]


async def test_a_terminal_decision_racing_a_click_is_decided_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    deciding = asyncio.Event()
    real = cli.decide_promptly

    async def signalled(*args: Any, **kwargs: Any) -> Any:
        loop.call_soon_threadsafe(deciding.set)  # the terminal is about to decide: click now
        return await real(*args, **kwargs)

    monkeypatch.setattr(cli, "decide_promptly", signalled)

    async def click_when_deciding(msg: dict[str, Any]) -> Any:
        await asyncio.wait_for(deciding.wait(), 30)
        return await h.ws.click("bob", msg, "Approve")

    winners: list[str] = []
    for round_ in range(4):
        deciding.clear()
        msg = await deploy(h, f"api 3.0.{round_} prod")
        iid = await pending_id(h)
        seen = len(h.ws.ephemerals("bob"))
        typed, delivery = await asyncio.gather(
            terminal(h, "approve", iid, "--as", "U0DAN"), click_when_deciding(msg)
        )
        assert delivery.status == 200
        await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
        await h.idle()
        events = await audit(h, iid)
        decided = [e for e in events if e["event"] == "decided"]
        assert len(decided) == 1
        assert [e["event"] for e in events].count("resumed") == 1
        replies = [r["text"] for r in h.ws.replies("#deploys", msg["ts"])[1:]]
        assert len(replies) == 3, replies  # one deploy, each line once
        winners.append(decided[0]["user_id"])
        if decided[0]["user_id"] == "U0DAN":
            assert typed.code == 0 and typed.out.startswith("✅ Approved by @U0DAN ")
            told = await h.wait(lambda: h.ws.ephemerals("bob")[seen:])  # noqa: B023
            assert told[-1]["text"].startswith("Already approved by <@U0DAN>")
        else:
            assert typed.code == 1 and typed.out.startswith("Already approved by @U0BOB ")
    print("winners:", winners)


# -- the audit export --------------------------------------------------------------------------


async def test_audit_export(h: Harness) -> None:
    await deploy(h)
    iid = await pending_id(h)
    assert (await terminal(h, "approve", iid, "--as", "U0BOB")).code == 0
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
    await h.idle()
    lines = await terminal(h, "audit", "--since", "1h")
    assert lines.code == 0 and lines.err.startswith("6 events since ")
    records = [json.loads(line) for line in lines.out.splitlines()]
    assert [r["event"] for r in records] == [
        "run_started",
        "requested",
        "decided",
        "resumed",
        "run_done",
        "terminal_decision",
    ]
    assert all(r["run_id"] for r in records)  # every event of a run names it
    assert all(r["checkpoint_id"] for r in records)
    assert all(r["at"].endswith("Z") for r in records)
    table = await terminal(h, "audit", "--since", "1h", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(table.out)))
    assert [r["event"] for r in rows] == [r["event"] for r in records]
    bad = await terminal(h, "audit", "--since", "2 hours")
    assert bad.code == 2 and bad.err.startswith("error: --since must be a duration like")


# -- as a real process -----------------------------------------------------------------------


async def python_m_bot(*argv: str, env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_as_a_process(h: Harness, tmp_path: Path) -> None:
    await deploy(h)
    iid = await pending_id(h)
    config = tmp_path / "approvals.toml"
    config.write_text(
        '[deploy]\nbackend = "simulated"\nsimulated_step_seconds = 0\n'
        '[policy.deploy.prod]\napprovers = ["U0BOB", "U0DAN"]\ncomment_required = ["reject"]\n'
    )
    reading = run_env(APPROVALS_DB=str(h.db))
    code, out, _ = await python_m_bot("pending", env=reading)  # no Slack settings needed
    assert code == 0 and out.startswith(iid)
    code, _, err = await python_m_bot("approve", iid, "--as", "U0BOB", env=reading)
    assert (code, err) == (2, "error: SLACK_BOT_TOKEN is not set\n")
    code, _, err = await python_m_bot("pending", env=run_env(APPROVALS_DB=str(tmp_path / "no.db")))
    assert code == 2 and err.startswith("error: no database at ")
    deciding = run_env(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=h.ws.api_url,
        APPROVALS_DB=str(h.db),
        APPROVALS_CONFIG=str(config),
        APPROVALS_USER="U0BOB",
    )
    code, out, err = await python_m_bot("decide", env=deciding, stdin=b"1\n1\n\n")
    assert code == 0, err
    assert "✅ Approved by @U0BOB " in out and not err
    await h.wait(lambda: "✅ Deployed" in message_text(h.approval_message()))
