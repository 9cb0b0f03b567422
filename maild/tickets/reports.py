"""The numbers a support lead asks for: tickets opened and closed, first-response and resolution times
(median, p90) per desk and per agent, the backlog by status, time spent per agent.

Definitions (what the numbers mean is the contract of `maildctl report --json`):
- opened: tickets created in the window. closed: tickets now `resolved` or `closed` whose status changed
  to that in the window.
- first response: for tickets opened in the window, the time from creation to the first agent reply
  (a message of kind `agent`: relayed to the customer). Credited to the agent who wrote it.
- resolution: for tickets opened in the window and now resolved or closed, creation to that status
  change. Credited to the assigned agent, else `(unassigned)`.
- backlog: tickets by current status, whatever their age (the window does not apply).
- time spent: `#time` / time entries logged in the window.
- ratings: customers' ratings (1-5) of agent replies given or last changed in the window, per desk and per
  rated agent: count, mean, distribution (maild.tickets.ratings.rating_tallies).
Tickets merged into another are left out: their messages count on the survivor (ratings, of one reply
each, count wherever the reply is)."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import Agent, Desk, Message, Ticket, TimeEntry
from maild.tickets.ratings import RatingTally, rating_tallies

DONE_STATUSES = ("resolved", "closed")
UNASSIGNED = "(unassigned)"


def percentile(values: Iterable[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(minutes: list[float]) -> dict[str, Any]:
    """Count, median and p90 of durations in minutes (None without any)."""
    if not minutes:
        return {"count": 0, "median_minutes": None, "p90_minutes": None}
    return {
        "count": len(minutes),
        "median_minutes": round(statistics.median(minutes), 1),
        "p90_minutes": round(percentile(minutes, 0.9), 1),
    }


@dataclass
class _Tally:
    opened: int = 0
    closed: int = 0
    first_response: list[float] = field(default_factory=list)
    resolution: list[float] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    minutes_spent: int = 0


def _minutes(later: dt.datetime, earlier: dt.datetime) -> float:
    return max(0.0, (later - earlier).total_seconds() / 60)


@dataclass(frozen=True)
class _Window:
    since: dt.datetime | None
    until: dt.datetime

    def __contains__(self, at: dt.datetime | None) -> bool:
        return at is not None and (self.since is None or at >= self.since) and at <= self.until


def build_report(
    session: Session, *, desk: Desk | None, since: dt.datetime | None, now: dt.datetime
) -> dict[str, Any]:
    """The report over tickets of `desk` (all desks when None) in the window [since, now] (naive UTC)."""
    query = select(Ticket).where(Ticket.merged_into_id.is_(None))
    if desk is not None:
        query = query.where(Ticket.desk_id == desk.id)
    tickets = list(session.scalars(query.order_by(Ticket.id)))
    desks: dict[str, _Tally] = defaultdict(_Tally)
    agents: dict[str, _Tally] = defaultdict(_Tally)
    all_agents = list(session.scalars(select(Agent)))
    agent_emails_by_id = {a.id: a.email for a in all_agents}
    window = _Window(since, now)
    first_agent_reply = _first_agent_replies(session, [t.id for t in tickets])
    for ticket in tickets:
        _tally_ticket(ticket, first_agent_reply.get(ticket.id), window, agent_emails_by_id, desks, agents)
    time_query = (
        select(TimeEntry.agent_id, TimeEntry.minutes, TimeEntry.created_at, Desk.name)
        .join(Ticket, TimeEntry.ticket_id == Ticket.id)
        .join(Desk, Ticket.desk_id == Desk.id)
    )
    if desk is not None:
        time_query = time_query.where(Ticket.desk_id == desk.id)
    for agent_id, minutes, at, desk_name in session.execute(time_query):
        if at in window:
            desks[desk_name].minutes_spent += minutes
            agents[agent_emails_by_id.get(agent_id or 0, UNASSIGNED)].minutes_spent += minutes
    rated_desks, rated_agents = rating_tallies(session, desk=desk, since=since, until=now)
    for name in rated_desks:  # a desk or agent with ratings but nothing else in the window is listed too
        desks.setdefault(name, _Tally())
    for email in rated_agents:
        agents.setdefault(email, _Tally())
    return _report(window, desks, agents, {a.email: a.name for a in all_agents}, (rated_desks, rated_agents))


def _first_agent_replies(session: Session, ticket_ids: list[int]) -> dict[int, tuple[dt.datetime, str]]:
    """(when, from which address) of each ticket's first agent reply."""
    first: dict[int, tuple[dt.datetime, str]] = {}
    for ticket_id, at, sender in session.execute(
        select(Message.ticket_id, Message.created_at, Message.from_address)
        .where(Message.kind == "agent", Message.ticket_id.in_(ticket_ids))
        .order_by(Message.created_at, Message.id)
    ):
        first.setdefault(ticket_id, (at, sender))
    return first


def _tally_ticket(
    ticket: Ticket,
    first_agent_reply: tuple[dt.datetime, str] | None,
    window: _Window,
    agent_emails_by_id: dict[int, str],
    desks: dict[str, _Tally],
    agents: dict[str, _Tally],
) -> None:
    """Count one ticket into its desk's tally and its agents'."""
    tally = desks[ticket.desk.name]
    tally.backlog[ticket.status] += 1
    done_at = ticket.status_changed_at or ticket.updated_at
    if ticket.status in DONE_STATUSES and done_at in window:
        tally.closed += 1
    if ticket.created_at not in window:
        return
    tally.opened += 1
    if first_agent_reply is not None:
        at, sender = first_agent_reply
        waited = _minutes(at, ticket.created_at)
        tally.first_response.append(waited)
        agents[sender].first_response.append(waited)
    if ticket.status in DONE_STATUSES:
        took = _minutes(done_at, ticket.created_at)
        tally.resolution.append(took)
        owner = agent_emails_by_id.get(ticket.assigned_agent_id or 0, UNASSIGNED)
        agents[owner].resolution.append(took)


def _report(
    window: _Window,
    desks: dict[str, _Tally],
    agents: dict[str, _Tally],
    agent_names: dict[str, str],
    ratings: tuple[dict[str, RatingTally], dict[str, RatingTally]],
) -> dict[str, Any]:
    rated_desks, rated_agents = ratings
    since = window.since
    return {
        "since": since.isoformat() + "Z" if since is not None else None,
        "until": window.until.isoformat() + "Z",
        "desks": [
            {
                "desk": name,
                "opened": t.opened,
                "closed": t.closed,
                "first_response": summary(t.first_response),
                "resolution": summary(t.resolution),
                "backlog": dict(sorted(t.backlog.items())),
                "time_spent_minutes": t.minutes_spent,
                "ratings": rated_desks.get(name, RatingTally()).summary(),
            }
            for name, t in sorted(desks.items())
        ],
        "agents": [
            {
                "agent": email,
                "name": agent_names.get(email, ""),
                "first_responses": summary(t.first_response),
                "resolutions": summary(t.resolution),
                "time_spent_minutes": t.minutes_spent,
                "ratings": rated_agents.get(email, RatingTally()).summary(),
            }
            for email, t in sorted(agents.items())
        ],
    }
