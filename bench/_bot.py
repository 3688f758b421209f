"""Runs ``python -m bot run`` of whichever checkout is first on the path (the benchmark starts
this script with ``cwd`` and ``PYTHONPATH`` set to that checkout), with the measurement-only
counters of ``_probe.py``. Started as a script (``python bench/_bot.py``), never imported.
"""

from __future__ import annotations

import os
import sys

import _probe  # this script's directory is sys.path[0]


def main() -> int:
    port = os.environ.get("BENCH_PROBE_PORT")
    _probe.install(int(port) if port else None)
    import bot
    from bot.__main__ import main as bot_main

    _probe.COUNTS.info["bot_file"] = bot.__file__
    profile_to = os.environ.get("BOT_PROFILE")  # measurement only: cProfile of the event loop
    if not profile_to:
        return bot_main(["run"])
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(bot_main, ["run"])
    finally:
        profiler.dump_stats(profile_to)


if __name__ == "__main__":
    sys.exit(main())
