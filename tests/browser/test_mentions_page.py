"""A person in a browser decides by mentioning the bot in the approval's thread: carol (not
an approver) types `@approvals approve` and is told so, in the thread, only to her; bob types
`@approvals approve ship it` and the message shows the decision. The page turns `@approvals`
into `<@U0BOT>` as Slack's client does; the workspace sends the app_mention. Headless Debian
Chromium driven by Playwright; screenshots go to test-artifacts/."""

from __future__ import annotations

from tests.browser.test_demo_page import ARTIFACTS, page, playwright_api
from tests.conftest import Harness

__all__ = ["page"]  # the fixture, shared with the demo page's test


async def type_in(page, composer: str, text: str) -> None:
    await page.fill(composer, text)
    await page.press(composer, "Enter")


async def test_a_mention_in_the_thread_decides(harness: Harness, page) -> None:
    expect = playwright_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(f"{harness.ws.url}/#user=U0ALICE&channel=C0DEPLOYS")
    await expect(page.locator("#composer")).to_be_visible()
    await type_in(page, "#composer", "/deploy api 1.4.2 prod")
    request = page.locator("#messages .message", has_text="Deploy api 1.4.2 to prod?")
    await expect(request.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    # a person mentions the bot once the message is there; the bot knows where it is by then
    await harness.wait(
        lambda: harness.query("SELECT COUNT(*) FROM bot_approvals WHERE ts IS NULL") == [(0,)]
    )

    # carol may not decide: told in the thread, only to her
    await page.select_option("#user-switcher", "U0CAROL")
    await request.hover()
    await request.get_by_role("button", name="Reply in thread").click()
    thread = page.locator("#thread")
    await expect(thread).to_be_visible()
    await type_in(page, "#thread-composer", "@approvals approve")
    await expect(thread).to_contain_text("Only @bob or @dan can decide this request.")
    await expect(thread.locator(".message.ephemeral")).to_have_count(1)
    await page.screenshot(path=ARTIFACTS / "mention-refused.png")

    # bob decides with a comment
    await page.select_option("#user-switcher", "U0BOB")
    await request.locator(".replies").click()
    await expect(thread).to_contain_text("@approvals approve")
    await expect(thread.locator(".message.ephemeral")).to_have_count(0)  # carol's, not his
    await type_in(page, "#thread-composer", "@approvals approve ship it")
    await expect(request).to_contain_text("Approved by @bob", timeout=10_000)
    await expect(request).to_contain_text("ship it")
    await expect(request.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    await expect(request).to_contain_text("Deployed api 1.4.2 to prod", timeout=10_000)
    await expect(thread).to_contain_text("Running health checks… (3/3)")
    await page.screenshot(path=ARTIFACTS / "mention-approved.png")
