"""MEASUREMENT-ONLY instrumentation for the benchmark. Loaded into the bot process by
``bench/_bot.py`` and into the raw-floor process by ``bench/_floor.py``; the bot never imports
it, and nothing here changes what the bot does. Standard library and aiosqlite only, so it
works against any checkout of the bot.

What it counts:

* **SQL statements**: sqlite3's public ``Connection.set_trace_callback``, installed through a
  ``sqlite3.Connection`` subclass passed as ``factory=`` to ``aiosqlite.connect`` (which
  forwards its keyword arguments to ``sqlite3.connect``). SQLite calls it once per statement
  it runs, including the ``BEGIN`` that Python's sqlite3 module issues implicitly and each row
  of an ``executemany``.
* **Round trips to the database thread** ("hops"): every call aiosqlite runs on its worker
  thread goes through the private ``aiosqlite.Connection._execute`` (one queue put, one thread
  switch, one ``call_soon_threadsafe`` back to the event loop). We wrap that method, in this
  process only, to count the calls and time the work done on the thread: its wall time
  (``perf_counter``, which includes the thread's waits for the GIL held by the event loop,
  so it moves with load) and its CPU time (``thread_time``, this thread's alone).
* **gc**: ``gc.callbacks`` (collections per generation, seconds spent).
* **CPU**: ``resource.getrusage(RUSAGE_SELF)``, all threads.

The counters are served as JSON on ``GET http://127.0.0.1:$BENCH_PROBE_PORT/`` by a daemon
thread (a plain ``http.server``), so reading them never touches the bot's event loop or DB.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sqlite3
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiosqlite


class _Counters:
    def __init__(self) -> None:
        self.hops = 0
        self.db_thread_seconds = 0.0
        self.db_thread_cpu_seconds = 0.0
        self.statements = 0
        self.by_kind: Counter[str] = Counter()
        self.gc_collections = [0, 0, 0]
        self.gc_seconds = 0.0
        self.info: dict[str, Any] = {}


COUNTS = _Counters()
_gc_started = [0.0]
# SQL_TRACE_LOG=path appends every statement to that file: for reading, by hand, what one
# start or one decision runs.
_SQL_LOG = open(os.environ["SQL_TRACE_LOG"], "a") if os.environ.get("SQL_TRACE_LOG") else None  # noqa: SIM115


def _on_statement(sql: str) -> None:
    # Called by SQLite on the aiosqlite worker thread, once per statement run.
    COUNTS.statements += 1
    head = sql.lstrip().split(None, 1)
    COUNTS.by_kind[head[0].upper() if head else "?"] += 1
    if _SQL_LOG is not None:
        _SQL_LOG.write(" ".join(sql.split())[:300] + "\n")
        _SQL_LOG.flush()


class TracedConnection(sqlite3.Connection):
    """A sqlite3 connection that reports every statement it runs (measurement only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_trace_callback(_on_statement)


def _timed(fn: Any, *args: Any, **kwargs: Any) -> Any:
    # Runs on the aiosqlite worker thread: the wall time the thread spends on this call (which
    # includes its waits for the GIL while the event loop runs, and for the disk), and the CPU
    # time of this thread alone (neither wait).
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        return fn(*args, **kwargs)
    finally:
        COUNTS.db_thread_cpu_seconds += time.thread_time() - cpu
        COUNTS.db_thread_seconds += time.perf_counter() - started


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        COUNTS.gc_collections[info.get("generation", 0)] += 1
        COUNTS.gc_seconds += time.perf_counter() - _gc_started[0]


def snapshot() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "hops": COUNTS.hops,
        "db_thread_seconds": COUNTS.db_thread_seconds,
        "db_thread_cpu_seconds": COUNTS.db_thread_cpu_seconds,
        "statements": COUNTS.statements,
        "by_kind": dict(COUNTS.by_kind),
        "gc_collections": list(COUNTS.gc_collections),
        "gc_seconds": COUNTS.gc_seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
        "info": COUNTS.info,
        "pid": os.getpid(),
    }


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(snapshot()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def install(serve_port: int | None = None) -> None:
    """Patch aiosqlite in this process (measurement only) and, with a port, serve the counters."""
    original_connect = aiosqlite.connect
    original_execute = aiosqlite.Connection._execute

    def connect(database: Any, **kwargs: Any) -> aiosqlite.Connection:
        kwargs.setdefault("factory", TracedConnection)
        return original_connect(database, **kwargs)

    async def _execute(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS.hops += 1
        return await original_execute(self, _timed, fn, *args, **kwargs)

    aiosqlite.connect = connect  # type: ignore[assignment]
    aiosqlite.Connection._execute = _execute  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)
    if serve_port is not None:
        server = ThreadingHTTPServer(("127.0.0.1", serve_port), _Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="bench-probe", daemon=True).start()
