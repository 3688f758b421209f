"""App Home: publish the person's view each time they open the tab."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.app.deps import Deps


def register(app: AsyncApp, deps: Deps) -> None:
    async def on_home_opened(event: dict[str, Any]) -> None:
        # Bolt acks Events API requests itself; the publishing runs as an owned task.
        if event.get("tab") == "home" and event.get("user"):
            deps.tasks.spawn(deps.engine.publish_home(event["user"]), f"home {event['user']}")

    app.event("app_home_opened")(on_home_opened)
