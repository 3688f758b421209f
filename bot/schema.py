"""Reading the JSON Schema an interrupt's answer must match: which fields a form has, and
whether an answer fits, in words a person can act on.

LangGraph publishes ``Interrupt.response_schema`` as JSON Schema (Pydantic's output for a typed
schema). It checks a resume value only against the Python type, inside the graph, where a
refusal can no longer be shown next to a field; so answers are checked here first against
the published schema (``check``), and a refusal LangGraph still makes is put into the same
words (``refusal_errors``). Pure: no Slack, no store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from pydantic import ValidationError

from bot.jsontypes import JSON, JSONObject

KINDS = ("text", "integer", "number", "boolean", "choice", "json")


@dataclass(frozen=True)
class Field:
    """One input of a form. ``kind`` is one of ``KINDS``; ``json`` takes any JSON value (an
    object, a list, a union the form cannot type)."""

    name: str
    label: str
    kind: str
    required: bool
    description: str = ""
    options: tuple[JSON, ...] = ()  # the allowed values of a ``choice``
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None


FieldError = tuple[str | None, str]  # (field name or None for the whole answer, plain words)


def resolve(node: object, root: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` with local ``$ref``s (``#/$defs/X``) followed, a bounded number of times."""
    for _ in range(20):
        if not isinstance(node, Mapping):
            return {}
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return dict(node)
        target: object = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        node = target
    return {}


def _without_null(prop: dict[str, Any], root: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``Optional[X]`` (``anyOf: [X, null]``) as X, and whether null was allowed."""
    for key in ("anyOf", "oneOf"):
        branches = prop.get(key)
        if isinstance(branches, list):
            real = [resolve(b, root) for b in branches]
            nonnull = [b for b in real if b.get("type") != "null"]
            if len(nonnull) == 1 and len(real) == 2:
                merged = {**{k: v for k, v in prop.items() if k != key}, **nonnull[0]}
                return merged, True
    return prop, False


def field_of(name: str, prop: object, required: bool, root: Mapping[str, Any]) -> Field:
    """The form input for one property of an object schema."""
    p, nullable = _without_null(resolve(prop, root), root)
    label = str(p.get("title") or name)
    options: tuple[JSON, ...] = ()
    if isinstance(p.get("enum"), list) and p["enum"]:
        kind, options = "choice", tuple(p["enum"])
    elif "const" in p:
        kind, options = "choice", (p["const"],)
    else:
        kind = {
            "string": "text",
            "integer": "integer",
            "number": "number",
            "boolean": "boolean",
        }.get(str(p.get("type")), "json")

    def num(key: str) -> float | None:
        v = p.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    max_length = p.get("maxLength")
    return Field(
        name=name,
        label=label,
        kind=kind,
        required=required and not nullable,
        description=str(p.get("description") or ""),
        options=options,
        max_length=max_length if isinstance(max_length, int) else None,
        minimum=num("minimum"),
        maximum=num("maximum"),
    )


def object_fields(schema: object, root: Mapping[str, Any] | None = None) -> tuple[Field, ...]:
    """The fields of an object schema, in its order; () when it is not an object with
    properties (then the form takes one JSON value)."""
    root = root if root is not None else (schema if isinstance(schema, Mapping) else {})
    s = resolve(schema, root)
    props = s.get("properties")
    if not isinstance(props, Mapping) or not props:
        return ()
    required = set(s.get("required") or ())
    return tuple(field_of(str(k), v, k in required, root) for k, v in props.items())


def inferred(args: Mapping[str, object]) -> JSONObject:
    """A schema for a tool call's arguments when only their values are known (the batched
    HITL request carries no schema): each argument keeps its JSON type and stays required."""

    def typed(v: object) -> dict[str, str]:
        if isinstance(v, bool):
            return {"type": "boolean"}
        if isinstance(v, int):
            return {"type": "integer"}
        if isinstance(v, float):
            return {"type": "number"}
        if isinstance(v, str):
            return {"type": "string"}
        if isinstance(v, list):
            return {"type": "array"}
        if isinstance(v, Mapping):
            return {"type": "object"}
        return {}

    return {
        "type": "object",
        "properties": {str(k): {"title": str(k), **typed(v)} for k, v in args.items()},
        "required": [str(k) for k in args],
    }


def check(
    schema: Mapping[str, Any], value: object, root: Mapping[str, Any] | None = None
) -> list[FieldError]:
    """Why ``value`` does not fit ``schema`` (empty: it fits), one entry per field at most.
    ``root`` holds the ``$defs`` a sub-schema's references point into."""
    full = dict(schema)
    defs = (root or {}).get("$defs")
    if isinstance(defs, Mapping) and "$defs" not in full:
        full["$defs"] = defs
    try:
        validator = jsonschema_rs.validator_for(full)
    except Exception:  # a schema the validator cannot read: LangGraph has the last word
        return []
    errors: dict[str | None, str] = {}
    for e in validator.iter_errors(value):
        path = list(e.instance_path)
        kind = e.kind
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            field: str | None = str(kind.property)
            text = "This is required."
        else:
            field = str(path[0]) if path else None
            text = _words(type(kind).__name__, kind, e.message)
        errors.setdefault(field, text)
    return list(errors.items())


# Plain words for a JSON Schema failure, by jsonschema-rs's error kind: {n} is its limit as a
# number, {limit} as it is, {pattern} its pattern, {message} the validator's own words.
_WORDS = {
    "Minimum": "Must be at least {n}.",
    "Maximum": "Must be at most {n}.",
    "ExclusiveMinimum": "Must be more than {n}.",
    "ExclusiveMaximum": "Must be less than {n}.",
    "MinLength": "Must be at least {limit} characters long.",
    "MaxLength": "Must be at most {limit} characters long.",
    "Pattern": "Must match the pattern {pattern}.",
    "Enum": "Pick one of the listed values.",
    "Type": "Wrong kind of value: {message}.",
    "AdditionalProperties": "Not expected here: {message}.",
}


def _words(name: str, kind: jsonschema_rs.ValidationErrorKind, message: str) -> str:
    """Plain words for one JSON Schema failure."""
    words = _WORDS.get(name)
    if words is None:
        return message[:300]
    limit = getattr(kind, "limit", None)
    return words.format(
        n=_n(limit),
        limit=limit,
        pattern=getattr(kind, "pattern", ""),
        message=message,
    )


def _n(v: object) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def refusal_errors(exc: ValidationError, inside: Sequence[str] = ()) -> list[FieldError]:
    """A resume value LangGraph refused (``pydantic.ValidationError``), as plain words per
    field. ``inside`` names the keys on the path to the fields (``edited_action``, ``args``
    for an edit), so ``edit.edited_action.args.to`` becomes field ``to``."""
    out: dict[str | None, str] = {}
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        for key in inside:
            if key in loc:
                loc = loc[loc.index(key) + 1 :]
        field = loc[0] if loc else None
        msg = str(err.get("msg") or "is not valid")
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err.get("type") == "missing":
            msg = "This is required"
        out.setdefault(field, msg.rstrip(".") + ".")
    return list(out.items())


def shown(value: object) -> str:
    """A value as a form shows it (text as is, anything else as JSON)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
