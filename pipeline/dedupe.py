"""dedupe: the same mail delivered to the same desk again (MTA retry, IMAP re-fetch) → duplicate.

The identity is the Message-ID, or for mail without one an id derived from the raw bytes' hash. A mail
cross-posted to two desks is new for each; the same mail threading into a ticket that already holds it
is caught again in apply."""

from __future__ import annotations

from sqlalchemy import or_, select

from pipeline.context import Context, Stop
from storage.models import Message, Ticket


def run(ctx: Context) -> Stop | None:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    existing = ctx.session.scalars(
        select(Message)
        .join(Ticket, Message.ticket_id == Ticket.id)
        .where(
            Message.message_id == mail.message_id, or_(Message.desk_id == desk.id, Ticket.desk_id == desk.id)
        )
    ).first()
    if existing is None:
        return None
    ctx.ticket = existing.ticket
    return Stop("duplicate", f"{mail.message_id} already stored on {existing.ticket.number}")
