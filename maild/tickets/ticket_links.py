"""Each recipient's own link to a ticket's web page: `<public_url>/t/<token>` (issue 18).

The recipients are the ticket's customer and its sub-customers (CC participants), each with a link of
their own, so that one can be revoked without cutting off the others. A token is a random nonce (16 bytes)
and an HMAC-SHA256 (first 16 bytes) over the nonce, the ticket and the contact under a key derived from the
server secret (`<data_dir>/reply-secret`), both base64url: 44 characters, unguessable, naming no ticket.
The row keeps the nonce, so the same link can be put into every mail the recipient gets (`ticket_url`)
and shown again by `maildctl ticket links`; a copy of the database without the secret opens no page, and
a token is checked with a constant-time comparison.

A link opens the ticket it was issued for, or the ticket that one was merged into. It opens nothing once
revoked, once its ticket is deleted (the rows go with it), once its recipient is no longer on the ticket
(a sub-customer removed), or while its recipient's address or the ticket's customer is on the blocklist.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.outbound.blocklist import find_block
from maild.outbound.link_tokens import (
    PART,
    TOKEN_SHAPE,
    active_link,
    link_mac,
    new_link,
    recipients,
    token_of,
)
from maild.storage.models import Contact, Ticket, TicketLink, naive_utc
from maild.tickets.lookup import survivor_of
from maild.tickets.ticket_ops import audit


@dataclass(frozen=True)
class RecipientLink:
    """One recipient's link as maildctl shows it; `issued`: made just now."""

    contact: Contact
    role: str  # customer | cc
    link: TicketLink
    token: str
    issued: bool = False


@dataclass(frozen=True)
class OpenedLink:
    """What a valid token opens: the ticket to show (the survivor of a merge) and whose link it is."""

    link: TicketLink
    ticket: Ticket
    contact: Contact


def issue(
    session: Session, key: bytes, ticket: Ticket, contact: Contact, *, now: dt.datetime
) -> RecipientLink:
    """A new link for `contact` on `ticket`."""
    link = new_link(session, ticket, contact, now=now)
    return RecipientLink(contact, "", link, token_of(key, link), issued=True)


def issue_missing(
    session: Session, key: bytes, ticket: Ticket, *, actor: str, now: dt.datetime
) -> list[RecipientLink]:
    """Each recipient's link: those without one get one now (audited)."""
    shown = []
    for contact, role in recipients(ticket):
        link = active_link(session, ticket, contact)
        if link is not None:
            shown.append(RecipientLink(contact, role, link, token_of(key, link)))
            continue
        made = issue(session, key, ticket, contact, now=now)
        shown.append(RecipientLink(contact, role, made.link, made.token, issued=True))
        audit(session, ticket, "link_issue", actor=actor, now=now, contact=contact.email)
    return shown


def revoke_and_reissue(
    session: Session, key: bytes, ticket: Ticket, *, actor: str, now: dt.datetime
) -> list[RecipientLink]:
    """Revoke every link of the ticket (also those of former recipients) and issue each recipient a new
    one: old links open nothing from now on."""
    revoked = revoke_all(session, ticket, now=now)
    shown = []
    for contact, role in recipients(ticket):
        made = issue(session, key, ticket, contact, now=now)
        shown.append(RecipientLink(contact, role, made.link, made.token, issued=True))
    audit(
        session,
        ticket,
        "links_revoke",
        actor=actor,
        now=now,
        revoked=revoked,
        issued=[r.contact.email for r in shown],
    )
    return shown


def revoke_all(session: Session, ticket: Ticket, *, now: dt.datetime) -> int:
    """Revoke the ticket's links (a merge, a split): how many were live."""
    live = session.scalars(
        select(TicketLink).where(TicketLink.ticket_id == ticket.id, TicketLink.revoked_at.is_(None))
    ).all()
    for link in live:
        link.revoked_at = naive_utc(now)
    return len(live)


def open_link(session: Session, key: bytes, token: str) -> OpenedLink | None:
    """The ticket a token opens, or None: not a token, unknown, tampered, revoked, blocked. Read-only."""
    if not TOKEN_SHAPE.fullmatch(token):
        return None
    nonce, mac = token[:PART], token[PART:]
    link = session.scalars(
        select(TicketLink).where(TicketLink.nonce == nonce, TicketLink.revoked_at.is_(None))
    ).first()
    if link is None or not hmac.compare_digest(mac, link_mac(key, nonce, link.ticket_id, link.contact_id)):
        return None
    ticket = survivor_of(link.ticket)
    # A sub-customer taken off the ticket (`ticket cc … remove`) no longer sees it.
    still_recipient = {contact.id for t in {link.ticket, ticket} for contact, _ in recipients(t)}
    if link.contact_id not in still_recipient:
        return None
    if find_block(session, [link.contact.email, ticket.customer.email]) is not None:
        return None
    return OpenedLink(link, ticket, link.contact)
