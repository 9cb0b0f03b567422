"""The JSON API's OpenAPI 3.1 document (issue 19), built here and committed as docs/openapi.json
(`python -m maild.ingress.api_spec > docs/openapi.json`; tests/test_api_spec.py proves them equal, and
that every route of maild.ingress.web_api is in it and nothing else).

To add an endpoint: a Route in web_api.ROUTES and its operation in PATHS below (with `_write(...)` for a
change, `_read(...)` for a read); a new body or answer shape goes into SCHEMAS."""

from __future__ import annotations

import json
import sys
from typing import Any

from maild.ingress.api_support import MAX_BODY

VERSION = "1"
_S = "string"
_NULLABLE_S: dict[str, Any] = {"type": [_S, "null"]}
_TIME: dict[str, Any] = {"type": _S, "format": "date-time", "examples": ["2026-03-01T10:00:00Z"]}
_NULLABLE_TIME: dict[str, Any] = {"type": [_S, "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None, **more: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        **more,
    }


def _strings(*names: str) -> dict[str, Any]:
    return {name: {"type": _S} for name in names}


TICKET = _object(
    {
        **_strings("number", "subject", "status", "priority", "desk", "customer"),
        "created_at": _TIME,
        "updated_at": _TIME,
        "message_count": {"type": "integer"},
    },
    description="A ticket as `maildctl ticket list --json` shows it.",
)
ATTACHMENT = _object(
    {
        **_strings("name", "type", "sha256"),
        "size": {"type": "integer"},
        "stored": {"type": "boolean"},
        "refused_reason": _NULLABLE_S,
        "inline": {"type": "boolean"},
        "content_id": _NULLABLE_S,
    }
)
RATING = _object(
    {"contact": {"type": _S}, "score": {"type": "integer"}, "comment": {"type": _S}, "rated_at": _TIME}
)
MESSAGE = _object(
    {
        "id": {"type": "integer"},
        **_strings("from", "kind", "subject", "text"),
        "visible_text": _NULLABLE_S,
        "has_html": {"type": "boolean"},
        "message_id": _NULLABLE_S,
        "threaded_by": _NULLABLE_S,
        "automatic": {**_NULLABLE_S, "description": "out-of-office, auto-generated, list … or null"},
        "attachments": {"type": "array", "items": _ref("Attachment")},
        "notes": {"type": "array", "items": {}},
        "created_at": _TIME,
        "ratings": {"type": "array", "items": _ref("Rating")},
    }
)
FLAG = _object({**_strings("agent", "note", "by"), "at": _TIME})
TICKET_DETAIL = {
    "description": "`maildctl ticket show --json`: a merged number shows its survivor, `merged_from` set.",
    "allOf": [
        _ref("Ticket"),
        _object(
            {
                "merged_from": _NULLABLE_S,
                "merged_tickets": {"type": "array", "items": {"type": _S}},
                "participants": {"type": "array", "items": {"type": _S}},
                "linked_ticket": _NULLABLE_S,
                "assigned_agent": _NULLABLE_S,
                "tags": {"type": "array", "items": {"type": _S}},
                "flags": {"type": "array", "items": _ref("Flag")},
                "messages": {"type": "array", "items": _ref("Message")},
            }
        ),
    ],
}
LOG_ENTRY = _object(
    {
        "at": _TIME,
        **_strings("actor", "action"),
        "ticket": _NULLABLE_S,
        "before": {},
        "after": {},
        "detail": {"type": "object"},
    },
    description="`maildctl ticket log --json`; a change by the API has the actor `api:<token name>`.",
)
CHANGE = _object(
    {**_strings("ticket", "action", "before", "after"), "changed": {"type": "boolean"}},
    description="A row of `maildctl ticket bulk --json`: before == after means it was so already. "
    "A note adds note_id; an assignment notice_queued; a reply message_id, sent_to, not_sent, "
    "status_before, status and notice_errors.",
    additionalProperties=True,
)
ERROR = _object(
    {"error": _object({"status": {"type": "integer"}, "message": {"type": _S}})},
    description="Every error, with the HTTP status repeated and one line saying what is wrong.",
)
SCHEMAS = {
    "Ticket": TICKET,
    "TicketDetail": TICKET_DETAIL,
    "Message": MESSAGE,
    "Attachment": ATTACHMENT,
    "Rating": RATING,
    "Flag": FLAG,
    "LogEntry": LOG_ENTRY,
    "Change": CHANGE,
    "Error": ERROR,
}

_ERRORS = {
    "400": "malformed JSON, field or parameter",
    "401": "no token, or an unknown or revoked one",
    "403": "a read token on a change",
    "404": "no such ticket (or tag on it), or no such endpoint",
    "405": "a method this endpoint does not take",
    "409": "the ticket is merged into another (act on the survivor) or changed meanwhile",
    "413": f"a body over {MAX_BODY} bytes",
    "422": "a value that names nothing known: status, priority, agent, desk, tag",
    "429": "over the token's requests a minute ([web] api_requests_per_minute); see Retry-After",
    "500": "a fault of maild's (logged)",
    "503": "the database is busy; see Retry-After",
}
_NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "schema": {"type": _S},
    "description": "e.g. SUP-26-11-3",
}
_FILTERS = {
    "desk": "only this desk",
    "status": "only this status (built-in or a desk's custom status)",
    "priority": "only this priority: low, normal, high, urgent",
    "tag": "only tickets with this tag",
    "customer": "only tickets of this customer (address)",
    "older_than": "only tickets without activity for this long: 30m, 12h, 14d or 2w",
    "flagged_for": "only tickets flagged for this agent (address or name)",
    "limit": "at most this many (1-10000), newest first; default: all",
}


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": _S},
        "description": description,
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": "done", **_json(ok)}}
    for code in ("401", "429", "500", "503", *codes):
        answers[code] = {"description": _ERRORS[code], **_json(_ref("Error"))}
    return dict(sorted(answers.items()))


def _created(ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    answers = {code: answer for code, answer in _responses(ok, *codes).items() if code != "200"}
    return dict(sorted({**answers, "201": {"description": "created", **_json(ok)}}.items()))


def _read(summary: str, ok: dict[str, Any], params: list[dict[str, Any]], *codes: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"bearer": ["read"]}],
        "parameters": params,
        "responses": _responses(ok, *codes),
    }


def _write(summary: str, body: dict[str, Any] | None, *codes: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": ["write"]}],
        "parameters": [_NUMBER],
        "responses": _responses(_ref("Change"), "403", "404", "409", "422", *codes),
    }
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    return operation


def _body(
    name: str, description: str, *, nullable: bool = False, optional: dict[str, str] | None = None
) -> dict[str, Any]:
    """A JSON object with the required string field `name` and `optional` ones (name: description)."""
    field = {"type": [_S, "null"] if nullable else _S, "description": description}
    more = {key: {"type": [_S, "null"], "description": text} for key, text in (optional or {}).items()}
    return _object({name: field, **more}, [name], additionalProperties=False)


_T = "/api/v1/tickets"
_NEW_TICKET = _object(
    {
        "desk": {"type": _S, "description": "the desk's name"},
        "to": {"type": _S, "description": "the customer's address"},
        "cc": {"type": ["array", "null"], "items": {"type": _S}, "description": "sub-customers' addresses"},
        "subject": {"type": _S, "description": "the ticket's subject"},
        "text": {"type": _S, "description": "the first mail's text"},
        "as": {"type": [_S, "null"], "description": "from this agent (address or name); absent: the desk"},
    },
    ["desk", "to", "subject", "text"],
    additionalProperties=False,
)
_BODY_ERRORS = ("400", "413")
_STATUS = "e.g. closed, or a custom status of the ticket's desk"
_PRIO = "low, normal, high or urgent"
_TAG = "1-100 letters, digits and - _ . : /"
PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/openapi.json": {
        "get": {
            "summary": "this document (no token needed)",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}},
        }
    },
    _T: {
        "get": _read(
            "list tickets, newest first (`maildctl ticket list --json`)",
            {"type": "array", "items": _ref("Ticket")},
            [
                {"name": n, "in": "query", "required": False, "schema": {"type": _S}, "description": d}
                for n, d in _FILTERS.items()
            ],
            "400",
            "422",
        ),
        "post": {
            "summary": "open a ticket for a customer, its first mail sent now (`maildctl ticket open`)",
            "security": [{"bearer": ["write"]}],
            "requestBody": {"required": True, **_json(_NEW_TICKET)},
            "responses": _created(_ref("TicketDetail"), "400", "403", "413", "422"),
        },
    },
    f"{_T}/{{number}}": {
        "get": _read("one ticket (`maildctl ticket show --json`)", _ref("TicketDetail"), [_NUMBER], "404")
    },
    f"{_T}/{{number}}/log": {
        "get": _read(
            "a ticket's audit log, oldest first (`maildctl ticket log --json`)",
            {"type": "array", "items": _ref("LogEntry")},
            [_NUMBER],
            "404",
        )
    },
    f"{_T}/{{number}}/reply": {
        "post": _write(
            "answer the customer by mail (`maildctl ticket reply`); the ticket becomes waiting",
            _body(
                "text",
                "the reply",
                optional={"as": "reply as this agent (address or name); absent: the desk"},
            ),
            *_BODY_ERRORS,
        )
    },
    f"{_T}/{{number}}/notes": {
        "post": _write(
            "add an internal note (`maildctl ticket note`)", _body("text", "the note"), *_BODY_ERRORS
        )
    },
    f"{_T}/{{number}}/status": {
        "post": _write(
            "set the status (`maildctl ticket status`)",
            _body("status", "e.g. closed, or a custom status"),
            *_BODY_ERRORS,
        )
    },
    f"{_T}/{{number}}/priority": {
        "post": _write(
            "set the priority (`maildctl ticket priority`)",
            _body("priority", "low, normal, high or urgent"),
            *_BODY_ERRORS,
        )
    },
    f"{_T}/{{number}}/assign": {
        "post": _write(
            "assign to an agent, who gets the assigned_notice mail, or unassign (`maildctl ticket assign`)",
            _body("agent", "the agent's address or name; null: unassign", nullable=True),
            *_BODY_ERRORS,
        )
    },
    f"{_T}/{{number}}/tags": {
        "post": _write(
            "add a tag (`maildctl ticket tag`)",
            _body("tag", "1-100 letters, digits and - _ . : /"),
            *_BODY_ERRORS,
        )
    },
    f"{_T}/{{number}}/tags/{{tag}}": {
        "delete": {
            **_write("remove a tag (`maildctl ticket untag`)", None),
            "parameters": [_NUMBER, {"name": "tag", "in": "path", "required": True, "schema": {"type": _S}}],
        }
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "maild JSON API",
            "version": VERSION,
            "description": "The tickets of maild, as `maildctl` shows and changes them. Every request but "
            "this document's carries `Authorization: Bearer <token>` (`maildctl api-token add NAME --scope "
            'read|write`). Every error is {"error": {"status": N, "message": "…"}}.',
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "maildctl api-token add"}
            },
        },
    }


def document_text() -> str:
    """The document as committed in docs/openapi.json."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(document_text())
