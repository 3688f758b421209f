"""JSON as a type: what `json.loads` gives and `json.dumps` takes, named once.

Slack payloads, Block Kit, interrupt values and API bodies are JSON. Where a shape is ours and
fixed, a TypedDict says it; where it is anyone's (a graph's interrupt value, Slack's payloads
before `bot.ingress` has checked them), these say at least that it is JSON, not any object.
"""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
JSONObject: TypeAlias = "dict[str, JSON]"
