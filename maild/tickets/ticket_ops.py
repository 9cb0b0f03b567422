"""Changes to a ticket, each with its audit entry (actor, time, before/after). Shared by the agents'
commands by mail (pipeline/commands.py) and maildctl, so both leave the same trail."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.mail.attachment_policy import Refusal, refusal_of
from maild.mail.parsed import ParsedAttachment
from maild.storage.models import (
    Agent,
    Attachment,
    AuditLog,
    Desk,
    Message,
    OutboxMessage,
    Ticket,
    TicketFlag,
    TicketTag,
    TimeEntry,
    naive_utc,
)
from maild.tickets.participants import add_cc, remove_cc


def ticket_by_number(session: Session, number: str) -> Ticket | None:
    """The ticket numbered `number`, ignoring case and surrounding blanks (people type `sup-26-11-3`)."""
    wanted = number.strip().lower()
    return session.scalars(select(Ticket).where(func.lower(Ticket.number) == wanted)).first()


def locked_ticket(session: Session, ticket_id: int) -> Ticket | None:
    """The ticket re-read under a row lock, for a scheduled job's change (FOR UPDATE SKIP LOCKED; SQLite's
    BEGIN IMMEDIATE serialises writers): None when another instance holds it. populate_existing: the values
    read under the lock, never ones loaded earlier in this session."""
    return session.scalars(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).first()


def audit(
    session: Session, ticket: Ticket, action: str, *, actor: str, now: dt.datetime, **detail: Any
) -> None:
    session.add(AuditLog(at=naive_utc(now), actor=actor, action=action, ticket_id=ticket.id, detail=detail))


def record(
    session: Session, action: str, detail: dict[str, Any], *, actor: str, ticket_id: int | None = None
) -> None:
    """An audit row for a change that is not one ticket's (settings, mail queues, deleted tickets): `at` is
    the row's default, the time of the insert."""
    session.add(AuditLog(actor=actor, action=action, ticket_id=ticket_id, detail=detail))


def iso(value: dt.datetime | None) -> str | None:
    """A stored (naive UTC) time as maildctl's JSON and the audit rows show it: 2026-03-01T10:00:00Z."""
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _touch(ticket: Ticket, now: dt.datetime) -> None:
    ticket.updated_at = naive_utc(now)


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
            created_at=naive_utc(now),
        )
    )
    audit(session, ticket, "time", actor=actor, now=now, minutes=minutes)


def add_sub_customer(session: Session, ticket: Ticket, email: str, *, actor: str, now: dt.datetime) -> None:
    """Raises maild.tickets.participants.NotAddable (desk address, agent, already on it, the cap)."""
    add_cc(session, ticket, email)
    audit(session, ticket, "cc_add", actor=actor, now=now, email=email)


def remove_sub_customer(
    session: Session, ticket: Ticket, email: str, *, actor: str, now: dt.datetime
) -> None:
    """Raises maild.tickets.participants.NotAddable (the customer, or not on the ticket)."""
    remove_cc(session, ticket, email)
    audit(session, ticket, "cc_remove", actor=actor, now=now, email=email)


def written_message(
    ticket: Ticket, kind: str, text: str, *, author: tuple[str, str], subject: str, now: dt.datetime
) -> Message:
    """A message written with maildctl (not stored yet): `kind` note or agent, by `author` (display name,
    address), with a Message-ID of its own (`<kind>.` …@maild.invalid)."""
    name, address = author
    prefix = "reply" if kind == "agent" else kind
    return Message(
        ticket=ticket,
        desk_id=ticket.desk_id,
        kind=kind,
        from_address=address,
        from_name=name,
        subject=subject,
        message_id=f"<{prefix}.{uuid.uuid4().hex}@maild.invalid>",
        text=text,
        visible_text=text,
        threaded_by="maildctl",
        created_at=naive_utc(now),
    )


def add_note(
    session: Session,
    ticket: Ticket,
    text: str,
    *,
    author: tuple[str, str],
    actor: str,
    now: dt.datetime,
) -> Message:
    """An internal note (`kind` note: never sent to customers) by `author` (display name, address)."""
    note = written_message(ticket, "note", text, author=author, subject=ticket.subject, now=now)
    session.add(note)
    _touch(ticket, now)
    session.flush()
    audit(session, ticket, "note", actor=actor, now=now, message=note.id, chars=len(text))
    return note


class NotFlagged(ValueError):
    """Unflagging an agent the ticket is not flagged for, or flagging one twice."""


def open_flag(session: Session, ticket: Ticket, agent: Agent) -> TicketFlag | None:
    return session.scalars(
        select(TicketFlag).where(
            TicketFlag.ticket_id == ticket.id,
            TicketFlag.agent_id == agent.id,
            TicketFlag.cleared_at.is_(None),
        )
    ).first()


def flag(
    session: Session, ticket: Ticket, agent: Agent, *, note: str, actor: str, now: dt.datetime
) -> TicketFlag:
    """Flag `ticket` to `agent`'s attention; NotFlagged when it is flagged for them already."""
    if open_flag(session, ticket, agent) is not None:
        raise NotFlagged(f"{ticket.number} is flagged for {agent.email} already")
    row = TicketFlag(
        ticket_id=ticket.id, agent_id=agent.id, note=note, flagged_by=actor, created_at=naive_utc(now)
    )
    session.add(row)
    audit(session, ticket, "flag", actor=actor, now=now, after=agent.email, note=note)
    return row


def unflag(session: Session, ticket: Ticket, agent: Agent, *, actor: str, now: dt.datetime) -> None:
    row = open_flag(session, ticket, agent)
    if row is None:
        raise NotFlagged(f"{ticket.number} is not flagged for {agent.email}")
    row.cleared_at = naive_utc(now)
    audit(session, ticket, "unflag", actor=actor, now=now, before=agent.email)


def cancel_queued_mail(session: Session, ticket_ids: Sequence[int], why: str) -> list[int]:
    """Give up the tickets' mail still queued (the outbox keeps it, `failed`, with `why`): once a ticket
    is deleted its mail would still go out, as outbox.ticket_id is SET NULL. The ids cancelled."""
    cancelled = []
    queued = session.scalars(
        select(OutboxMessage).where(OutboxMessage.ticket_id.in_(ticket_ids), OutboxMessage.status == "queued")
    )
    for row in queued:
        row.failed_to = list(dict.fromkeys([*row.failed_to, *row.rcpt_to]))
        row.rcpt_to, row.status = [], "failed"
        row.last_error = f"cancelled: {why}"
        cancelled.append(row.id)
    return cancelled


def message_count(session: Session, ticket_ids: Sequence[int]) -> int:
    return session.scalar(select(func.count(Message.id)).where(Message.ticket_id.in_(ticket_ids))) or 0


def delete_tickets(
    session: Session,
    ticket: Ticket,
    merged: Sequence[Ticket],
    *,
    actor: str,
    now: dt.datetime,
    action: str = "ticket_delete",
    why: str = "(maildctl ticket delete)",
    **extra: Any,
) -> dict[str, Any]:
    """Delete `ticket` and the tickets merged into it, with their messages and attachment rows (ORM
    cascades), participants, tags, flags and time entries (database cascades). Their queued mail is
    cancelled (an auto-reply would go out after the ticket is gone). The raw mail stays in the spool (the
    archive) and the outbox and audit rows keep their history, their ticket_id SET NULL. The audit entry
    (`action`, with `extra` in its detail) has no ticket_id, since the row is gone; what it says."""
    doomed = [ticket, *merged]
    ids = [t.id for t in doomed]
    detail: dict[str, Any] = {
        "number": ticket.number,
        "customer": ticket.customer.email,
        "subject": ticket.subject,
        "desk": ticket.desk.name,
        "status": ticket.status,
        **extra,
        "messages": message_count(session, ids),
        "merged": [t.number for t in merged],
        "outbox_cancelled": cancel_queued_mail(session, ids, f"ticket {ticket.number} deleted {why}"),
    }
    session.add(AuditLog(at=naive_utc(now), actor=actor, action=action, ticket_id=None, detail=detail))
    for t in doomed:
        session.delete(t)
    return detail


def refused_by_desk(desk: Desk, filename: str, content_type: str, data: bytes) -> Refusal | None:
    """Why `desk`'s attachment policy (its extensions and size limit) refuses a file; None: it keeps it."""
    return refusal_of(
        filename,
        content_type,
        data,
        allowed_extensions=desk.allowed_extensions,
        max_mb=desk.max_attachment_mb,
    )


def attachment_row(part: ParsedAttachment, refused_reason: str | None) -> Attachment:
    """A mail's attachment as its row: kept (refused_reason None; the caller stores the bytes) or refused."""
    return Attachment(
        filename=part.filename,
        content_type=part.content_type[:255],
        size=len(part.data),
        sha256=part.sha256,
        refused_reason=refused_reason,
        content_id=part.content_id[:255] if part.content_id else None,
        inline=part.inline,
    )
