"""Each recipient's own link to a ticket's web page: `<public_url>/t/<token>` (issue 18).

The recipients are the ticket's customer and its sub-customers (CC participants), each with a link of
their own, so that one can be revoked without cutting off the others. A token is 32 random bytes
(base64url, 43 characters): unguessable, and it says nothing about the ticket (no number, no id). Only its
sha256 is stored, so a copy of the database, a backup or a log opens no page; the price is that a link can
be shown only when it is issued — `maildctl ticket links --revoke` issues new ones.

A link opens the ticket it was issued for, or the ticket that one was merged into. It opens nothing once
revoked, once its ticket is deleted (the rows go with it), once its recipient is no longer on the ticket
(a sub-customer removed), or while its recipient's address or the ticket's customer is on the blocklist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.outbound.blocklist import find_block
from maild.storage.models import Contact, Ticket, TicketLink, naive_utc
from maild.tickets.lookup import survivor_of
from maild.tickets.ticket_ops import audit

TOKEN_BYTES = 32
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # what token_urlsafe(32) makes, and nothing else


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/t/{token}"


@dataclass(frozen=True)
class RecipientLink:
    """One recipient's link as maildctl shows it. `token` only when it was issued just now."""

    contact: Contact
    role: str  # customer | cc
    link: TicketLink | None  # None: the recipient has no link that is not revoked
    token: str | None = None


@dataclass(frozen=True)
class OpenedLink:
    """What a valid token opens: the ticket to show (the survivor of a merge) and whose link it is."""

    link: TicketLink
    ticket: Ticket
    contact: Contact


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
        )
        .order_by(TicketLink.id.desc())
    ).first()


def issue(session: Session, ticket: Ticket, contact: Contact, *, now: dt.datetime) -> tuple[TicketLink, str]:
    """A new link for `contact` on `ticket`; the token is returned once and never stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = TicketLink(
        ticket_id=ticket.id,
        contact_id=contact.id,
        token_sha256=token_digest(token),
        created_at=naive_utc(now),
    )
    session.add(link)
    session.flush()
    return link, token


def links_of(session: Session, ticket: Ticket) -> list[RecipientLink]:
    """Each recipient's current link (None where they have none), issuing nothing."""
    return [
        RecipientLink(contact, role, active_link(session, ticket, contact))
        for contact, role in recipients(ticket)
    ]


def issue_missing(session: Session, ticket: Ticket, *, actor: str, now: dt.datetime) -> list[RecipientLink]:
    """Each recipient's link: those without one get one now (its token shown this once)."""
    shown = []
    for current in links_of(session, ticket):
        if current.link is not None:
            shown.append(current)
            continue
        link, token = issue(session, ticket, current.contact, now=now)
        shown.append(RecipientLink(current.contact, current.role, link, token))
        audit(session, ticket, "link_issue", actor=actor, now=now, contact=current.contact.email)
    return shown


def revoke_and_reissue(
    session: Session, ticket: Ticket, *, actor: str, now: dt.datetime
) -> list[RecipientLink]:
    """Revoke every link of the ticket (also those of former recipients) and issue each recipient a new
    one: old links open nothing from now on."""
    revoked = session.scalars(
        select(TicketLink).where(TicketLink.ticket_id == ticket.id, TicketLink.revoked_at.is_(None))
    ).all()
    for link in revoked:
        link.revoked_at = naive_utc(now)
    shown = []
    for contact, role in recipients(ticket):
        link, token = issue(session, ticket, contact, now=now)
        shown.append(RecipientLink(contact, role, link, token))
    audit(
        session,
        ticket,
        "links_revoke",
        actor=actor,
        now=now,
        revoked=len(revoked),
        issued=[r.contact.email for r in shown],
    )
    return shown


def open_link(session: Session, token: str) -> OpenedLink | None:
    """The ticket a token opens, or None: not a token, unknown, revoked, blocked. Read-only."""
    if not _TOKEN_SHAPE.fullmatch(token):
        return None
    # The lookup is by the token's digest: a lookup's timing tells nothing about tokens that exist.
    link = session.scalars(
        select(TicketLink).where(
            TicketLink.token_sha256 == token_digest(token), TicketLink.revoked_at.is_(None)
        )
    ).first()
    if link is None:
        return None
    ticket = survivor_of(link.ticket)
    # A sub-customer taken off the ticket (`ticket cc … remove`) no longer sees it.
    still_recipient = {contact.id for t in {link.ticket, ticket} for contact, _ in recipients(t)}
    if link.contact_id not in still_recipient:
        return None
    if find_block(session, [link.contact.email, ticket.customer.email]) is not None:
        return None
    return OpenedLink(link, ticket, link.contact)
