"""What a person says to the bot by mentioning it in an approval's thread, read from the
Slack text (pure): ``@approvals approve``, ``@approvals approve ship it``,
``@approvals reject too risky on a Friday``.

The bot's mention must come first (``hey @approvals approve`` is not read as a decision, nor
is ``don't @approvals approve``); the first word after it decides; the rest is the comment.
Words: approve, approved, lgtm (yes); reject, rejected (no); any case, a trailing ``:``,
``,``, ``.`` or ``!`` ignored. Anything else is answered with the usage line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

YES = frozenset({"approve", "approved", "lgtm"})
NO = frozenset({"reject", "rejected"})
MAX_COMMENT = 3000  # what the comment modal takes (a plain_text_input's max_length)

_LEADING = re.compile(r"\s*<@(?P<id>[A-Z0-9]+)(?:\|[^>]*)?>[\s:,]*")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))  # Slack's escapes, &amp; last
_CODE = re.compile(r"<([^<>\s][^<>]*)>")  # Slack's <@U…>, <#C…|name>, <!here>, <url|label>


@dataclass(frozen=True)
class Said:
    """A decision typed in a thread: yes or no, and the comment (None when there is none)."""

    approve: bool
    comment: str | None


@dataclass(frozen=True)
class Heard:
    """A mention of the bot: the Slack event it came in (acted on once, by ``event_id``), who
    typed it where (``thread_ts``: the thread, None at the top level), what it said (None:
    not a decision) and the bot's own user id (for the usage line)."""

    event_id: str
    user: str
    channel: str
    thread_ts: str | None
    said: Said | None
    bot: str


def parse(text: str, bot_user_id: str) -> Said | None:
    """The decision in a mention's text, or None when it is not one."""
    rest = text
    mentioned = False
    while (m := _LEADING.match(rest)) is not None and m.group("id") == bot_user_id:
        rest, mentioned = rest[m.end() :], True  # "@approvals @approvals approve" too
    if not mentioned:
        return None
    parts = rest.split(maxsplit=1)  # any whitespace: "approve\nship it" too
    if not parts:
        return None
    word, comment = parts[0], parts[1] if len(parts) > 1 else ""
    verb = word.strip().rstrip(":,.!").lower()
    if verb not in YES | NO:
        return None
    return Said(approve=verb in YES, comment=_comment(comment))


def _plain(m: re.Match[str]) -> str:
    """One of Slack's ``<…>`` codes as the words it shows: ``<@U1|bob>`` @bob (an id
    without a label: @U1), ``<#C1|deploys>`` #deploys, ``<!here>`` @here, ``<url|label>``
    label (url), ``<url>`` url."""
    inner = m.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return f"@{label or target[1:]}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!"):
        name = target[1:].split("^", 1)[0]
        return label or f"@{name}"
    return f"{label} ({target})" if label and label != target else target


def _comment(raw: str) -> str | None:
    """The comment as the person read it when they typed it: Slack's codes for mentions,
    channels and links as their words (a comment typed in the modal holds no codes either),
    ``&lt;`` ``&gt;`` ``&amp;`` undone (it is escaped again wherever it is shown), trimmed,
    at most ``MAX_COMMENT`` characters."""
    text = _CODE.sub(_plain, raw.strip())
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    return text[:MAX_COMMENT] or None


def usage(bot_user_id: str) -> str:
    """The line that answers a mention that is not a decision in an approval's thread."""
    me = f"<@{bot_user_id}>"
    return (
        f"To decide a request, reply in its thread with {me} `approve`, "
        f"{me} `approve ship it` or {me} `reject too risky on a Friday`."
    )
