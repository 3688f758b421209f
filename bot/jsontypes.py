"""JSON as a type: what `json.dumps` takes, named once.

The documents we build (health answers, the OpenAPI document, the manifest, resume values,
Web API answers of the local workspace) are JSON, and say so. Where a shape is fixed, a
TypedDict says more (``graphs.approval.ApprovalPayload``, ``bot.audit_export.Record``). A value
someone else made and nothing has checked yet (an interrupt value, a payload before
``bot.app.ingress``) is ``object`` until isinstance says more.
"""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
JSONObject: TypeAlias = "dict[str, JSON]"
