"""The served graphs' own record of what they really did: one JSON line per side effect (a
tool that ran, a node that went on after its interrupt), appended to the file named by
``TEST_TOOL_LOG``, which the fixture sets. A test reads it to count real calls, not what the
server or the SDK says happened."""

from __future__ import annotations

import json
import os
from typing import Any

from langgraph.config import get_config

LOG_VARIABLE = "TEST_TOOL_LOG"


def record(name: str, args: dict[str, Any]) -> None:
    """Append one line ``{"name", "args", "thread_id"}``; a single short write, so lines from
    concurrent runs never interleave."""
    thread_id = get_config().get("configurable", {}).get("thread_id")
    line = json.dumps({"name": name, "args": args, "thread_id": thread_id}) + "\n"
    with open(os.environ[LOG_VARIABLE], "a", encoding="utf-8") as log:
        log.write(line)
