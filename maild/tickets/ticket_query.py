"""Which tickets `maildctl ticket list` (and `ticket bulk`) and the API's GET /api/v1/tickets select
(issue 19): one query builder for the filters desk, status, priority, tag, customer, older_than and
flagged_for, so that every caller selects exactly the same tickets for the same values."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from maild.mail.addresses import normalize
from maild.storage.models import (
    TICKET_STATUSES,
    Contact,
    Desk,
    DeskStatus,
    Message,
    Ticket,
    TicketFlag,
    TicketTag,
    naive_utc,
)
from maild.tickets.statuses import normalise_status, statuses_of
from maild.tickets.ticket_checks import InvalidValue, MalformedValue, agent_named, desk_named, priority_name
from maild.tickets.ticket_views import ticket_json

TicketQuery = TypeVar("TicketQuery", bound=Select)  # any select over Ticket
_DURATION = re.compile(r"(\d{1,6})([mhdw])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# How a caller spells a filter in its messages: maildctl "--older-than", the API "older_than".
Spelling = Callable[[str], str]


def as_option(name: str) -> str:
    return "--" + name.replace("_", "-")


def as_parameter(name: str) -> str:
    return name


@dataclass(frozen=True)
class TicketFilters:
    """The filters as given (None: not given); checked when the query is built."""

    desk: str | None = None
    status: str | None = None
    priority: str | None = None
    tag: str | None = None
    customer: str | None = None
    older_than: str | None = None
    flagged_for: str | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def age(text: str, spell: Spelling = as_option) -> dt.timedelta:
    """older_than's value: a number and a unit (m, h, d, w)."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise MalformedValue(
            f"invalid {spell('older_than')} {text!r}: give a number and a unit, e.g. 30m, 12h, 14d or 2w"
        )
    return dt.timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)])


def _status(session: Session, status: str, desk: Desk | None, spell: Spelling) -> str:
    """status as a built-in status or a custom one (of the desk filter's desk, else of any desk)."""
    if desk is not None:
        allowed = list(statuses_of(session, desk.id))
    else:
        custom = session.scalars(select(DeskStatus.name).distinct().order_by(DeskStatus.name))
        allowed = list(dict.fromkeys([*TICKET_STATUSES, *custom]))
    found = next((s for s in allowed if s == normalise_status(status)), None)
    if found is None:
        where = f" for desk {desk.name}" if desk is not None else ""
        raise InvalidValue(f"unknown {spell('status')} {status!r}{where}: use one of {', '.join(allowed)}")
    return found


def filtered(
    session: Session,
    query: TicketQuery,
    given: TicketFilters,
    now: dt.datetime,
    spell: Spelling = as_option,
) -> TicketQuery:
    """`query` (over Ticket) narrowed by the filters given; a wrong value raises InvalidValue."""
    desk = None
    if given.desk:
        desk = desk_named(session, given.desk)
        query = query.where(Ticket.desk_id == desk.id)
    if given.status:
        query = query.where(Ticket.status == _status(session, given.status, desk, spell))
    if given.priority:
        query = query.where(Ticket.priority == priority_name(given.priority, spell("priority")))
    if given.tag:
        tagged = select(TicketTag.ticket_id).where(TicketTag.tag == given.tag.strip().lower())
        query = query.where(Ticket.id.in_(tagged))
    if given.customer:
        customer = select(Contact.id).where(Contact.email == normalize(given.customer))
        query = query.where(Ticket.customer_id.in_(customer))
    if given.older_than:
        query = query.where(Ticket.updated_at < naive_utc(now - age(given.older_than, spell)))
    if given.flagged_for:
        agent = agent_named(session, given.flagged_for, active=False)
        flagged = select(TicketFlag.ticket_id).where(
            TicketFlag.agent_id == agent.id, TicketFlag.cleared_at.is_(None)
        )
        query = query.where(Ticket.id.in_(flagged))
    return query


def list_tickets(
    session: Session,
    given: TicketFilters,
    now: dt.datetime,
    *,
    spell: Spelling = as_option,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The tickets the filters select, newest first, each as `ticket list --json` shows it."""
    counts = (
        select(Message.ticket_id, func.count(Message.id).label("n")).group_by(Message.ticket_id).subquery()
    )
    query = (
        select(Ticket, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.ticket_id == Ticket.id)
        .order_by(Ticket.id.desc())
    )
    query = filtered(session, query, given, now, spell)
    if limit is not None:
        query = query.limit(limit)
    return [ticket_json(t, n) for t, n in session.execute(query)]
