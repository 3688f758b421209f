"""Deciding from a terminal, the audit export, and check-config's tries of the deployments::

    python -m bot pending                                open approvals, one a line
    python -m bot approve ID [--as USER] [--comment …]
    python -m bot reject ID --reason … [--as USER]
    python -m bot decide [--as USER]                     pick one, a choice, a comment
    python -m bot audit [--since 7d] [--format jsonl|csv]
    python -m bot audit verify                           check the audit table's hash chain

ID is an approval's id (the interrupt id ``pending`` shows) or at least 6 characters of its
start, if no other id starts the same. USER is the Slack user deciding (``U…``), by default
``$APPROVALS_USER``. Exit codes: 0 decided or voted (and a listing or export done, or the
audit chain intact), 1 not decided (refused, already decided, unknown id, or stopped; or an
audit row that does not follow the chain), 2 a usage or configuration error (``audit verify``:
the rows need ``APPROVALS_AUDIT_KEY`` and it is missing or not theirs).

A decision opens the bot's database (``APPROVALS_DB``, with the bot's other settings) and goes
through ``Engine.decide``: the same rules, the same exactly-once claim (safe against the
running bot on the same file) and the same Slack message updates as a click. This process
sends those updates itself and waits for them up to ``FLUSH_SECONDS``; the running bot sends
whatever is left. The decider that claims also resumes the graph, so after a deciding vote the
rest of the run (a deploy, say) runs in this process until it next waits for a person or ends.
``pending`` and ``audit`` only read the database and need no Slack settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar, overload

import aiosqlite

from bot.audit_export import FORMATS, export, iso_utc, verify
from bot.background.outbox import Outbox
from bot.config import Settings, SettingsError, audit_key, deployment_keys
from bot.db.migrations import CHAIN_VERSION
from bot.db.sqlite import OneHop, Writer
from bot.db.store import Store
from bot.engine import Answer
from bot.integrity import KeyProblem
from bot.interrupts import ApprovalRequest, ChoiceSpec, normalise
from bot.model import Approval, Run
from bot.policy.rules import Deployment, Policy, Rules, format_duration, parse_duration
from bot.remote.probe import Probe, probe
from bot.slackids import USER_ID
from bot.web import openapi
from bot.web.api import plain

T = TypeVar("T")
Where = Path | str  # the SQLite file, or a PostgreSQL URL

COMMANDS = ("pending", "approve", "reject", "decide", "audit")
DONE, NOT_DECIDED, USAGE, STOPPED = 0, 1, 2, 130
MIN_PREFIX = 6
ID_RE = re.compile(r"[0-9A-Za-z_-]{6,128}", re.ASCII)
TRIES = 3  # answers to one question before the interactive picker gives up
FLUSH_SECONDS = 10.0  # how long a decision waits for its Slack updates before leaving them
STOP_GRACE = 2.0  # for a delivery in flight when the command ends
QUEUES = ("decided", "voted")  # the answers whose decisions queued Slack updates
POLL = 0.05
PAGE = 200
MAX_PAGES = 50  # at most 10,000 pending approvals listed
OFFERED = 30  # approvals the interactive picker lists
SCHEMA = CHAIN_VERSION  # the oldest schema version (PRAGMA user_version) the reads work on
PROBE_SECONDS = 10.0  # check-config's try of one deployment
PROBE_FAILED = 1  # check-config's exit code when a deployment's try failed


class Usage(Exception):
    """A mistake in the command line, the settings or the answers: one line, exit 2."""


class Stopped(Exception):
    """The person ended the input (EOF or Ctrl-C) before anything was decided."""


@dataclass(frozen=True)
class Terminal:
    """Where a command writes, and how it asks (``ask`` raises EOFError at end of input)."""

    out: TextIO
    err: TextIO
    ask: Callable[[str], str]

    @classmethod
    def std(cls) -> Terminal:
        return cls(sys.stdout, sys.stderr, input)

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def warn(self, line: str) -> None:
        print(line, file=self.err, flush=True)


@dataclass(frozen=True)
class Candidate:
    """A pending approval as the picker shows it, with the rules it is held to."""

    approval: Approval
    run: Run
    request: ApprovalRequest
    rules: Rules


@dataclass(frozen=True)
class Pick:
    """What the picker's person chose: the approval, the choice's id, and their comment."""

    interrupt_id: str
    choice: str
    comment: str | None


# -- the command line ------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add the terminal's subcommands to ``python -m bot``'s parser (``sub`` is its
    ``add_subparsers()``)."""

    def as_user(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--as",
            dest="as_user",
            metavar="USER",
            help="the Slack user id deciding (default: $APPROVALS_USER)",
        )

    sub.add_parser("pending", help="list open approvals: id, title, requester, age, run")
    approve = sub.add_parser("approve", help="approve an approval (ID: its id, or 6+ of its start)")
    approve.add_argument("id", metavar="ID")
    as_user(approve)
    approve.add_argument("--comment", help="a comment shown with the decision")
    reject = sub.add_parser("reject", help="reject an approval, saying why")
    reject.add_argument("id", metavar="ID")
    reject.add_argument("--reason", required=True, help="why (the requester sees it)")
    as_user(reject)
    decide = sub.add_parser("decide", help="pick an approval, a choice and a comment, asked")
    as_user(decide)
    audit = sub.add_parser(
        "audit", help="export the audit log as JSON Lines or CSV, or verify its hash chain"
    )
    audit.add_argument(
        "action",
        nargs="?",
        choices=("verify",),
        help="verify: check the hash chain (with $APPROVALS_AUDIT_KEY when the bot has one)",
    )
    audit.add_argument(
        "--since",
        default="7d",
        help='how far back: "90s", "30m", "2h", "7d" (default: %(default)s)',
    )
    audit.add_argument("--format", choices=FORMATS, default="jsonl")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The terminal's commands alone (tests; ``python -m bot`` adds them to its own parser)."""
    parser = argparse.ArgumentParser(prog="python -m bot")
    add_commands(parser.add_subparsers(dest="cmd", required=True))
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """``python -m bot <terminal command>``: warnings only in the log, on stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Bolt is built but serves nothing here, and it sets its loggers' levels itself: a filter
    # keeps its start-up notes (warnings at most) off the operator's terminal.
    logging.getLogger("slack_bolt.AsyncApp").addFilter(lambda r: r.levelno >= logging.ERROR)
    return run(args, os.environ, Terminal.std())


def run(
    args: argparse.Namespace,
    env: Mapping[str, str],
    term: Terminal,
    settings: Settings | None = None,
) -> int:
    """Carry out one command; returns the exit code. Each phase that needs the database runs
    its own event loop, so the interactive questions are asked with no loop running (Ctrl-C
    then stops at once)."""
    try:
        if args.cmd in ("pending", "audit"):
            return _read(args, env, term, settings)
        return _decide_command(args, env, term, settings)
    except Usage as exc:
        term.warn(f"error: {exc}")
        return USAGE
    except KeyboardInterrupt:
        term.warn("Stopped. A decision already recorded stays recorded; the bot sends its updates.")
        return STOPPED


def _read(
    args: argparse.Namespace, env: Mapping[str, str], term: Terminal, settings: Settings | None
) -> int:
    """``pending``, ``audit`` and ``audit verify``: reads of the database, no Slack settings."""
    if args.cmd == "pending":
        return asyncio.run(pending(database(_db_path(env, settings)), term))
    if args.action == "verify":
        try:
            key = audit_key(env)  # a key problem is said before a missing database
        except SettingsError as exc:
            raise Usage(str(exc)) from None
        return asyncio.run(verify_chain(database(_db_path(env, settings)), key, term))
    return asyncio.run(audit(database(_db_path(env, settings)), args.since, args.format, term))


def _decide_command(
    args: argparse.Namespace, env: Mapping[str, str], term: Terminal, settings: Settings | None
) -> int:
    """``decide`` (the picker), ``reject`` and ``approve``."""
    user = _user(args.as_user, env)
    settings = settings or _settings(env)
    if not settings.database_url:
        settings = replace(settings, db_path=sqlite_file(settings.db_path))
    if args.cmd == "decide":
        return _pick_and_decide(settings, user, term, env)
    if args.cmd == "reject":
        reason = _comment(args.reason)
        if reason is None:
            raise Usage("--reason must say why (the requester sees it)")
        return asyncio.run(decide(settings, args.id, user, "reject", reason, term, env))
    comment = _comment(args.comment)
    return asyncio.run(decide(settings, args.id, user, "approve", comment, term, env))


def _pick_and_decide(settings: Settings, user: str, term: Terminal, env: Mapping[str, str]) -> int:
    where = settings.database_url or settings.db_path
    candidates = asyncio.run(load_candidates(where, settings.policy))
    if not candidates:
        term.say("Nothing is waiting for a decision.")
        return DONE
    try:
        pick = choose(candidates, term)
    except Stopped:
        term.say("Stopped; nothing was decided.")
        return NOT_DECIDED
    return asyncio.run(
        decide(settings, pick.interrupt_id, user, pick.choice, pick.comment, term, env)
    )


def _settings(env: Mapping[str, str]) -> Settings:
    try:
        return Settings.from_env(env)
    except SettingsError as exc:
        raise Usage(str(exc)) from None


def _db_path(env: Mapping[str, str], settings: Settings | None) -> Where:
    """The PostgreSQL URL (DATABASE_URL) when there is one, else the SQLite file."""
    if settings is not None:
        return settings.database_url or settings.db_path
    return env.get("DATABASE_URL") or Path(env.get("APPROVALS_DB") or "approvals.db")


def _user(given: str | None, env: Mapping[str, str]) -> str:
    user = given or env.get("APPROVALS_USER") or ""
    if not user:
        raise Usage("say who decides: --as U… or APPROVALS_USER (a Slack user id)")
    if not USER_ID.fullmatch(user):
        raise Usage(f"{_show(user)} is not a Slack user id (like U0123ABC)")
    return user


def _comment(text: str | None) -> str | None:
    text = (text or "").strip()
    if len(text) > openapi.COMMENT_MAX:
        raise Usage(f"a comment is at most {openapi.COMMENT_MAX} characters")
    return text or None


def _show(text: str, limit: int = 40) -> str:
    text = printable(text)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def printable(text: str) -> str:
    """Text from the database as a terminal should show it: control characters (escape
    sequences included) become spaces, so nothing a requester typed can drive the terminal."""
    return "".join(c if c.isprintable() else " " for c in text)


# -- reading the database --------------------------------------------------------------------


@overload
def database(path: Path) -> Path: ...
@overload
def database(path: str) -> str: ...
def database(path: Where) -> Where:
    """``path``, absolute, if a database is there (a decision must not create an empty one);
    a PostgreSQL URL as it is."""
    return path if isinstance(path, str) else sqlite_file(path)


def sqlite_file(path: Path) -> Path:
    """``path``, absolute, if a SQLite database is there."""
    if not path.is_file():
        raise Usage(f"no database at {path} (set APPROVALS_DB)")
    return path.resolve()


@asynccontextmanager
async def reader(path: Where) -> AsyncIterator[Store]:
    """The store on a read-only connection to the database at ``path`` (see ``database``):
    listing and exporting never write, and need no Slack settings."""
    if isinstance(path, str):
        async with _pg_reader(path) as store:
            yield store
        return
    conn = await aiosqlite.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        await conn.execute("PRAGMA busy_timeout=30000")
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        if row is None or row[0] < SCHEMA:
            raise Usage(f"{path} is not a database of this bot, or older: start the bot once")
        hop = OneHop(conn)
        await hop(_rows_by_name)
        yield Store(hop, Writer(conn, asyncio.Lock()))
    finally:
        await conn.close()


@asynccontextmanager
async def _pg_reader(url: str) -> AsyncIterator[Store]:
    from bot.db.postgres import Database

    db = Database(url, size=2)
    try:
        await db.open(timeout=10)
    except Exception as exc:  # the class only: the driver's words may name the host or user
        raise Usage(f"cannot reach the database at DATABASE_URL ({type(exc).__name__})") from None
    try:
        version = await db.read(_schema_version)
        if version < SCHEMA:
            raise Usage("DATABASE_URL is not a database of this bot, or older: start the bot once")
        yield Store(db.read, db.write, postgres=True)
    finally:
        await db.close()


def _schema_version(db: Any) -> int:
    found = db.execute("SELECT to_regclass('bot_schema') IS NOT NULL").fetchone()[0]
    return int(db.execute("PRAGMA user_version").fetchone()[0]) if found else 0


def _rows_by_name(db: sqlite3.Connection) -> None:
    db.row_factory = sqlite3.Row


async def pending_approvals(store: Store, limit: int | None = None) -> list[tuple[Approval, Run]]:
    """Every pending approval (up to ``limit``), oldest first."""
    found: list[tuple[Approval, Run]] = []
    after: tuple[float, str] | None = None
    for _ in range(MAX_PAGES):
        page = await store.pending_approvals(after, PAGE)
        found += page
        if len(page) < PAGE or (limit is not None and len(found) >= limit):
            break
        after = (page[-1][0].created_at, page[-1][0].interrupt_id)
    return found[:limit] if limit is not None else found


def line(a: Approval, run: Run, now: float) -> str:
    """``<id>  <title>  by U0ALICE  3m ago  run <run id>``."""
    title = printable(normalise(a.request, a.meta).title)
    age = format_duration(max(0.0, now - a.created_at))
    return f"{a.interrupt_id}  {title}  by {run.requester}  {age} ago  run {run.run_id}"


async def pending(db: Where, term: Terminal, clock: Callable[[], float] = time.time) -> int:
    async with reader(db) as store:
        found = await pending_approvals(store)
    now = clock()
    if not found:
        term.say("Nothing is waiting for a decision.")
    for a, r in found:
        term.say(line(a, r, now))
    return DONE


async def audit(db: Where, since: str, fmt: str, term: Terminal) -> int:
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise Usage(f"--since {exc}") from None
    start = time.time() - seconds
    async with reader(db) as store:
        count = await export(store, start, fmt, term.out)
    term.warn(f"{count} event{'s' * (count != 1)} since {iso_utc(start)}")
    return DONE


async def verify_chain(db: Where, key: bytes | None, term: Terminal) -> int:
    """Walk the audit chain: 0 intact, 1 a row that does not follow, 2 a key problem."""
    async with reader(db) as store:
        try:
            verdict = await verify(store, key)
        except KeyProblem as exc:
            raise Usage(str(exc)) from None
    if verdict.problem is not None:
        term.say(f"The audit chain is broken: {verdict.problem}.")
        term.say(f"{verdict.checked} row{'s' * (verdict.checked != 1)} before it follow the chain.")
        return NOT_DECIDED
    rows = f"{verdict.checked} audit row{'s' * (verdict.checked != 1)}"
    term.say(f"{rows} checked: the chain is intact.")
    if verdict.first_keyed is not None:
        term.say(f"Rows from {verdict.first_keyed} on carry an HMAC with APPROVALS_AUDIT_KEY.")
    elif verdict.checked:
        term.say(
            "Plain SHA-256 (the bot has no APPROVALS_AUDIT_KEY): whoever can write the table "
            "could recompute it."
        )
    if verdict.last_id is not None:
        term.say(
            f"It ends at row {verdict.last_id}, hash {verdict.last_hash}: keep this line "
            "elsewhere; rows deleted from the very end show only against it."
        )
    return DONE


async def resolve_id(store: Store, given: str) -> str | None:
    """The approval id ``given`` names (itself, or the one id it is the start of); None when
    it names none."""
    if not ID_RE.fullmatch(given):
        raise Usage(
            f"{_show(given)} is not an approval id: give the id `pending` shows, or at least "
            f"{MIN_PREFIX} characters of its start"
        )
    ids = await store.approval_ids(given, 2)
    if given in ids:
        return given
    if len(ids) > 1:
        raise Usage(f"more than one approval's id starts with {given}: give more of it")
    return ids[0] if ids else None


# -- check-config's deployments -------------------------------------------------------------


def check_deployments(
    policy: Policy,
    env: Mapping[str, str],
    term: Terminal,
    *,
    offline: bool,
    timeout: float = PROBE_SECONDS,
) -> int:
    """``check-config``'s lines for the ``[[deployments]]``: what each is, whether its key's
    variable is set (never the key), and unless ``offline`` what a try of it found, all at
    once. Returns 1 when a try failed, else 0."""
    keys = deployment_keys(policy, env)
    probes: list[Probe | None] = [None] * len(policy.deployments)
    if not offline and policy.deployments:
        probes = list(asyncio.run(_probe_all(policy.deployments, keys, timeout)))
    for d, found in zip(policy.deployments, probes, strict=True):
        term.say(f"deployment {d.name}: {deployment_line(d, keys[d.name])}")
        term.say(f"  {'not tried (--offline)' if found is None else found.words}")
    failed = [d.name for d, p in zip(policy.deployments, probes, strict=True) if p and not p.ok]
    if failed:
        term.warn(f"error: deployment{'s' * (len(failed) != 1)} failed: {', '.join(failed)}")
        return PROBE_FAILED
    return DONE


def deployment_line(d: Deployment, key: str | None) -> str:
    """``https://…, channel C0AGENTS, assistants: agent, key: SUPPORT_KEY is set``."""
    assistants = ", ".join(d.assistants) or "all"
    if d.api_key_env is None:
        key_words = "none (no api_key_env)"
    else:
        key_words = f"{d.api_key_env} is {'set' if key else 'not set'}"
    return f"{d.url}, channel {d.channel}, assistants: {assistants}, key: {key_words}"


async def _probe_all(
    deployments: Sequence[Deployment], keys: Mapping[str, str | None], seconds: float
) -> list[Probe]:
    return list(await asyncio.gather(*(probe(d, keys[d.name], seconds) for d in deployments)))


# -- the interactive picker ------------------------------------------------------------------


async def load_candidates(db: Where, policy: Policy) -> list[Candidate]:
    async with reader(db) as store:
        found = await pending_approvals(store, OFFERED)
    return [Candidate(a, r, normalise(a.request, a.meta), policy.rules_of(a, r)) for a, r in found]


def choose(candidates: Sequence[Candidate], term: Terminal) -> Pick:
    """Ask which approval, which choice and (when needed or wanted) a comment; each answer is
    checked and asked again, at most TRIES times. Raises Stopped at end of input."""
    now = time.time()
    term.say("Waiting for a decision:")
    for i, c in enumerate(candidates, 1):
        term.say(f"  {i}. {line(c.approval, c.run, now)}")
    n = len(candidates)
    picked = _ask(
        term,
        f"Which one? (1-{n}, or the start of its id): ",
        lambda s: _which(s, candidates),
    )
    request = picked.request
    term.say("")
    term.say(printable(request.title))
    for text in request.text.splitlines():
        term.say(f"  {printable(text)}")
    for label, value in request.fields:
        term.say(f"  {printable(label)}: {printable(value)}")
    labels = "  ".join(f"{i}. {printable(c.label)}" for i, c in enumerate(request.choices, 1))
    term.say(f"Choices: {labels}")
    m = len(request.choices)
    choice = _ask(term, f"Which choice? (1-{m}, or its id): ", lambda s: _choice(s, request))
    required = picked.rules.needs_comment(choice)
    prompt = "Comment (required): " if required else "Comment (optional; Enter for none): "
    comment = _ask(term, prompt, lambda s: _typed_comment(s, required))
    return Pick(picked.approval.interrupt_id, choice.id, comment)


def _ask(term: Terminal, prompt: str, parse: Callable[[str], T]) -> T:
    for _ in range(TRIES):
        try:
            answer = term.ask(prompt)
        except (EOFError, KeyboardInterrupt):
            term.say("")
            raise Stopped from None
        try:
            return parse(answer.strip())
        except ValueError as exc:
            term.say(str(exc))
    raise Usage(f"no usable answer after {TRIES} tries; nothing was decided")


def _which(answer: str, candidates: Sequence[Candidate]) -> Candidate:
    if answer.isdigit() and 1 <= int(answer) <= len(candidates):
        return candidates[int(answer) - 1]
    if len(answer) >= MIN_PREFIX:
        matches = [c for c in candidates if c.approval.interrupt_id.startswith(answer)]
        if len(matches) == 1:
            return matches[0]
    raise ValueError(
        f"Give a number from 1 to {len(candidates)}, or at least {MIN_PREFIX} characters of "
        "one id above."
    )


def _choice(answer: str, request: ApprovalRequest) -> ChoiceSpec:
    choices = request.choices
    if answer.isdigit() and 1 <= int(answer) <= len(choices):
        return choices[int(answer) - 1]
    found = request.choice(answer) or next(
        (c for c in choices if c.label.lower() == answer.lower()), None
    )
    if found is None:
        raise ValueError(f"Give a number from 1 to {len(choices)}, or a choice's id or name.")
    return found


def _typed_comment(answer: str, required: bool) -> str | None:
    if required and not answer:
        raise ValueError("This choice needs a comment: say why (the requester sees it).")
    if len(answer) > openapi.COMMENT_MAX:
        raise ValueError(f"A comment is at most {openapi.COMMENT_MAX} characters.")
    return answer or None


# -- deciding --------------------------------------------------------------------------------


async def decide(
    settings: Settings,
    given_id: str,
    user: str,
    choice: str,
    comment: str | None,
    term: Terminal,
    env: Mapping[str, str],
    *,
    flush_seconds: float = FLUSH_SECONDS,
) -> int:
    """Decide one approval as ``user``: ``choice`` is a choice id, where "approve" and
    "reject" mean the approval's own approve and reject choices. Prints the answer in words,
    then waits for the Slack updates it queued (up to ``flush_seconds``)."""
    from bot.runtime import BotRuntime

    try:
        runtime = await BotRuntime.open(settings)
    except SettingsError as exc:
        raise Usage(str(exc)) from None
    try:
        interrupt_id = await resolve_id(runtime.store, given_id)
        found = await runtime.store.approval_and_run(interrupt_id) if interrupt_id else None
        if interrupt_id is None or found is None:
            term.say(f"I don't know an approval whose id starts with {given_id}.")
            return NOT_DECIDED
        approval, run = found
        spec = _named_choice(normalise(approval.request, approval.meta), choice)
        if spec is None:
            term.say(f"This approval has no {choice} choice.")
            return NOT_DECIDED
        since = runtime.engine.clock()
        answer = await runtime.engine.decide(interrupt_id, user, spec.id, comment)
        if answer.status in QUEUES:
            # Only a decision or a vote queues Slack updates: then this process sends them
            # (and what the resumed graph posts), rather than wait for the bot to notice.
            runtime.outbox.start()
        term.say(printable(plain(answer.text)))
        if len(runtime.tasks):  # the claim's resume, the engine's own background work
            term.say("The run continues here until it next waits for a person or ends…")
            await runtime.tasks.idle()
        now = runtime.engine.clock()
        await _audit_row(runtime.store, now, user, approval, spec.id, answer, env)
        left = await _flush(runtime.store, run.run_id, since, flush_seconds)
        if left:
            term.say(
                f"{left} Slack update{'s' * (left != 1)} still queued: the running bot sends "
                f"{'them' if left != 1 else 'it'}."
            )
        return DONE if answer.status in QUEUES else NOT_DECIDED
    finally:
        await _stop_outbox(runtime.outbox, STOP_GRACE)
        await runtime.close(grace=STOP_GRACE)


def _named_choice(request: ApprovalRequest, choice: str) -> ChoiceSpec | None:
    """The choice with this id; "approve" and "reject" also name a graph's own approving and
    rejecting choices when their ids differ."""
    found = request.choice(choice)
    if found is None and choice == "approve":
        return request.approve_choice
    if found is None and choice == "reject":
        return request.reject_choice
    return found


async def _audit_row(
    store: Store,
    now: float,
    user: str,
    approval: Approval,
    choice: str,
    answer: Answer,
    env: Mapping[str, str],
) -> None:
    """Who typed it, besides whom it was decided as (the engine's rows say that)."""
    detail = {
        "choice": choice,
        "answer": answer.status,
        "os_user": env.get("USER") or env.get("LOGNAME"),
    }
    await store.record(
        "terminal_decision",
        now,
        user=user,
        run_id=approval.run_id,
        interrupt_id=approval.interrupt_id,
        detail=detail,
    )


async def _stop_outbox(outbox: Outbox, grace: float) -> None:
    """Stop the sender, then wait for any delivery its loop started while it was stopping
    (``Outbox.stop`` does not wait for those): closing the HTTP session under one cuts a
    message Slack may already have, and the bot would send it again."""
    await outbox.stop(grace)
    stray = [t for t in asyncio.all_tasks() if t.get_name().startswith("outbox-") and not t.done()]
    if stray:
        await asyncio.wait(stray, timeout=grace)


async def _flush(store: Store, run_id: str, since: float, seconds: float) -> int:
    """Wait until the Slack updates queued for the run since ``since`` are sent (by this
    process or the running bot), or ``seconds`` pass; returns how many are left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    left = await store.outbox_open_for_run(run_id, since)
    for _ in range(int(seconds / POLL) + 1):
        if not left or loop.time() >= deadline:
            break
        await asyncio.sleep(POLL)
        left = await store.outbox_open_for_run(run_id, since)
    return left
