"""What a ticket's web page shows its customer (`/t/<token>`, maild.ingress.web), as plain data.

The rule is the one of the mail they got: customer and agent messages only (never notes, system notes
or held replies: maild.tickets.export.INTERNAL_KINDS), an agent's reply as it was relayed (its visible
text, under the agent's display name, never the agent's address or the rest of the agent's mail), a
customer's mail as its visible text. No address appears on the page at all: the viewer's own messages
say "You", other people are shown by their name. Attachments are listed when they were stored.

Read-only: nothing here writes, so a page view (or a mail scanner following the link) changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.outbound.language import SOURCE_LANGUAGE, known, translations
from maild.outbound.outgoing import agent_display_name
from maild.storage import attachments as attachment_store
from maild.storage.models import Agent, Attachment, Contact, Message, Rating, Ticket
from maild.tickets.ratings import contact_ratings
from maild.tickets.ticket_links import open_link
from maild.tickets.web_reply import can_reply

VISIBLE_KINDS = ("customer", "agent")


@dataclass(frozen=True)
class PageAttachment:
    id: int
    filename: str
    size: int


@dataclass(frozen=True)
class PageRating:
    score: int
    comment: str


@dataclass(frozen=True)
class PageMessage:
    id: int
    author: str  # a name, "You", or the desk's name; never an address
    from_desk: bool
    created_at: dt.datetime
    text: str
    attachments: tuple[PageAttachment, ...]
    rating: PageRating | None = None  # the viewer's rating of this agent reply


@dataclass(frozen=True)
class TicketPage:
    number: str
    subject: str
    status: str
    priority: str
    desk_name: str
    messages: tuple[PageMessage, ...]
    can_reply: bool = False  # not closed: the reply form is shown
    ratings_on: bool = False  # the desk takes ratings of agent replies
    language: str = SOURCE_LANGUAGE  # the desk's: the page's words and dates (maild.outbound.language)


@dataclass(frozen=True)
class _Shown:
    """The columns of a message the page needs (not the ORM object: a long ticket's page is read often)."""

    id: int
    kind: str
    from_address: str
    from_name: str
    created_at: dt.datetime
    text: str
    visible_text: str


def _visible_messages(session: Session, ticket: Ticket) -> list[_Shown]:
    rows = session.execute(
        select(
            Message.id,
            Message.kind,
            Message.from_address,
            Message.from_name,
            Message.created_at,
            Message.text,
            Message.visible_text,
        )
        .where(Message.ticket_id == ticket.id, Message.kind.in_(VISIBLE_KINDS))
        .order_by(Message.created_at, Message.id)
    )
    return [_Shown(*row) for row in rows]


def _stored_attachments(session: Session, ticket: Ticket) -> dict[int, list[PageAttachment]]:
    """The stored (not refused) attachments of the ticket's visible messages, by message, in one query."""
    rows = session.execute(
        select(Attachment.message_id, Attachment.id, Attachment.filename, Attachment.size)
        .join(Message, Message.id == Attachment.message_id)
        .where(
            Message.ticket_id == ticket.id,
            Message.kind.in_(VISIBLE_KINDS),
            Attachment.refused_reason.is_(None),
            Attachment.sha256 != "",
        )
        .order_by(Attachment.id)
    )
    found: dict[int, list[PageAttachment]] = {}
    for message_id, attachment_id, filename, size in rows:
        found.setdefault(message_id, []).append(PageAttachment(attachment_id, filename, size))
    return found


def local_time(at: dt.datetime, timezone: str) -> dt.datetime:
    """A stored (naive UTC) time in the desk's time zone (UTC when the zone is unknown here)."""
    try:
        zone: dt.tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return at.replace(tzinfo=dt.UTC).astimezone(zone)


def _desk_name(ticket: Ticket) -> str:
    return ticket.desk.sender_name or ticket.desk.name


def _agent_names(session: Session, ticket: Ticket, messages: list[_Shown]) -> dict[str, str]:
    """Each agent reply's author as the customer saw it (the agent's display name), in one query."""
    addresses = {m.from_address.lower() for m in messages if m.kind == "agent"}
    if not addresses:
        return {}
    agents = session.scalars(select(Agent).where(Agent.email.in_(addresses)))
    return {agent.email: agent_display_name(agent) for agent in agents}


def _author(ticket: Ticket, message: _Shown, viewer: Contact, agent_names: dict[str, str]) -> str:
    if message.kind == "agent":
        return agent_names.get(message.from_address.lower()) or _desk_name(ticket)
    words = translations(ticket.desk.language)
    if message.from_address.lower() == viewer.email:
        return words.pgettext("author of a message", "You")
    # Another participant: the name they gave, never their address.
    return message.from_name.strip() or words.gettext("another participant")


def _text(message: _Shown) -> str:
    if message.kind == "agent":
        return message.visible_text  # what was relayed; `text` is the agent's whole mail
    return message.visible_text or message.text


def ticket_page(session: Session, key: bytes, token: str) -> TicketPage | None:
    """The page a token opens, or None (unknown, revoked, blocked: the caller answers 404)."""
    opened = open_link(session, key, token)
    if opened is None:
        return None
    ticket = opened.ticket
    visible = _visible_messages(session, ticket)
    stored = _stored_attachments(session, ticket)
    agent_names = _agent_names(session, ticket, visible)
    rated = contact_ratings(session, ticket, opened.contact) if ticket.desk.web_ratings else {}
    messages = tuple(
        PageMessage(
            id=message.id,
            author=_author(ticket, message, opened.contact, agent_names),
            from_desk=message.kind == "agent",
            created_at=local_time(message.created_at, ticket.desk.timezone),
            text=_text(message),
            attachments=tuple(stored.get(message.id, ())),
            rating=_rating(rated.get(message.id)),
        )
        for message in visible
    )
    return TicketPage(
        number=ticket.number,
        subject=ticket.subject,
        status=ticket.status,
        priority=ticket.priority,
        desk_name=_desk_name(ticket),
        messages=messages,
        can_reply=can_reply(ticket),
        ratings_on=ticket.desk.web_ratings,
        language=known(ticket.desk.language),
    )


def _rating(row: Rating | None) -> PageRating | None:
    return PageRating(row.score, row.comment) if row is not None else None


@dataclass(frozen=True)
class PageFile:
    path: Path
    filename: str
    content_type: str


def attachment_file(
    session: Session, key: bytes, attachment_dir: Path, token: str, attachment_id: int
) -> PageFile | None:
    """An attachment of a customer-visible message of the ticket the token opens, or None."""
    opened = open_link(session, key, token)
    if opened is None:
        return None
    row = session.get(Attachment, attachment_id)
    if row is None or row.refused_reason is not None or not row.sha256:
        return None
    message = row.message
    if message.ticket_id != opened.ticket.id or message.kind not in VISIBLE_KINDS:
        return None
    path = attachment_store.path_of(attachment_dir, row.sha256)
    if not path.is_file():
        return None
    return PageFile(path, row.filename, row.content_type)
