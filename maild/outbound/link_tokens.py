"""Ticket links' tokens (issue 18): made and read here, below maild.tickets, so that a mail's composer
can put each recipient's own link into the text it renders for them. maild.tickets.ticket_links opens,
lists, issues and revokes them (see its docstring for what a token is)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import Contact, Ticket, TicketLink, naive_utc

NONCE_BYTES = 16
MAC_BYTES = 16
PART = 22  # base64url characters of 16 bytes, unpadded
TOKEN_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{2 * PART}}}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def link_key(secret: bytes) -> bytes:
    """The links' own key, derived from the server secret (the reply addresses' MACs use it directly)."""
    return hmac.new(secret, b"maild ticket links", hashlib.sha256).digest()


def link_mac(key: bytes, nonce: str, ticket_id: int, contact_id: int) -> str:
    message = f"link:{nonce}:{ticket_id}:{contact_id}".encode("ascii")
    return _b64(hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES])


def token_of(key: bytes, link: TicketLink) -> str:
    """The link's token (its row has a nonce: every link issued since migration 0015)."""
    assert link.nonce is not None
    return link.nonce + link_mac(key, link.nonce, link.ticket_id, link.contact_id)


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/t/{token}"


def recipients(ticket: Ticket) -> list[tuple[Contact, str]]:
    """The customer, then each sub-customer: whoever gets the ticket's customer-visible mail."""
    found = [(ticket.customer, "customer")]
    for participant in ticket.participants:
        if participant.role == "cc" and participant.contact_id != ticket.customer_id:
            found.append((participant.contact, "cc"))
    return found


def active_link(session: Session, ticket: Ticket, contact: Contact) -> TicketLink | None:
    return session.scalars(
        select(TicketLink)
        .where(
            TicketLink.ticket_id == ticket.id,
            TicketLink.contact_id == contact.id,
            TicketLink.revoked_at.is_(None),
            TicketLink.nonce.is_not(None),
        )
        .order_by(TicketLink.id.desc())
    ).first()


def new_link(session: Session, ticket: Ticket, contact: Contact, *, now: dt.datetime) -> TicketLink:
    """A new link row for `contact` on `ticket` (its token: token_of)."""
    link = TicketLink(
        ticket_id=ticket.id,
        contact_id=contact.id,
        nonce=_b64(secrets.token_bytes(NONCE_BYTES)),
        created_at=naive_utc(now),
    )
    session.add(link)
    session.flush()
    return link


def token_for(session: Session, key: bytes, ticket: Ticket, contact: Contact, *, now: dt.datetime) -> str:
    """`contact`'s token for `ticket`: their current link's, or a new link's (not audited: a link issued
    for a mail is part of that mail)."""
    link = active_link(session, ticket, contact)
    if link is not None:
        return token_of(key, link)
    return token_of(key, new_link(session, ticket, contact, now=now))
