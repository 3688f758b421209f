"""Block Kit limits Slack enforces (and slack_sdk.models partly does not)."""

from __future__ import annotations

from bot.localslack.blockkit import normalize_blocks, validate_blocks, validate_view

from .conftest import approval_blocks, button, modal


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def test_valid_payloads_pass() -> None:
    assert validate_blocks(approval_blocks()) == []
    assert validate_view(modal()) == []


def test_duplicates_styles_and_types() -> None:
    errors = validate_blocks(
        [
            {"type": "divider", "block_id": "a"},
            {"type": "actions", "block_id": "a", "elements": [button("x", "b"), button("y", "b")]},
            {"type": "actions", "elements": [button("z", "c", style="green")]},
            {"type": "header", "text": {"type": "mrkdwn", "text": "h"}},
            {"type": "video"},
        ]
    )
    assert errors == [
        "duplicate block_id: a [json-pointer:/blocks/1/block_id]",
        "duplicate action_id: b [json-pointer:/blocks/1/elements/1/action_id]",
        "must be a valid enum value [json-pointer:/blocks/2/elements/0/style]",
        "must be a valid enum value [json-pointer:/blocks/3/text/type]",
        "failed to match all allowed schemas [json-pointer:/blocks/4]",
    ]


def test_field_confirm_and_id_limits() -> None:
    confirm = {
        "title": plain("t" * 101),
        "text": plain("ok"),
        "confirm": plain("Yes"),
        "deny": plain("d" * 31),
    }
    fields = [{"type": "mrkdwn", "text": "f"}] * 11
    errors = validate_blocks(
        [
            {"type": "section", "fields": fields},
            {"type": "actions", "elements": [button("x", "a" * 256, confirm=confirm)]},
        ]
    )
    assert errors == [
        "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        "must be less than 256 characters [json-pointer:/blocks/1/elements/0/action_id]",
        "must be less than 101 characters [json-pointer:/blocks/1/elements/0/confirm/title/text]",
        "must be less than 31 characters [json-pointer:/blocks/1/elements/0/confirm/deny/text]",
    ]


def test_view_limits() -> None:
    too_many = modal(blocks=[{"type": "divider"}] * 101, title=plain("t" * 25))
    assert validate_view(too_many) == [
        "must be less than 25 characters [json-pointer:/view/title/text]",
        "no more than 100 items allowed [json-pointer:/view/blocks]",
    ]
    long_input = modal()
    long_input["blocks"][0]["element"]["max_length"] = 3001
    assert validate_view(long_input) == [
        "must be less than or equal to 3000 [json-pointer:/view/blocks/0/element/max_length]"
    ]
    no_submit = modal()
    del no_submit["submit"]
    assert validate_view(no_submit) == [
        "must provide submit when using input blocks [json-pointer:/view/submit]"
    ]


def test_normalize_adds_ids_like_slack() -> None:
    blocks = [{"type": "actions", "elements": [{"type": "button", "text": plain("Go")}]}]
    stored = normalize_blocks(blocks)
    assert stored[0]["block_id"] and stored[0]["elements"][0]["action_id"]
    assert stored[0]["elements"][0]["text"]["emoji"] is True
    assert "block_id" not in blocks[0]  # the caller's copy is untouched
