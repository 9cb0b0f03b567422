"""Ticket split (DESIGN §3): chosen messages, with their attachments, move to a new ticket with its own
desk, priority and subject (`maildctl ticket split`).

The new ticket is linked to the original (linked_ticket) and numbered from its desk's pattern; its
customer is whoever wrote the earliest moved customer mail (if a contact), else the original's customer.
Messages keep their Message-IDs (and desk_id, the desk the mail came in on, as after a merge), so a reply
to a moved mail threads to the new ticket. The caller owns the transaction; split_ticket only flushes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.addresses import normalize
from maild.numbering.allocate import allocate_number
from maild.outbound.outgoing import queue_mail
from maild.storage.models import (
    PRIORITIES,
    Contact,
    Desk,
    Message,
    Participant,
    SpoolEntry,
    Ticket,
    naive_utc,
)
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops


class SplitRefused(ValueError):
    """One line saying why (shown to admins)."""


def _chosen(session: Session, ticket: Ticket, message_ids: Sequence[int]) -> list[Message]:
    """The messages to move, oldest first, or SplitRefused."""
    wanted = list(dict.fromkeys(message_ids))
    if not wanted:
        raise SplitRefused("no message chosen: give the ids of the messages to move (see 'ticket show')")
    found = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(wanted)))}
    for message_id in wanted:
        message = found.get(message_id)
        if message is None:
            raise SplitRefused(f"no message {message_id}: see 'maildctl ticket show {ticket.number}'")
        if message.ticket_id != ticket.id:
            raise SplitRefused(f"message {message_id} is on {message.ticket.number}, not on {ticket.number}")
    if len(wanted) == len(ticket.messages):
        raise SplitRefused(
            f"that is every message of {ticket.number}: nothing would be left; leave at least one"
        )
    return sorted(found.values(), key=lambda m: (m.created_at, m.id))


def _customer(session: Session, ticket: Ticket, moved: list[Message]) -> Contact:
    first = next((m for m in moved if m.kind == "customer"), None)
    if first is not None and first.from_address:
        contact = session.scalars(
            select(Contact).where(Contact.email == normalize(first.from_address))
        ).first()
        if contact is not None:
            return contact
    return ticket.customer


def split_ticket(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    message_ids: Sequence[int],
    *,
    desk: Desk | None = None,
    priority: str | None = None,
    subject: str | None = None,
    actor: str,
    now: dt.datetime,
    notify: bool = False,
) -> Ticket:
    """Move the messages `message_ids` of `ticket` into a new ticket (status open) and return it.

    SplitRefused for a merged ticket, an unknown id, an id of another ticket, all of the ticket's messages,
    or an unknown priority. `desk`: the new ticket's (default the original's); `priority` and `subject`
    default to the original's. `notify`: send the new ticket's customer the `ticket_created` mail. `now`
    is aware UTC. Flushes; the caller commits."""
    if now.tzinfo is None:
        raise ValueError("split_ticket: `now` must be timezone-aware (UTC)")
    _lock_splittable(session, ticket, priority)
    moved = _chosen(session, ticket, message_ids)
    count_before = len(ticket.messages)
    target = desk or ticket.desk
    customer = _customer(session, ticket, moved)
    new = _new_ticket(session, ticket, target, customer, priority=priority, subject=subject, now=now)
    _move_messages(session, ticket, new, moved)
    ids = [m.id for m in moved]
    _record_split(session, ticket, new, ids, count_before, actor=actor, now=now)
    if notify:
        queue_mail(
            session,
            cfg,
            new,
            "ticket_created",
            [(customer.display_name, customer.email)],
            automatic=True,
            now=now,
        )
    session.flush()
    return new


def _lock_splittable(session: Session, ticket: Ticket, priority: str | None) -> None:
    """Lock the ticket's row (PostgreSQL), so that a concurrent merge or split sees this one (as merge
    does); SplitRefused for a merged ticket or an unknown priority."""
    session.flush()
    session.scalars(
        select(Ticket)
        .where(Ticket.id == ticket.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if ticket.merged_into_id is not None:
        into = ticket.merged_into.number if ticket.merged_into is not None else "another ticket"
        raise SplitRefused(f"{ticket.number} is merged into {into}: split {into} instead")
    if priority is not None and priority not in PRIORITIES:
        raise SplitRefused(f"unknown priority {priority!r}: use one of {', '.join(PRIORITIES)}")


def _new_ticket(
    session: Session,
    ticket: Ticket,
    target: Desk,
    customer: Contact,
    *,
    priority: str | None,
    subject: str | None,
    now: dt.datetime,
) -> Ticket:
    """The new ticket (status open) on desk `target`, its customer a participant."""
    at = naive_utc(now)
    new = Ticket(
        number=allocate_number(session, target, now),
        desk=target,
        subject=(subject or "").strip() or ticket.subject,
        status="open",
        priority=priority or ticket.priority,
        customer=customer,
        # A category belongs to a desk: it comes along only within the desk.
        category_id=ticket.category_id if target.id == ticket.desk_id else None,
        linked_ticket=ticket,
        created_at=at,
        updated_at=at,
    )
    session.add(new)
    session.add(Participant(ticket=new, contact=customer, role="customer"))
    return new


def _move_messages(session: Session, ticket: Ticket, new: Ticket, moved: list[Message]) -> None:
    for message in moved:
        message.ticket = new  # the backref takes it off the original; its attachments hang off it
    session.flush()
    # The raw mails' spool rows follow their messages (`spool list`, `explain` show the ticket).
    spool_ids = [m.spool_id for m in moved if m.spool_id is not None]
    if spool_ids:
        session.execute(
            update(SpoolEntry)
            .where(SpoolEntry.id.in_(spool_ids), SpoolEntry.ticket_id == ticket.id)
            .values(ticket_id=new.id),
            execution_options={"synchronize_session": "fetch"},
        )


def _record_split(
    session: Session,
    ticket: Ticket,
    new: Ticket,
    ids: list[int],
    count_before: int,
    *,
    actor: str,
    now: dt.datetime,
) -> None:
    """The system notes on both tickets and their audit entries."""
    listed = ", ".join(f"#{i}" for i in ids)
    add_system_note(
        session, ticket, f"Split {listed} off into {new.number} (by {actor}).", by="split", at=now
    )
    add_system_note(session, new, f"Split off {ticket.number}: {listed} (by {actor}).", by="split", at=now)
    ticket.updated_at = naive_utc(now)
    ticket_ops.audit(
        session,
        ticket,
        "split",
        actor=actor,
        now=now,
        into=new.number,
        messages=ids,
        before={"messages": count_before},
        after={"messages": count_before - len(ids)},
    )
    ticket_ops.audit(
        session,
        new,
        "split_from",
        actor=actor,
        now=now,
        source=ticket.number,
        messages=ids,
        after={
            "desk": new.desk.name,
            "priority": new.priority,
            "subject": new.subject,
            "customer": new.customer.email,
            "status": new.status,
        },
    )
