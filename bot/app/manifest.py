"""``python -m bot manifest``: the Slack app manifest for this bot, with every registered
slash command (the built-in ``/deploy``, ``/approvals``, and any entry point's), as JSON,
which Slack's "Create New App → From an app manifest" accepts as it does YAML."""

from __future__ import annotations

import json
from collections.abc import Mapping

from bot.app.listeners import approvals
from bot.jsontypes import JSON, JSONObject
from graphs import GraphSpec

# app_mentions:read: `@approvals approve` typed in an approval's thread; im:history: the
# same typed in an escalation DM's thread (Slack sends DMs to the app as message.im only),
# see bot/app/listeners/mentions.py. Never channels:history: no channel is read.
SCOPES = (
    "app_mentions:read",
    "chat:write",
    "commands",
    "im:history",
    "im:write",
    "users:read",
    "usergroups:read",
)
BOT_EVENTS = ("app_home_opened", "app_mention", "message.im")


def slash_command(
    command: str, description: str, usage_hint: str, request_url: str | None
) -> JSONObject:
    """One entry of the manifest's ``features.slash_commands``: its URL in HTTP mode only."""
    entry: JSONObject = {
        "command": command,
        "description": description,
        "usage_hint": usage_hint,
        "should_escape": False,
    }
    if request_url:
        entry["url"] = request_url
    return entry


def manifest(specs: Mapping[str, GraphSpec], request_url: str | None = None) -> JSONObject:
    """The manifest; ``request_url`` set = HTTP mode at that URL, else Socket Mode."""
    own = approvals.SPEC
    commands: list[JSON] = [
        slash_command(s.command, s.description, s.usage, request_url)
        for s in specs.values()
        if s.command.startswith("/")
    ]
    commands.append(
        slash_command(own["command"], own["description"], own["usage_hint"], request_url)
    )
    interactivity: JSONObject = {"is_enabled": True}
    events: JSONObject = {"bot_events": [*BOT_EVENTS]}
    if request_url:
        interactivity["request_url"] = request_url
        events["request_url"] = request_url
    return {
        "display_information": {
            "name": "Approvals",
            "description": "A second pair of eyes for LangGraph workflows, right in the channel.",
            "background_color": "#1d3b5c",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                # people answer escalation DMs in their threads
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": "approvals", "always_online": True},
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": [*SCOPES]}},
        "settings": {
            "interactivity": interactivity,
            "event_subscriptions": events,
            "org_deploy_enabled": False,
            "socket_mode_enabled": request_url is None,
            "token_rotation_enabled": False,
        },
    }


def render(specs: Mapping[str, GraphSpec], request_url: str | None = None) -> str:
    return json.dumps(manifest(specs, request_url), indent=2)
