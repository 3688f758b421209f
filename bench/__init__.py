"""The benchmark: ``python -m bench`` (run from the repository root).

In one run, against the bot of this checkout and optionally a second checkout side by side
(``--baseline DIR``, e.g. ``git archive 29d184a | tar -x -C /tmp/baseline``), it measures:
ack latency at 1, 50 and 500 concurrent clicks; click -> message updated and slash -> approval
posted at 50; end-to-end approvals/s for 200 at once next to the raw floor of the same graph;
SQL statements and DB-thread round trips per start and per decision (counted); CPU and gc per
decision; RSS at 0, 1,000 and 10,000 pending approvals; App Home latency at 10,000 pending; and
cold start to the first ack. It prints a table and writes BENCHMARKS.md (plus SVG plots in
bench/figures/). ``--smoke`` is a tiny run for CI that only checks every figure is produced.

Each bot runs as a subprocess (``python -m bot run``, cwd and PYTHONPATH = its checkout); the
local Slack workspace (``bot.localslack``) runs in this process and plays Slack and the people.

Modules: ``phases`` (the measurements), ``workspace`` (the workspace and the event tracker),
``procs`` (processes), ``report`` (table, markdown, SVG); scripts run in child processes:
``_bot.py`` (the bot plus ``_probe.py``, measurement-only counters) and ``_floor.py``.
"""
