"""The JSON body of a webhook delivery: the event and the ticket as it is at that moment.

    {"event": "status.changed", "delivery": "<uuid4>", "occurred_at": "2026-12-08T03:00:00Z",
     "ticket": {"number", "desk", "subject", "status", "priority", "customer", "assigned_agent", "tags",
                "created_at", "updated_at"},
     "message": {...},             message.received, note.added: id, kind, from, subject, text, created_at;
                                   message.sent: message_id, template, to, subject,
                                   to_agents (a notice to agents, not mail to the customer)
     "before": ..., "after": ...,  status.changed, priority.changed, ticket.assigned (agents' addresses)
     "merged_into": "<number>",    ticket.merged
     "rating": {"score", "comment"}}  rating.received

Field names are those of `maildctl ticket show --json` where they overlap. No links: a ticket page's URL
carries its customer's secret token, which is not for a third party."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy.orm import Session

from maild.storage.events import TicketEvent
from maild.storage.models import Agent, Message, Rating, Ticket
from maild.tickets.ticket_ops import iso, tags_of

TEXT_EXCERPT = 1000  # characters of a message's text in the body: enough to triage, never a whole thread


def ticket_fields(session: Session, ticket: Ticket) -> dict[str, Any]:
    assignee = session.get(Agent, ticket.assigned_agent_id) if ticket.assigned_agent_id else None
    return {
        "number": ticket.number,
        "desk": ticket.desk.name,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "customer": ticket.customer.email,
        "assigned_agent": assignee.email if assignee is not None else None,
        "tags": tags_of(session, ticket),
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
    }


def _message(session: Session, message_id: int) -> dict[str, Any] | None:
    message = session.get(Message, message_id)
    if message is None:
        return None
    return {
        "id": message.id,
        "kind": message.kind,
        "from": message.from_address,
        "subject": message.subject,
        "text": (message.visible_text or message.text or "")[:TEXT_EXCERPT],
        "created_at": iso(message.created_at),
    }


def _agent_email(session: Session, agent_id: object) -> str | None:
    agent = session.get(Agent, agent_id) if isinstance(agent_id, int) else None
    return agent.email if agent is not None else None


def _ticket_number(session: Session, ticket_id: object) -> str | None:
    ticket = session.get(Ticket, ticket_id) if isinstance(ticket_id, int) else None
    return ticket.number if ticket is not None else None


def event_fields(session: Session, event: TicketEvent) -> dict[str, Any]:
    """What the body says of the event itself, beside the ticket."""
    data = event.data
    if event.kind in ("message.received", "note.added"):
        return {"message": _message(session, data["message_id"])}
    if event.kind == "message.sent":
        keys = ("message_id", "template", "to", "subject", "to_agents")
        return {"message": {key: data.get(key) for key in keys}}
    if event.kind == "ticket.assigned":
        return {
            "before": _agent_email(session, data.get("before")),
            "after": _agent_email(session, data.get("after")),
        }
    if event.kind in ("status.changed", "priority.changed"):
        return {"before": data.get("before"), "after": data.get("after")}
    if event.kind == "ticket.merged":
        return {"merged_into": _ticket_number(session, data.get("into"))}
    if event.kind == "rating.received":
        rating = session.get(Rating, data["rating_id"])
        comment = rating.comment if rating is not None else ""
        return {"rating": {"score": data.get("score"), "comment": comment}}
    return {}


def base_payload(session: Session, event: TicketEvent, now: dt.datetime) -> dict[str, Any] | None:
    """The body without its delivery id; None when the ticket is gone (nothing to tell)."""
    ticket = session.get(Ticket, event.ticket_id)
    if ticket is None:
        return None
    return {
        "event": event.kind,
        "occurred_at": iso(now),
        "ticket": ticket_fields(session, ticket),
        **event_fields(session, event),
    }


def body_bytes(base: dict[str, Any], delivery_id: str) -> bytes:
    """The bytes sent: the event first, then the delivery id, then the rest in the order built."""
    payload = {"event": base["event"], "delivery": delivery_id, **base}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
