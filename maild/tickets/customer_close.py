"""A customer closes their ticket from its web page (issue 18).

The status changes through ticket_ops.set_status, as `maildctl ticket close` and `#close` change it,
audited with the contact as the actor (`customer:<address>`). maild has no notice of status changes, so
the agents hear of it the way they hear of the customer's mail: a system note on the ticket, and the
`customer_reply_notice` to the agents who would be told of the ticket's mail (assigned, else category,
else desk), its text saying that the customer closed the ticket on the page. That notice is a courtesy: a
template that cannot be composed leaves a system note, never takes the close back."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from maild.config import Config
from maild.storage.db import is_transient
from maild.storage.models import Contact, Ticket
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops
from maild.tickets.notices import CUSTOMER_REPLY_NOTICE, notice_recipients
from maild.tickets.ratings import customer_actor
from maild.tickets.replies import queue_agent_notice

CLOSED = "closed"


@dataclass(frozen=True)
class Closed:
    done: bool  # False: it was closed already, nothing changed
    outbox_ids: list[int] = field(default_factory=list)  # the agents' notices, to send right away


def close_by_customer(
    session: Session, cfg: Config, ticket: Ticket, contact: Contact, *, now: dt.datetime
) -> Closed:
    """Close `ticket` for `contact` and queue the agents' notices."""
    if ticket.status == CLOSED:
        return Closed(False)
    ticket_ops.set_status(session, ticket, CLOSED, actor=customer_actor(contact), now=now)
    said = f"{contact.display_name or contact.email} <{contact.email}> closed the ticket on its web page."
    add_system_note(session, ticket, said, by="web", at=now)
    session.flush()
    return Closed(True, _tell_agents(session, cfg, ticket, contact, said, now=now))


def _tell_agents(
    session: Session, cfg: Config, ticket: Ticket, contact: Contact, said: str, *, now: dt.datetime
) -> list[int]:
    """The notices queued (outbox ids)."""
    queued: list[int] = []
    variables = {
        "sender_name": contact.display_name or contact.email,
        "sender_email": contact.email,
        "comment_content": f"[{said}]",
        "attachments": [],
        "automatic": "",
    }
    for agent in notice_recipients(session, ticket, now=now):
        try:
            row = queue_agent_notice(
                session, cfg, ticket, CUSTOMER_REPLY_NOTICE, agent, now=now, variables=variables
            )
        except Exception as exc:
            if is_transient(exc):
                raise
            note = f"{CUSTOMER_REPLY_NOTICE} to {agent.email} not sent: {type(exc).__name__}: {exc}"
            add_system_note(session, ticket, note, by="web", at=now)
            continue
        if row is not None:
            session.flush()
            queued.append(row.id)
    return queued
