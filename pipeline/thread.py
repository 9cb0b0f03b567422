"""thread: is this a follow-up of an existing ticket?

In order: In-Reply-To/References against every Message-ID we stored (inbound) or sent (outbox), then a
`[NUMBER]` tag of any desk's pattern in the subject; otherwise the mail opens a new ticket. The rule that
matched is recorded on the message (`threaded_by`)."""

from __future__ import annotations

from sqlalchemy import select

from numbering.pattern import find_numbers
from pipeline.context import Context, Stop
from storage.models import Desk, Message, OutboxMessage, Ticket


def _by_references(ctx: Context, ids: list[str]) -> Ticket | None:
    if not ids:
        return None
    inbound = dict(
        ctx.session.execute(
            select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(ids))
        ).all()
    )
    outbound = dict(
        ctx.session.execute(
            select(OutboxMessage.message_id, OutboxMessage.ticket_id).where(OutboxMessage.message_id.in_(ids))
        ).all()
    )
    for mid in ids:  # the most specific reference wins
        ticket_id = inbound.get(mid) or outbound.get(mid)
        if ticket_id is not None:
            return ctx.session.get(Ticket, ticket_id)
    return None


def _by_subject(ctx: Context, subject: str) -> Ticket | None:
    patterns = ctx.session.scalars(select(Desk.pattern)).all()
    for number in find_numbers(subject, patterns):
        ticket = ctx.session.scalars(select(Ticket).where(Ticket.number == number)).first()
        if ticket is not None:
            return ticket
    return None


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    ticket = _by_references(ctx, mail.thread_ids)
    if ticket is not None:
        ctx.ticket, ctx.threaded_by = ticket, "references"
        return None
    ticket = _by_subject(ctx, mail.subject)
    if ticket is not None:
        ctx.ticket, ctx.threaded_by = ticket, "subject"
        return None
    ctx.threaded_by = "new"
    return None
