"""A standing grant in a browser: alice starts the example agent on two addresses, bob uses
"Approve & allow…" (the modal's scope radio, length select and exact-arguments box), the
second email goes out under his grant as one compact line, and `/approvals grants` lists it
with Revoke. Headless Debian Chromium driven by Playwright; screenshots in test-artifacts/."""

from __future__ import annotations

from bot.app.listeners import approvals
from tests.browser.test_demo_page import ARTIFACTS, as_user, page, playwright_api, slash
from tests.conftest import Harness

__all__ = ["page"]  # the fixture, shared with the demo page's test

POLICY = {
    "graphs": ["graphs.agent:specs"],
    "policy": {
        "agent": {
            "approvers": ["U0BOB"],
            "grants": {"scopes": ["run", "requester"], "max": "4h", "tools": ["send_email"]},
        }
    },
}


async def test_approve_and_allow_then_revoke(harness: Harness, page) -> None:
    expect = playwright_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    await harness.bots.pop().stop()
    await harness.start_bot(policy=POLICY)
    harness.ws.commands.append(approvals.SPEC)  # typed in the page, so the page must know it
    await page.goto(f"{harness.ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    await expect(page.locator("#composer")).to_be_visible()

    await slash(page, "/approvals run agent tell a@example.com and b@example.com we ship")
    first = page.locator("#messages .message", has_text="a@example.com")
    allow = first.get_by_role("button", name="Approve & allow…")
    await expect(allow).to_be_visible()

    await as_user(page, "U0BOB")
    await allow.click()
    modal = page.locator("#modal")
    await expect(modal).to_contain_text("Also approve, without asking")
    await expect(modal).to_contain_text("this run")
    await expect(modal).to_contain_text("Only with these exact arguments")
    await page.screenshot(path=ARTIFACTS / "grant-modal.png")
    await modal.get_by_role("button", name="Approve & allow", exact=True).click()
    await expect(modal).to_be_hidden()

    await expect(first).to_contain_text("Approved by @bob", timeout=10_000)
    line = page.locator("#messages .message", has_text="approved under")
    await expect(line).to_contain_text("send_email approved under @bob's grant")
    await expect(line.locator(".b-actions, .b-accessory")).to_have_count(0)  # no Block Kit buttons
    await expect(first).to_contain_text("Done: Sent to b@example.com", timeout=10_000)
    await page.screenshot(path=ARTIFACTS / "granted.png")

    await slash(page, "/approvals grants")
    listing = page.locator("#messages .message", has_text="Standing grants")
    await expect(listing.get_by_role("button", name="Revoke")).to_be_visible()
    await listing.get_by_role("button", name="Revoke").click()
    await expect(page.locator("#messages")).to_contain_text("Revoked:", timeout=10_000)
    await page.screenshot(path=ARTIFACTS / "revoked.png")
