"""Pure pieces of decisions that carry data: schema -> fields, fields -> a modal Slack accepts,
a submitted modal -> the answer (or errors per input), the shapes' choices and resume values,
and private values."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from bot.interrupts import (
    HIDDEN,
    DecisionRecord,
    normalise,
    private_values,
    redact,
    resume_value,
)
from bot.localslack.blockkit import validate_view
from bot.render import forms
from bot.schema import check, object_fields, refusal_errors
from graphs.approval import approval_payload


class Answer(BaseModel):
    """An answer"""

    name: str = Field(description="Who")
    count: int = Field(ge=1, le=10)
    ratio: float = 0.5
    ok: bool = False
    env: Literal["staging", "prod"] = "staging"
    note: str | None = None
    tags: list[str] = []


SCHEMA = TypeAdapter(Answer).json_schema()
TOOL = {"type": "tool_approval", "tool_call_id": "c1", "name": "refund", "description": "Refund?"}


def per_call(allowed: list[str], args_schema: dict[str, Any]) -> dict[str, Any]:
    """A per_call response_schema of the shape the middleware publishes."""
    defs: dict[str, Any] = {"refund": args_schema}
    branches = []
    for d in allowed:
        props: dict[str, Any] = {"type": {"const": d, "type": "string"}}
        if d == "edit":
            props["edited_action"] = {
                "type": "object",
                "properties": {"name": {"const": "refund"}, "args": {"$ref": "#/$defs/refund"}},
            }
        defs[d] = {"type": "object", "properties": props, "required": ["type"]}
        branches.append({"$ref": f"#/$defs/{d}"})
    return {"$defs": defs, "oneOf": branches}


ARGS = {
    "type": "object",
    "properties": {"order": {"type": "string"}, "amount": {"type": "integer"}},
    "required": ["order", "amount"],
}


def test_fields_are_typed_from_the_schema() -> None:
    fields = {f.name: f for f in object_fields(SCHEMA)}
    assert {n: f.kind for n, f in fields.items()} == {
        "name": "text",
        "count": "integer",
        "ratio": "number",
        "ok": "boolean",
        "env": "choice",
        "note": "text",
        "tags": "json",
    }
    assert [n for n, f in fields.items() if f.required] == ["name", "count"]
    assert fields["name"].description == "Who" and fields["env"].options == ("staging", "prod")
    assert (fields["count"].minimum, fields["count"].maximum) == (1, 10)


def form_request() -> Any:
    return normalise({"q": "fill it"}, {"response_schema": SCHEMA})


def test_every_modal_is_one_slack_accepts() -> None:
    requests = [
        form_request(),
        normalise(
            {**TOOL, "args": {"order": "A-1", "amount": 5}},
            {"response_schema": per_call(["approve", "edit", "reject", "respond"], ARGS)},
        ),
        normalise(
            {
                "action_requests": [
                    {"name": "refund", "args": {"order": "A-1", "amount": 5, "x": [1]}},
                    {"name": "lookup", "args": {"customer": "ACME"}},
                ],
                "review_configs": [
                    {"action_name": "refund", "allowed_decisions": ["approve", "edit", "reject"]},
                    {"action_name": "lookup", "allowed_decisions": ["approve", "respond"]},
                ],
            }
        ),
    ]
    for request in requests:
        for i, choice in enumerate(request.choices):
            if choice.form:
                for comment in ("none", "optional", "required"):
                    view = forms.form_modal(request, i, "iid", "C0DEPLOYS", comment)
                    assert validate_view(view) == [], (choice.id, comment)


def values(view: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """state.values as Slack sends them for ``given`` (block_id -> text, option value,
    or a list of checkbox values)."""
    out: dict[str, Any] = {}
    for b in view["blocks"]:
        if b["type"] != "input":
            continue
        e, v = b["element"], given.get(b["block_id"])
        if e["type"] == "static_select":
            option = next((o for o in e["options"] if v in (o["value"], o["text"]["text"])), None)
            state = {"type": e["type"], "selected_option": option or e.get("initial_option")}
        elif e["type"] == "checkboxes":
            state = {"type": e["type"], "selected_options": e["options"] if v else []}
        else:
            state = {"type": e["type"], "value": v if v is not None else e.get("initial_value")}
        out[b["block_id"]] = {forms.VALUE: state}
    return out


def test_a_form_reads_back_typed_or_with_errors_per_input() -> None:
    request = form_request()
    view = forms.form_modal(request, 0, "iid", "C", "none")
    read = forms.read_form(
        request,
        request.choices[0],
        values(
            view,
            {
                "f0": "bob",
                "f1": "3",
                "f2": "2.5",
                "f3": True,
                "f4": "prod",
                "f6": '["a"]',
            },
        ),
    )
    assert read.errors == {}
    assert read.answer == {
        "name": "bob",
        "count": 3,
        "ratio": 2.5,
        "ok": True,
        "env": "prod",
        "tags": ["a"],
    }
    TypeAdapter(Answer).validate_python(read.answer)  # what LangGraph will check
    bad = forms.read_form(
        request,
        request.choices[0],
        values(
            view,
            {
                "f0": "",
                "f1": "3.5",
                "f2": "x",
                "f6": "[oops",
            },
        ),
    )
    assert bad.errors == {
        "f0": "This is required.",
        "f1": "Enter a whole number, like 3.",
        "f2": "Enter a number, like 2.5.",
        "f6": 'Enter JSON, for example {"key": "value"}, [1, 2] or "text".',
    }
    high = forms.read_form(request, request.choices[0], values(view, {"f0": "b", "f1": "11"}))
    assert high.errors == {"f1": "Must be at most 10."}


def test_per_call_offers_only_the_allowed_decisions() -> None:
    request = normalise(
        {**TOOL, "args": {"order": "A-1", "amount": 5}},
        {"response_schema": per_call(["approve", "reject"], ARGS)},
    )
    assert [c.id for c in request.choices] == ["approve", "reject"]
    full = normalise(
        {**TOOL, "args": {"order": "A-1", "amount": 5}},
        {"response_schema": per_call(["approve", "edit", "reject", "respond"], ARGS)},
    )
    assert [c.id for c in full.choices] == ["approve", "edit", "reject", "respond"]
    assert full.actions[0].schema == ARGS


def decided(choice: str, approved: bool, answer: Any = None, comment: str | None = None) -> Any:
    return DecisionRecord(
        choice=choice,
        approved=approved,
        decided_by="U0BOB",
        comment=comment,
        decided_at=0.0,
        answer=answer,
    )


def test_resume_values_are_what_each_producer_expects() -> None:
    tool = normalise(
        {**TOOL, "args": {"order": "A-1", "amount": 5}},
        {"response_schema": per_call(["approve", "edit", "reject", "respond"], ARGS)},
    )
    edit = decided("edit", True, {"order": "A-1", "amount": 7})
    assert resume_value(tool, edit) == {
        "type": "edit",
        "edited_action": {"name": "refund", "args": {"order": "A-1", "amount": 7}},
    }
    assert resume_value(tool, decided("respond", False, "done")) == {
        "type": "respond",
        "message": "done",
    }
    assert resume_value(tool, decided("reject", False, comment="no")) == {
        "type": "reject",
        "message": "no",
    }
    assert resume_value(tool, decided("timeout", False)) == {"type": "reject"}
    batch = normalise(
        {
            "action_requests": [{"name": "a", "args": {}}, {"name": "b", "args": {}}],
            "review_configs": [
                {"action_name": "a", "allowed_decisions": ["approve", "reject"]},
                {"action_name": "b", "allowed_decisions": ["approve", "reject"]},
            ],
        }
    )
    assert resume_value(batch, decided("approve", True)) == {
        "decisions": [{"type": "approve"}, {"type": "approve"}]
    }
    review = [{"type": "approve"}, {"type": "reject"}]
    assert resume_value(batch, decided("review", True, review)) == {"decisions": review}
    inbox = normalise(
        {
            "action_request": {"action": "refund", "args": {"amount": 1}},
            "config": {
                "allow_accept": True,
                "allow_edit": True,
                "allow_respond": True,
                "allow_ignore": True,
            },
        }
    )
    assert [c.id for c in inbox.choices] == ["approve", "edit", "respond", "ignore"]
    assert resume_value(inbox, decided("edit", True, {"amount": 2})) == [
        {"type": "edit", "args": {"action": "refund", "args": {"amount": 2}}}
    ]
    assert resume_value(inbox, decided("respond", False, "later")) == [
        {"type": "response", "args": "later"}
    ]
    form = form_request()
    assert resume_value(form, decided("answer", True, {"name": "x"})) == {"name": "x"}
    assert resume_value(form, decided("cancelled", False))["choice"] == "cancelled"


def test_private_values_are_hidden_unless_revealed() -> None:
    payload = approval_payload(
        title="Refund?", fields=[("Order", "A-1"), ("Card", "4111 1111")], private=["Card"]
    )
    shown = normalise(payload)
    assert dict(shown.fields) == {"Order": "A-1", "Card": HIDDEN} and shown.hidden
    assert dict(normalise(payload, reveal=True).fields)["Card"] == "4111 1111"
    assert private_values(payload) == ["4111 1111"]
    tool = {
        **TOOL,
        "args": {"order": "A-1", "card": "4111 1111"},
        "description": "Tool execution requires approval\n\nArgs: {'card': '4111 1111'}",
    }
    hidden = normalise(tool, {"private": ["card"]})
    assert "4111" not in repr((hidden.fields, hidden.text, hidden.title)) and hidden.hidden
    assert redact("Charged 4111 1111 today", private_values(tool, {"private": ["card"]})) == (
        f"Charged {HIDDEN} today"
    )
    assert not normalise(tool).hidden


def test_a_refusal_from_langgraph_is_put_in_plain_words() -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Answer).validate_python({"count": 0})
    assert dict(refusal_errors(caught.value)) == {
        "name": "This is required.",
        "count": "Input should be greater than or equal to 1.",
    }
    assert check(SCHEMA, {"name": "x", "count": 0}) == [("count", "Must be at least 1.")]
