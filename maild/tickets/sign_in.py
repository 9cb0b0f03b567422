""" "My tickets" (issue 18): a customer types their address and gets a short-lived sign-in link by mail;
the link lists their tickets, each with their own ticket link.

A sign-in token is stateless: base64url of the contact's id (8 bytes), the expiry (8 bytes, Unix seconds)
and an HMAC-SHA256 over both (first 16 bytes) under a key derived from the ticket links' key (so from the
server secret): 43 characters, unforgeable, checked in constant time. No table: a link lives 15 minutes,
is only ever a list of links the customer's mail already carries, and opening it must change nothing
(mail scanners follow links), so there is nothing to record and nothing to clean up. The price is that a
sign-in link cannot be revoked before it expires; rotating the server secret revokes them all.

Every ticket link the list shows is issued when the sign-in mail is queued (a POST), so that opening the
list only reads. A ticket whose link was revoked since is listed without a link.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.addresses import normalize
from maild.outbound.blocklist import find_block
from maild.outbound.link_tokens import active_link, link_url, token_for, token_of
from maild.outbound.outgoing import queue_desk_mail
from maild.storage.models import Contact, Participant, Ticket, naive_utc
from maild.tickets.ticket_page import local_time

SIGN_IN_MINUTES = 15
TEMPLATE = "web_sign_in"
MAC_BYTES = 16
TOKEN_BYTES = 8 + 8 + MAC_BYTES
MAX_LISTED = 200  # a customer with more tickets than this sees the latest ones
Checked = Literal["ok", "expired", "invalid"]


def sign_in_key(link_key: bytes) -> bytes:
    """Its own key: a ticket link's MAC can never pass for a sign-in token's, nor the other way round."""
    return hmac.new(link_key, b"maild sign-in links", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, b"sign-in:" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def make_token(key: bytes, contact_id: int, *, now: dt.datetime) -> str:
    expires = int(now.timestamp()) + SIGN_IN_MINUTES * 60
    payload = struct.pack(">QQ", contact_id, expires)
    return _b64(payload + _mac(key, payload))


def check_token(key: bytes, token: str, *, now: dt.datetime) -> tuple[Checked, int]:
    """("ok", contact id), ("expired", contact id) for a genuine token past its time, ("invalid", 0)."""
    if len(token) != 43 or not token.isascii():
        return "invalid", 0
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        return "invalid", 0
    if len(raw) != TOKEN_BYTES or _b64(raw) != token:  # the last character's spare bits are zero
        return "invalid", 0
    payload, mac = raw[:16], raw[16:]
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return "invalid", 0
    contact_id, expires = struct.unpack(">QQ", payload)
    if now.timestamp() >= expires:
        return "expired", contact_id
    return "ok", contact_id


def sign_in_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/my/{token}"


def _tickets_of(session: Session, contact: Contact) -> list[Ticket]:
    """The tickets `contact` is the customer or a sub-customer of (merged ones are their survivor's)."""
    cc = select(Participant.ticket_id).where(Participant.contact_id == contact.id, Participant.role == "cc")
    return list(
        session.scalars(
            select(Ticket)
            .where(or_(Ticket.customer_id == contact.id, Ticket.id.in_(cc)), Ticket.merged_into_id.is_(None))
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
            .limit(MAX_LISTED)
        )
    )


def _signable_contact(session: Session, email: str) -> Contact | None:
    address = normalize(email)
    contact = session.scalars(select(Contact).where(Contact.email == address)).first()
    if contact is None or find_block(session, [contact.email]) is not None:
        return None
    return contact


def request_sign_in(
    session: Session, cfg: Config, link_key: bytes, email: str, *, now: dt.datetime
) -> int | None:
    """Queue the sign-in mail when `email` is a contact with tickets (their links issued now, so the list
    only reads): its outbox id; None when there is nobody to write to. The caller answers the same."""
    contact = _signable_contact(session, email)
    found = _tickets_of(session, contact) if contact is not None else []
    if contact is None or not found:
        return None
    for ticket in found:
        token_for(session, link_key, ticket, contact, now=now)
    token = make_token(sign_in_key(link_key), contact.id, now=now)
    queued = queue_desk_mail(
        session,
        cfg,
        found[0].desk,  # the desk of their latest ticket: the one they know best
        TEMPLATE,
        [(contact.display_name, contact.email)],
        automatic=True,
        auto_submitted="auto-generated",
        now=now,
        variables={
            "customer_name": contact.display_name or contact.email,
            "sign_in_url": sign_in_url(cfg.web.public_url, token),
            "valid_minutes": SIGN_IN_MINUTES,
        },
    )
    if queued is None:
        return None
    session.flush()  # its id, to send it right away
    return queued.id


@dataclass(frozen=True)
class MyTicket:
    number: str
    subject: str
    status: str
    last_activity: dt.datetime  # in the ticket's desk's time zone
    url: str  # the customer's own link; "" when it was revoked since the sign-in mail
    language: str  # the ticket's desk's: the words of its status


def my_tickets(
    session: Session, cfg: Config, link_key: bytes, contact_id: int
) -> tuple[Contact, list[MyTicket]] | None:
    """The contact and their tickets, newest activity first; None when the contact is gone or blocked.
    Only reads."""
    contact = session.get(Contact, contact_id)
    if contact is None or find_block(session, [contact.email]) is not None:
        return None
    listed = []
    for ticket in _tickets_of(session, contact):
        link = active_link(session, ticket, contact)
        url = link_url(cfg.web.public_url, token_of(link_key, link)) if link is not None else ""
        at = local_time(naive_utc(ticket.updated_at), ticket.desk.timezone)
        listed.append(MyTicket(ticket.number, ticket.subject, ticket.status, at, url, ticket.desk.language))
    return contact, listed
