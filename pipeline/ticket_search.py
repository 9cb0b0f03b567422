"""Finding the ticket a mail follows up: the thread rules (see pipeline/thread.py), shared by the thread
stage and identify (the ticket a held agent-looking mail is noted on). A helper of the stages, not one."""

from __future__ import annotations

from sqlalchemy import select

from maild.numbering.pattern import find_numbers
from maild.pipeline.context import Context
from maild.storage.models import Desk, Message, OutboxMessage, RetiredPattern, Ticket
from maild.tickets.lookup import merge_chain


def _by_token(ctx: Context) -> Ticket | None:
    """A signed `desk+token@` address among the recipients (identify found it): the strongest evidence."""
    target = ctx.reply_target
    return ctx.session.get(Ticket, target.ticket_id) if target is not None else None


def _by_references(ctx: Context, ids: list[str]) -> Ticket | None:
    if not ids:
        return None
    # A cross-posted mail is stored once per desk, so one Message-ID can be on several tickets.
    holders: dict[str, list[int]] = {}
    received: set[str] = set()
    for mid, ticket_id in ctx.session.execute(
        select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(ids)).order_by(Message.id)
    ):
        holders.setdefault(mid, []).append(ticket_id)
        received.add(mid)
    for mid, sent_on in ctx.session.execute(
        select(OutboxMessage.message_id, OutboxMessage.ticket_id).where(OutboxMessage.message_id.in_(ids))
    ):
        if sent_on is not None:  # an outbox row of no ticket threads nothing
            holders.setdefault(mid, []).append(sent_on)
    desk = ctx.require_desk()
    for mid in ids:  # the most specific reference wins
        found = [t for t in (ctx.session.get(Ticket, i) for i in holders.get(mid, [])) if t is not None]
        if found:
            whose = "a mail we received" if mid in received else "a mail we sent"
            ctx.thread_reference = f"{mid} ({whose})"
            # Of those, this desk's ticket: a reply-all to a cross-posted mail joins each desk's own.
            return next((t for t in found if t.desk_id == desk.id), found[0])
    return None


def _by_subject(ctx: Context, subject: str) -> Ticket | None:
    # Current ones first: a tag of a desk's current and retired pattern tries the current spelling first.
    patterns = [
        *ctx.session.scalars(select(Desk.pattern)),
        *ctx.session.scalars(select(RetiredPattern.pattern).order_by(RetiredPattern.id)),
    ]
    for number in find_numbers(subject, patterns):
        ticket = ctx.session.scalars(select(Ticket).where(Ticket.number == number)).first()
        if ticket is not None:
            return ticket
    return None


def _survivor(ctx: Context, ticket: Ticket) -> Ticket:
    """The ticket `ticket` was merged into, following merges of merges; the numbers passed on the way are
    recorded (redirected_from)."""
    *merged, survivor = merge_chain(ticket)
    ctx.redirected_from.extend(t.number for t in merged)
    return survivor


def find_ticket(ctx: Context) -> tuple[Ticket | None, str]:
    """(the ticket this mail follows up, the rule that found it), or (None, "new")."""
    mail = ctx.require_mail()
    for rule, find in (
        ("token", lambda: _by_token(ctx)),
        ("references", lambda: _by_references(ctx, mail.thread_ids)),
        ("subject", lambda: _by_subject(ctx, mail.subject)),
    ):
        ticket = find()
        if ticket is not None:
            return _survivor(ctx, ticket), rule
    return None, "new"
