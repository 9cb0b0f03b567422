"""apply: the ticket change. A new ticket (numbered, the sender as customer), or a reply on the found
ticket: a customer reply sets the status `open`, an agent's sets `waiting`. Addresses in Cc of a mail
from a participant become sub-customers (never desk addresses, agents or the sender; capped)."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select

from maild.participants import NotAddable, add_cc, is_participant
from numbering.allocate import allocate_number
from pipeline.context import Context, Stop
from storage import attachments
from storage.models import Attachment, AuditLog, Message, Participant, Ticket


def _new_ticket(ctx: Context) -> Ticket:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    assert ctx.contact is not None, "identify sets the contact of a non-agent sender"
    ticket = Ticket(
        number=allocate_number(ctx.session, desk, ctx.now),
        desk=desk,
        subject=mail.subject or "(no subject)",
        status="open",
        priority="normal",
        customer=ctx.contact,
        created_at=ctx.now_naive,
        updated_at=ctx.now_naive,
    )
    ticket.linked_ticket = ctx.linked_ticket
    ctx.session.add(ticket)
    ctx.session.add(Participant(ticket=ticket, contact=ctx.contact, role="customer"))
    for note in ctx.notes:
        ctx.session.add(
            Message(
                ticket=ticket,
                desk_id=desk.id,
                kind="system",
                message_id=f"<note.{uuid.uuid4().hex}@maild.invalid>",
                text=note,
                threaded_by="policy",
                created_at=ctx.now_naive,
            )
        )
    return ticket


def _store_message(ctx: Context, ticket: Ticket, kind: str) -> Message:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    message = Message(
        ticket=ticket,
        desk_id=desk.id,
        spool_id=ctx.spool.id,
        kind=kind,
        from_address=mail.from_address,
        from_name=mail.from_name,
        subject=mail.subject,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to[0] if mail.in_reply_to else "",
        text=mail.text,
        html=mail.html,
        threaded_by=ctx.threaded_by,
        created_at=ctx.now_naive,
    )
    for part in mail.attachments:
        digest = (
            hashlib.sha256(part.data).hexdigest()
            if ctx.dry_run
            else attachments.store(ctx.cfg.attachment_dir, part.data)
        )
        message.attachments.append(
            Attachment(
                filename=part.filename, content_type=part.content_type, size=len(part.data), sha256=digest
            )
        )
    ctx.session.add(message)
    return message


def _add_cc_participants(ctx: Context, ticket: Ticket) -> None:
    mail = ctx.require_mail()
    if ctx.agent is not None or not is_participant(ticket, mail.from_address):
        return  # a stranger cannot put people on someone else's ticket
    for name, address in mail.cc:
        if address == mail.from_address:
            continue
        try:
            add_cc(ctx.session, ticket, address, name)
        except NotAddable:
            continue  # desk address, agent, already on it, or the cap: nothing to add


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    if ctx.ticket is None:
        if ctx.agent is not None:
            return Stop("rejected", "agents open tickets by replying to a notification, not by new mail")
        ticket = _new_ticket(ctx)
        ctx.outcome, action = "created", "ticket_created"
    else:
        ticket = ctx.ticket
        if ctx.session.scalars(
            select(Message.id).where(Message.ticket_id == ticket.id, Message.message_id == mail.message_id)
        ).first():
            return Stop("duplicate", f"{mail.message_id} already stored on {ticket.number}")
        ticket.status = "waiting" if ctx.agent is not None else "open"
        ticket.updated_at = ctx.now_naive
        ctx.outcome, action = "replied", "message_added"
    ctx.ticket = ticket
    _add_cc_participants(ctx, ticket)
    ctx.message = _store_message(ctx, ticket, "agent" if ctx.agent is not None else "customer")
    ctx.session.flush()
    ctx.session.add(
        AuditLog(
            at=ctx.now_naive,
            actor=mail.from_address,
            action=action,
            ticket_id=ticket.id,
            detail={"message_id": mail.message_id, "threaded_by": ctx.threaded_by, "spool_id": ctx.spool.id},
        )
    )
    return None
