"""The workspace restarts on the same port, and the page rides it out honestly: a banner while
the server is unreachable, the typed text kept when a send fails, and a reload once back.
Workspace only (the page works without a bot); the browser is Debian's headless Chromium."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.localslack import LocalSlack

from .conftest import Receiver

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BANNER = "Disconnected from the workspace — retrying…"


def port_of(ws: LocalSlack) -> int:
    return int(ws.url.rsplit(":", 1)[1])


async def test_restart_on_the_same_port_keeps_state(ws: LocalSlack) -> None:
    ws.say("alice", "#deploys", "before")
    port = port_of(ws)
    await ws.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(ws.url + "/ui/bootstrap"):
            pass
    ws.say("bob", "#deploys", "while down")
    await ws.start(port=port)
    async with (
        aiohttp.ClientSession() as session,
        session.get(ws.url + "/ui/events?user=U0ALICE") as stream,
    ):
        assert (await stream.content.readline()).startswith(b":")  # streams work again
        ws.say("dan", "#deploys", "after")
        line = b""
        for _ in range(10):  # the event, after the blank line that ends ": connected"
            line = await stream.content.readline()
            if line.startswith(b"data: "):
                break
        assert json.loads(line[6:])["type"] == "message"
    assert [m["text"] for m in ws.messages("#deploys")] == ["before", "while down", "after"]


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium, or a skip (an error when REQUIRE_BROWSER is set)."""
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_BROWSER"):
            raise RuntimeError("REQUIRE_BROWSER is set but /usr/bin/chromium is missing")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def page(chromium: Path) -> AsyncIterator[object]:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(chromium),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
            ],
        )
        yield await browser.new_page(viewport={"width": 1280, "height": 800})
        await browser.close()


async def test_banner_while_the_workspace_is_down(ws: LocalSlack, receiver: Receiver, page) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(f"{ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    composer, banner = page.locator("#composer"), page.locator("#net-banner")
    error = page.locator("#composer-error")
    await expect(composer).to_be_visible()
    await composer.fill("hello")
    await composer.press("Enter")
    await expect(page.locator("#messages")).to_contain_text("hello")
    await expect(composer).to_have_value("")
    await expect(banner).to_be_hidden()

    port = port_of(ws)
    await ws.stop()
    await expect(banner).to_be_visible(timeout=10_000)
    await expect(banner).to_have_text(BANNER)
    await composer.fill("/deploy api 1.4.2 prod")
    await composer.press("Enter")
    await expect(error).to_have_text("Not sent: disconnected from the workspace")
    await expect(composer).to_have_value("/deploy api 1.4.2 prod")
    await page.screenshot(path=ARTIFACTS / "disconnected.png")

    ws.say("bob", "#deploys", "posted while you were away")
    await ws.start(port=port)
    await expect(banner).to_be_hidden(timeout=15_000)  # backoff is at most 5 s
    await expect(page.locator("#messages")).to_contain_text("posted while you were away")
    await expect(composer).to_have_value("/deploy api 1.4.2 prod")

    # Sending again works, and only then is the box cleared.
    await composer.press("Enter")
    await expect(composer).to_have_value("")
    await expect(error).to_be_hidden()
    assert receiver.requests[-1].fields["text"] == "api 1.4.2 prod"
    await page.screenshot(path=ARTIFACTS / "reconnected.png")


async def test_refused_send_keeps_the_text(ws: LocalSlack, page) -> None:
    from playwright.async_api import expect

    await page.goto(f"{ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    composer, error = page.locator("#composer"), page.locator("#composer-error")
    await composer.fill("/nope do it")
    await composer.press("Enter")
    await expect(error).to_have_text("Something went wrong: invalid_command")
    await expect(composer).to_have_value("/nope do it")
    await composer.press("End")
    await composer.type("!")  # editing clears the stale error
    await expect(error).to_be_hidden()
