"""Fixtures for the remote tests: a real LangGraph Server (``tests/remote/server.py``) shared by
the session, behind an API key, each test on threads of its own; one of a test's own where it
stops, kills or restarts the server. A failing test's report carries the server's output."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
from langgraph_sdk.client import LangGraphClient

from tests.remote.server import LangGraphServer, server_executable

SERVER_KEY = "lgs-test-key-5b1f0c2e"  # what the served auth handler wants in x-api-key


@pytest.fixture(scope="session")
def langgraph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """One server for the session (start-up is seconds), serving with SERVER_KEY."""
    folder = tmp_path_factory.mktemp("langgraph-server")
    server = LangGraphServer(server_executable(), folder, api_key=SERVER_KEY)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LangGraphServer]:
    """A server of this test's own, not started (no key: dev mode's default), for tests that
    stop, kill or restart it."""
    server = LangGraphServer(server_executable(), tmp_path / "langgraph-server")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def client(langgraph_server: LangGraphServer) -> AsyncIterator[LangGraphClient]:
    """An SDK client of the session's server with the right key, closed after the test."""
    sdk = langgraph_server.client()
    yield sdk
    await sdk.aclose()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the output of every server it used, and the served
    tools' log."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for server in (v for v in funcargs.values() if isinstance(v, LangGraphServer)):
            report.sections.append((f"langgraph dev output ({server.url})", server.tail()))
            calls = "\n".join(map(str, server.tool_calls())) or "(none)"
            report.sections.append((f"served tools' calls ({server.url})", calls))
    return report
