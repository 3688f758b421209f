"""``.ci/postgres`` (run by ``.ci/run``) on a machine where PostgreSQL already answers: it
starts and installs nothing, and prints a URL that logs in. The start, create-cluster and
trust paths were exercised on a spare cluster by hand (see the script's PG_CI_* variables);
this test never stops or installs anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "postgres"


def _running() -> bool:
    if shutil.which("pg_isready") is None:
        return False
    probe = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]
    return subprocess.run(probe, check=False, timeout=10).returncode == 0


@pytest.mark.skipif(not _running(), reason="no PostgreSQL answering on 127.0.0.1:5432")
def test_already_running_postgres_is_used_as_it_is() -> None:
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url == "postgresql://postgres@127.0.0.1:5432/test"
    for action in ("apt-get", "creating cluster", "starting", "trusting"):
        assert action not in done.stderr
    login = subprocess.run(
        ["psql", url, "-w", "-tAc", "select 1"], capture_output=True, text=True, timeout=30
    )
    assert (login.returncode, login.stdout.strip()) == (0, "1"), login.stderr
