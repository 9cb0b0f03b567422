"""Customers' ratings of agent replies (issue 18): 1-5 and an optional comment, given on the ticket page
when the desk has `web_ratings` on. One rating per reply and contact, changed in place; every change is
audited with the contact as the actor. Read back by the page, `maildctl ticket show --json` and the
reports (rating_tallies)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import Agent, Contact, Desk, Message, Rating, Ticket, naive_utc
from maild.tickets.ticket_ops import audit, iso

SCORES = (1, 2, 3, 4, 5)
COMMENT_MAX = 2000  # characters


def customer_actor(contact: Contact) -> str:
    """The audit actor of what a customer does on the ticket page."""
    return f"customer:{contact.email}"


def rateable_reply(session: Session, ticket: Ticket, message_id: int) -> Message | None:
    """The agent reply `message_id` of `ticket` when its desk takes ratings, else None."""
    if not ticket.desk.web_ratings:
        return None
    message = session.get(Message, message_id)
    if message is None or message.ticket_id != ticket.id or message.kind != "agent":
        return None
    return message


def contact_ratings(session: Session, ticket: Ticket, contact: Contact) -> dict[int, Rating]:
    """`contact`'s ratings on `ticket`, by the rated message's id."""
    rows = session.scalars(
        select(Rating).where(Rating.ticket_id == ticket.id, Rating.contact_id == contact.id)
    )
    return {row.message_id: row for row in rows}


def rate(
    session: Session,
    ticket: Ticket,
    contact: Contact,
    reply: Message,
    score: int,
    comment: str,
    *,
    now: dt.datetime,
) -> Rating:
    """Store (or change) `contact`'s rating of `reply`; audited as `rating` (before/after the score)."""
    if score not in SCORES:
        raise ValueError(f"score {score} is not one of 1-5")
    comment = comment.strip()[:COMMENT_MAX]
    row = session.scalars(
        select(Rating).where(Rating.message_id == reply.id, Rating.contact_id == contact.id)
    ).first()
    before = row.score if row is not None else None
    if row is None:
        agent_id = session.scalars(select(Agent.id).where(Agent.email == reply.from_address.lower())).first()
        row = Rating(
            message_id=reply.id,
            ticket_id=ticket.id,
            contact_id=contact.id,
            agent_id=agent_id,
            desk_id=reply.desk_id,
            created_at=naive_utc(now),
        )
        session.add(row)
    row.score, row.comment, row.updated_at = score, comment, naive_utc(now)
    audit(
        session,
        ticket,
        "rating",
        actor=customer_actor(contact),
        now=now,
        message=reply.id,
        before=before,
        after=score,
        comment=comment,
    )
    session.flush()
    return row


def ratings_of_messages(session: Session, message_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Each message's ratings as maildctl's JSON shows them, oldest first."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    ids = list(message_ids)
    if not ids:
        return found
    for row, email in session.execute(
        select(Rating, Contact.email)
        .join(Contact, Contact.id == Rating.contact_id)
        .where(Rating.message_id.in_(ids))
        .order_by(Rating.created_at, Rating.id)
    ):
        found[row.message_id].append(
            {"contact": email, "score": row.score, "comment": row.comment, "rated_at": iso(row.updated_at)}
        )
    return found


@dataclass
class RatingTally:
    scores: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """count, mean (2 decimals, None without ratings), distribution {"1": n, … "5": n}."""
        counted = Counter(self.scores)
        return {
            "count": len(self.scores),
            "mean": round(sum(self.scores) / len(self.scores), 2) if self.scores else None,
            "distribution": {str(score): counted.get(score, 0) for score in SCORES},
        }


def rating_tallies(
    session: Session, *, desk: Desk | None, since: dt.datetime | None, until: dt.datetime
) -> tuple[dict[str, RatingTally], dict[str, RatingTally]]:
    """Ratings last given or changed in the window, by desk name and by the rated agent's address (a
    reply whose agent is gone counts for its desk only). A merged ticket's ratings count: a rating is of
    one reply, whichever ticket shows it now."""
    query = (
        select(Rating.score, Desk.name, Agent.email)
        .join(Desk, Desk.id == Rating.desk_id)
        .outerjoin(Agent, Agent.id == Rating.agent_id)
        .where(Rating.updated_at <= until)
    )
    if desk is not None:
        query = query.where(Rating.desk_id == desk.id)
    if since is not None:
        query = query.where(Rating.updated_at >= since)
    desks: dict[str, RatingTally] = defaultdict(RatingTally)
    agents: dict[str, RatingTally] = defaultdict(RatingTally)
    for score, desk_name, agent_email in session.execute(query):
        desks[desk_name].scores.append(score)
        if agent_email is not None:
            agents[agent_email].scores.append(score)
    return desks, agents
