"""Normalise whatever a graph passed to interrupt() into one ApprovalRequest, and turn a
human decision back into the resume value that shape expects.

Everything the bot renders goes through ``normalise``; new interrupt shapes are added here
and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bot.jsontypes import JSON, JSONObject
from bot.model import DecisionRecord
from bot.schema import inferred, resolve
from graphs.approval import KIND


@dataclass(frozen=True)
class ChoiceSpec:
    """One way to decide. ``form`` names the modal a choice opens instead of deciding at once
    (``edit`` the arguments, ``respond`` in the tool's place, ``answer`` a response_schema
    form, ``review`` each call of a batch); ``past`` is how the decided message says it."""

    id: str
    label: str
    style: str | None = None
    approves: bool = False
    comment: str = "none"  # none | optional | required
    form: str | None = None
    past: str | None = None


def needs_comment(comment_required: Collection[str], choice: ChoiceSpec) -> bool:
    """Whether picking ``choice`` needs a comment: the policy asks one for its kind
    (``comment_required``: "approve", "reject"), or the request asks one for this choice."""
    kind = "approve" if choice.approves else "reject"
    return kind in comment_required or choice.comment == "required"


@dataclass(frozen=True)
class ToolAction:
    """One tool call a person reviews: what the model asked for, which decisions its
    producer allows, and the schema an edit of its arguments must match (``root`` holds the
    ``$defs`` that schema refers to)."""

    name: str
    args: JSONObject
    allowed: tuple[str, ...]
    schema: JSONObject
    root: JSONObject = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class ApprovalRequest:
    """The bot's view of one pending interrupt, whatever shape the graph used: what to show
    and which choices to offer. Who may decide is the policy's (``bot.policy.rules.Rules``), merged
    with what the graph asked for when the approval opens."""

    title: str
    text: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    choices: tuple[ChoiceSpec, ...] = ()
    reject_with_reason: bool = True
    shape: str = KIND
    actions: tuple[ToolAction, ...] = ()  # the tool calls a HITL request answers
    form: JSONObject | None = None  # the response_schema an ``answer`` must match
    hidden: bool = False  # some values are private: shown only to eligible approvers

    def choice(self, choice_id: str) -> ChoiceSpec | None:
        return next((c for c in self.choices if c.id == choice_id), None)

    def choice_at(self, index: int) -> ChoiceSpec | None:
        """The choice at ``index`` (a button's position, from a click or a modal's metadata);
        None when there is none there, as for a message drawn from an older request."""
        return self.choices[index] if 0 <= index < len(self.choices) else None

    @property
    def approve_choice(self) -> ChoiceSpec | None:
        """The first choice that counts as a yes."""
        return next((c for c in self.choices if c.approves), None)

    @property
    def reject_choice(self) -> ChoiceSpec | None:
        """The choice a "Reject with reason…" modal submits: the first that does not approve
        and opens no form of its own."""
        return next((c for c in self.choices if not c.approves and c.form is None), None)


APPROVE = ChoiceSpec("approve", "Approve", "primary", approves=True)
REJECT = ChoiceSpec("reject", "Reject", "danger")
EDIT = ChoiceSpec("edit", "Edit…", approves=True, form="edit", past="Edited")
RESPOND = ChoiceSpec("respond", "Respond…", form="respond", past="Responded")
ANSWER = ChoiceSpec("answer", "Answer…", "primary", approves=True, form="answer", past="Answered")
REVIEW = ChoiceSpec("review", "Review each…", approves=True, form="review", past="Reviewed")
APPROVE_ALL = ChoiceSpec("approve", "Approve all", "primary", approves=True)
REJECT_ALL = ChoiceSpec("reject", "Reject all", "danger")
IGNORE = ChoiceSpec("ignore", "Ignore", "danger")

HITL_DECISIONS = ("approve", "edit", "reject", "respond")
HIDDEN = "🔒 hidden"
JSON_SHOWN = 2000  # characters of a JSON value shown in its code block


def normalise(
    value: object, meta: Mapping[str, object] | None = None, reveal: bool = False
) -> ApprovalRequest:
    """Map an interrupt value to an ApprovalRequest; any other value becomes a plain
    question showing it, so no interrupt is ever left without buttons.

    ``meta`` is what the bot stored beside the value when the approval opened: the
    interrupt's ``response_schema`` and the graph's ``private`` field names. Private values
    are shown as "hidden" unless ``reveal`` (for an eligible approver's eyes only)."""
    meta = meta or {}
    raw_schema = meta.get("response_schema")
    schema = raw_schema if isinstance(raw_schema, Mapping) else None
    private = frozenset(_names(meta.get("private")))
    if isinstance(value, Mapping):
        private |= frozenset(_names(value.get("private")))
    hide = _Hider(frozenset() if reveal else private)
    if isinstance(value, Mapping):
        if value.get("kind") == KIND:
            return hide.done(_own(value, hide))
        if value.get("type") == "tool_approval" and isinstance(value.get("args"), Mapping):
            return hide.done(_tool_approval(value, schema, hide))
        if isinstance(value.get("action_requests"), list) and value["action_requests"]:
            return hide.done(_hitl_batch(value, hide))
        if isinstance(value.get("action_request"), Mapping):
            return hide.done(_agent_inbox(value, hide))
    if _inbox_list(value):
        # Agent Inbox as LangGraph documents it: ``interrupt([request])[0]``.
        assert isinstance(value, list)
        return hide.done(_agent_inbox(value[0], hide))
    if schema is not None:
        return hide.done(_form(value, dict(schema), hide))
    if isinstance(value, str):
        return ApprovalRequest(
            title="Approval needed", text=value, choices=(APPROVE, REJECT), shape="text"
        )
    return hide.done(
        ApprovalRequest(
            title="Approval needed",
            text=code(hide.value(value)),
            choices=(APPROVE, REJECT),
            shape="json",
        )
    )


def _inbox_list(value: object) -> bool:
    """A list of one Agent Inbox ``HumanInterrupt``."""
    return (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], Mapping)
        and isinstance(value[0].get("action_request"), Mapping)
    )


def _names(listed: object) -> list[str]:
    """Private field names, from a list of strings (anything else names nothing)."""
    return [p for p in listed if isinstance(p, str)] if isinstance(listed, list | tuple) else []


def private_values(value: object, meta: Mapping[str, object] | None = None) -> list[str]:
    """The private values of an interrupt as text, longest first: what must not reach a
    channel even when the graph repeats them (an agent's last message quoting an argument)."""
    private = set(_names((meta or {}).get("private")))
    if isinstance(value, Mapping):
        private |= set(_names(value.get("private")))
    found: set[str] = set()

    def walk(v: object) -> None:
        if isinstance(v, Mapping):
            if v.get("kind") == KIND:
                found.update(str(val) for k, val in v.get("fields", ()) if str(k) in private)
            for k, item in v.items():
                if str(k) in private and not isinstance(item, Mapping | list):
                    found.add(item if isinstance(item, str) else json.dumps(item))
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    if private:
        walk(value)
    return sorted((f for f in found if len(f) >= 3), key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each private value replaced by "hidden"."""
    for secret in secrets:
        text = text.replace(secret, HIDDEN)
    return text


class _Hider:
    """Replaces private values with "hidden", remembering whether it did."""

    def __init__(self, private: frozenset[str]) -> None:
        self.private = private
        self.hid = False

    def value(self, v: object) -> object:
        """A copy of ``v`` with the values of private keys hidden, at any depth."""
        if isinstance(v, Mapping):
            out: dict[object, object] = {}
            for k, item in v.items():
                if str(k) in self.private:
                    self.hid = True
                    out[k] = HIDDEN
                else:
                    out[k] = self.value(item)
            return out
        if isinstance(v, list):
            return [self.value(i) for i in v]
        return v

    def field(self, name: str, shown: str) -> tuple[str, str]:
        if name in self.private:
            self.hid = True
            return name, HIDDEN
        return name, shown

    def done(self, request: ApprovalRequest) -> ApprovalRequest:
        return replace(request, hidden=self.hid) if self.hid else request


def code(value: object) -> str:
    """A JSON value as a code block, cut to what a message can show."""
    shown = json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    if len(shown) > JSON_SHOWN:
        shown = shown[: JSON_SHOWN - 1] + "…"
    return f"```\n{shown}\n```"


def _arguments(args: Mapping[str, Any], hide: _Hider) -> tuple[tuple[str, str], ...]:
    return tuple(
        hide.field(
            str(k), v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=repr)
        )
        for k, v in args.items()
    )


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one: a field of an interrupt value that
    should hold an object but may hold anything."""
    return value if isinstance(value, Mapping) else {}


def _decision_choices(allowed: Sequence[str]) -> tuple[ChoiceSpec, ...]:
    """The buttons for one tool call, in the order people read them."""
    by_type = {"approve": APPROVE, "edit": EDIT, "reject": REJECT, "respond": RESPOND}
    return tuple(by_type[d] for d in HITL_DECISIONS if d in allowed)


def _per_call_schema(schema: Mapping[str, Any] | None) -> tuple[tuple[str, ...], dict[str, Any]]:
    """From a ``per_call`` interrupt's response_schema: the decisions it allows, and the
    schema of an edit's ``args`` (the tool's own argument schema)."""
    if schema is None:
        return ("approve", "reject"), {}
    branches = schema.get("oneOf") or schema.get("anyOf")
    allowed: list[str] = []
    args: dict[str, Any] = {}
    for branch in branches if isinstance(branches, list) else [schema]:
        b = resolve(branch, schema)
        props = _mapping(b.get("properties"))
        t = resolve(props.get("type"), schema)
        enum = t["enum"] if isinstance(t.get("enum"), list) else [None]
        kind = t.get("const", enum[0] if enum else None)
        if not isinstance(kind, str) or kind not in HITL_DECISIONS:
            continue
        allowed.append(kind)
        if kind == "edit":
            action = resolve(props.get("edited_action"), schema)
            inner = action.get("properties")
            args = resolve(inner.get("args") if isinstance(inner, Mapping) else None, schema)
    return tuple(allowed) or ("approve", "reject"), args


def _tool_approval(
    v: Mapping[str, Any], schema: Mapping[str, Any] | None, hide: _Hider
) -> ApprovalRequest:
    """LangChain's HumanInTheLoopMiddleware, ``per_call`` mode: one tool call, whose
    response_schema says which decisions it allows and what an edit's arguments are."""
    name = str(v.get("name") or "a tool")
    allowed, args_schema = _per_call_schema(schema)
    action = ToolAction(
        name,
        dict(v["args"]),
        allowed,
        args_schema if args_schema.get("properties") else inferred(v["args"]),
        dict(schema or {}),
        str(v.get("description") or ""),
    )
    return ApprovalRequest(
        title=f"Run {name}?",
        text=_described(action, hide),
        fields=(("Tool", name), *_arguments(v["args"], hide)),
        choices=_decision_choices(allowed),
        reject_with_reason="reject" in allowed,
        shape="tool_approval",
        actions=(action,),
    )


def _described(action: ToolAction, hide: _Hider) -> str:
    """A tool call's description, without the tool and arguments the middleware's default
    one repeats (``"<prefix>\\n\\nTool: <name>\\nArgs: {...}"``: the message shows them as
    fields). A description of its own may quote the arguments too: with private ones, only
    its first line is shown."""
    text = action.description
    default = text.rfind(f"\n\nTool: {action.name}\nArgs: {{")
    if default >= 0 and text.endswith("}"):
        return text[:default]
    if any(str(k) in hide.private for k in action.args):
        hide.hid = True
        return text.split("\n", 1)[0]
    return text


def _hitl_batch(v: Mapping[str, Any], hide: _Hider) -> ApprovalRequest:
    """LangChain's HumanInTheLoopMiddleware, ``batched`` mode: every gated call of one model
    turn. One call gets the same buttons as ``per_call``; several get Approve all / Reject
    all (where every call allows it) and "Review each…", a modal with a decision per call."""
    requests = [a for a in v["action_requests"] if isinstance(a, Mapping)]
    configs = [c for c in v.get("review_configs") or () if isinstance(c, Mapping)]
    by_name = {str(c.get("action_name")): c for c in configs}
    actions: list[ToolAction] = []
    for i, a in enumerate(requests):
        name = str(a.get("name") or "a tool")
        config = configs[i] if len(configs) == len(requests) else by_name.get(name, {})
        raw = config.get("allowed_decisions")
        listed = raw if isinstance(raw, list) else HITL_DECISIONS
        allowed = tuple(str(d) for d in listed if d in HITL_DECISIONS) or ("approve", "reject")
        args = dict(a["args"]) if isinstance(a.get("args"), Mapping) else {}
        actions.append(
            ToolAction(name, args, allowed, inferred(args), {}, str(a.get("description") or ""))
        )
    fields: list[tuple[str, str]] = []
    for i, action in enumerate(actions, 1):
        shown = json.dumps(hide.value(action.args), ensure_ascii=False, default=repr)
        fields.append((f"{i}. {action.name}", shown))
        fields.append((f"{i}. allowed", ", ".join(action.allowed) or "any"))
    names = ", ".join(a.name for a in actions)
    described = "\n".join(_described(a, hide) for a in actions if a.description)
    if len(actions) == 1:
        choices = _decision_choices(actions[0].allowed)
    else:
        every = set.intersection(*(set(a.allowed) for a in actions))
        choices = tuple(
            c
            for c, needs in ((APPROVE_ALL, "approve"), (REVIEW, None), (REJECT_ALL, "reject"))
            if needs is None or needs in every
        )
    return ApprovalRequest(
        title=f"Run {names}?" if len(actions) == 1 else f"Run {len(actions)} tool calls?",
        text=described,
        fields=tuple(fields),
        choices=choices,
        reject_with_reason=any(c.id == "reject" for c in choices),
        shape="hitl_batched",
        actions=tuple(actions),
    )


def _agent_inbox(v: Mapping[str, Any], hide: _Hider) -> ApprovalRequest:
    """The deprecated Agent Inbox ``HumanInterrupt`` (still raised by older agents)."""
    action = v["action_request"]
    name = str(action.get("action") or "an action")
    args = dict(action["args"]) if isinstance(action.get("args"), Mapping) else {}
    config = _mapping(v.get("config"))
    offered = (
        (APPROVE, config.get("allow_accept", True)),
        (EDIT, config.get("allow_edit", False)),
        (RESPOND, config.get("allow_respond", False)),
        (IGNORE, config.get("allow_ignore", True)),
    )
    choices = tuple(c for c, allowed in offered if allowed)
    return ApprovalRequest(
        title=f"{name}?",
        text=str(v.get("description") or ""),
        fields=_arguments(args, hide),
        choices=choices or (APPROVE, REJECT),
        shape="agent_inbox",
        reject_with_reason=False,
        actions=(ToolAction(name, args, (), inferred(args)),),
    )


def _form(value: object, schema: dict[str, Any], hide: _Hider) -> ApprovalRequest:
    """``interrupt(value, response_schema=…)``: the answer is a form built from the schema."""
    if isinstance(value, str):
        return ApprovalRequest(
            title="Your answer is needed",
            text=value,
            choices=(ANSWER,),
            reject_with_reason=False,
            shape="form",
            form=schema,
        )
    about = str(schema.get("description") or "")
    shown = code(hide.value(value)) if value is not None else ""
    return ApprovalRequest(
        title=str(schema.get("title") or "Your answer is needed"),
        text="\n".join(t for t in (about, shown) if t),
        choices=(ANSWER,),
        reject_with_reason=False,
        shape="form",
        form=schema,
    )


def _own(v: Mapping[str, Any], hide: _Hider) -> ApprovalRequest:
    choices = tuple(
        ChoiceSpec(
            str(c["id"]),
            str(c["label"]),
            c.get("style"),
            bool(c.get("approves")),
            str(c.get("comment", "none")),
        )
        for c in v.get("choices", ())
    ) or (APPROVE, REJECT)
    return ApprovalRequest(
        title=str(v.get("title") or "Approval needed"),
        text=str(v.get("text") or ""),
        fields=tuple(hide.field(str(k), str(val)) for k, val in v.get("fields", ())),
        choices=choices,
        reject_with_reason=bool(v.get("reject_with_reason", True)),
        shape=KIND,
    )


def _hitl(action: ToolAction, d: DecisionRecord) -> JSONObject:
    """One HumanInTheLoopMiddleware decision for one tool call."""
    if d.choice == "edit" and isinstance(d.answer, Mapping):
        return {"type": "edit", "edited_action": {"name": action.name, "args": dict(d.answer)}}
    if d.choice == "respond":
        text = d.answer if isinstance(d.answer, str) else d.comment or ""
        return {"type": "respond", "message": text}
    if d.approved and ("approve" in action.allowed or not action.allowed):
        return {"type": "approve"}
    decision: JSONObject = {"type": "reject"}
    if d.comment:
        decision["message"] = d.comment
    return decision


def resume_value(request: ApprovalRequest, d: DecisionRecord) -> JSON:
    """The value ``Command(resume={interrupt_id: value})`` carries: exactly what the shape's
    producer expects (LangChain's HITL decisions, Agent Inbox responses, a form's answer, or
    our Decision)."""
    if request.shape == "tool_approval":
        return _hitl(request.actions[0], d)
    if request.shape == "hitl_batched":
        if d.choice == "review" and isinstance(d.answer, list):
            return {"decisions": d.answer}
        return {"decisions": [_hitl(a, d) for a in request.actions]}
    if request.shape == "agent_inbox":
        name = request.actions[0].name if request.actions else ""
        if d.choice == "edit" and isinstance(d.answer, Mapping):
            return [{"type": "edit", "args": {"action": name, "args": dict(d.answer)}}]
        if d.choice == "respond":
            text = d.answer if isinstance(d.answer, str) else d.comment or ""
            return [{"type": "response", "args": text}]
        if d.approved:
            return [{"type": "accept", "args": None}]
        if d.comment:
            return [{"type": "response", "args": d.comment}]
        return [{"type": "ignore", "args": None}]
    if request.shape == "form" and d.answer is not None:
        return d.answer
    at = datetime.fromtimestamp(d.decided_at, UTC).isoformat()
    return {
        "choice": d.choice,
        "approved": d.approved,
        "decided_by": d.decided_by,
        "comment": d.comment,
        "decided_at": at,
    }
