"""What a real slack_sdk client sees when the network or Slack misbehaves.

Each test injects one fault into the workspace and calls it with slack_sdk's AsyncWebClient
(no retry handlers unless the test says so), then checks the exception the bot would get,
whether the call was applied, and that the attempt is recorded with its fault marker.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.localslack import LocalSlack


@pytest.fixture
async def bare() -> AsyncIterator[AsyncWebClient]:
    """A client without slack_sdk's default connection-error retry: one call, one attempt.
    Its own session carries a short timeout, as the bot's shared session does."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3))
    yield AsyncWebClient(token="", session=session, retry_handlers=[])
    await session.close()


def connect(client: AsyncWebClient, ws: LocalSlack) -> AsyncWebClient:
    client.token, client.base_url = ws.bot_token, ws.api_url
    return client


def texts(ws: LocalSlack) -> list[str]:
    return [m["text"] for m in ws.messages("#deploys")]


async def raw_post(ws: LocalSlack, method: str) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {ws.bot_token}"}
    data = {"channel": "C0DEPLOYS", "text": "raw"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(ws.api_url + method, headers=headers, data=data) as resp,
    ):
        return resp.status, resp.content_type, await resp.text()


# -- error answers ---------------------------------------------------------------------------


async def test_non_json_5xx_html(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.fail_next("chat.postMessage", status=502, non_json=True)
    assert await raw_post(ws, "chat.postMessage") == (
        502,
        "text/html",
        "<html><body>Bad Gateway</body></html>",
    )
    ws.fail_next("chat.postMessage", status=503, non_json=True)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="#deploys", text="x")
    # Observed: slack_sdk cannot parse text/html, swallows the body and raises with data {}.
    assert err.value.response.status_code == 503
    assert err.value.response.data == {}
    assert texts(ws) == []
    assert [(c.status, c.fault) for c in ws.calls] == [(502, "non_json"), (503, "non_json")]
    assert (await client.chat_postMessage(channel="#deploys", text="x"))["ok"]


async def test_non_json_plain_text_body(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.fail_next("chat.postMessage", 503, body="Service Unavailable", content_type="text/plain")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="#deploys", text="x")
    # Observed: for text/plain, slack_sdk keeps the body: response.data is a str.
    assert err.value.response.status_code == 503
    assert err.value.response.data == "Service Unavailable"


async def test_html_labelled_as_json(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.fail_next("chat.postMessage", 502, body="<html>oops</html>", content_type="application/json")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="#deploys", text="x")
    # Observed: a JSON content type with a body that is not JSON raises a SlackApiError whose
    # `response` is aiohttp's ClientResponse, not a SlackResponse (no .data, no ["error"]).
    assert "non-JSON format" in str(err.value)
    assert isinstance(err.value.response, aiohttp.ClientResponse)
    assert err.value.response.status == 502


async def test_ok_false_error_codes(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    posted = await client.chat_postMessage(channel="#deploys", text="v1")
    ws.fail_next("chat.update", status=200, error="message_not_found")
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="v2")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "message_not_found"
    assert texts(ws) == ["v1"]  # not applied
    ws.fail_next("chat.postMessage", status=500, times=2)
    ws.fail_next("chat.postMessage", status=429, retry_after=3)
    codes = []
    for _ in range(3):
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel="#deploys", text="x")
        codes.append((err.value.response.status_code, err.value.response["error"]))
    assert codes == [(500, "internal_error"), (500, "internal_error"), (429, "ratelimited")]
    assert err.value.response.headers["Retry-After"] == "3"
    assert [c.fault for c in ws.faults()] == ["answer"] * 4


# -- dropped connections ---------------------------------------------------------------------


async def test_reset_before_handling(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.reset_next("chat.postMessage")
    with pytest.raises(aiohttp.ClientOSError) as err:
        await client.chat_postMessage(channel="#deploys", text="lost")
    assert err.value.errno == errno.ECONNRESET  # "Connection reset by peer"
    assert texts(ws) == []
    [call] = ws.calls_to("chat.postMessage")
    assert (call.status, call.fault, call.args["text"]) == (0, "reset_before", "lost")


async def test_clean_close_before_handling(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.reset_next("chat.postMessage", rst=False)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.chat_postMessage(channel="#deploys", text="lost")
    assert texts(ws) == []


async def test_reset_after_handling_loses_only_the_answer(
    ws: LocalSlack, bare: AsyncWebClient
) -> None:
    client = connect(bare, ws)
    ws.reset_next("chat.postMessage", after=True)
    with pytest.raises(aiohttp.ClientOSError):
        await client.chat_postMessage(channel="#deploys", text="applied")
    [stored] = ws.messages("#deploys")
    assert stored["text"] == "applied"
    [call] = ws.calls_to("chat.postMessage")
    assert (call.status, call.fault, call.response["ts"]) == (0, "reset_after", stored["ts"])
    # The next call is answered normally.
    assert (await client.chat_postMessage(channel="#deploys", text="next"))["ok"]


async def test_default_client_retries_a_reset_and_duplicates(ws: LocalSlack) -> None:
    """slack_sdk's default AsyncWebClient retries ClientOSError once by itself; when the answer
    was lost after the message was stored, that retry posts it twice."""
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=ws.bot_token, base_url=ws.api_url, session=session)
        ws.reset_next("chat.postMessage", after=True)
        assert (await client.chat_postMessage(channel="#deploys", text="twice"))["ok"]
    assert texts(ws) == ["twice", "twice"]
    assert [c.fault for c in ws.calls_to("chat.postMessage")] == ["reset_after", None]


# -- slow answers ----------------------------------------------------------------------------


async def test_delay_past_the_client_timeout(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)  # 0.3 s total timeout
    ws.delay_next("chat.postMessage", 1.2)
    with pytest.raises(TimeoutError):  # asyncio.TimeoutError is TimeoutError on 3.11
        await client.chat_postMessage(channel="#deploys", text="slow")
    # The client gave up; the call is still waiting and is applied after the delay.
    assert ws.holding("chat.postMessage") == 1 and texts(ws) == []
    await ws.wait_for(lambda: texts(ws) == ["slow"], timeout=3)
    [call] = ws.calls_to("chat.postMessage")
    assert (call.status, call.fault) == (200, "delay")
    assert ws.holding("chat.postMessage") == 0


async def test_delay_within_the_timeout_answers(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.delay_next("auth.test", 0.05)
    assert (await client.auth_test())["user_id"] == "U0BOT"
    assert ws.calls[-1].fault == "delay"


async def test_stop_does_not_wait_for_a_delay(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.delay_next("auth.test", 60)
    call = asyncio.create_task(client.auth_test())
    await ws.wait_for(lambda: ws.holding("auth.test"))
    async with asyncio.timeout(3):
        await ws.stop()  # wakes the delayed call instead of waiting a minute
        await asyncio.gather(call, return_exceptions=True)


# -- outages ---------------------------------------------------------------------------------


async def test_outage_error_mode(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.outage(mode="error")
    assert ws.in_outage
    for call in (client.auth_test(), client.chat_postMessage(channel="#deploys", text="x")):
        with pytest.raises(SlackApiError) as err:
            await call
        assert (err.value.response.status_code, err.value.response.data) == (503, {})
    assert await raw_post(ws, "users.list") == (
        503,
        "text/html",
        "<html><body>Service Unavailable</body></html>",
    )
    assert texts(ws) == []
    assert [c.fault for c in ws.calls] == ["outage_error"] * 3
    ws.end_outage()
    assert (await client.chat_postMessage(channel="#deploys", text="back"))["ok"]


async def test_outage_reset_mode_ends_by_itself(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.outage(0.5, mode="reset")
    with pytest.raises(aiohttp.ClientOSError):
        await client.chat_postMessage(channel="#deploys", text="x")
    assert ws.calls[-1].fault == "outage_reset" and texts(ws) == []
    await ws.wait_for(lambda: not ws.in_outage, timeout=3)
    assert (await client.chat_postMessage(channel="#deploys", text="back"))["ok"]


async def test_outage_hang_parks_every_method_then_applies(
    ws: LocalSlack, bare: AsyncWebClient
) -> None:
    async with aiohttp.ClientSession() as session:  # patient: outlives the outage
        client = AsyncWebClient(
            token=ws.bot_token, base_url=ws.api_url, session=session, retry_handlers=[]
        )
        ws.outage(1.0)  # mode "hang"
        posting = asyncio.create_task(client.chat_postMessage(channel="#deploys", text="later"))
        checking = asyncio.create_task(client.auth_test())
        await ws.wait_for(lambda: ws.holding("chat.postMessage") and ws.holding("auth.test"))
        assert texts(ws) == [] and ws.calls == []
        async with asyncio.timeout(3):
            posted, checked = await asyncio.gather(posting, checking)
    assert posted["ok"] and checked["ok"] and texts(ws) == ["later"]
    assert sorted(c.fault or "" for c in ws.calls) == ["outage_hang", "outage_hang"]
    assert not ws.in_outage


async def test_hold_all_until_release(ws: LocalSlack) -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(
            token=ws.bot_token, base_url=ws.api_url, session=session, retry_handlers=[]
        )
        ws.hold_all()
        posting = asyncio.create_task(client.chat_postMessage(channel="#deploys", text="held"))
        await ws.wait_for(lambda: ws.holding("chat.postMessage"))
        ws.release()
        async with asyncio.timeout(3):
            assert (await posting)["ok"]
    assert texts(ws) == ["held"] and not ws.in_outage


async def test_faults_are_taken_in_order(ws: LocalSlack, bare: AsyncWebClient) -> None:
    client = connect(bare, ws)
    ws.fail_next("chat.postMessage", status=503, non_json=True)
    ws.reset_next("chat.postMessage", after=True)
    ws.fail_next("chat.postMessage", status=200, error="not_in_channel")
    for expected in (SlackApiError, aiohttp.ClientOSError, SlackApiError):
        with pytest.raises(expected):
            await client.chat_postMessage(channel="#deploys", text="x")
    assert (await client.chat_postMessage(channel="#deploys", text="y"))["ok"]
    assert [(c.status, c.fault) for c in ws.calls] == [
        (503, "non_json"),
        (0, "reset_after"),
        (200, "answer"),
        (200, None),
    ]
    assert texts(ws) == ["x", "y"]
    assert len(ws.faults("chat.postMessage")) == 3
