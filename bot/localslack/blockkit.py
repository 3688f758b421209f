"""Block Kit validation with Slack's limits and Slack-style error strings.

Pure functions: each returns a list like
`["must be less than 76 characters [json-pointer:/blocks/2/elements/0/text/text]"]`,
empty when Slack would accept the payload. `slack_sdk.models` lets several of these through
(button text and value inside actions blocks), so the bot's builders are checked here.
"""

from __future__ import annotations

import copy
import secrets
import string
from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100

_INTERACTIVE = {
    "button",
    "static_select",
    "multi_static_select",
    "users_select",
    "multi_users_select",
    "conversations_select",
    "multi_conversations_select",
    "channels_select",
    "external_select",
    "overflow",
    "datepicker",
    "timepicker",
    "datetimepicker",
    "checkboxes",
    "radio_buttons",
    "plain_text_input",
    "email_text_input",
    "number_input",
    "url_text_input",
}
_SELECT_OPTIONS = {
    "static_select",
    "multi_static_select",
    "overflow",
    "checkboxes",
    "radio_buttons",
}


class _Checker:
    """Collects errors while walking one payload."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def string(self, value: object, pointer: str, max_len: int, required: bool = False) -> None:
        if value is None:
            if required:
                self.fail(f"missing required field: {pointer.rsplit('/', 1)[-1]}", pointer)
            return
        if not isinstance(value, str):
            self.fail("must be a string", pointer)
        elif len(value) > max_len:
            self.fail(f"must be less than {max_len + 1} characters", pointer)
        elif required and not value:
            self.fail("must be more than 0 characters", pointer)

    def items(
        self, value: object, pointer: str, max_items: int, min_items: int = 0
    ) -> list[object]:
        if not isinstance(value, list):
            self.fail("must be an array", pointer)
            return []
        if len(value) > max_items:
            self.fail(f"no more than {max_items} items allowed", pointer)
        if len(value) < min_items:
            self.fail(f"must provide at least {min_items} items", pointer)
        return value

    def text(
        self,
        obj: object,
        pointer: str,
        max_len: int,
        plain_only: bool = False,
        required: bool = True,
    ) -> None:
        if obj is None:
            if required:
                field = pointer.rsplit("/", 1)[-1]
                parent = pointer.rsplit("/", 1)[0]
                self.fail(f"missing required field: {field}", parent)
            return
        if not isinstance(obj, dict):
            self.fail("must be an object", pointer)
            return
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if obj.get("type") not in allowed:
            self.fail("must be a valid enum value", f"{pointer}/type")
        self.string(obj.get("text"), f"{pointer}/text", max_len, required=True)

    def ident(self, value: object, pointer: str) -> None:
        self.string(value, pointer, 255)


def validate_blocks(
    blocks: object, pointer: str = "/blocks", max_blocks: int = MAX_MESSAGE_BLOCKS
) -> list[str]:
    """Errors Slack would report for a list of blocks (message: 50, modal/home: 100)."""
    check = _Checker()
    _blocks(check, blocks, pointer, max_blocks)
    return check.errors


def validate_view(view: object, pointer: str = "/view") -> list[str]:
    """Errors Slack would report for a modal or home view."""
    check = _Checker()
    if not isinstance(view, dict):
        check.fail("must be an object", pointer)
        return check.errors
    kind = view.get("type")
    if kind not in ("modal", "home"):
        check.fail("must be a valid enum value", f"{pointer}/type")
    if kind == "modal":
        check.text(view.get("title"), f"{pointer}/title", 24, plain_only=True)
    for key in ("submit", "close"):
        if view.get(key) is not None:
            check.text(view[key], f"{pointer}/{key}", 24, plain_only=True)
    check.string(view.get("private_metadata"), f"{pointer}/private_metadata", 3000)
    check.ident(view.get("callback_id"), f"{pointer}/callback_id")
    check.ident(view.get("external_id"), f"{pointer}/external_id")
    blocks = view.get("blocks")
    if blocks is None:
        check.fail("missing required field: blocks", pointer)
    else:
        _blocks(check, blocks, f"{pointer}/blocks", MAX_VIEW_BLOCKS)
    has_input = isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("type") == "input" for b in blocks
    )
    if kind == "modal" and has_input and view.get("submit") is None:
        check.fail("must provide submit when using input blocks", f"{pointer}/submit")
    return check.errors


def _blocks(check: _Checker, blocks: object, pointer: str, max_blocks: int) -> None:
    seen_ids: set[str] = set()
    for i, block in enumerate(check.items(blocks, pointer, max_blocks)):
        at = f"{pointer}/{i}"
        if not isinstance(block, dict) or block.get("type") not in _BLOCKS:
            check.fail("failed to match all allowed schemas", at)
            continue
        block_id = block.get("block_id")
        check.ident(block_id, f"{at}/block_id")
        if isinstance(block_id, str):
            if block_id in seen_ids:
                check.fail(f"duplicate block_id: {block_id}", f"{at}/block_id")
            seen_ids.add(block_id)
        _BLOCKS[block["type"]](check, block, at)


def _header(check: _Checker, block: dict[str, object], at: str) -> None:
    check.text(block.get("text"), f"{at}/text", 150, plain_only=True)


def _section(check: _Checker, block: dict[str, object], at: str) -> None:
    if block.get("text") is None and block.get("fields") is None:
        check.fail("must provide either text or fields", at)
    if block.get("text") is not None:
        check.text(block["text"], f"{at}/text", 3000)
    if block.get("fields") is not None:
        for i, field in enumerate(check.items(block["fields"], f"{at}/fields", 10, 1)):
            check.text(field, f"{at}/fields/{i}", 2000)
    if block.get("accessory") is not None:
        _element(check, block["accessory"], f"{at}/accessory", set())


def _context(check: _Checker, block: dict[str, object], at: str) -> None:
    elements = check.items(block.get("elements"), f"{at}/elements", 10, 1)
    for i, element in enumerate(elements):
        here = f"{at}/elements/{i}"
        if isinstance(element, dict) and element.get("type") == "image":
            check.string(element.get("image_url"), f"{here}/image_url", 3000)
            check.string(element.get("alt_text"), f"{here}/alt_text", 2000, required=True)
        else:
            check.text(element, here, 3000)


def _divider(check: _Checker, block: dict[str, object], at: str) -> None:
    """Dividers carry nothing but a block_id."""


def _actions(check: _Checker, block: dict[str, object], at: str) -> None:
    seen: set[str] = set()
    elements = check.items(block.get("elements"), f"{at}/elements", 25, 1)
    for i, element in enumerate(elements):
        _element(check, element, f"{at}/elements/{i}", seen)


def _input(check: _Checker, block: dict[str, object], at: str) -> None:
    check.text(block.get("label"), f"{at}/label", 2000, plain_only=True)
    if block.get("hint") is not None:
        check.text(block["hint"], f"{at}/hint", 2000, plain_only=True)
    if block.get("element") is None:
        check.fail("missing required field: element", at)
    else:
        _element(check, block["element"], f"{at}/element", set())


def _image(check: _Checker, block: dict[str, object], at: str) -> None:
    check.string(block.get("image_url"), f"{at}/image_url", 3000, required=True)
    check.string(block.get("alt_text"), f"{at}/alt_text", 2000, required=True)
    if block.get("title") is not None:
        check.text(block["title"], f"{at}/title", 2000, plain_only=True)


def _rich_text(check: _Checker, block: dict[str, object], at: str) -> None:
    check.items(block.get("elements"), f"{at}/elements", 100)


_BLOCKS = {
    "header": _header,
    "section": _section,
    "context": _context,
    "divider": _divider,
    "actions": _actions,
    "input": _input,
    "image": _image,
    "rich_text": _rich_text,
}


def _element(check: _Checker, element: object, at: str, seen_action_ids: set[str]) -> None:
    if not isinstance(element, dict):
        check.fail("must be an object", at)
        return
    kind = element.get("type")
    if kind == "image":
        check.string(element.get("image_url"), f"{at}/image_url", 3000, required=True)
        check.string(element.get("alt_text"), f"{at}/alt_text", 2000, required=True)
        return
    if kind not in _INTERACTIVE:
        check.fail("failed to match all allowed schemas", at)
        return
    action_id = element.get("action_id")
    check.ident(action_id, f"{at}/action_id")
    if isinstance(action_id, str):
        if action_id in seen_action_ids:
            check.fail(f"duplicate action_id: {action_id}", f"{at}/action_id")
        seen_action_ids.add(action_id)
    if element.get("confirm") is not None:
        _confirm(check, element["confirm"], f"{at}/confirm")
    if element.get("placeholder") is not None:
        check.text(element["placeholder"], f"{at}/placeholder", 150, plain_only=True)
    if kind == "button":
        check.text(element.get("text"), f"{at}/text", 75, plain_only=True)
        check.string(element.get("value"), f"{at}/value", 2000)
        check.string(element.get("url"), f"{at}/url", 3000)
        if element.get("style") is not None and element["style"] not in ("primary", "danger"):
            check.fail("must be a valid enum value", f"{at}/style")
    elif kind == "plain_text_input":
        _text_input(check, element, at)
    elif kind == "number_input":
        _number_input(check, element, at)
    elif kind in _SELECT_OPTIONS:
        most = 10 if kind in ("checkboxes", "radio_buttons") else 100
        options = check.items(element.get("options"), f"{at}/options", most, 1)
        for i, option in enumerate(options):
            here = f"{at}/options/{i}"
            if not isinstance(option, dict):
                check.fail("must be an object", here)
                continue
            plain_only = kind in ("static_select", "multi_static_select", "overflow")
            check.text(option.get("text"), f"{here}/text", 75, plain_only=plain_only)
            check.string(option.get("value"), f"{here}/value", 150, required=True)
        _initial_options(check, element, options, at)


def _initial_options(
    check: _Checker, element: dict[str, object], options: list[object], at: str
) -> None:
    """Slack refuses an initial option that is not one of the element's options."""
    initial = element.get("initial_option")
    chosen = [initial] if initial is not None else []
    if element.get("initial_options") is not None:
        chosen += check.items(element["initial_options"], f"{at}/initial_options", len(options))
    values = {o.get("value") for o in options if isinstance(o, dict)}
    for option in chosen:
        if not isinstance(option, dict) or option.get("value") not in values:
            check.fail("must match one of the provided options", f"{at}/initial_option")


def _number_input(check: _Checker, element: dict[str, object], at: str) -> None:
    decimals = element.get("is_decimal_allowed")
    if not isinstance(decimals, bool):
        check.fail("missing required field: is_decimal_allowed", at)
    for key in ("initial_value", "min_value", "max_value"):
        value = element.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            check.fail("must be a string", f"{at}/{key}")
            continue
        try:
            number = float(value)
        except ValueError:
            check.fail("must be a number", f"{at}/{key}")
            continue
        if decimals is False and not number.is_integer():
            check.fail("must be a whole number", f"{at}/{key}")


def _text_input(check: _Checker, element: dict[str, object], at: str) -> None:
    check.string(element.get("initial_value"), f"{at}/initial_value", 3000)
    lengths = {}
    for key in ("min_length", "max_length"):
        value = element.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            check.fail("must be a non-negative integer", f"{at}/{key}")
        elif value > 3000:
            check.fail("must be less than or equal to 3000", f"{at}/{key}")
        else:
            lengths[key] = value
    if lengths.get("min_length", 0) > lengths.get("max_length", 3000):
        check.fail("min_length must be less than or equal to max_length", f"{at}/min_length")


def _confirm(check: _Checker, confirm: object, at: str) -> None:
    if not isinstance(confirm, dict):
        check.fail("must be an object", at)
        return
    check.text(confirm.get("title"), f"{at}/title", 100, plain_only=True)
    check.text(confirm.get("text"), f"{at}/text", 300)
    check.text(confirm.get("confirm"), f"{at}/confirm", 30, plain_only=True)
    check.text(confirm.get("deny"), f"{at}/deny", 30, plain_only=True)
    if confirm.get("style") is not None and confirm["style"] not in ("primary", "danger"):
        check.fail("must be a valid enum value", f"{at}/style")


def normalize_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of valid blocks as Slack stores them: every block gets a block_id and every
    interactive element an action_id (random, like Slack's), and plain_text gets `emoji`."""
    stored = copy.deepcopy(blocks)
    for block in stored:
        block.setdefault("block_id", _random_id())
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        elements += [block[k] for k in ("accessory", "element") if isinstance(block.get(k), dict)]
        for element in elements:
            if isinstance(element, dict) and element.get("type") in _INTERACTIVE:
                element.setdefault("action_id", _random_id())
        _add_emoji(block)
    return stored


def _add_emoji(node: object) -> None:
    if isinstance(node, dict):
        if node.get("type") == "plain_text" and isinstance(node.get("text"), str):
            node.setdefault("emoji", True)
        for value in node.values():
            _add_emoji(value)
    elif isinstance(node, list):
        for value in node:
            _add_emoji(value)


def _random_id() -> str:
    alphabet = string.ascii_letters + string.digits + "+="
    return "".join(secrets.choice(alphabet) for _ in range(4))
