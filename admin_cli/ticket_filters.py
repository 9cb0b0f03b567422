"""The filters of `maildctl ticket list`, which `ticket bulk` takes too (issue 19): --desk, --status,
--priority, --tag, --customer, --older-than, --flagged-for. One query builder, so that what `bulk` touches
is exactly what `list` shows with the same options."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from maild.admin_cli.common import UserError, find_desk
from maild.admin_cli.ticket_lookup import find_agent
from maild.mail.addresses import normalize
from maild.storage.models import (
    PRIORITIES,
    TICKET_STATUSES,
    Contact,
    Desk,
    DeskStatus,
    Ticket,
    TicketFlag,
    TicketTag,
    naive_utc,
)
from maild.tickets.statuses import normalise_status, statuses_of

TicketQuery = TypeVar("TicketQuery", bound=Select)  # any select over Ticket
_DURATION = re.compile(r"(\d{1,6})([mhdw])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--status", help=f"only this status ({', '.join(TICKET_STATUSES)}, or a desk's custom status)"
    )
    parser.add_argument("--desk", help="only this desk")
    parser.add_argument("--priority", help=f"only this priority ({', '.join(PRIORITIES)})")
    parser.add_argument("--tag", help="only tickets with this tag")
    parser.add_argument("--customer", metavar="EMAIL", help="only tickets of this customer")
    parser.add_argument(
        "--older-than",
        metavar="AGE",
        help="only tickets without activity for this long: 30m, 12h, 14d or 2w",
    )
    parser.add_argument(
        "--flagged-for", metavar="AGENT", help="only tickets flagged for this agent (address or name)"
    )


def age(text: str) -> dt.timedelta:
    """--older-than's value: a number and a unit (m, h, d, w)."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise UserError(f"invalid --older-than {text!r}: give a number and a unit, e.g. 30m, 12h, 14d or 2w")
    return dt.timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)])


def _status(session: Session, status: str, desk: Desk | None) -> str:
    """--status as a built-in status or a custom one (of --desk, else of any desk)."""
    if desk is not None:
        allowed = list(statuses_of(session, desk.id))
    else:
        custom = session.scalars(select(DeskStatus.name).distinct().order_by(DeskStatus.name))
        allowed = list(dict.fromkeys([*TICKET_STATUSES, *custom]))
    found = next((s for s in allowed if s == normalise_status(status)), None)
    if found is None:
        where = f" for desk {desk.name}" if desk is not None else ""
        raise UserError(f"unknown --status {status!r}{where}: use one of {', '.join(allowed)}")
    return found


def filtered(session: Session, query: TicketQuery, args: argparse.Namespace, now: dt.datetime) -> TicketQuery:
    """`query` (over Ticket) narrowed by the filter options given; a wrong value is a UserError."""
    desk = None
    if args.desk:
        desk = find_desk(session, args.desk)
        query = query.where(Ticket.desk_id == desk.id)
    if args.status:
        query = query.where(Ticket.status == _status(session, args.status, desk))
    if args.priority:
        priority = args.priority.strip().lower()
        if priority not in PRIORITIES:
            raise UserError(f"unknown --priority {args.priority!r}: use one of {', '.join(PRIORITIES)}")
        query = query.where(Ticket.priority == priority)
    if args.tag:
        tagged = select(TicketTag.ticket_id).where(TicketTag.tag == args.tag.strip().lower())
        query = query.where(Ticket.id.in_(tagged))
    if args.customer:
        customer = select(Contact.id).where(Contact.email == normalize(args.customer))
        query = query.where(Ticket.customer_id.in_(customer))
    if args.older_than:
        query = query.where(Ticket.updated_at < naive_utc(now - age(args.older_than)))
    if args.flagged_for:
        agent = find_agent(session, args.flagged_for, active=False)
        flagged = select(TicketFlag.ticket_id).where(
            TicketFlag.agent_id == agent.id, TicketFlag.cleared_at.is_(None)
        )
        query = query.where(Ticket.id.in_(flagged))
    return query
