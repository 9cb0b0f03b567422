"""Look-ups the ticket commands share: the whole conversation of a merged number, the ticket a change
acts on, an agent by address or name, and the shape of a `ticket ACTION NUMBER` command."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import Handler
from maild.admin_cli.common import UserError, find_ticket
from maild.storage.models import Agent, Ticket
from maild.tickets.lookup import matching_agents, survivor_of


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


def whole_conversation(session: Session, ticket: Ticket) -> tuple[Ticket, list[Ticket]]:
    """The survivor a merged number leads to, and the tickets merged into it (directly or not)."""
    ticket = survivor_of(ticket)
    merged: list[Ticket] = []
    seen, frontier = {ticket.id}, [ticket.id]
    while frontier:
        found = [
            t
            for t in session.scalars(select(Ticket).where(Ticket.merged_into_id.in_(frontier)))
            if t.id not in seen
        ]
        merged += found
        seen.update(t.id for t in found)
        frontier = [t.id for t in found]
    return ticket, merged


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
    found = matching_agents(session, who, active_only=False)
    if not found:
        raise UserError(f"no agent {who!r}: give an agent's address or name (see 'maildctl agent list')")
    if len(found) > 1:
        raise UserError(
            f"{who!r} names {len(found)} agents ({', '.join(a.email for a in found)}): give the address"
        )
    agent = found[0]
    if active and not agent.active:
        raise UserError(
            f"agent {agent.email} is inactive: activate them with 'maildctl agent set {agent.email} --active'"
        )
    return agent
