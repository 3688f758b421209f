"""How a fault in the policy file is worded: the error, and values shown as the file writes them."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any

BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


class PolicyError(ValueError):
    """One line: ``<file>: <key>: <fault>``. ``key`` is "" for faults of the whole file."""

    def __init__(self, source: str, key: str, fault: str) -> None:
        self.source, self.key, self.fault = source, key, fault
        super().__init__(f"{source}: {key}: {fault}" if key else f"{source}: {fault}")

    def __reduce__(self) -> tuple[type[PolicyError], tuple[str, str, str]]:
        return (PolicyError, (self.source, self.key, self.fault))


def dotted(k: str) -> str:
    """A key as written in a dotted path: bare when it can be, else quoted."""
    return k if BARE_KEY_RE.fullmatch(k) else json.dumps(k, ensure_ascii=False)


def did_you_mean(key: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f'(did you mean "{close[0]}"?)' if close else None


def show(v: Any) -> str:
    """A value as the file would write it, short and on one line."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
        return s if len(s) <= 60 else s[:56] + '…"'
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, date | time):
        return v.isoformat()
    return kind_of(v)


def show_list(v: list[Any] | tuple[Any, ...]) -> str:
    s = "[" + ", ".join(show(x) for x in v) + "]"
    return s if len(s) <= 80 else s[:76] + "…]"


def kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, int):
        return "a whole number"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, Mapping):
        return "a table"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, datetime):
        return "a date-time"
    if isinstance(v, date):
        return "a date"
    if isinstance(v, time):
        return "a time"
    return type(v).__name__


def one_line(s: str) -> str:
    return " ".join(s.split())
