"""A PostgreSQL server of the test's own, to stop and start at will.

The shared server on TEST_DATABASE_URL must never be restarted (other tests and people use
it), so a test that restarts PostgreSQL starts a private one: ``initdb`` into a temporary
folder, ``pg_ctl start`` on a free loopback port, ``pg_ctl stop``/``start`` in the test, and
everything removed after. It uses Debian's binaries (/usr/lib/postgresql/<version>/bin, what
.ci/postgres installs) or any ``initdb`` on PATH. ``initdb`` refuses to run as root, so as root
the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.scenario.test_cli import free_port

NO_BINARIES = (
    "PostgreSQL's server binaries (initdb, pg_ctl) are not installed (.ci/postgres installs "
    "them): the private-server tests skipped"
)


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, newest version first."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    found = debian[0] if debian else shutil.which("initdb")
    return Path(found).parent if found else None


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in Path(path).parts[-3].split(".") if p.isdigit())


class PrivateServer:
    """One cluster in a temporary folder, on 127.0.0.1:``port``, trust auth, user postgres."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-private-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [*self._as, str(self.bin / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stderr.strip()}\n{tail}")

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"
        )

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=60"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def private_server() -> PrivateServer:
    """A private server, not yet initialised; skips (or, with CI set, fails) without the
    binaries."""
    bin_dir = server_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but PostgreSQL's initdb and pg_ctl are not installed")
        pytest.skip(NO_BINARIES)
    return PrivateServer(bin_dir)
