"""What proves what: the digest that binds an approval to the exact request it showed, and the
hash chain that makes the audit table tamper-evident. Pure functions: the store stores them,
the engine compares digests, ``python -m bot audit verify`` walks the chain.

**The request digest** is SHA-256 over the canonical JSON of the interrupt's value and its
``response_schema`` (if any). The value is read as the store keeps it (``json.dumps(value,
default=repr)``: a value that is not JSON counts as its ``repr``, without the memory address a
default ``repr`` carries), then written with sorted keys and no spaces, so the same request
gives the same digest at open time, at resume time and from the stored row.

**The audit chain**: each row's ``hash`` covers its content and the previous row's ``hash``
(the first row's predecessor is ""), so a row changed, deleted, inserted or moved breaks the
chain from there on. It is ``sha256:<hex>``, or with a key (``APPROVALS_AUDIT_KEY``)
``hmac-sha256:<key id>:<hex>``, an HMAC nobody without the key can recompute; the key id (the
first 8 hex digits of an HMAC of a fixed text) tells a wrong key from a changed row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHORT = 10  # hex digits of a digest shown on a message and in the export
PLAIN = "sha256"
KEYED = "hmac-sha256"
# The columns of an audit row the chain covers, in this order (the id is not among them: on
# PostgreSQL ids are given out before the chain's lock is taken; the order is the chain's).
CHAINED = ("at", "event", "user_id", "run_id", "interrupt_id", "detail", "digest")
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")


def _repr(value: object) -> str:
    return _ADDRESS.sub("", repr(value))


def canonical(value: object) -> str:
    """``value`` as the store keeps it, in one spelling: sorted keys, no spaces, ASCII."""
    stored = json.loads(json.dumps(value, default=_repr))
    return json.dumps(stored, sort_keys=True, separators=(",", ":"))


def request_digest(value: object, meta: Mapping[str, object] | None) -> str:
    """The SHA-256 (hex) of what an approval shows: the interrupt's value and, when it has
    one, its response_schema (kept in the approval's ``meta``)."""
    shown: dict[str, object] = {"value": value}
    schema = (meta or {}).get("response_schema")
    if schema is not None:
        shown["response_schema"] = schema
    return hashlib.sha256(canonical(shown).encode()).hexdigest()


def short(digest: str) -> str:
    """The digest as people see it: enough to tie a message or an export line to a payload."""
    return digest[:SHORT]


def key_id(key: bytes) -> str:
    """Names a key without giving it away, so ``verify`` can say "wrong key"."""
    return hmac.new(key, b"APPROVALS_AUDIT_KEY id", hashlib.sha256).hexdigest()[:8]


def link(prev: str, row: Sequence[object], key: bytes | None) -> str:
    """The ``hash`` of an audit row whose CHAINED columns are ``row``, after ``prev``."""
    message = json.dumps([prev, *row], separators=(",", ":")).encode()
    if key is None:
        return f"{PLAIN}:{hashlib.sha256(message).hexdigest()}"
    return f"{KEYED}:{key_id(key)}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


class KeyProblem(Exception):
    """The rows need a key to be checked, and it is missing or not theirs (plain words)."""


@dataclass
class Walk:
    """Checks audit rows one by one, in the chain's order (by id). ``step`` returns what is
    wrong with a row in plain words (None: it follows the chain) or raises KeyProblem."""

    key: bytes | None
    prev: str = ""
    checked: int = 0
    first_keyed: int | None = None  # the id of the first row hashed with the key

    def step(self, row: Mapping[str, Any]) -> str | None:  # a database row: the driver's types
        rid, stored = row["id"], row.get("hash")
        if not stored:
            return (
                f"row {rid} has no hash: it was written without the chain (by an older release "
                "still running after the upgrade), or its hash was removed"
            )
        kind = str(stored).split(":", 1)[0]
        if kind == KEYED:
            if self.key is None:
                raise KeyProblem(
                    f"rows from {rid} on were written with APPROVALS_AUDIT_KEY: set it to the "
                    "bot's key to check them"
                )
            theirs, mine = str(stored).split(":")[1], key_id(self.key)
            if theirs != mine and self.first_keyed is None:
                raise KeyProblem(
                    f"APPROVALS_AUDIT_KEY is not the key row {rid} was written with (its key id "
                    f"is {theirs}, this key's is {mine}); if the key is right, row {rid} was "
                    "changed"
                )
            if self.first_keyed is None:
                self.first_keyed = rid
            key = self.key
        elif kind == PLAIN and self.first_keyed is None:
            key = None
        elif kind == PLAIN:
            return (
                f"row {rid} has a plain SHA-256 hash after rows written with the key: it was "
                "changed and its hash recomputed without the key"
            )
        else:
            return f"row {rid} has a hash of an unknown kind"
        if not hmac.compare_digest(str(stored), link(self.prev, [row[c] for c in CHAINED], key)):
            return (
                f"row {rid} does not match: it was changed, or a row just before it was "
                "deleted, inserted or moved"
            )
        self.prev = str(stored)
        self.checked += 1
        return None

    def finish(self) -> str | None:
        """What is wrong with the walk as a whole, once every row was stepped through."""
        if self.key is not None and self.checked and self.first_keyed is None:
            return (
                "no row was written with APPROVALS_AUDIT_KEY: the bot never had this key, or the "
                "chain was recomputed without it"
            )
        return None
