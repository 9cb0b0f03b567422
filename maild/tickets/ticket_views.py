"""Tickets as JSON, the same for `maildctl ticket list|show|log --json` and the JSON API (issue 19): the
field names are a contract of both. Also the whole conversation of a merged number."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import Agent, Attachment, AuditLog, Message, Ticket, TicketFlag
from maild.tickets import ticket_ops
from maild.tickets.lookup import survivor_of
from maild.tickets.ratings import ratings_of_messages
from maild.tickets.ticket_ops import iso


def whole_conversation(session: Session, ticket: Ticket) -> tuple[Ticket, list[Ticket]]:
    """The survivor a merged number leads to, and the tickets merged into it (directly or not)."""
    ticket = survivor_of(ticket)
    merged: list[Ticket] = []
    seen, frontier = {ticket.id}, [ticket.id]
    while frontier:
        found = [
            t
            for t in session.scalars(select(Ticket).where(Ticket.merged_into_id.in_(frontier)))
            if t.id not in seen
        ]
        merged += found
        seen.update(t.id for t in found)
        frontier = [t.id for t in found]
    return ticket, merged


def ticket_json(ticket: Ticket, message_count: int) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "desk": ticket.desk.name,
        "customer": ticket.customer.email,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "message_count": message_count,
    }


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {
        "name": attachment.filename,
        "size": attachment.size,
        "type": attachment.content_type,
        "sha256": attachment.sha256,
        "stored": attachment.refused_reason is None,
        "refused_reason": attachment.refused_reason,
        "inline": attachment.inline,
        "content_id": attachment.content_id,
    }


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "from": m.from_address,
        "kind": m.kind,
        "subject": m.subject,
        "text": m.text,
        "visible_text": m.visible_text,
        "has_html": m.html is not None,
        "message_id": m.message_id,
        "threaded_by": m.threaded_by,
        "automatic": m.automatic,  # out-of-office, auto-generated, list, challenge-response, or null
        "attachments": [attachment_json(a) for a in m.attachments],
        "notes": m.notes,
        "created_at": iso(m.created_at),
    }


def show_json(session: Session, asked: Ticket) -> dict[str, Any]:
    """`ticket show --json`: a merged number shows its survivor, as mail to it lands there."""
    ticket, merged = whole_conversation(session, asked)
    data = ticket_json(ticket, len(ticket.messages))
    data["merged_from"] = asked.number if asked.id != ticket.id else None  # set: redirected from it
    data["merged_tickets"] = [t.number for t in merged]  # merged into this one, directly or not
    data["participants"] = [p.contact.email for p in ticket.participants]
    data["linked_ticket"] = ticket.linked_ticket.number if ticket.linked_ticket else None
    assignee = session.get(Agent, ticket.assigned_agent_id) if ticket.assigned_agent_id else None
    data["assigned_agent"] = assignee.email if assignee is not None else None
    data["tags"] = ticket_ops.tags_of(session, ticket)
    data["flags"] = [
        {"agent": agent.email, "note": flag.note, "by": flag.flagged_by, "at": iso(flag.created_at)}
        for flag, agent in session.execute(
            select(TicketFlag, Agent)
            .join(Agent, Agent.id == TicketFlag.agent_id)
            .where(TicketFlag.ticket_id == ticket.id, TicketFlag.cleared_at.is_(None))
            .order_by(TicketFlag.id)
        )
    ]
    rated = ratings_of_messages(session, [m.id for m in ticket.messages if m.kind == "agent"])
    # Each agent reply's ratings by customers (the ticket page): [{contact, score, comment, rated_at}].
    data["messages"] = [{**message_json(m), "ratings": rated.get(m.id, [])} for m in ticket.messages]
    return data


def log_json(entry: AuditLog, numbers: dict[int, str]) -> dict[str, Any]:
    detail = dict(entry.detail or {})
    return {
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "ticket": numbers.get(entry.ticket_id) if entry.ticket_id is not None else None,
        "before": detail.pop("before", None),
        "after": detail.pop("after", None),
        "detail": detail,
    }


def ticket_log(session: Session, asked: Ticket) -> tuple[Ticket, list[dict[str, Any]]]:
    """`ticket log --json`: the audit entries of the whole conversation, oldest first (and its survivor)."""
    ticket, merged = whole_conversation(session, asked)
    numbers = {t.id: t.number for t in [ticket, *merged]}
    entries = session.scalars(
        select(AuditLog).where(AuditLog.ticket_id.in_(list(numbers))).order_by(AuditLog.at, AuditLog.id)
    )
    return ticket, [log_json(e, numbers) for e in entries]
