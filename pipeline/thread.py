"""thread: is this a follow-up of an existing ticket?

In order: a signed reply address (`desk+token@`) among the recipients, In-Reply-To/References against
every Message-ID we stored (inbound) or sent (outbox), then a `[NUMBER]` tag of any desk's pattern, current
or retired (`desk set --pattern`, `desk remove --move-to`), in the subject; otherwise the mail opens a new
ticket. The rule that matched is recorded on the message (`threaded_by`). A ticket found by any rule that
was merged into another leads to the survivor.

Hijack guard for the headers (the desk's `hijack_guard`, default on): a Message-ID proves nothing, it is in
every copy of a mail and every quote of it. A mail found by In-Reply-To/References from someone who is
not a participant of that ticket (its customer or a sub-customer; agents are identified before this)
does not join it: it opens a new ticket linked to that one, with a note, exactly as policy does for a
`[NUMBER]` in the subject, and agents can merge the two. The signed reply address still threads anyone:
it proves the mail we sent arrived there."""

from __future__ import annotations

from sqlalchemy import select

from maild.numbering.pattern import find_numbers
from maild.pipeline.context import Context, Stop
from maild.storage.models import Desk, Message, OutboxMessage, RetiredPattern, Ticket
from maild.tickets.lookup import merge_chain
from maild.tickets.participants import is_participant


def _by_token(ctx: Context) -> Ticket | None:
    """A signed `desk+token@` address among the recipients (identify found it): the strongest evidence."""
    target = ctx.reply_target
    return ctx.session.get(Ticket, target.ticket_id) if target is not None else None


def _by_references(ctx: Context, ids: list[str]) -> Ticket | None:
    if not ids:
        return None
    # A cross-posted mail is stored once per desk, so one Message-ID can be on several tickets.
    holders: dict[str, list[int]] = {}
    for mid, ticket_id in ctx.session.execute(
        select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(ids)).order_by(Message.id)
    ):
        holders.setdefault(mid, []).append(ticket_id)
    for mid, sent_on in ctx.session.execute(
        select(OutboxMessage.message_id, OutboxMessage.ticket_id).where(OutboxMessage.message_id.in_(ids))
    ):
        if sent_on is not None:  # an outbox row of no ticket threads nothing
            holders.setdefault(mid, []).append(sent_on)
    desk = ctx.require_desk()
    for mid in ids:  # the most specific reference wins
        found = [t for t in (ctx.session.get(Ticket, i) for i in holders.get(mid, [])) if t is not None]
        if found:
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


def _guard_references(ctx: Context) -> None:
    """A stranger's follow-up by headers opens a new ticket linked to the one it names (see above)."""
    mail, ticket = ctx.require_mail(), ctx.ticket
    if (
        ticket is None
        or ctx.threaded_by != "references"
        or ctx.agent is not None
        or ctx.desk_reply  # the desk's own old reply, imported: it answers the ticket it names
        or not ticket.desk.hijack_guard
        or is_participant(ticket, mail.from_address)
    ):
        return
    # What policy does for the subject rule: policy then sees a new ticket (clients_only, replies_only
    # apply to it) and apply links it to this one.
    ctx.linked_ticket, ctx.ticket, ctx.threaded_by = ticket, None, "new"
    ctx.notes.append(
        f"{mail.from_address} answered a mail of {ticket.number} (In-Reply-To/References) but is not on "
        "that ticket, so this mail opened a new one"
    )


def run(ctx: Context) -> Stop | None:
    ctx.ticket, ctx.threaded_by = find_ticket(ctx)
    _guard_references(ctx)
    return None
