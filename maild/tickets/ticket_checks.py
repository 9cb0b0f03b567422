"""The checks of what a caller names, shared by maildctl and the JSON API (issue 19): a status of a
ticket's desk, a priority, a tag, an agent, a desk. Each returns the stored name or row, or raises
InvalidValue with a one-line message; `cli_message` adds where maildctl shows the list (the API, which
has no such command, leaves it out)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import PRIORITIES, Agent, Desk, Ticket
from maild.tickets.commands import TAG_PATTERN
from maild.tickets.lookup import matching_agents
from maild.tickets.statuses import normalise_status, statuses_of


class InvalidValue(ValueError):
    """A value that names nothing known (an unknown status, agent, priority …): the API's 422."""

    def __init__(self, message: str, cli_hint: str = "") -> None:
        super().__init__(message)
        self.cli_hint = cli_hint  # e.g. " (see 'maildctl agent list')": what maildctl adds

    @property
    def cli_message(self) -> str:
        return str(self) + self.cli_hint


class MalformedValue(InvalidValue):
    """A value that is not even of the right form (an age without its unit): the API's 400."""


def status_name(session: Session, ticket: Ticket, text: str) -> str:
    """`text` as one of the ticket's desk's statuses ("On Hold" is on_hold)."""
    allowed = statuses_of(session, ticket.desk_id)
    found = next((s for s in allowed if s == normalise_status(text)), None)
    if found is None:
        raise InvalidValue(
            f"unknown status {text!r} for desk {ticket.desk.name}: use one of {', '.join(allowed)}",
            " (custom ones: 'maildctl status add')",
        )
    return found


def priority_name(text: str, option: str = "priority") -> str:
    """`text` as one of PRIORITIES; `option`: how the caller calls the value in the message."""
    priority = text.strip().lower()
    if priority not in PRIORITIES:
        raise InvalidValue(f"unknown {option} {text!r}: use one of {', '.join(PRIORITIES)}")
    return priority


def tag_name(text: str) -> str:
    tag = text.strip().lower()
    if not TAG_PATTERN.fullmatch(tag):
        raise InvalidValue(f"{text!r} is not a tag: use 1-100 letters, digits and - _ . : /")
    return tag


def agent_named(session: Session, who: str, *, active: bool = True) -> Agent:
    """An agent by address, or by name or display name (case-insensitive); `active`: refuse an inactive
    one (they get no mail)."""
    found = matching_agents(session, who, active_only=False)
    if not found:
        raise InvalidValue(
            f"no agent {who!r}: give an agent's address or name", " (see 'maildctl agent list')"
        )
    if len(found) > 1:
        raise InvalidValue(
            f"{who!r} names {len(found)} agents ({', '.join(a.email for a in found)}): give the address"
        )
    agent = found[0]
    if active and not agent.active:
        raise InvalidValue(
            f"agent {agent.email} is inactive",
            f": activate them with 'maildctl agent set {agent.email} --active'",
        )
    return agent


def desk_named(session: Session, name: str, option: str = "") -> Desk:
    """The desk named `name` (`option`: the option it came from, named in the message)."""
    desk = session.scalars(select(Desk).where(Desk.name == name)).first()
    if desk is None:
        raise InvalidValue(
            f"no desk named {name!r}{' (' + option + ')' if option else ''}", ": see 'maildctl desk list'"
        )
    return desk
