"""``python -m bot audit``: the audit table as JSON Lines or CSV, for auditors and log stores;
``python -m bot audit verify``: its hash chain checked, row by row.

One record per ``bot_audit`` row, in the order the rows were written: its id, who, what (the
event), when (ISO 8601, UTC), the run, the approval (interrupt id), the run's LangGraph
checkpoint, the event's detail, the digest of the request the event is about (SHA-256; the
message shows its first 10 hex digits) and the row's hash in the audit chain (see
bot/integrity.py; ``python -m bot audit verify`` checks it). Per-event checkpoint ids are not
stored, so ``checkpoint_id`` is the newest checkpoint of the run's thread *at export time* (the
state the run is in now, which is what a resume or an inspection with ``graph.aget_state``
starts from).

Values are exported as stored: a CSV opened in a spreadsheet shows a comment such as
``=1+1`` as a formula, so hand CSV to tools, or read the JSON Lines.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO, TypedDict

from bot.integrity import Walk

FIELDS = (
    "id",
    "at",
    "event",
    "who",
    "run_id",
    "interrupt_id",
    "checkpoint_id",
    "detail",
    "digest",
    "hash",
)
FORMATS = ("jsonl", "csv")
PAGE = 1000  # audit rows read per query: memory stays flat however long the history
MAX_PAGES = 1_000_000  # a bound on the loop, far above any real table


class AuditSource(Protocol):
    """The store's reads the export needs (a Protocol, so tests can hand in rows)."""

    async def audit_page(self, since: float, after_id: int, limit: int) -> list[dict[str, Any]]: ...

    async def latest_checkpoints(self, run_ids: list[str]) -> dict[str, str]: ...


def iso_utc(epoch: float) -> str:
    """``1767225600.5`` -> ``"2026-01-01T00:00:00.500Z"``."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class Record(TypedDict):
    """One exported audit row: the columns of FIELDS, in that order."""

    id: int
    at: str  # ISO 8601, UTC
    event: str
    who: str | None
    run_id: str | None
    interrupt_id: str | None
    checkpoint_id: str | None
    detail: object  # parsed JSON, or the stored text when it is not JSON
    digest: str | None
    hash: str | None


def record(row: Mapping[str, Any], checkpoints: Mapping[str, str]) -> Record:
    """One audit row as exported (``detail`` parsed back from its stored JSON)."""
    detail = row.get("detail")
    if isinstance(detail, str):
        with contextlib.suppress(ValueError):  # not JSON (an older release): keep the text
            detail = json.loads(detail)
    run_id = row.get("run_id")
    return {
        "id": row["id"],
        "at": iso_utc(float(row["at"])),
        "event": row["event"],
        "who": row.get("user_id"),
        "run_id": run_id,
        "interrupt_id": row.get("interrupt_id"),
        "checkpoint_id": checkpoints.get(run_id) if run_id else None,
        "detail": detail,
        "digest": row.get("digest"),
        "hash": row.get("hash"),
    }


class Writer:
    """Writes records in one format; CSV gets its header first and JSON-encoded details."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be jsonl or csv, got {fmt!r}")
        self._out = out
        self._csv: csv.DictWriter[str] | None = None
        if fmt == "csv":
            self._csv = csv.DictWriter(out, fieldnames=FIELDS)
            self._csv.writeheader()

    def write(self, records: Iterable[Record]) -> None:
        for r in records:
            if self._csv is None:
                self._out.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")
                continue
            detail = r["detail"]
            cells = {k: ("" if v is None else v) for k, v in r.items()}
            if detail is not None and not isinstance(detail, str):
                cells["detail"] = json.dumps(detail, ensure_ascii=False, separators=(",", ":"))
            self._csv.writerow(cells)


async def export(source: AuditSource, since: float, fmt: str, out: TextIO) -> int:
    """Write every audit row at or after ``since`` (Unix seconds); returns how many."""
    writer = Writer(out, fmt)
    known: dict[str, str] = {}
    asked: set[str] = set()
    after = 0
    count = 0
    for _ in range(MAX_PAGES):
        rows = await source.audit_page(since, after, PAGE)
        if not rows:
            break
        new = sorted({r["run_id"] for r in rows if r.get("run_id")} - asked)
        if new:
            known.update(await source.latest_checkpoints(new))
            asked.update(new)
        writer.write(record(r, known) for r in rows)
        count += len(rows)
        after = int(rows[-1]["id"])
        if len(rows) < PAGE:
            break
    return count


class ChainSource(Protocol):
    """What ``verify`` reads the chain from: the store, or a test's rows, a page at a time."""

    async def audit_chain(self, after_id: int, limit: int) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Verdict:
    """How a walk of the chain ended: rows checked, the first problem (None: intact), and
    where the chain ends (id and hash), for an operator to note elsewhere."""

    checked: int
    problem: str | None
    last_id: int | None = None
    last_hash: str | None = None
    first_keyed: int | None = None  # the first row hashed with the key (None: none)


async def verify(source: ChainSource, key: bytes | None) -> Verdict:
    """Walk the whole chain, page by page, stopping at the first row that does not follow
    (raises integrity.KeyProblem when the rows need a key that is missing or not theirs)."""
    walk = Walk(key)
    after, last = 0, None
    for _ in range(MAX_PAGES):
        rows = await source.audit_chain(after, PAGE)
        for row in rows:
            problem = walk.step(row)
            if problem is not None:
                return Verdict(walk.checked, problem, first_keyed=walk.first_keyed)
            last = row
        if len(rows) < PAGE:
            break
        after = int(rows[-1]["id"])
    return Verdict(
        walk.checked,
        walk.finish(),
        None if last is None else int(last["id"]),
        None if last is None else str(last["hash"]),
        walk.first_keyed,
    )
