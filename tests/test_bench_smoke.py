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
    done = bench("bench", "--smoke", f"--out={out}", f"--json={data}")
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


def test_remote_quick_run_produces_every_figure(tmp_path: Path) -> None:
    """``python -m bench.remote --quick`` (issue 16's figures against a real ``langgraph dev``)
    ends with every figure a finite number, each backlog thread posted once and each clicked
    thread resumed once; nothing about speed is asserted. Skipped without ``.venv-server``,
    like tests/remote (failed instead in CI)."""
    from tests.remote.server import server_executable

    server_executable()
    data = tmp_path / "remote.json"
    done = bench("bench.remote", "--quick", f"--json={data}")
    r = json.loads(data.read_text())
    spreads = [
        r["sdk_to_posted_ms"],
        r["slack_to_posted_ms"]["remote"],
        r["slack_to_posted_ms"]["local"],
        r["click_to_accepted_ms"],
    ]
    for s in spreads:
        assert all(math.isfinite(s[k]) for k in ("p50", "p99")), s
    assert math.isfinite(r["slack_to_posted_ms"]["ratio_p50"])
    clicks, backlog = r["click_to_accepted_ms"], r["backlog"]
    assert clicks["threads_with_2_runs"] == clicks["n"] == r["sizes"]["clicks"]
    assert backlog["posted_exactly_once"] == backlog["threads"] == r["sizes"]["backlog"]
    assert math.isfinite(backlog["deployment_calls_per_minute"])
    assert backlog["deployment_calls_per_minute"] > 0
    assert "| Figure |" in done.stdout


def test_the_grants_benchmark_produces_its_figures() -> None:
    done = bench("bench.grants", "--emails", "2", "--runs", "1")
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    assert len(rows) == 4 and all("nan" not in r for r in rows), done.stdout


def bench(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` in the repository, without the bot's settings; it must
    succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "APPROVALS_"))}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done
