"""The desk API described as OpenAPI 3.1, written as data (served at
`/api/openapi.json`). A test checks that every `/api/` route of the app is here and
that the document validates, so the two cannot drift apart silently."""

from __future__ import annotations

from typing import Any

from aiohttp import web

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Bad input (the reason says which field)",
        401: "Missing or unknown bearer token",
        403: "The token's role may not do this",
        404: "No such item",
        409: "Conflict: held by someone else, already resolved, not claimed by you",
        503: "Feed or store unreachable; retry",
    }
    return {
        str(code): {"description": words[code], "content": {JSON: {"schema": _ref("Error")}}}
        for code in (401, 503, *codes)
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
STR = {"type": "string"}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
LEVEL = {"type": "string", "enum": ["urgent", "important", "general"]}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": bool(required),
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": False,  # an unknown field is a 400
                }
            }
        },
    }


def _operation(
    summary: str,
    role: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    request: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Role: {role} or above.",
        "security": [{"bearer": []}],
        # machine-readable for clients and for the test that walks this document
        "x-required-role": role,
        "responses": {**responses, **_errors(403, *errors)},
    }
    if parameters:
        op["parameters"] = parameters
    if request:
        op["requestBody"] = request
    return op


def _item_op(summary: str, role: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "post": _operation(
            summary,
            role,
            {"200": _ok(_ref("ItemAnswer"))},
            parameters=[ID_PARAM],
            request=request,
            errors=(400, 404, 409),
        )
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": STR, "reason": STR},
        "required": ["error", "reason"],
    },
    "Reason": {
        "type": "object",
        "properties": {"signal": STR, "detail": STR, "weight": {"type": "number"}},
    },
    "Record": {
        "type": "object",
        "description": "A masked record: no meta, no raw_ref (see the contact endpoint).",
        "properties": {
            "id": STR,
            "channel": STR,
            "source": STR,
            "received_at": {"type": "string", "format": "date-time"},
            "author": {"type": "string", "description": "masked"},
            "text": {"type": "string", "description": "masked"},
            "rating": {"type": ["integer", "null"]},
            "customer_ref": STR,
            "kind": STR,
            "sentiment": {"type": ["object", "null"]},
            "urgency": LEVEL,
            "category": STR,
            "business": STR,
            "reasons": {"type": "array", "items": _ref("Reason")},
            "due_at": NULLABLE_TIME,
            "status": {"type": "string", "enum": ["open", "claimed", "resolved"]},
            "owner": STR,
            "repeat_count": {"type": "integer"},
            "pii_found": {"type": "array", "items": STR},
        },
        "required": ["id", "channel", "text", "urgency", "status"],
    },
    "Item": {
        "allOf": [
            _ref("Record"),
            {
                "type": "object",
                "properties": {
                    "lease_expires_at": NULLABLE_TIME,
                    "breached": {"type": "boolean"},
                    "escalated": {"type": "boolean"},
                    "linked_to": STR,
                },
            },
        ]
    },
    "ItemAnswer": {
        "type": "object",
        "properties": {"item": {"oneOf": [_ref("Item"), {"type": "null"}]}},
    },
    "Outcome": {
        "type": ["object", "null"],
        "properties": {
            "code": STR,
            "note": STR,
            "resolved_by": STR,
            "resolved_at": NULLABLE_TIME,
            "satisfaction": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
            "follow_up_on": {"type": ["string", "null"], "format": "date"},
        },
    },
    "Sizes": {
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "description": "Open (unclaimed) items per level.",
    },
}

FEED_FILTERS = [
    _query("level", "urgency level", LEVEL),
    _query("channel", "e.g. phone, app_review, email, wechat", STR),
    _query("category", "product / service / process / policy", STR),
    _query("business", "accounts, cards, loans, wealth, insurance, payments, app", STR),
    _query("breached", "only items past due_at (true) or not (false)", {"type": "boolean"}),
    _query("owner", "the items this agent holds instead of the open feed", STR),
    _query("limit", "at most this many (default 50)", {"type": "integer", "minimum": 1}),
]

PATHS: dict[str, Any] = {
    "/api/me": {
        "get": _operation(
            "Who the token belongs to",
            "viewer",
            {"200": _ok({"type": "object", "properties": {"name": STR, "role": STR}})},
        )
    },
    "/api/feed": {
        "get": _operation(
            "Open items, most pressing first (level, breached, due_at)",
            "viewer",
            {
                "200": _ok(
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": _ref("Item")},
                            "sizes": _ref("Sizes"),
                        },
                    }
                )
            },
            parameters=FEED_FILTERS,
            errors=(400,),
        )
    },
    "/api/next": {
        "post": _operation(
            "Claim the most pressing open item (item null when the feed is empty)",
            "agent",
            {"200": _ok(_ref("ItemAnswer"))},
        )
    },
    "/api/items/{id}": {
        "get": _operation(
            "An item with its reasons, turns, outcome, audit trail and the customer's "
            "other records on every channel",
            "viewer",
            {
                "200": _ok(
                    {
                        "type": "object",
                        "properties": {
                            "item": _ref("Item"),
                            "turns": {"type": "array", "items": {"type": "object"}},
                            "outcome": _ref("Outcome"),
                            "history": {"type": "array", "items": _ref("Record")},
                            "audit": {"type": "array", "items": {"type": "object"}},
                        },
                    }
                )
            },
            parameters=[ID_PARAM],
            errors=(404,),
        )
    },
    "/api/items/{id}/claim": _item_op("Claim this item with a lease", "agent"),
    "/api/items/{id}/renew": _item_op("Extend your lease", "agent"),
    "/api/items/{id}/release": _item_op("Give the item back to the feed", "agent"),
    "/api/items/{id}/resolve": {
        "post": _operation(
            "Resolve an item you hold; the outcome is stored with the record",
            "agent",
            {
                "200": _ok(
                    {
                        "type": "object",
                        "properties": {
                            "item": _ref("Item"),
                            "stored": {"type": "boolean"},
                        },
                    }
                )
            },
            parameters=[ID_PARAM],
            request=_body(
                {
                    "code": {"type": "string", "maxLength": 64},
                    "note": STR,
                    "satisfaction": {"type": "integer", "minimum": 1, "maximum": 5},
                    "follow_up_on": {"type": "string", "format": "date"},
                },
                ["code"],
            ),
            errors=(400, 404, 409),
        )
    },
    "/api/items/{id}/survey": {
        "post": _operation(
            "Record the customer's satisfaction (1-5) and/or the follow-up date later",
            "agent",
            {"200": _ok({"type": "object", "properties": {"outcome": _ref("Outcome")}})},
            parameters=[ID_PARAM],
            request=_body(
                {
                    "satisfaction": {"type": "integer", "minimum": 1, "maximum": 5},
                    "follow_up_on": {"type": "string", "format": "date"},
                },
                [],
            ),
            errors=(400, 404),
        )
    },
    "/api/items/{id}/reassign": _item_op(
        "Give an item to another agent", "supervisor", _body({"to": STR}, ["to"])
    ),
    "/api/items/{id}/escalate": _item_op(
        "Raise an item to urgent", "agent", _body({"reason": STR}, ["reason"])
    ),
    "/api/items/{id}/contact": {
        "get": _operation(
            "The record's contact data: the sealed identifier opened (`contact`, when "
            "`[classify] contact_key` is set), masked author, channel extras, raw reference; "
            "every call is written to the audit trail first",
            "agent",
            {"200": _ok({"type": "object"})},
            parameters=[ID_PARAM, _query("reason", "why (kept in the audit trail)", STR)],
            errors=(404,),
        )
    },
    "/api/stats": {
        "get": _operation(
            "Volume by channel / level / category per bucket, unresolved and breached "
            "counts, handling time, timeout rate against the 5 % goal, CSAT",
            "supervisor",
            {"200": _ok({"type": "object"})},
            parameters=[
                _query("days", "window length (default 7)", {"type": "integer", "minimum": 1}),
                _query("bucket", "hour or day", {"type": "string", "enum": ["hour", "day"]}),
            ],
            errors=(400,),
        )
    },
    "/api/events": {
        "get": _operation(
            "Server-Sent Events: new, updated, claimed, released, resolved, breached, "
            "escalated, reassigned; resumes after the Last-Event-ID header",
            "viewer",
            {
                "200": {
                    "description": "An endless event stream with heartbeats",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
            },
            parameters=[
                {"name": "Last-Event-ID", "in": "header", "required": False, "schema": STR}
            ],
            errors=(400,),  # a Last-Event-ID that is no event id of this feed
        )
    },
    "/api/openapi.json": {
        "get": _operation("This document", "viewer", {"200": _ok({"type": "object"})})
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "feedback-ingest complaint desk",
            "version": "1",
            "description": "Roles: viewer < agent < supervisor. Agents see masked text; "
            "contact data only through the audited contact endpoint.",
        },
        "servers": [{"url": "/"}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def undocumented(app: web.Application) -> list[str]:
    """`METHOD /path` of every `/api/` route that the document does not describe."""
    missing = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        method = route.method.lower()
        if not path.startswith("/api/") or method == "head":
            continue
        if method not in PATHS.get(path, {}):
            missing.append(f"{route.method} {path}")
    return missing
