"""The OpenAPI 3.1 document of the HTTP API (``GET /api/openapi.json``), built on request by
``document()``: the endpoints in ``bot/api.py`` and nothing else. tests/scenario/test_api.py
checks the API against it with schemathesis."""

from __future__ import annotations

from bot.jsontypes import JSON, JSONObject

ID_PATTERN = r"^[0-9A-Za-z_-]{1,128}$"
USER_PATTERN = r"^[UW][A-Z0-9]{2,}$"
KEY_PATTERN = r"^[!-~]{1,200}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,400}$"
MAX_LIMIT = 100
DEFAULT_LIMIT = 50
COMMENT_MAX = 3000
CHOICE_MAX = 100


def _ref(name: str) -> JSONObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> JSONObject:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _schemas() -> JSONObject:
    text: JSONObject = {"type": "string"}
    return {
        "Error": {
            "type": "object",
            "description": "A refusal: `error` for programs, `message` in words for people.",
            "required": ["error", "message"],
            "additionalProperties": False,
            "properties": {"error": text, "message": text},
        },
        "Choice": {
            "type": "object",
            "required": ["id", "label"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "description": "What `choice` names to pick it."},
                "label": {"type": "string", "description": "The button's words in Slack."},
            },
        },
        "Field": {
            "type": "object",
            "required": ["label", "value"],
            "additionalProperties": False,
            "properties": {"label": text, "value": text},
        },
        "Approval": {
            "type": "object",
            "required": [
                "id",
                "run_id",
                "title",
                "text",
                "fields",
                "choices",
                "requester",
                "created_at",
                "channel",
            ],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "description": "The interrupt id: the approval's id."},
                "run_id": {"type": "string", "description": "The run (LangGraph thread id)."},
                "title": text,
                "text": text,
                "fields": {"type": "array", "items": _ref("Field")},
                "choices": {"type": "array", "items": _ref("Choice")},
                "requester": {"type": "string", "description": "Slack user id of who asked."},
                "created_at": {"type": "string", "format": "date-time"},
                "channel": {
                    "type": ["string", "null"],
                    "description": "The Slack channel it is posted in (null: not known yet).",
                },
            },
        },
        "ApprovalPage": {
            "type": "object",
            "required": ["approvals", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "approvals": {"type": "array", "items": _ref("Approval")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last page.",
                },
            },
        },
        "DecisionRequest": {
            "type": "object",
            "required": ["choice"],
            "additionalProperties": False,
            "properties": {
                "choice": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": CHOICE_MAX,
                    "description": "A choice id of the approval, e.g. `approve` or `reject`.",
                },
                "as": {
                    "type": "string",
                    "pattern": USER_PATTERN,
                    "description": (
                        "The Slack user deciding. A token with a fixed `as` in the policy "
                        "decides as that user (omit this, or give the same id); a token with "
                        "`act_as` must name one of the users listed there."
                    ),
                },
                "comment": {
                    "type": ["string", "null"],
                    "maxLength": COMMENT_MAX,
                    "description": "Why; required when the policy asks for a comment.",
                },
            },
        },
        "DecisionResult": {
            "type": "object",
            "required": ["status", "text", "id", "run_id"],
            "additionalProperties": False,
            "properties": {
                "status": {
                    "type": "string",
                    "enum": ["decided", "voted", "accepted"],
                    "description": (
                        "`decided`: this decision ended the approval; `voted`: counted, more "
                        "approvals are needed; `accepted`: still being recorded (send the "
                        "same request again to see how it ended)."
                    ),
                },
                "text": {"type": "string", "description": "What happened, in plain words."},
                "id": text,
                "run_id": text,
            },
        },
    }


def document() -> JSONObject:
    """The whole document, as served."""
    bearer: list[JSON] = [{"bearer": []}]
    unauthorized = _error("No token, or not a token in the policy file's `[api] tokens`.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Approvals API",
            "version": "1",
            "description": (
                "Pending approvals of the Slack approvals bot, and deciding them outside "
                "Slack with the same rules, the same exactly-once claim and the same message "
                "updates as a click. Tokens are listed (as SHA-256 hashes) in the policy "
                "file's `[api] tokens`, with the scopes `read` and/or `decide`."
            ),
        },
        "paths": {
            "/api/approvals": {
                "get": {
                    "operationId": "listApprovals",
                    "summary": "Pending approvals, oldest first, one page at a time.",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIMIT,
                                "default": DEFAULT_LIMIT,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                            "description": "`next_cursor` of the page before.",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "One page.",
                            "content": {"application/json": {"schema": _ref("ApprovalPage")}},
                        },
                        "401": unauthorized,
                        "403": _error("The token lacks the `read` scope."),
                        "422": _error("`limit` or `cursor` is not one this API gave out."),
                    },
                }
            },
            "/api/approvals/{id}/decision": {
                "post": {
                    "operationId": "decide",
                    "summary": "Decide (or vote on) one approval.",
                    "description": (
                        "Idempotent by `Idempotency-Key` (kept 24 hours, per token): the same "
                        "key with the same body answers what the first request was answered; "
                        "the same key with another body is refused with 409."
                    ),
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": ID_PATTERN},
                        },
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string", "pattern": KEY_PATTERN},
                            "description": "A new value (a UUID, say) per decision.",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("DecisionRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "Decided, or the vote counted.",
                            "content": {"application/json": {"schema": _ref("DecisionResult")}},
                        },
                        "202": {
                            "description": "Accepted; still being recorded.",
                            "content": {"application/json": {"schema": _ref("DecisionResult")}},
                        },
                        "400": _error(
                            "No usable Idempotency-Key header, or the request could not be "
                            "handled (retry it with the same key)."
                        ),
                        "401": unauthorized,
                        "403": _error(
                            "The token lacks the `decide` scope or may not decide as that "
                            "user, or the policy refuses the decision (the message says why)."
                        ),
                        "404": _error("No such approval."),
                        "409": _error(
                            "Already decided (the message says how), or the Idempotency-Key "
                            "was used for another request or is still being answered."
                        ),
                        "422": _error("The body is not a decision this approval can take."),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token whose SHA-256 is in the policy's `[api] tokens`.",
                }
            },
            "schemas": _schemas(),
        },
    }
