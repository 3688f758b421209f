"""Every PostgreSQL connection the bot opens (the store's pool, the checkpointer's pool, the
wake-up listener, the liveness lock) has TCP keepalives and a user timeout, read back from the
sockets themselves: a connection that hangs rather than breaks fails within seconds."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from bot.db.postgres import KEEPALIVES
from bot.localslack import LocalSlack
from tests.conftest import Harness
from tests.faults.support import FAST

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # linux/tcp.h


def database_sockets(port: int) -> list[socket.socket]:
    """This process's TCP sockets connected to ``port`` (duplicates, the caller closes them)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue  # closed meanwhile
        try:
            if sock.type == socket.SOCK_STREAM and sock.getpeername()[1] == port:
                found.append(sock)
                continue
        except (OSError, IndexError, TypeError):
            pass  # not connected, or not an inet socket
        sock.close()
    return found


async def test_every_connection_has_keepalives(ws: LocalSlack, tmp_path: Path, pg_url: str) -> None:
    h = Harness(ws, tmp_path / "approvals.db", pg_url)
    port = urlsplit(pg_url).port or 5432
    try:
        await h.start_bot(**FAST)
        # store pool, checkpointer pool, listener, liveness: one connection each at least
        sockets = await h.wait(lambda: (s := database_sockets(port)) and len(s) >= 4 and s)
        try:
            for sock in sockets:
                opt = sock.getsockopt
                assert opt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVES["keepalives_idle"]
                interval = KEEPALIVES["keepalives_interval"]
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == interval
                assert opt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVES["keepalives_count"]
                assert opt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT) == KEEPALIVES["tcp_user_timeout"]
        finally:
            for sock in sockets:
                sock.close()
    finally:
        for b in h.bots:
            await b.stop()
