"""Ticket merge (DESIGN §3): newer tickets into the oldest one, which survives.

Shared by `maildctl ticket merge` and the agents' `#merge` command. The caller owns the transaction;
merge_tickets only flushes. The merged tickets stay (closed, `merged_into` the survivor) so that their
numbers, Message-IDs and signed reply addresses keep leading to the survivor (see pipeline/thread.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from maild.config import Config
from maild.outbound.outgoing import queue_mail
from maild.storage.models import (
    Contact,
    Message,
    OutboxMessage,
    Participant,
    Ticket,
    TicketTag,
    TimeEntry,
    naive_utc,
)
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops

MERGED_MARK = "[MERGED]"
REPLY_KINDS = ("customer", "agent")  # what "the latest reply" means for the survivor's status


class MergeRefused(ValueError):
    """One line saying why (shown to admins and, for #merge by mail, to the agent)."""


def _check(tickets: Sequence[Ticket], force: bool) -> list[Ticket]:
    """The distinct tickets, oldest (lowest id) first, or MergeRefused."""
    distinct = sorted({t.id: t for t in tickets}.values(), key=lambda t: t.id)
    if len(distinct) < 2:
        what = f"{distinct[0].number} alone" if distinct else "no ticket"
        raise MergeRefused(f"a merge needs two different tickets, not {what}")
    for t in distinct:
        if t.merged_into_id is not None:
            into = t.merged_into.number if t.merged_into is not None else "another ticket"
            raise MergeRefused(f"{t.number} is merged into {into} already: merge that one instead")
    desks = {t.desk_id for t in distinct}
    if len(desks) > 1 and not force:
        names = ", ".join(f"{t.number} ({t.desk.name})" for t in distinct)
        raise MergeRefused(f"the tickets are on different desks: {names}; force it to merge anyway")
    return distinct


def _lock(session: Session, tickets: list[Ticket]) -> None:
    """Re-read the tickets under a row lock (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
    writers), so two concurrent merges cannot both see a ticket as not yet merged. In id order: no
    deadlock between two merges of overlapping tickets."""
    session.flush()
    list(
        session.scalars(
            select(Ticket)
            .where(Ticket.id.in_([t.id for t in tickets]))
            .order_by(Ticket.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def _latest_reply(session: Session, ids: list[int]) -> dict[int, dt.datetime]:
    rows = session.execute(
        select(Message.ticket_id, func.max(Message.created_at))
        .where(Message.ticket_id.in_(ids), Message.kind.in_(REPLY_KINDS))
        .group_by(Message.ticket_id)
    )
    return {ticket_id: latest for ticket_id, latest in rows if latest is not None}


def _status_after(session: Session, survivor: Ticket, others: list[Ticket]) -> str:
    """The status of the ticket whose latest customer or agent message is the newest; a tie (or no reply
    anywhere) keeps the survivor's, then the older ticket's (others are in id order, `>` is strict)."""
    latest = _latest_reply(session, [survivor.id, *(t.id for t in others)])
    best, best_at = survivor, latest.get(survivor.id)
    for t in others:
        at = latest.get(t.id)
        if at is not None and (best_at is None or at > best_at):
            best, best_at = t, at
    return best.status


def _move_participants(session: Session, survivor: Ticket, others: list[Ticket]) -> list[str]:
    """The others' customers and sub-customers become sub-customers of the survivor, unless on it already
    (one row per contact and ticket). Returns the addresses added."""
    # No MAX_CC cap here (maild.tickets.participants): the cap keeps mail from adding strangers by the dozen,
    # but a
    # merge must not drop anybody who was on one of the tickets — they would stop getting its mail.
    on_survivor = {p.contact_id for p in survivor.participants}
    on_survivor.add(survivor.customer_id)
    added: list[str] = []
    for other in others:
        for p in list(other.participants):
            if p.contact_id in on_survivor:
                other.participants.remove(p)  # delete-orphan: the duplicate row goes
            else:
                on_survivor.add(p.contact_id)
                added.append(p.contact.email)
                p.role = "cc"
                p.ticket = survivor  # the backref moves it from other.participants to survivor's
        # The customer is normally a participant too; one that is not (an old row removed) still joins.
        if other.customer_id not in on_survivor:
            on_survivor.add(other.customer_id)
            added.append(other.customer.email)
            survivor.participants.append(Participant(contact=other.customer, role="cc"))
    session.flush()
    return added


def _move_tags(session: Session, survivor: Ticket, other_ids: list[int]) -> list[str]:
    """Tags (primary key ticket_id + tag) move; one the survivor has already is not doubled."""
    have = set(session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == survivor.id)))
    theirs = set(session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id.in_(other_ids))))
    new = sorted(theirs - have)
    # Delete and re-insert rather than update the primary key: two merged tickets may share a tag.
    session.execute(
        delete(TicketTag).where(TicketTag.ticket_id.in_(other_ids)),
        execution_options={"synchronize_session": "fetch"},  # drops loaded rows from the session too
    )
    session.add_all(TicketTag(ticket_id=survivor.id, tag=tag) for tag in new)
    return new


def _move_rows(session: Session, model: Any, survivor: Ticket, other_ids: list[int]) -> int:
    """Re-point `model.ticket_id` of the others' rows at the survivor; the number of rows moved."""
    result = session.execute(
        update(model).where(model.ticket_id.in_(other_ids)).values(ticket_id=survivor.id),
        execution_options={"synchronize_session": "fetch"},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def merge_tickets(
    session: Session, tickets: Sequence[Ticket], *, actor: str, now: dt.datetime, force: bool = False
) -> Ticket:
    """Merge `tickets` into the one with the lowest id and return it (the survivor).

    MergeRefused when fewer than two distinct tickets are given, one is merged already, or (without
    `force`) they are on different desks. `now` is aware UTC. Flushes; the caller commits."""
    if now.tzinfo is None:
        raise ValueError("merge_tickets: `now` must be timezone-aware (UTC)")
    at = naive_utc(now)
    _lock(session, list(tickets))
    survivor, *others = _check(tickets, force)
    other_ids = [t.id for t in others]
    before = {"subject": survivor.subject, "status": survivor.status}

    status = _status_after(session, survivor, others)
    added = _move_participants(session, survivor, others)
    tags = _move_tags(session, survivor, other_ids)
    moved = _move_conversation(session, survivor, others)

    if MERGED_MARK not in survivor.subject:
        survivor.subject = f"{survivor.subject} {MERGED_MARK}"
    survivor.status, survivor.updated_at = status, at
    for t in others:
        t.merged_into, t.status, t.updated_at = survivor, "closed", at

    numbers = [t.number for t in others]
    add_system_note(
        session,
        survivor,
        f"Merged {', '.join(numbers)} into {survivor.number} (by {actor}).",
        by="merge",
        at=at,
    )
    ticket_ops.audit(
        session,
        survivor,
        "merge",
        actor=actor,
        now=now,
        survivor=survivor.number,
        merged=numbers,
        before=before,
        after={"subject": survivor.subject, "status": survivor.status},
        forced=force and len({t.desk_id for t in [survivor, *others]}) > 1,
        moved={**moved, "tags": tags, "participants": added},
    )
    session.flush()
    return survivor


def _move_conversation(session: Session, survivor: Ticket, others: list[Ticket]) -> dict[str, Any]:
    """The others' messages, time entries and mail move to the survivor: the number of rows moved of each."""
    other_ids = [t.id for t in others]
    # Messages keep their desk_id (the desk the mail came in on): Message-IDs are unique per desk, and a
    # cross-posted mail may be on both tickets; dedupe looks at the message's desk and its ticket's.
    # Attachments hang off the messages and come along. Ticket.messages orders by (created_at, id), so
    # the survivor's conversation is chronological without renumbering.
    moved = {
        "messages": _move_rows(session, Message, survivor, other_ids),
        "time_entries": _move_rows(session, TimeEntry, survivor, other_ids),
        # Queued and sent mail alike: its Message-ID must keep threading replies into the survivor.
        "outbox": _move_rows(session, OutboxMessage, survivor, other_ids),
    }
    # The bulk updates bypassed what the session has loaded: the tickets' message lists, and each loaded
    # message's `ticket` (synchronize_session fixed its ticket_id column only).
    for t in [survivor, *others]:
        session.expire(t, ["messages"])
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Message) and obj.ticket_id == survivor.id:
            session.expire(obj, ["ticket"])
    return moved


def queue_merge_notices(
    session: Session, cfg: Config, survivor: Ticket, merged: Sequence[Ticket], *, now: dt.datetime
) -> int:
    """Tell the customer of each merged ticket (`ticket merge --notify`) that their request now lives on
    in the survivor: one `ticket_merged` mail per customer, naming their old numbers, with the survivor's
    Reply-To. Bouncing, blocked and rate-limited customers are left out as for any mail. Returns how many
    mails were queued."""
    numbers_of: dict[int, tuple[Contact, list[str]]] = {}
    for ticket in sorted(merged, key=lambda t: t.id):
        if ticket.id != survivor.id:
            numbers_of.setdefault(ticket.customer_id, (ticket.customer, []))[1].append(ticket.number)
    queued = 0
    for customer, numbers in numbers_of.values():
        name = customer.display_name or customer.email
        mail = queue_mail(
            session,
            cfg,
            survivor,
            "ticket_merged",
            [(customer.display_name, customer.email)],
            automatic=True,
            now=now,
            variables={"customer_name": name, "merged_numbers": numbers},
        )
        queued += mail is not None
    return queued
