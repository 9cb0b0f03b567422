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
from sqlalchemy.orm import Session, selectinload

from maild.outbound.language import SOURCE_LANGUAGE, known, translations
from maild.outbound.outgoing import agent_display_name
from maild.storage import attachments as attachment_store
from maild.storage.models import Agent, Attachment, Contact, Message, Ticket
from maild.tickets.ticket_links import open_link

VISIBLE_KINDS = ("customer", "agent")


@dataclass(frozen=True)
class PageAttachment:
    id: int
    filename: str
    size: int


@dataclass(frozen=True)
class PageMessage:
    author: str  # a name, "You", or the desk's name; never an address
    from_desk: bool
    created_at: dt.datetime
    text: str
    attachments: tuple[PageAttachment, ...]


@dataclass(frozen=True)
class TicketPage:
    number: str
    subject: str
    status: str
    priority: str
    desk_name: str
    messages: tuple[PageMessage, ...]
    language: str = SOURCE_LANGUAGE  # the desk's: the page's words and dates (maild.outbound.language)


def _visible_messages(session: Session, ticket: Ticket) -> list[Message]:
    return list(
        session.scalars(
            select(Message)
            .where(Message.ticket_id == ticket.id, Message.kind.in_(VISIBLE_KINDS))
            .options(selectinload(Message.attachments))  # one query, not one per message
            .order_by(Message.created_at, Message.id)
        )
    )


def local_time(at: dt.datetime, timezone: str) -> dt.datetime:
    """A stored (naive UTC) time in the desk's time zone (UTC when the zone is unknown here)."""
    try:
        zone: dt.tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return at.replace(tzinfo=dt.UTC).astimezone(zone)


def _desk_name(ticket: Ticket) -> str:
    return ticket.desk.sender_name or ticket.desk.name


def _agent_names(session: Session, ticket: Ticket, messages: list[Message]) -> dict[str, str]:
    """Each agent reply's author as the customer saw it (the agent's display name), in one query."""
    addresses = {m.from_address.lower() for m in messages if m.kind == "agent"}
    if not addresses:
        return {}
    agents = session.scalars(select(Agent).where(Agent.email.in_(addresses)))
    return {agent.email: agent_display_name(agent) for agent in agents}


def _author(ticket: Ticket, message: Message, viewer: Contact, agent_names: dict[str, str]) -> str:
    if message.kind == "agent":
        return agent_names.get(message.from_address.lower()) or _desk_name(ticket)
    words = translations(ticket.desk.language)
    if message.from_address.lower() == viewer.email:
        return words.pgettext("author of a message", "You")
    # Another participant: the name they gave, never their address.
    return message.from_name.strip() or words.gettext("another participant")


def _text(message: Message) -> str:
    if message.kind == "agent":
        return message.visible_text  # what was relayed; `text` is the agent's whole mail
    return message.visible_text or message.text


def _attachments(message: Message) -> tuple[PageAttachment, ...]:
    return tuple(
        PageAttachment(row.id, row.filename, row.size)
        for row in message.attachments
        if row.refused_reason is None and row.sha256
    )


def ticket_page(session: Session, key: bytes, token: str) -> TicketPage | None:
    """The page a token opens, or None (unknown, revoked, blocked: the caller answers 404)."""
    opened = open_link(session, key, token)
    if opened is None:
        return None
    ticket = opened.ticket
    visible = _visible_messages(session, ticket)
    agent_names = _agent_names(session, ticket, visible)
    messages = tuple(
        PageMessage(
            author=_author(ticket, message, opened.contact, agent_names),
            from_desk=message.kind == "agent",
            created_at=local_time(message.created_at, ticket.desk.timezone),
            text=_text(message),
            attachments=_attachments(message),
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
        language=known(ticket.desk.language),
    )


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
