"""What a mention of the bot says (bot/mentions.py): the first word after a leading mention
decides, the rest is the comment as the person typed it."""

from __future__ import annotations

import pytest

from bot.mentions import MAX_COMMENT, Said, parse, usage

BOT = "U0BOT"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("<@U0BOT> approve", Said(True, None)),
        ("<@U0BOT> approve ship it", Said(True, "ship it")),
        ("<@U0BOT>   APPROVE   ship it  ", Said(True, "ship it")),
        ("<@U0BOT> lgtm", Said(True, None)),
        ("<@U0BOT> Approved!", Said(True, None)),
        ("<@U0BOT|approvals> approve", Said(True, None)),
        ("<@U0BOT>: reject too risky on a Friday", Said(False, "too risky on a Friday")),
        ("<@U0BOT> reject: too risky", Said(False, "too risky")),
        ("<@U0BOT> rejected, not now", Said(False, "not now")),
        ("<@U0BOT> reject\nline one\nline two", Said(False, "line one\nline two")),
        ("<@U0BOT> <@U0BOT> approve", Said(True, None)),
        # Slack's escapes undone: the comment is escaped again wherever it is shown
        ("<@U0BOT> reject &lt;!channel&gt; &amp; co", Said(False, "<!channel> & co")),
        ("<@U0BOT> reject &amp;lt;", Said(False, "&lt;")),
        # mentions in the comment stay as Slack wrote them
        ("<@U0BOT> approve cc <@U0DAN>", Said(True, "cc @U0DAN")),  # Slack's codes as words
        ("<@U0BOT> approve cc <@U0DAN|dan>", Said(True, "cc @dan")),
        (
            "<@U0BOT> reject see <https://x.example/1|pr 1> <!here> <#C0D|deploys>",
            Said(False, "see pr 1 (https://x.example/1) @here #deploys"),
        ),
        ("<@U0BOT> reject <!subteam^S0DEVS|@devs> ok", Said(False, "@devs ok")),
    ],
)
def test_decisions(text: str, said: Said) -> None:
    assert parse(text, BOT) == said


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<@U0BOT>",
        "<@U0BOT> hello",
        "<@U0BOT> approves",  # not one of the words
        "<@U0BOT> please approve",
        "approve",  # no mention
        "hey <@U0BOT> approve",  # the mention is not first
        "don't <@U0BOT> approve",
        "<@U0DAN> approve",  # someone else
        "<@U0DAN> <@U0BOT> approve",
    ],
)
def test_not_decisions(text: str) -> None:
    assert parse(text, BOT) is None


def test_a_long_comment_is_cut_to_what_the_modal_takes() -> None:
    said = parse("<@U0BOT> reject " + "x" * 5000, BOT)
    assert said is not None and said.comment == "x" * MAX_COMMENT


def test_usage_names_the_bot() -> None:
    assert usage(BOT).count("<@U0BOT>") == 3 and "approve" in usage(BOT)
