"""Look-ups the ticket commands share: the whole conversation of a merged number, the ticket a change
acts on, an agent by address or name, and the shape of a `ticket ACTION NUMBER` command."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from maild.admin_cli.arguments import Handler
from maild.admin_cli.common import UserError, find_ticket
from maild.storage.models import Agent, Ticket
from maild.tickets.lookup import survivor_of
from maild.tickets.ticket_checks import InvalidValue, agent_named
from maild.tickets.ticket_views import whole_conversation as whole_conversation  # moved there (issue 19)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def number_command(
    sub: Any, name: str, help_text: str, handler: Handler, description: str | None = None
) -> argparse.ArgumentParser:
    """`ticket NAME NUMBER`: a command on one ticket."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=description or help_text
    )
    parser.add_argument("number", metavar="NUMBER")
    parser.set_defaults(handler=handler)
    return parser


def target_ticket(session: Session, number: str) -> Ticket:
    """The ticket a change acts on: a merged number's survivor, as mail to that number lands there."""
    asked = find_ticket(session, number)
    ticket = survivor_of(asked)
    if ticket.id != asked.id:
        print(f"({asked.number} is merged into {ticket.number}: changing {ticket.number})")
    return ticket


def find_agent(session: Session, who: str, *, active: bool = True) -> Agent:
    """An agent by address, or by name or display name (case-insensitive); `active`: refuse an inactive
    one (they get no mail)."""
    try:
        return agent_named(session, who, active=active)
    except InvalidValue as exc:
        raise UserError(exc.cli_message) from None
