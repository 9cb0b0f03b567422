"""The filters of `maildctl ticket list`, which `ticket bulk` takes too (issue 19): --desk, --status,
--priority, --tag, --customer, --older-than, --flagged-for. The query is maild.tickets.ticket_query's,
which the JSON API uses too, so that what `bulk` touches is exactly what `list` (and the API) shows with
the same options."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from maild.admin_cli.common import UserError
from maild.storage.models import PRIORITIES, TICKET_STATUSES
from maild.tickets import ticket_query
from maild.tickets.ticket_checks import InvalidValue
from maild.tickets.ticket_query import TicketFilters, TicketQuery


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


def filters_of(args: argparse.Namespace) -> TicketFilters:
    return TicketFilters(**{name: getattr(args, name) for name in TicketFilters.names()})


def filtered(session: Session, query: TicketQuery, args: argparse.Namespace, now: dt.datetime) -> TicketQuery:
    """`query` (over Ticket) narrowed by the filter options given; a wrong value is a UserError."""
    try:
        return ticket_query.filtered(session, query, filters_of(args), now)
    except InvalidValue as exc:
        raise UserError(exc.cli_message) from None


def list_filtered(session: Session, args: argparse.Namespace, now: dt.datetime) -> list[dict[str, Any]]:
    """`ticket list --json`'s rows for the filter options given."""
    try:
        return ticket_query.list_tickets(session, filters_of(args), now)
    except InvalidValue as exc:
        raise UserError(exc.cli_message) from None
