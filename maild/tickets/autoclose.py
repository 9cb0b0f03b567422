"""Auto-close: a ticket left in one of its desk's auto-close statuses for the desk's `auto_close_hours`
without activity is closed, noted, audited, and its customer (and sub-customers) get the `auto_close` mail.

Left alone (maild.tickets.quiet): imported tickets nothing has happened on since their import. Not sent the
mail:
an address whose latest mail on the ticket is automatic (the ticket is closed all the same; the note says
who was left out).

Safe with two daemons on one database: each ticket is closed in its own short transaction that re-reads it
under a row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers) and
re-checks status and inactivity, so a ticket another instance is closing, or has closed, is left alone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound.outgoing import queue_mail
from maild.storage.db import transaction
from maild.storage.models import Desk, Ticket
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops
from maild.tickets.automation import after_changes
from maild.tickets.participants import automatic_recipients
from maild.tickets.quiet import AUTOMATIC_REASON, is_quiet_import, not_quiet_import, without_automatic_senders

BATCH = 500  # tickets looked at per desk and run; the next run takes the rest


@dataclass
class AutoCloseResult:
    closed: list[str] = field(default_factory=list)  # ticket numbers
    outbox_ids: list[int] = field(default_factory=list)


def _statuses(desk: Desk) -> list[str]:
    return [s.strip() for s in desk.auto_close_statuses.split(",") if s.strip() and s.strip() != "closed"]


def describe_hours(hours: int) -> str:
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


def _candidates(factory: sessionmaker[Session], now: dt.datetime) -> list[int]:
    """Ids of tickets that look due; each is checked again under its lock."""
    found: list[int] = []
    with factory() as session:
        for desk in session.scalars(select(Desk).where(Desk.auto_close_hours > 0).order_by(Desk.id)):
            cutoff = now - dt.timedelta(hours=desk.auto_close_hours)
            found.extend(
                session.scalars(
                    select(Ticket.id)
                    .where(
                        Ticket.desk_id == desk.id,
                        Ticket.status.in_(_statuses(desk)),
                        Ticket.updated_at <= cutoff,
                        Ticket.merged_into_id.is_(None),
                        not_quiet_import(),
                    )
                    .order_by(Ticket.updated_at, Ticket.id)
                    .limit(BATCH)
                )
            )
    return found


def _due(ticket: Ticket, now: dt.datetime) -> bool:
    desk = ticket.desk
    return (
        desk.auto_close_hours > 0
        and ticket.status in _statuses(desk)
        and ticket.merged_into_id is None
        and not is_quiet_import(ticket)
        and ticket.updated_at <= now - dt.timedelta(hours=desk.auto_close_hours)
    )


def _close_one(
    session: Session, cfg: Config, ticket_id: int, now: dt.datetime
) -> tuple[str, int | None] | None:
    """Close the ticket if it is still due: (its number, the auto_close mail's outbox id or None);
    None when it was not closed (locked by another instance, or no longer due)."""
    ticket = ticket_ops.locked_ticket(session, ticket_id)
    if ticket is None or not _due(ticket, now):
        return None
    desk = ticket.desk
    before, inactive_for = ticket.status, describe_hours(desk.auto_close_hours)
    ticket.status, ticket.updated_at = "closed", now
    ticket_ops.audit(
        session,
        ticket,
        "auto_close",
        actor="scheduler",
        now=now,
        before={"status": before},
        after={"status": "closed"},
        hours=desk.auto_close_hours,
    )
    note = f"Closed automatically after {inactive_for} without activity (status was {before})."
    if not desk.auto_reply:  # a desk that sends no automatic mail sends no closing notice either
        add_system_note(session, ticket, note, by="scheduler", at=now)
        return ticket.number, None
    return ticket.number, _closing_notice(session, cfg, ticket, note, inactive_for, now)


def _closing_notice(
    session: Session, cfg: Config, ticket: Ticket, note: str, inactive_for: str, now: dt.datetime
) -> int | None:
    """Note the closing and queue the auto_close mail to the customer: its outbox id, or None."""
    desk = ticket.desk
    customer, sub_customers = automatic_recipients(ticket)  # the customer alone until an agent answered
    to, cc, robots = without_automatic_senders(session, ticket, [customer], sub_customers)
    if robots:
        note += f" No closing notice to {', '.join(robots)}: {AUTOMATIC_REASON}."
    add_system_note(session, ticket, note, by="scheduler", at=now)
    if not to and not cc:
        return None
    row = queue_mail(
        session,
        cfg,
        ticket,
        "auto_close",
        to,
        cc=cc,
        automatic=True,
        now=now.replace(tzinfo=dt.UTC),
        variables={"inactive_for": inactive_for, "reopen_days": desk.reopen_days},
    )
    if row is None:  # nobody left to tell (bouncing, blocked, rate-limited): queue_mail logged who and why
        return None
    session.flush()
    return row.id


def auto_close(
    factory: sessionmaker[Session], cfg: Config, now: dt.datetime | None = None
) -> AutoCloseResult:
    """One run over every desk with auto-close on. `now` is naive UTC (tests pass their own)."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    result = AutoCloseResult()
    for ticket_id in _candidates(factory, now):
        with transaction(factory) as session:
            closed = _close_one(session, cfg, ticket_id, now)
            after_changes(session, cfg, now.replace(tzinfo=dt.UTC))  # the rules and webhooks of the close
        if closed is not None:
            result.closed.append(closed[0])
            if closed[1] is not None:
                result.outbox_ids.append(closed[1])
    return result
