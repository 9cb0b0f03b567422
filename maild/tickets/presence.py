"""Who of a desk's agents is present: MUTicket's "present supporters". An agent marked away (by maildctl,
`#away` by mail, or their own out-of-office reply) is away from `away_since` until `away_until`, or until
they come back when it has no end."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from maild.mail.return_date import stated_return
from maild.storage.models import Agent, Ticket, naive_utc
from maild.tickets.ticket_ops import iso, record


def is_present(agent: Agent, now: dt.datetime) -> bool:
    if not agent.active:
        return False
    if agent.away_since is None:
        return True
    return agent.away_until is not None and agent.away_until <= naive_utc(now)


def present_agents(ticket: Ticket, now: dt.datetime) -> list[Agent]:
    """The ticket's category's present agents (who are still on its desk), else the desk's present agents;
    empty when nobody is present."""
    if ticket.category is not None:
        in_category = [a for a in ticket.category.agents if is_present(a, now) and ticket.desk in a.desks]
        if in_category:
            return in_category
    return sorted((a for a in ticket.desk.agents if is_present(a, now)), key=lambda a: a.id)


def mark_away(
    session: Session,
    agent: Agent,
    until: dt.datetime | None,
    *,
    actor: str,
    now: dt.datetime,
    ticket_id: int | None = None,
    why: str = "",
) -> None:
    """Away from now until `until` (naive or aware UTC; None: until they come back), audited (on
    `ticket_id`'s log too when a ticket's mail said so, with `why`)."""
    agent.away_since = naive_utc(now)
    agent.away_until = naive_utc(until) if until is not None else None
    detail = {"agent": agent.email, "until": iso(agent.away_until)}
    if why:
        detail["why"] = why
    record(session, "agent_away", detail, actor=actor, ticket_id=ticket_id)


def mark_back(session: Session, agent: Agent, *, actor: str) -> None:
    """Present again, audited (also when they were not away: the caller asked)."""
    agent.away_since = agent.away_until = None
    record(session, "agent_back", {"agent": agent.email}, actor=actor)


def away_window(agent: Agent, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(away_since, away_until) while the agent is away, (None, None) once present again: an expired
    away_until is not cleared by anyone (a list never writes; the audit row keeps the window), it just
    stops counting, and the next mark_away or mark_back overwrites it."""
    if agent.away_since is None:
        return None, None
    if agent.away_until is not None and agent.away_until <= naive_utc(now):
        return None, None
    return agent.away_since, agent.away_until


def agent_timezone(agent: Agent) -> ZoneInfo:
    """The time zone an agent's dates are read in: their desks' when all of them share one, else UTC."""
    zones = {desk.timezone for desk in agent.desks}
    if len(zones) == 1:
        try:
            return ZoneInfo(zones.pop())
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def return_moment(text: str, zone: dt.tzinfo) -> dt.datetime:
    """When an agent is back, as `agent away --until` and `#away until` write it: an ISO date (the day they
    are back: its start) or date-time, read in `zone` (theirs, agent_timezone) unless it has an offset.
    ValueError for anything else."""
    value = text.strip()
    if len(value) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(0, 0), tzinfo=zone)
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def back_at(agent: Agent, day: dt.date) -> dt.datetime:
    """The moment an agent who is back on `day` is present again: its start in agent_timezone (aware)."""
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=agent_timezone(agent))


OUT_OF_OFFICE_ACTOR = "out-of-office"


def away_by_out_of_office(
    session: Session, agent: Agent, ticket: Ticket, text: str, *, now: dt.datetime
) -> str:
    """The agent's own out-of-office reply to a notice (`text`: its subject and visible text) marks them
    away until the day it states they are back (maild.mail.return_date, read in their time zone), else
    with no end: Exchange and Gmail answer each sender once per absence, so a guessed end could not be
    renewed by a later reply, and notices would go to someone absent; `#back` or `maildctl agent back`
    ends it. A stated day already past is ignored (an old text), as is a reply that changes nothing (a
    responder answering every notice; an end an admin set is kept when the reply states none). Audited
    on the ticket's log; what was done, for the spool row."""
    today = now.astimezone(agent_timezone(agent)).date()
    day = stated_return(text, today)
    until = back_at(agent, day) if day is not None and day > today else None
    away = not is_present(agent, now) and agent.away_since is not None
    if away and (until is None or naive_utc(until) == agent.away_until):
        return f"agent {agent.email} is away already"
    why = "out-of-office reply" + (
        f" stating {day.isoformat()}, already past" if until is None and day else ""
    )
    mark_away(session, agent, until, actor=OUT_OF_OFFICE_ACTOR, now=now, ticket_id=ticket.id, why=why)
    return f"agent {agent.email} marked away by their out-of-office reply, until " + (
        iso(agent.away_until) or "they are marked back"
    )
