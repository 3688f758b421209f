"""`python -m bot demo` as a person runs it: one process, one port, the page's own /ui API.
Ctrl-C stops it; started again it keeps the earlier run, and the old buttons still work."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.scenario.test_cli import free_port, spawn_bot


class Demo:
    def __init__(self, tmp: Path, reaper: list[asyncio.subprocess.Process]) -> None:
        self.reaper = reaper
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.proc: asyncio.subprocess.Process | None = None
        self.log = tmp / "demo.log"

    async def start(self, *extra: str) -> None:
        self.proc = await spawn_bot(["demo", "--port", str(self.port), *extra], self.log)
        self.reaper.append(self.proc)
        await self.until(lambda: self.get("/ui/bootstrap"), "the demo to start")

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        return await asyncio.wait_for(self.proc.wait(), 30)

    async def get(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(self.base + path, params=params) as r:
            return await r.json() if r.status == 200 else None

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with aiohttp.ClientSession() as http, http.post(self.base + path, json=body) as r:
            return await r.json()

    async def until(self, probe: Any, what: str, limit: float = 20) -> Any:
        """Poll an async probe until it returns something truthy, with a deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            try:
                value = await probe()
            except aiohttp.ClientConnectionError:
                value = None
            if value:
                return value
            assert self.proc is None or self.proc.returncode is None, self.log.read_text()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"waiting for {what}:\n{self.log.read_text()}")

    async def approval(self, user: str = "U0BOB") -> dict[str, Any] | None:
        history = await self.get("/ui/history", user=user, channel="C0DEPLOYS")
        return next((m for m in reversed(history["messages"]) if m.get("blocks")), None)


async def test_demo_keeps_pending_approvals_across_restarts(
    tmp_path: Path, reaper: list[asyncio.subprocess.Process]
) -> None:
    demo = Demo(tmp_path, reaper)
    await demo.start()
    sent = await demo.post(
        "/ui/message", {"user": "U0ALICE", "channel": "C0DEPLOYS", "text": "/deploy api 1.4.2 prod"}
    )
    assert sent["ok"], sent
    pending = await demo.until(demo.approval, "the approval message")
    assert await demo.stop() == 0

    await demo.start()  # same directory: same DB and workspace file
    assert (await demo.approval())["ts"] == pending["ts"]
    actions = next(b for b in pending["blocks"] if b["type"] == "actions")
    approve = actions["elements"][0]
    assert approve["text"]["text"] == "Approve"
    clicked = await demo.post(
        "/ui/action",
        {
            "user": "U0BOB",
            "channel": "C0DEPLOYS",
            "message_ts": pending["ts"],
            "action_id": approve["action_id"],
            "block_id": actions["block_id"],
            "value": approve["value"],
        },
    )
    assert clicked["ok"], clicked

    async def deployed() -> bool:
        m = await demo.approval()
        return "Deployed api 1.4.2 to prod" in str(m["blocks"])

    await demo.until(deployed, "the deploy to finish")
    assert await demo.stop() == 0

    await demo.start("--fresh")
    assert await demo.approval() is None
    assert await demo.stop() == 0
