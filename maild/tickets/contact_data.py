"""What maild holds about one person (an address), found once for `maildctl contact export` and `forget`.

Every column of the schema that can hold an address or mail text, and how it is found here (the list the
export and the erasure both work from; tests/test_contact_data.py scans every table for what is left):

- contacts: email, display_name, status_reason (a bounce's words), attributes (custom, `contact attr`);
- participants: the person as customer or sub-customer of a ticket;
- tickets: subject (the customer's words, on their tickets);
- messages: from_address, from_name, subject, message_id, in_reply_to, text, visible_text, html, notes —
  the messages they wrote (from_address) and the others on their tickets;
- attachments: filename, content_id and the file in the attachment store (sha256);
- ratings: comment; ticket_links: their links (the nonce only, never the token);
- audit_log: actor and detail (JSON) naming the address;
- blocklist: pattern, reason; auto_replies: address (the automatic-mail rate limit);
- spool: mail_from, reason, header_message_id, trace (JSON) and the raw file (`<data_dir>/spool`);
- outbox: mail_from, rcpt_to / delivered_to / failed_to (JSON), subject, raw, last_error, and its copy in
  the outgoing Maildir (`<data_dir>/outgoing`, named by the row);
- ticket_flags: note (an agent's words on a ticket of theirs).
The other tables hold no address or mail text (desks, agents, statuses, rules, counters, job runs). (A
desk's workflow rule may name an address, `sender is …` or `cc …`: that is the admins' configuration,
which they change with `maildctl rule set`.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, func, or_, select
from sqlalchemy.orm import Session

from maild.storage.models import (
    AuditLog,
    AutoReplySent,
    BlockEntry,
    Contact,
    Message,
    OutboxMessage,
    Participant,
    Rating,
    SpoolEntry,
    Ticket,
    TicketLink,
)


@dataclass
class Holdings:
    """The rows naming `address` (normalised), each list in id order."""

    address: str
    contact: Contact | None
    owned: list[Ticket] = field(default_factory=list)  # they are the customer
    shared: list[Ticket] = field(default_factory=list)  # a sub-customer, or they wrote on it, or named in it
    authored: list[Message] = field(default_factory=list)  # messages they wrote
    ratings: list[Rating] = field(default_factory=list)
    links: list[TicketLink] = field(default_factory=list)
    audits: list[AuditLog] = field(default_factory=list)
    blocks: list[BlockEntry] = field(default_factory=list)
    auto_replies: list[AutoReplySent] = field(default_factory=list)
    spool_rows: list[SpoolEntry] = field(default_factory=list)  # mail from them
    outbox_rows: list[OutboxMessage] = field(default_factory=list)  # mail to them

    @property
    def empty(self) -> bool:
        return self.contact is None and not (
            self.authored
            or self.audits
            or self.blocks
            or self.auto_replies
            or self.spool_rows
            or self.outbox_rows
        )

    @property
    def tickets(self) -> list[Ticket]:
        return sorted([*self.owned, *self.shared], key=lambda t: t.id)


def address_pattern(address: str) -> re.Pattern[str]:
    """`address` as a whole address in text, any case: not inside a longer one (alice@x in malice@x)."""
    return re.compile(rf"(?<![\w.%+\-]){re.escape(address)}(?![\w\-]|\.\w)", re.IGNORECASE)


def address_bytes_pattern(address: str) -> re.Pattern[bytes]:
    """address_pattern for raw mail."""
    return re.compile(address_pattern(address).pattern.encode(), re.IGNORECASE)


def names(text_column: Any, address: str) -> ColumnElement[bool]:
    """SQL: the (JSON or text) column, as lower-cased text, contains `address` (no LIKE wildcards)."""
    return func.lower(cast(text_column, Text)).contains(address, autoescape=True)


def _json_list_names(column: Any, address: str) -> ColumnElement[bool]:
    return names(column, f'"{address}"')


def find_holdings(session: Session, address: str) -> Holdings:
    """Everything naming `address`; the tickets are the ones where they are (or were) a participant or
    wrote a message, or that an audit entry naming them is about."""
    contact = session.scalars(select(Contact).where(Contact.email == address)).first()
    held = Holdings(address, contact)
    held.authored = list(
        session.scalars(
            select(Message).where(func.lower(Message.from_address) == address).order_by(Message.id)
        )
    )
    pattern = address_pattern(address)
    held.audits = [  # LIKE finds the candidates, the pattern the address itself (not "m" + address)
        entry
        for entry in session.scalars(
            select(AuditLog)
            .where(or_(func.lower(AuditLog.actor) == address, names(AuditLog.detail, address)))
            .order_by(AuditLog.id)
        )
        if entry.actor.lower() == address or pattern.search(json.dumps(entry.detail, ensure_ascii=False))
    ]
    ticket_ids = {m.ticket_id for m in held.authored} | {a.ticket_id for a in held.audits if a.ticket_id}
    if contact is not None:
        _contact_rows(session, held, contact, ticket_ids)
    held.shared = [
        t
        for t in session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids)).order_by(Ticket.id))
        if t not in held.owned
    ]
    held.blocks = list(
        session.scalars(
            select(BlockEntry).where(func.lower(BlockEntry.pattern) == address).order_by(BlockEntry.id)
        )
    )
    held.auto_replies = list(
        session.scalars(
            select(AutoReplySent).where(AutoReplySent.address == address).order_by(AutoReplySent.id)
        )
    )
    _mail_rows(session, held)
    return held


def _mail_rows(session: Session, held: Holdings) -> None:
    """The spool rows of mail from them, the outbox rows of mail to them."""
    address = held.address
    spool_ids = {m.spool_id for m in held.authored if m.spool_id is not None}
    held.spool_rows = list(
        session.scalars(
            select(SpoolEntry)
            .where(or_(func.lower(SpoolEntry.mail_from) == address, SpoolEntry.id.in_(spool_ids)))
            .order_by(SpoolEntry.id)
        )
    )
    held.outbox_rows = [
        row
        for row in session.scalars(
            select(OutboxMessage)
            .where(
                or_(
                    *(
                        _json_list_names(column, address)
                        for column in (
                            OutboxMessage.rcpt_to,
                            OutboxMessage.delivered_to,
                            OutboxMessage.failed_to,
                        )
                    )
                )
            )
            .order_by(OutboxMessage.id)
        )
        if address in {a.lower() for a in [*row.rcpt_to, *row.delivered_to, *row.failed_to]}
    ]


def _contact_rows(session: Session, held: Holdings, contact: Contact, ticket_ids: set[int]) -> None:
    held.owned = list(
        session.scalars(select(Ticket).where(Ticket.customer_id == contact.id).order_by(Ticket.id))
    )
    ticket_ids |= set(
        session.scalars(select(Participant.ticket_id).where(Participant.contact_id == contact.id))
    )
    held.ratings = list(
        session.scalars(select(Rating).where(Rating.contact_id == contact.id).order_by(Rating.id))
    )
    held.links = list(
        session.scalars(select(TicketLink).where(TicketLink.contact_id == contact.id).order_by(TicketLink.id))
    )
    ticket_ids |= {r.ticket_id for r in held.ratings} | {link.ticket_id for link in held.links}
