"""Keep the workspace's messages in a JSON file, so `python -m bot demo` run again shows the
same channels, threads and pending approvals (their buttons still work: the bot's side is in
its SQLite file). Ephemerals and open modals are transient, as in Slack."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from .model import Event, Workspace

FLUSH_SECONDS = 0.5


class Persistence:
    """Writes the workspace's messages to its file a moment after they change (changes in
    one burst share one write), and reads them back at start-up."""

    def __init__(self, model: Workspace, path: Path) -> None:
        self.model = model
        self.path = path
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Restore messages saved by an earlier run (no file: a fresh workspace)."""
        if not self.path.is_file():
            return
        saved: dict[str, Any] = json.loads(self.path.read_text())
        self.model.restore_messages(saved["channel_messages"], saved["last_micros"])

    def save(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "channel_messages": self.model.channel_messages,
                    "last_micros": self.model.last_micros,
                }
            )
        )
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a file

    def start(self) -> None:
        self.model.listeners.append(self._changed)
        self._task = asyncio.create_task(self._flush(), name="localslack-persist")

    def _changed(self, event: Event, _to_user: str | None) -> None:
        if event.get("type", "").startswith("message") and not event.get("ephemeral"):
            self._dirty.set()

    async def _flush(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.save()
            await asyncio.sleep(FLUSH_SECONDS)  # batch a burst of changes into one write

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.model.listeners.remove(self._changed)
        self.save()
