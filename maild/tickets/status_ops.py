"""Changes to a desk's custom statuses and categories, and to a ticket's category, each with its audit
entry (maildctl status and category)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.storage.models import Agent, Category, Desk, DeskStatus, Ticket, naive_utc
from maild.tickets import ticket_ops
from maild.tickets.ticket_ops import record


def add_status(session: Session, desk: Desk, name: str, description: str, *, actor: str) -> None:
    session.add(DeskStatus(desk_id=desk.id, name=name, description=description))
    record(session, "status_add", {"desk": desk.name, "name": name, "description": description}, actor=actor)


def remove_status(session: Session, desk: Desk, row: DeskStatus, *, actor: str) -> None:
    detail = {"desk": desk.name, "name": row.name, "description": row.description}
    record(session, "status_remove", detail, actor=actor)
    session.delete(row)


def add_category(session: Session, desk: Desk, name: str, agents: list[Agent], *, actor: str) -> None:
    session.add(Category(desk_id=desk.id, name=name, agents=agents))
    detail = {"desk": desk.name, "name": name, "agents": [a.email for a in agents]}
    record(session, "category_add", detail, actor=actor)


def remove_category(
    session: Session, desk: Desk, category: Category, *, actor: str, now: dt.datetime
) -> list[Ticket]:
    """Remove `category`; its tickets are left without one. The tickets changed."""
    tickets = list(session.scalars(select(Ticket).where(Ticket.category_id == category.id)))
    # Set here, not only by ON DELETE SET NULL: each ticket that loses its category gets its audit entry.
    for ticket in tickets:
        ticket.category_id = None
        ticket_ops.audit(session, ticket, "category", actor=actor, now=now, before=category.name, after=None)
    detail = {
        "desk": desk.name,
        "name": category.name,
        "agents": [a.email for a in category.agents],
        "tickets": [t.number for t in tickets],
    }
    record(session, "category_remove", detail, actor=actor)
    session.flush()
    session.delete(category)
    return tickets


def set_category_agents(
    session: Session, desk: Desk, category: Category, agents: list[Agent], *, actor: str
) -> None:
    before = [a.email for a in category.agents]
    category.agents = sorted(agents, key=lambda a: a.id)
    after = [a.email for a in category.agents]
    detail = {"desk": desk.name, "name": category.name, "before": before, "after": after}
    record(session, "category_agents", detail, actor=actor)


def category_named(session: Session, desk_id: int, name: str) -> Category | None:
    """The desk's category of that name. One name per desk whatever its case: "Billing" and "billing"
    would be two categories to nobody."""
    wanted = " ".join(name.split()).lower()
    return session.scalars(
        select(Category).where(Category.desk_id == desk_id, func.lower(Category.name) == wanted)
    ).first()


def set_category(
    session: Session, ticket: Ticket, category: Category | None, *, actor: str, now: dt.datetime
) -> tuple[str | None, str | None]:
    """Give `ticket` `category` (None: no category); audited when it changes. (before, after) names."""
    before = ticket.category.name if ticket.category is not None else None
    after = category.name if category is not None else None
    if before != after:
        ticket.category = category
        ticket.updated_at = naive_utc(now)
        ticket_ops.audit(session, ticket, "category", actor=actor, now=now, before=before, after=after)
    return before, after
