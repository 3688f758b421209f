"""The fault matrix: every Slack call of the approval loop x every way a call can fail.

Each case runs the whole loop on the real wire (signed callbacks to the Bolt app, the bot's
Web API client against the local workspace, a real SQLite file) with one fault injected into
one call, and no restart. It passes when the approval completes exactly once (one `decided`,
one `resumed`, one deploy, each progress line once, the message showing the outcome; a post
whose answer was lost may appear once more per lost answer), or, when Slack refused for good,
when the person concerned is told in plain words.

The points of the loop (the call the fault hits):

- `approval_post`: chat.postMessage of the approval message, after `/deploy`
- `decision_update`: chat.update that shows who decided, after the click
- `progress_reply`: chat.postMessage of the first progress line in the thread
- `final_update`: chat.update that shows the outcome
- `refusal_ephemeral`: chat.postEphemeral telling carol she may not decide
- `reason_modal`: views.open of "Reject with reason…" (inline: no retry, the trigger dies)

The faults (tests/faults/support.py): 429 + Retry-After, 500 JSON, 502 HTML page, reset
before handling, reset after handling (answer lost), an answer slower than the bot's timeout
(applied late), `ok: false` not_in_channel / channel_not_found / invalid_auth /
message_not_found (permanent) and `ok: false` ratelimited. 6 points x 11 faults = 66 cases;
LONG_TESTS=1 adds each transient fault 3 times in a row at every retried point (101 cases).
The counts are in pytest's summary line.
"""

from __future__ import annotations

import pytest

from bot.render import messages
from tests.conftest import Harness
from tests.faults.support import (
    DEADLINE,
    DEPLOYS,
    FAST,
    FAULTS,
    LONG,
    STEPS,
    Fault,
    GatedBackend,
    all_ephemerals,
    approval_posts,
    buttons,
    check_once,
    done,
    events,
    fault_hit,
    message,
    plain_words,
    progress_counts,
    query,
    rejected,
    settle,
    stored_approval,
    text_of,
)

POINTS = {
    "approval_post": "chat.postMessage",
    "decision_update": "chat.update",
    "progress_reply": "chat.postMessage",
    "final_update": "chat.update",
    "refusal_ephemeral": "chat.postEphemeral",
    "reason_modal": "views.open",
}
REFUSAL = "Only <@U0BOB> or <@U0DAN> can decide this request."
POST_REFUSED = {
    "not_in_channel": messages.INVITE.format(channel="C0DEPLOYS"),
    "channel_not_found": messages.CHANNEL_GONE.format(channel="C0DEPLOYS"),
    "invalid_auth": messages.TOKEN_REFUSED,
    "message_not_found": messages.REFUSED_OTHER,
}
MODAL_WORDS = {
    messages.MODAL_LATE,
    messages.MODAL_SLACK_DOWN,
    messages.MODAL_TOKEN,
    messages.MODAL_OTHER,
}


# The long form also repeats each transient fault 3 times in a row (views.open is never
# retried, and a permanent refusal is final at the first answer).
REPEATS = (1, 3) if LONG else (1,)


def cases() -> list[object]:
    out = []
    for point in POINTS:
        for name, fault in FAULTS.items():
            for times in REPEATS:
                if times > 1 and (fault.permanent or point == "reason_modal"):
                    continue
                case = f"{point}-{name}" + (f"-x{times}" if times > 1 else "")
                out.append(pytest.param(point, fault, times, id=case))
    return out


@pytest.mark.parametrize(("point", "fault", "times"), cases())
async def test_fault(fh: Harness, point: str, fault: Fault, times: int) -> None:
    h, ws = fh, fh.ws
    method = POINTS[point]
    copies = 1 + (times if fault.lost else 0)  # of a post whose answers were lost
    gated = GatedBackend(closed=[3] if point in ("decision_update", "final_update") else [])
    await h.start_bot(**FAST, backend=gated)

    # -- the request: /deploy, then the approval message ---------------------------------
    if point == "approval_post":
        fault.inject(ws, method, times)
    await ws.slash("alice", "/deploy", "api 1.4.2 prod", channel=DEPLOYS)
    if point == "approval_post" and fault.permanent:
        note = await h.wait(lambda: ws.ephemerals("alice"), timeout=DEADLINE)
        assert [n["text"] for n in note] == [POST_REFUSED[fault.name]]
        plain_words(note[0]["text"])
        await settle(h)
        assert query(h.db, "SELECT status FROM bot_runs") == [("failed",)]
        ev = events(h.db)
        assert ev["post_failed"] == 1 and ev["decided"] == 0 and ev["resumed"] == 0, ev
        assert approval_posts(ws) == [] and gated.started == 0
        assert ws.faults(method)
        return
    _iid, ts = await h.wait(lambda: stored_approval(h.db), timeout=DEADLINE)
    msg = await h.wait(lambda: message(ws, ts), timeout=DEADLINE)
    assert {"Approve", "Reject", "Reject with reason…"} <= set(buttons(msg))
    posts = len(approval_posts(ws))
    assert posts == 1 or (point == "approval_post" and posts <= copies), posts

    # -- the decision ----------------------------------------------------------------------
    before = len(ws.faults(method))
    expect_reject = False
    if point in ("decision_update", "progress_reply"):
        fault.inject(ws, method, times)
        await ws.click("bob", msg, "Approve")
        await h.wait(lambda: fault_hit(ws, method, before), timeout=DEADLINE)
        gated.open()
    elif point == "final_update":
        await ws.click("bob", msg, "Approve")
        await h.wait(
            lambda: (
                "⏳ Running…" in text_of(message(ws, ts))
                and sum(progress_counts(ws, ts).values()) == len(STEPS)
            ),
            timeout=DEADLINE,
        )
        fault.inject(ws, method, times)
        gated.open()
        await h.wait(lambda: fault_hit(ws, method, before), timeout=DEADLINE)
    elif point == "refusal_ephemeral":
        fault.inject(ws, method, times)
        await ws.click("carol", msg, "Approve")
        await h.wait(lambda: fault_hit(ws, method, before), timeout=DEADLINE)
        if fault.permanent:
            # Slack will never show this ephemeral: carol must hear it some other way
            await h.wait(lambda: ws.ephemerals("carol"), timeout=2)
        told = await h.wait(lambda: ws.ephemerals("carol"), timeout=DEADLINE)
        assert told[0]["text"] == REFUSAL
        await ws.click("bob", msg, "Approve")
    elif point == "reason_modal":
        fault.inject(ws, method, times)
        await ws.click("bob", msg, "Reject with reason…")
        note = await h.wait(lambda: ws.ephemerals("bob"), timeout=DEADLINE)
        assert note[0]["text"] in MODAL_WORDS, note
        plain_words(note[0]["text"])
        if fault.name == "invalid_auth":
            assert note[0]["text"] == messages.MODAL_TOKEN
        if fault.lost:  # Slack did open it; only the bot never heard: the form still works
            view = await h.wait(lambda: next(iter(ws.open_views("bob")), None), timeout=DEADLINE)
            sent = await ws.submit_modal("bob", view, {"reason": "not today"})
            assert sent.status == 200 and not sent.errors
            expect_reject = True
        else:
            assert ws.open_views("bob") == []
            await ws.click("bob", msg, "Approve")
    else:
        await ws.click("bob", msg, "Approve")

    # -- the outcome ---------------------------------------------------------------------
    finished = rejected if expect_reject else done
    if point == "final_update" and fault.permanent:
        # Slack will never show the outcome on the message: the requester hears it instead
        told = await h.wait(
            lambda: [t for e in ws.ephemerals("alice") if "Deployed" in (t := e["text"])],
            timeout=DEADLINE,
        )
        assert "I couldn't update your request's message" in plain_words(told[0])
        await settle(h)
    else:
        await h.wait(lambda: finished(ws, ts), timeout=DEADLINE)
        await settle(h)
        assert finished(ws, ts)  # nothing older landed on top of the outcome meanwhile
    lost_post = point == "progress_reply" and fault.lost
    refused_line = point == "progress_reply" and fault.permanent
    check_once(
        ws,
        h.db,
        ts,
        deploys=0 if expect_reject else 1,
        started=gated.started,
        at_most={STEPS[0]: copies} if lost_post else None,
        missing_lines=[STEPS[0]] if refused_line else [],
    )
    posts = len(approval_posts(ws))
    assert posts == 1 or (point == "approval_post" and posts <= copies), posts
    refusals = [e for e in ws.ephemerals("carol") if e["text"] == REFUSAL]
    if point == "refusal_ephemeral":
        assert 1 <= len(refusals) <= copies
    told_instead = point == "final_update" and fault.permanent  # the requester's news
    assert len(all_ephemerals(ws)) == len(refusals) + (point == "reason_modal") + told_instead
    assert ws.faults(method), "the injected fault was never met"
