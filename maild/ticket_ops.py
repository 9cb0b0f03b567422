"""Changes to a ticket, each with its audit entry (actor, time, before/after). Shared by the agents'
commands by mail (pipeline/commands.py) and maildctl, so both leave the same trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.participants import add_cc, remove_cc
from storage.models import Agent, AuditLog, Ticket, TicketTag, TimeEntry


def _naive(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo is not None else now


def audit(
    session: Session, ticket: Ticket, action: str, *, actor: str, now: dt.datetime, **detail: Any
) -> None:
    session.add(AuditLog(at=_naive(now), actor=actor, action=action, ticket_id=ticket.id, detail=detail))


def _touch(ticket: Ticket, now: dt.datetime) -> None:
    ticket.updated_at = _naive(now)


def set_status(session: Session, ticket: Ticket, status: str, *, actor: str, now: dt.datetime) -> None:
    before, ticket.status = ticket.status, status
    _touch(ticket, now)
    audit(session, ticket, "status", actor=actor, now=now, before=before, after=status)


def set_priority(session: Session, ticket: Ticket, priority: str, *, actor: str, now: dt.datetime) -> None:
    before, ticket.priority = ticket.priority, priority
    _touch(ticket, now)
    audit(session, ticket, "priority", actor=actor, now=now, before=before, after=priority)


def assign(session: Session, ticket: Ticket, agent: Agent | None, *, actor: str, now: dt.datetime) -> None:
    previous = session.get(Agent, ticket.assigned_agent_id) if ticket.assigned_agent_id else None
    ticket.assigned_agent_id = agent.id if agent is not None else None
    _touch(ticket, now)
    audit(
        session,
        ticket,
        "assign",
        actor=actor,
        now=now,
        before=previous.email if previous is not None else None,
        after=agent.email if agent is not None else None,
    )


def tags_of(session: Session, ticket: Ticket) -> list[str]:
    return list(
        session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id).order_by(TicketTag.tag))
    )


def add_tag(session: Session, ticket: Ticket, tag: str, *, actor: str, now: dt.datetime) -> None:
    if tag in tags_of(session, ticket):
        return  # tagging twice is not a change
    session.add(TicketTag(ticket_id=ticket.id, tag=tag))
    audit(session, ticket, "tag", actor=actor, now=now, after=tag)


def remove_tag(session: Session, ticket: Ticket, tag: str, *, actor: str, now: dt.datetime) -> None:
    row = session.get(TicketTag, (ticket.id, tag))
    if row is None:
        raise ValueError(f"{ticket.number} is not tagged {tag!r}")
    session.delete(row)
    audit(session, ticket, "untag", actor=actor, now=now, before=tag)


def log_time(
    session: Session, ticket: Ticket, agent: Agent | None, minutes: int, *, actor: str, now: dt.datetime
) -> None:
    session.add(
        TimeEntry(
            ticket_id=ticket.id,
            agent_id=agent.id if agent is not None else None,
            minutes=minutes,
            created_at=_naive(now),
        )
    )
    audit(session, ticket, "time", actor=actor, now=now, minutes=minutes)


def add_sub_customer(session: Session, ticket: Ticket, email: str, *, actor: str, now: dt.datetime) -> None:
    """Raises maild.participants.NotAddable (desk address, agent, already on it, the cap)."""
    add_cc(session, ticket, email)
    audit(session, ticket, "cc_add", actor=actor, now=now, email=email)


def remove_sub_customer(
    session: Session, ticket: Ticket, email: str, *, actor: str, now: dt.datetime
) -> None:
    """Raises maild.participants.NotAddable (the customer, or not on the ticket)."""
    remove_cc(session, ticket, email)
    audit(session, ticket, "cc_remove", actor=actor, now=now, email=email)
