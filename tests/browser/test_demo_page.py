"""A person in a browser: alice runs /deploy, switches to bob, bob approves; then a rejection
with a reason through the modal, including the empty-reason error. Headless Debian Chromium
driven by Playwright; screenshots go to test-artifacts/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.app.listeners import approvals
from graphs.deploy import SimulatedBackend
from tests.conftest import FakeClock, Harness
from tests.scenario.test_escalation import posted
from tests.scenario.test_forms import installed
from tests.scenario.test_shapes import with_graphs

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

if not CHROMIUM.exists():
    if os.environ.get("REQUIRE_BROWSER"):
        raise RuntimeError("REQUIRE_BROWSER is set but /usr/bin/chromium is missing")
    pytest.skip(
        "Debian chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture
async def page(harness: Harness) -> AsyncIterator[object]:
    # A visible deploy: a few progress steps, short enough for a test.
    await harness.bot.stop()
    harness.bots.clear()
    await harness.start_bot(backend=SimulatedBackend(step_seconds=0.2))
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
            ],
        )
        pg = await browser.new_page(viewport={"width": 1280, "height": 800})
        yield pg
        await browser.close()


async def as_user(page, user_id: str) -> None:
    await page.select_option("#user-switcher", user_id)


async def slash(page, text: str) -> None:
    await page.fill("#composer", text)
    await page.press("#composer", "Enter")


async def test_approve_then_reject_with_reason(harness: Harness, page) -> None:
    expect = playwright_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(f"{harness.ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    await expect(page.locator("#composer")).to_be_visible()

    # alice asks
    await slash(page, "/deploy api 1.4.2 prod")
    first = page.locator("#messages .message", has_text="Deploy api 1.4.2 to prod?")
    await expect(first.get_by_role("button", name="Approve", exact=True)).to_be_visible()

    # bob approves from his own view
    await as_user(page, "U0BOB")
    await first.get_by_role("button", name="Approve", exact=True).click()
    await expect(first).to_contain_text("Deployed api 1.4.2 to prod", timeout=10_000)
    await expect(first).to_contain_text("Approved by @bob")
    await expect(first.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    await first.locator(".replies").click()
    thread = page.locator("#thread")
    await expect(thread).to_contain_text("Running health checks… (3/3)")
    await page.screenshot(path=ARTIFACTS / "approved.png")

    # alice asks again; bob rejects with a reason
    await as_user(page, "U0ALICE")
    await slash(page, "/deploy web 2.0.0-rc.1 prod")
    second = page.locator("#messages .message", has_text="Deploy web 2.0.0-rc.1 to prod?")
    await expect(second.get_by_role("button", name="Reject with reason…")).to_be_visible()
    await as_user(page, "U0BOB")
    await second.get_by_role("button", name="Reject with reason…").click()
    modal = page.locator("#modal")
    await expect(modal).to_be_visible()
    await expect(modal).to_contain_text("Reject with reason")
    # Empty: the client refuses a required field; blank: the bot answers response_action errors.
    await modal.get_by_role("button", name="Reject", exact=True).click()
    error = modal.locator('.b-input[data-block-id="reason"] .input-error')
    await expect(error).to_contain_text("required")
    await modal.locator('[name="reason.reason"]').fill("   ")
    await modal.get_by_role("button", name="Reject", exact=True).click()
    await expect(error).to_contain_text("Please say why you are rejecting this")
    await page.screenshot(path=ARTIFACTS / "empty-reason.png")
    await modal.locator('[name="reason.reason"]').fill("Freeze until Monday <!channel>")
    await modal.get_by_role("button", name="Reject", exact=True).click()
    await expect(modal).to_be_hidden()
    await expect(second).to_contain_text("Rejected by @bob", timeout=10_000)
    await expect(second).to_contain_text("Freeze until Monday <!channel>")
    await expect(second.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    await page.screenshot(path=ARTIFACTS / "rejected.png")

    # alice sees the outcome live, without a reload
    await as_user(page, "U0ALICE")
    await expect(second).to_contain_text("Rejected by @bob")

    # and her App Home lists her requests
    await page.click('[data-channel="home"]')
    home = page.locator("#messages")
    await expect(home).to_contain_text("Your requests")
    await expect(home).to_contain_text("/deploy web 2.0.0-rc.1 prod")
    await expect(home).to_contain_text("Nothing is waiting")
    await page.screenshot(path=ARTIFACTS / "home.png")


async def test_carol_gets_the_escalation_dm_and_approves_from_it(harness: Harness, page) -> None:
    expect = playwright_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    clock = FakeClock()
    await harness.bot.stop()
    harness.bots.clear()
    bot = await harness.start_bot(
        clock=clock,
        backend=SimulatedBackend(step_seconds=0.2),
        policy={
            "supervisors": ["U0CAROL"],
            "policy": {
                "deploy": {
                    "prod": {
                        "approvers": ["U0BOB", "U0DAN"],
                        "escalation": [{"after": "30m", "notify": ["supervisors"]}],
                    }
                }
            },
        },
    )
    await page.goto(f"{harness.ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    await expect(page.locator("#composer")).to_be_visible()
    await slash(page, "/deploy api 1.4.2 prod")
    channel_copy = page.locator("#messages .message", has_text="Deploy api 1.4.2 to prod?")
    await expect(channel_copy).to_contain_text("Needs 1 of @bob, @dan")
    await harness.wait(lambda: posted(harness))  # deadlines count from here

    await clock.advance(30 * 60, bot)  # nobody decided: carol, the supervisor, gets a DM
    await expect(channel_copy.locator(".replies")).to_be_visible(timeout=10_000)
    await as_user(page, "U0CAROL")
    await page.click('[data-channel="D0CAROL"]')
    dm = page.locator("#messages .message", has_text="Deploy api 1.4.2 to prod?")
    await expect(dm.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    await page.screenshot(path=ARTIFACTS / "escalation-dm.png")
    await dm.get_by_role("button", name="Approve", exact=True).click()
    await expect(dm).to_contain_text("Approved by @carol", timeout=10_000)
    await expect(dm).to_contain_text("Deployed api 1.4.2 to prod", timeout=10_000)

    await page.click('[data-channel="C0DEPLOYS"]')
    await expect(channel_copy).to_contain_text("Approved by @carol")
    await expect(channel_copy.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    await channel_copy.locator(".replies").click()
    await expect(page.locator("#thread")).to_contain_text("Escalated to @carol")
    await page.screenshot(path=ARTIFACTS / "escalation-approved.png")


@pytest.fixture
def form_graphs(tmp_path: Path) -> Iterator[str]:
    yield from installed(tmp_path)


async def test_a_typed_form_is_filled_in_and_resumes_the_graph(
    harness: Harness, page, form_graphs: str
) -> None:
    """interrupt(response_schema=…) as a person sees it: a text, a number, a checkbox and a
    select; a number under the minimum is refused next to its field; then it resumes with
    exactly what was typed, ticked and picked."""
    expect = playwright_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    await with_graphs(harness, form_graphs)
    harness.ws.commands.append(approvals.SPEC)  # typed in the page, so the page must know it
    await page.goto(f"{harness.ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    await expect(page.locator("#composer")).to_be_visible()
    await slash(page, "/approvals run form")
    asked = page.locator("#messages .message", has_text="Refund details")
    await expect(asked.get_by_role("button", name="Answer…")).to_be_visible()
    await as_user(page, "U0BOB")
    await asked.get_by_role("button", name="Answer…").click()
    modal = page.locator("#modal")
    await expect(modal).to_contain_text("Why the customer gets money back")  # a hint
    await modal.locator('[name="f0.v"]').fill("double charge")
    await modal.locator('[name="f1.v"]').fill("0")
    await modal.locator('input[type="checkbox"]').check()
    await modal.locator("select").select_option("prod")
    await modal.locator(".submit").click()
    error = modal.locator('.b-input[data-block-id="f1"] .input-error')
    await expect(error).to_contain_text("valid number")  # the client knows min_value, as Slack's
    await page.screenshot(path=ARTIFACTS / "form-error.png")
    await modal.locator('[name="f1.v"]').fill("2")
    await modal.locator(".submit").click()
    await expect(modal).to_be_hidden()
    await expect(asked).to_contain_text("'urgent': True", timeout=10_000)
    await expect(asked).to_contain_text("'env': 'prod'")
    await expect(asked).to_contain_text("'count': 2")
    await page.screenshot(path=ARTIFACTS / "form-answered.png")


async def test_a_phone_width_window_is_usable(harness: Harness, page) -> None:
    """At 380 px the sidebar sits above the conversation instead of beside it (it kept its
    260 px and left the messages a column a word wide), nothing scrolls sideways, and a
    thread covers the conversation."""
    expect = playwright_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    await page.set_viewport_size({"width": 380, "height": 760})
    await page.goto(f"{harness.ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    await expect(page.locator("#composer")).to_be_visible()
    await slash(page, "/deploy api 1.4.2 prod")
    asked = page.locator("#messages .message", has_text="Deploy api 1.4.2 to prod?")
    approve = asked.get_by_role("button", name="Approve", exact=True)
    await expect(approve).to_be_visible()

    sidebar = await page.locator("#sidebar").bounding_box()
    messages = await page.locator("#messages").bounding_box()
    assert sidebar and messages
    assert sidebar["y"] + sidebar["height"] <= messages["y"]  # above, not beside
    assert messages["width"] >= 360
    assert await page.evaluate("document.documentElement.scrollWidth") <= 380
    for label in ("Approve", "Reject with reason…", "Withdraw"):
        button = await asked.get_by_role("button", name=label, exact=True).bounding_box()
        assert button and button["height"] < 48, label  # one line of text, not a word a line
    assert await page.locator("#user-switcher").is_visible()
    await page.screenshot(path=ARTIFACTS / "narrow.png")

    await as_user(page, "U0BOB")
    await approve.click()
    await expect(asked).to_contain_text("Deployed api 1.4.2 to prod", timeout=10_000)
    await asked.locator(".replies").click()
    thread = await page.locator("#thread").bounding_box()
    assert thread and thread["width"] == 380  # over the conversation, not squeezed beside it
    await expect(page.locator("#thread")).to_contain_text("Running health checks… (3/3)")
    await page.screenshot(path=ARTIFACTS / "narrow-thread.png")
