"""Which statuses a desk's tickets may have: the built-in ones and the desk's own (`maildctl status add`),
how a typed status name is spelled, and what still uses a custom status."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from maild.storage.models import TICKET_STATUSES, Desk, DeskStatus, EscalationRule, Ticket

MAX_NAME = 30  # tickets.status is VARCHAR(30)
_NAME = re.compile(rf"[a-z0-9_]{{1,{MAX_NAME}}}")

# What the built-in statuses mean (DESIGN.md §3), for `maildctl status list`.
BUILTIN_DESCRIPTIONS = {
    "open": "waiting on us (a new ticket, or the customer replied)",
    "in_progress": "an agent is working on it",
    "waiting": "answered, waiting on the customer",
    "on_hold": "parked",
    "resolved": "solved, may still be auto-closed",
    "closed": "done; a late customer reply reopens it or opens a linked ticket",
}


class InvalidStatus(ValueError):
    """A name that cannot be a custom status; the message says why."""


def normalise_status(text: str) -> str:
    """ "On Hold", "on-hold" and "on_hold" are one status to a person typing it (as maild.tickets.commands
    does)."""
    return re.sub(r"[\s-]+", "_", text.strip().lower())


def custom_status_name(text: str) -> str:
    """The stored name of a new custom status; InvalidStatus if it is not allowed."""
    name = normalise_status(text)
    if not _NAME.fullmatch(name):
        raise InvalidStatus(
            f"invalid status name {text!r}: use 1-{MAX_NAME} lower-case letters, digits and '_'"
        )
    if name in TICKET_STATUSES:
        raise InvalidStatus(f"{name!r} is a built-in status already: every desk has it")
    return name


def custom_statuses(session: Session, desk_id: int) -> list[str]:
    return list(
        session.scalars(select(DeskStatus.name).where(DeskStatus.desk_id == desk_id).order_by(DeskStatus.id))
    )


def statuses_of(session: Session, desk_id: int) -> tuple[str, ...]:
    """The built-in statuses, then the desk's custom ones."""
    return (*TICKET_STATUSES, *(s for s in custom_statuses(session, desk_id) if s not in TICKET_STATUSES))


def find_custom(session: Session, desk_id: int, name: str) -> DeskStatus | None:
    return session.scalars(
        select(DeskStatus).where(DeskStatus.desk_id == desk_id, DeskStatus.name == normalise_status(name))
    ).first()


@dataclass(frozen=True)
class StatusUses:
    """What would be left pointing at a removed custom status."""

    tickets: int
    auto_close: bool  # listed in the desk's auto_close_statuses
    escalation_rules: list[str]  # names of the desk's rules that read or set it

    def __bool__(self) -> bool:
        return bool(self.tickets or self.auto_close or self.escalation_rules)


def uses_of(session: Session, desk: Desk, name: str) -> StatusUses:
    tickets = session.scalar(
        select(func.count()).select_from(Ticket).where(Ticket.desk_id == desk.id, Ticket.status == name)
    )
    rules = session.scalars(
        select(EscalationRule.name)
        .where(
            or_(
                and_(
                    EscalationRule.desk_id == desk.id,
                    or_(EscalationRule.in_status == name, EscalationRule.set_status == name),
                ),
                # another desk's rule that moves its tickets here with this status
                and_(EscalationRule.set_desk_id == desk.id, EscalationRule.set_status == name),
            )
        )
        .order_by(EscalationRule.name)
    )
    auto_close = name in (s.strip() for s in desk.auto_close_statuses.split(","))
    return StatusUses(tickets or 0, auto_close, list(rules))


def ticket_counts(session: Session, desk_id: int | None = None) -> dict[tuple[int, str], int]:
    """(desk id, status) → number of tickets, for every pair that has any."""
    query = select(Ticket.desk_id, Ticket.status, func.count()).group_by(Ticket.desk_id, Ticket.status)
    if desk_id is not None:
        query = query.where(Ticket.desk_id == desk_id)
    return {(desk, status): count for desk, status, count in session.execute(query)}
