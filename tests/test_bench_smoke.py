"""The benchmark's CI run: ``python -m bench --smoke`` produces every figure as a finite number
(nothing about speed is asserted) and writes its report where it is told, never to the
repository's BENCHMARKS.md."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from bench import report
from bench.phases import SMOKE

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run_produces_every_figure(tmp_path: Path) -> None:
    out, data = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    before = mtime(REPO / "BENCHMARKS.md")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "APPROVALS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", f"--out={out}", f"--json={data}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(data.read_text())["results"]["current"]["figures"]
    for fig in report.catalogue(SMOKE):
        value = results.get(fig.key)
        assert fig.label in done.stdout
        if fig.placeholder and value is None:  # a figure this checkout cannot have yet
            assert report.PLACEHOLDER in done.stdout
        else:
            assert isinstance(value, int | float) and math.isfinite(value), (fig.key, value)
    text = out.read_text()
    assert "## Machine" in text and "## Results" in text
    assert (tmp_path / "ack_latency.svg").read_text().startswith("<svg")
    assert mtime(REPO / "BENCHMARKS.md") == before


def mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None
