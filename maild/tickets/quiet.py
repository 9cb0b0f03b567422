"""When automation keeps quiet: the two rules auto-close and escalations (reminders included) share.

Imported tickets. A ticket that `maildctl import` created carries `imported_at`, the real time of the
import; its own mails keep their old dates, so `updated_at` stays at or before `imported_at` for as long
as nothing new happens on it. While that holds the ticket is *quiet*: automation neither closes nor
escalates it nor reminds its customer (a 2023 backlog would otherwise be closed, with `Closed:` mail to
every old customer, the minute it arrives). Any live activity — a customer's or agent's mail, a maildctl
change — stamps `updated_at` with the real time, after `imported_at`, and the ticket is live from then
on. For escalations the time in a status then counts from the import at the earliest
(`escalation_since`): a ticket waiting since 2023 counts as waiting since its import, not for three years
(so a note made within `after_hours` of the import fires no reminder; a later one may: the import's
time is all that is kept).

Automatic mail. No customer-facing automatic notice (`auto_close`, reminders) goes to an address whose
latest mail on the ticket is automatic (out-of-office, auto-generated, list, challenge-response: the
autoreply stage's `Message.automatic`). So a ticket opened by a robot is closed silently, and a
customer whose vacation responder answered last is not sent the closing notice into it (their responder
would only answer again). The ticket is still closed or escalated; the system note names who was left
out, and why."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, not_, select
from sqlalchemy.orm import Session

from maild.mail.addresses import normalize
from maild.storage.models import Message, Ticket

AUTOMATIC_REASON = "the latest mail from there on the ticket is automatic"


def quiet_import() -> Any:
    """SQL: the ticket is an imported one nothing has happened on since its import."""
    return and_(Ticket.imported_at.is_not(None), Ticket.updated_at <= Ticket.imported_at)


def not_quiet_import() -> Any:
    return not_(quiet_import())


def is_quiet_import(ticket: Ticket) -> bool:
    return ticket.imported_at is not None and ticket.updated_at <= ticket.imported_at


def escalation_since() -> Any:
    """SQL: when the ticket's time in its status began, for escalations: when it entered the status
    (`updated_at` for rows from before status_changed_at was kept), but never before its import."""
    entered = func.coalesce(Ticket.status_changed_at, Ticket.updated_at)
    return case((Ticket.imported_at > entered, Ticket.imported_at), else_=entered)


def ticket_escalation_since(ticket: Ticket) -> dt.datetime:
    entered = ticket.status_changed_at or ticket.updated_at
    if ticket.imported_at is not None and ticket.imported_at > entered:
        return ticket.imported_at
    return entered


def automatic_senders(session: Session, ticket: Ticket) -> set[str]:
    """The addresses whose latest customer-side mail on the ticket is automatic."""
    rows = session.execute(
        select(Message.from_address, Message.automatic)
        .where(Message.ticket_id == ticket.id, Message.kind == "customer")
        .order_by(Message.created_at.desc(), Message.id.desc())
    )
    latest: dict[str, str | None] = {}
    for address, automatic in rows:
        latest.setdefault(normalize(address), automatic)
    return {address for address, automatic in latest.items() if automatic is not None}


def without_automatic_senders(
    session: Session, ticket: Ticket, to: list[tuple[str, str]], cc: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], dict[str, str]]:
    """(to, cc) of an automatic customer notice without the addresses whose latest mail on the ticket is
    automatic, and those left out with the reason. queue_mail makes the first Cc left the To."""
    robots = automatic_senders(session, ticket)
    left_out = {normalize(a): AUTOMATIC_REASON for _, a in [*to, *cc] if normalize(a) in robots}
    keep = [(n, a) for n, a in to if normalize(a) not in robots]
    keep_cc = [(n, a) for n, a in cc if normalize(a) not in robots]
    return keep, keep_cc, left_out


def state_key(ticket: Ticket) -> str:
    """The ticket's state, for escalations and time rules (each fires once per state): its status and
    when it entered it (`updated_at` for rows from before status_changed_at was kept)."""
    since = ticket.status_changed_at or ticket.updated_at
    return f"{ticket.status}@{since.isoformat()}"


def state_entered() -> Any:
    """SQL: when the ticket entered its state (the state key's time)."""
    return func.coalesce(Ticket.status_changed_at, Ticket.updated_at)
