"""The named statements of ``bot/db`` find their rows through an index on SQLite, never by
reading a whole table. A full scan costs nothing in a fresh test database and grows with
every row the bot ever wrote: one such scan in the outbox's delivery record (a correlated
subquery in ``RETURNING``, where SQLite drops the column's affinity and with it the index)
made 200 approvals at once 5.7 times slower after a few thousand deliveries. The plan says
so on an empty database, so the test does not need the history to fail."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

import bot.db
from bot.db.migrations import MIGRATIONS, _statements

# Whole statements start like this; the rest of the module-level strings are fragments, as
# is ``_TAKE`` (an UPDATE's head, which its statements complete with a WHERE).
WHOLE = re.compile(r"\s*(WITH|SELECT|UPDATE|INSERT|DELETE)\b", re.IGNORECASE)
FRAGMENTS = {"outbox._TAKE"}
# A plan step reading a whole table: "SCAN <table or alias>" with no index. The CTE ``nxt``
# (one row), the derived table ``o`` of ``_SENT_AND_NEXT`` (one row) and ``json_each`` (the
# ids given) are not tables.
FULL_SCAN = re.compile(r"^SCAN (?!nxt\b|o\b|json_each\b|CONSTANT ROW)(\w+)(?! USING)")


def named_statements() -> Iterator[tuple[str, str]]:
    for info in pkgutil.iter_modules(bot.db.__path__):
        module = importlib.import_module(f"bot.db.{info.name}")
        for name, value in vars(module).items():
            qualified = f"{info.name}.{name}"
            if isinstance(value, str) and WHOLE.match(value) and qualified not in FRAGMENTS:
                yield qualified, value


def schema() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    for script in MIGRATIONS:
        for statement in _statements(script):
            db.execute(statement)
    return db


STATEMENTS = dict(named_statements())


def test_the_outbox_statements_are_found() -> None:
    """The hot ones are here, so the parametrised test below cannot pass by finding none."""
    for name in ("_INSERT_TAKEN", "_TAKE_QUEUED", "_TAKE_NEXT", "_SENT_AND_NEXT", "_OPEN"):
        assert f"outbox.{name}" in STATEMENTS


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_no_statement_reads_a_whole_table(name: str) -> None:
    sql = STATEMENTS[name]
    with closing(schema()) as db:
        numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
        args = [None] * (max(numbered) if numbered else sql.count("?"))
        try:
            plan = db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
        except sqlite3.OperationalError as e:
            pytest.skip(f"not SQLite's dialect or a template: {e}")
    scans = [step[3] for step in plan if FULL_SCAN.match(step[3])]
    assert not scans, f"{name} reads a whole table: {scans}"
