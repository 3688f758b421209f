"""The modals that carry data with a decision, and reading them back: Block Kit from a schema,
and a submitted modal's ``state.values`` to the answer it stands for, with errors per input.

- ``edit``: one input per argument of the tool call, typed from its schema;
- ``respond``: the text the model gets in place of the tool's result;
- ``answer``: the form an ``interrupt(value, response_schema=…)`` asks for;
- ``review``: one decision per tool call of a batched HITL request.

Strings become ``plain_text_input``, integers and numbers ``number_input``, booleans
``checkboxes``, enums ``static_select``; anything else is typed as JSON. Required inputs are
marked; descriptions become hints. Pure: no Slack, no store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.blocks import INPUT_MAX, MODAL_TITLE, cut, mrkdwn, plain
from bot.protocol import ApprovalRequest, ChoiceSpec, ToolAction
from bot.schema import Field, check, field_of, object_fields, shown

FORM_CALLBACK = "approval_form"
VALUE = "v"  # every input's action_id: its block_id says which one it is
COMMENT_BLOCK = "comment"
RESPOND_BLOCK = "response"
MODAL_BLOCKS = 100
LABEL = 2000
HINT = 2000
OPTION_TEXT = 75
MAX_OPTIONS = 100
LONG_NAMES = {"body", "text", "message", "description", "content", "note", "notes", "comment"}
DECISION_LABELS = {
    "approve": "Approve",
    "edit": "Edit (use the values below)",
    "reject": "Reject",
    "respond": "Respond instead of the tool",
}


@dataclass
class Reading:
    """A submitted modal read back: the answer, the comment, and the errors to show next
    to inputs (block_id -> words; empty when the answer may be claimed)."""

    answer: Any = None
    comment: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


def fields_for(request: ApprovalRequest, form: str) -> tuple[Field, ...]:
    """The typed inputs of an ``edit`` (the tool's arguments) or an ``answer`` form; a
    schema that is not an object with properties is one input for the whole value."""
    if form == "edit":
        action = request.actions[0]
        return object_fields(action.schema, action.root or action.schema) or (
            Field("args", "Arguments (JSON)", "json", True),
        )
    schema = request.form or {}
    return object_fields(schema) or (field_of("value", schema, True, schema),)


def _initial(request: ApprovalRequest, form: str) -> dict[str, Any]:
    if form == "edit":
        return dict(request.actions[0].args)
    props = (request.form or {}).get("properties")
    if isinstance(props, Mapping):
        return {
            k: p["default"] for k, p in props.items() if isinstance(p, Mapping) and "default" in p
        }
    return {}


def form_modal(
    request: ApprovalRequest,
    choice_index: int,
    interrupt_id: str,
    channel: str,
    comment: str = "none",
) -> dict[str, Any]:
    """The modal a form choice opens. ``comment`` (none | optional | required) adds a
    comment input, as the approval's rules ask; private_metadata carries what the
    submission needs to find its approval."""
    choice = request.choices[choice_index]
    form = choice.form or "answer"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{mrkdwn(request.title, 2900)}*"}}
    ]
    if form == "respond":
        blocks.append(
            _text_input(
                RESPOND_BLOCK,
                "Your answer",
                required=True,
                multiline=True,
                hint="The agent gets this in place of the tool's result; the tool does not run.",
            )
        )
    elif form == "review":
        blocks += _review_blocks(request.actions, MODAL_BLOCKS - 2)
    else:
        initial = _initial(request, form)
        for i, f in enumerate(fields_for(request, form)):
            blocks.append(_input(f"f{i}", f, initial.get(f.name)))
    if comment != "none" and form != "respond":
        blocks.append(
            _text_input(COMMENT_BLOCK, "Comment", required=comment == "required", multiline=True)
        )
    titles = {
        "edit": f"Edit {request.actions[0].name}" if request.actions else "Edit",
        "respond": "Respond",
        "review": "Review each call",
        "answer": "Answer",
    }
    submits = {"edit": "Run with edits", "respond": "Send", "review": "Submit", "answer": "Submit"}
    metadata = json.dumps(
        {"interrupt_id": interrupt_id, "channel": channel, "choice": choice_index}
    )
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "private_metadata": metadata,
        "title": plain(titles[form], MODAL_TITLE),
        "submit": plain(submits[form], MODAL_TITLE),
        "close": plain("Cancel", MODAL_TITLE),
        "blocks": blocks[:MODAL_BLOCKS],
    }


def _text_input(
    block_id: str,
    label: str,
    *,
    required: bool,
    multiline: bool = False,
    initial: str | None = None,
    hint: str = "",
    max_length: int | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": VALUE,
        "multiline": multiline,
        "max_length": min(max_length or INPUT_MAX, INPUT_MAX),
    }
    if initial:
        element["initial_value"] = cut(initial, INPUT_MAX)
    return _block(block_id, label, element, required, hint)


def _block(
    block_id: str, label: str, element: dict[str, Any], required: bool, hint: str
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": plain(f"{label} *" if required else label, LABEL),
        "element": element,
        "optional": not required,
    }
    if hint:
        block["hint"] = plain(hint, HINT)
    return block


def _input(block_id: str, f: Field, initial: Any, force_optional: bool = False) -> dict[str, Any]:
    """One typed input. ``force_optional`` leaves the check to us (a review's edit inputs
    are needed only when that call is edited)."""
    required = f.required and not force_optional and f.kind != "boolean"
    if f.kind in ("integer", "number"):
        element: dict[str, Any] = {
            "type": "number_input",
            "action_id": VALUE,
            "is_decimal_allowed": f.kind == "number",
        }
        if isinstance(initial, int | float) and not isinstance(initial, bool):
            element["initial_value"] = str(initial)
        if f.minimum is not None:
            element["min_value"] = _num(f.minimum)
        if f.maximum is not None:
            element["max_value"] = _num(f.maximum)
        return _block(block_id, f.label, element, required, f.description)
    if f.kind == "boolean":
        option = {"text": plain("Yes", OPTION_TEXT), "value": "true"}
        element = {"type": "checkboxes", "action_id": VALUE, "options": [option]}
        if initial is True:
            element["initial_options"] = [option]
        return _block(block_id, f.label, element, False, f.description)
    if f.kind == "choice" and len(f.options) <= MAX_OPTIONS:
        options = [
            {"text": plain(shown(v), OPTION_TEXT), "value": str(i)} for i, v in enumerate(f.options)
        ]
        element = {"type": "static_select", "action_id": VALUE, "options": options}
        if initial in f.options:
            element["initial_option"] = options[f.options.index(initial)]
        return _block(block_id, f.label, element, required, f.description)
    text = None if initial is None else shown(initial)
    multiline = f.kind == "json" or f.name in LONG_NAMES or len(text or "") > 60
    hint = f.description or ("A JSON value." if f.kind == "json" else "")
    return _text_input(
        block_id,
        f.label,
        required=required,
        multiline=multiline or "\n" in (text or ""),
        initial=text,
        hint=hint,
        max_length=f.max_length,
    )


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() else str(v)


def _review_blocks(actions: Sequence[ToolAction], budget: int) -> list[dict[str, Any]]:
    """Per call: what it is, a decision (only the allowed ones), a reason or response, and
    its arguments to edit when editing is allowed and the modal has room."""
    blocks: list[dict[str, Any]] = []
    for i, a in enumerate(actions):
        args = fields_for_action(a)
        edit = "edit" in a.allowed and budget - len(blocks) - 3 - len(args) >= 0
        allowed = [d for d in a.allowed if d != "edit" or edit]
        options = [{"text": plain(DECISION_LABELS[d], OPTION_TEXT), "value": d} for d in allowed]
        described = f"*{i + 1}. {mrkdwn(a.name, 200)}*"
        if a.args:
            described += "\n" + mrkdwn(json.dumps(a.args, ensure_ascii=False, default=repr), 2500)
        select: dict[str, Any] = {"type": "static_select", "action_id": VALUE, "options": options}
        if "approve" in allowed:
            select["initial_option"] = options[allowed.index("approve")]
        blocks += [
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(described, 3000)}},
            _block(f"d{i}", f"Decision for {a.name}", select, True, ""),
            _text_input(
                f"m{i}",
                "Reason or response",
                required=False,
                multiline=True,
                hint="A reason for a rejection, or the answer the agent gets instead of the "
                "tool's result.",
            ),
        ]
        if edit:
            for j, f in enumerate(args):
                blocks.append(_input(f"a{i}.{j}", f, a.args.get(f.name), force_optional=True))
        if len(blocks) >= budget:
            break
    return blocks[:budget]


def fields_for_action(a: ToolAction) -> tuple[Field, ...]:
    return object_fields(a.schema, a.root or a.schema) or (
        Field("args", "Arguments (JSON)", "json", True),
    )


# -- reading a submission back --------------------------------------------------------------


def _state(values: Mapping[str, Any], block_id: str) -> Mapping[str, Any]:
    block = values.get(block_id)
    state = block.get(VALUE) if isinstance(block, Mapping) else None
    return state if isinstance(state, Mapping) else {}


def _text(values: Mapping[str, Any], block_id: str) -> str:
    value = _state(values, block_id).get("value")
    return value.strip() if isinstance(value, str) else ""


MISSING = object()


def _parse(f: Field, state: Mapping[str, Any]) -> tuple[Any, str | None]:
    """(value or MISSING, error words) for one input."""
    if f.kind == "boolean":
        return bool(state.get("selected_options")), None
    if f.kind == "choice" and "selected_option" in state:
        return _picked(f, state.get("selected_option"))
    raw = state.get("value")
    text = raw if isinstance(raw, str) else ""
    if f.kind != "text":
        text = text.strip()
    if not text:
        return MISSING, None
    typed = _TYPED.get(f.kind)
    return typed(f, text) if typed is not None else (raw, None)


def _picked(f: Field, option: Any) -> tuple[Any, str | None]:
    """A select's option: its value is the option's position in the field's options."""
    if not isinstance(option, Mapping):
        return MISSING, None
    try:
        return f.options[int(str(option.get("value")))], None
    except (ValueError, IndexError):
        return MISSING, "Pick one of the listed values."


def _integer(f: Field, text: str) -> tuple[Any, str | None]:
    try:
        return int(text), None
    except ValueError:
        return MISSING, "Enter a whole number, like 3."


def _number(f: Field, text: str) -> tuple[Any, str | None]:
    try:
        number = float(text)
    except ValueError:
        return MISSING, "Enter a number, like 2.5."
    return (int(number) if number.is_integer() and "." not in text else number), None


def _json(f: Field, text: str) -> tuple[Any, str | None]:
    """JSON; a choice typed as text that is not JSON is the text itself."""
    try:
        return json.loads(text), None
    except ValueError:
        if f.kind == "choice":
            return text, None
        return MISSING, 'Enter JSON, for example {"key": "value"}, [1, 2] or "text".'


_TYPED: Mapping[str, Callable[[Field, str], tuple[Any, str | None]]] = {
    "integer": _integer,
    "number": _number,
    "json": _json,
    "choice": _json,
}


def _read_fields(
    fields: Sequence[Field],
    values: Mapping[str, Any],
    block_id: Any,
    schema: Mapping[str, Any] | None,
    root: Mapping[str, Any] | None,
    errors: dict[str, str],
) -> dict[str, Any]:
    """The object the inputs stand for; errors go to ``errors`` by block_id."""
    out: dict[str, Any] = {}
    for i, f in enumerate(fields):
        value, error = _parse(f, _state(values, block_id(i)))
        if error:
            errors[block_id(i)] = error
        elif value is MISSING:
            if f.required:
                errors[block_id(i)] = "This is required."
        else:
            out[f.name] = value
    if not errors and schema and object_fields(schema, root or schema):
        where = {f.name: block_id(i) for i, f in enumerate(fields)}
        for name, words in check(schema, out, root):
            errors.setdefault(where.get(name or "", block_id(0)), words)
    return out


def read_form(request: ApprovalRequest, choice: ChoiceSpec, values: Mapping[str, Any]) -> Reading:
    """A submitted form choice's modal as (answer, comment, errors). The answer is checked
    against its schema here, before anything is claimed, so a bad value never spends the
    decision: the person sees the errors next to the inputs and fixes them."""
    form = choice.form or "answer"
    errors: dict[str, str] = {}
    comment = _text(values, COMMENT_BLOCK) or None
    if form == "respond":
        text = _text(values, RESPOND_BLOCK)
        if not text:
            errors[RESPOND_BLOCK] = "Say what the agent should get instead of the tool's result."
        return Reading(text, text, errors)
    if form == "review":
        return Reading(_read_review(request.actions, values, errors), comment, errors)
    fields = fields_for(request, form)
    if form == "edit":
        a = request.actions[0]
        schema, root = a.schema, a.root or a.schema
    else:
        schema = root = request.form or {}
    if not object_fields(schema, root):  # one input for the whole value
        value, error = _parse(fields[0], _state(values, "f0"))
        if error or value is MISSING:
            errors["f0"] = error or "This is required."
        else:
            for _, words in check(schema, value, root):
                errors.setdefault("f0", words)
        return Reading(None if value is MISSING else value, comment, errors)
    answer = _read_fields(fields, values, lambda i: f"f{i}", schema, root, errors)
    return Reading(answer, comment, errors)


def _read_review(
    actions: Sequence[ToolAction], values: Mapping[str, Any], errors: dict[str, str]
) -> list[dict[str, Any]]:
    """One HITL decision per call, in request order."""
    decisions: list[dict[str, Any]] = []
    for i, a in enumerate(actions):
        option = _state(values, f"d{i}").get("selected_option")
        kind = str(option.get("value")) if isinstance(option, Mapping) else ""
        message = _text(values, f"m{i}")
        if kind not in a.allowed:
            errors[f"d{i}"] = "Pick a decision for this call."
            continue
        if kind == "approve":
            decisions.append({"type": "approve"})
        elif kind == "reject":
            decisions.append({"type": "reject", **({"message": message} if message else {})})
        elif kind == "respond":
            if not message:
                errors[f"m{i}"] = "Say what the agent should get instead of the tool's result."
            decisions.append({"type": "respond", "message": message})
        else:
            args = _read_fields(
                fields_for_action(a),
                values,
                lambda j, i=i: f"a{i}.{j}",
                a.schema,
                a.root or a.schema,
                errors,
            )
            decisions.append({"type": "edit", "edited_action": {"name": a.name, "args": args}})
    return decisions
