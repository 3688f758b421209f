"""Which runner drives which graph: local commands, with or without their slash, stay in the
process; ``<deployment>/<assistant>`` goes to the deployment's runner."""

from __future__ import annotations

from typing import cast

import pytest

from bot.runner import GraphRefused, Routes, Runner


def test_local_commands_stay_local_and_deployments_go_remote() -> None:
    local, support = cast(Runner, object()), cast(Runner, object())
    routes = Routes(local, {"support": support})
    assert routes.runner("/deploy") is local
    assert routes.runner("deploy") is local
    assert routes.runner("agent") is local
    assert routes.runner("support/agent") is support
    # a deployment no longer configured: the run ends in plain words, never runs locally
    with pytest.raises(GraphRefused, match="`elsewhere` is not configured"):
        routes.runner("elsewhere/agent")
