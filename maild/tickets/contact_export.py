"""`maildctl contact export EMAIL`: everything maild holds about one person, as JSON and an mbox.

What a person gets is what they could already see, plus the records about them:
- each ticket where they are (or were) the customer or a sub-customer, or wrote a message: its number,
  subject, status, and its customer-visible messages as the ticket page shows them (customer and agent
  messages; their own say "you", other people appear by the name they gave, agents by their display
  name, never an address). Internal notes, system notes and held replies are withheld: they are the
  agents' working notes (GDPR Art. 15(4): the access right does not reach others' rights), exported
  with `maildctl ticket export --include-notes` if the admin decides to hand them over.
  A sub-customer's export therefore holds the shared ticket's visible conversation: they were sent
  it (or can read it on their ticket page) already, so it discloses nothing new;
- their ratings (with comments), their ticket links (dates only, never a token), the audit entries
  naming them (other addresses in them replaced by "[other address]"), blocklist entries of their
  address, the mail that came from them (spool rows) and went to them (outbox rows), and how many
  automatic replies they were sent (the rate limit's counter); a bounce shows in the contact's status.
- `mail.mbox`: the raw mails from them (spool files) and to them (outbox rows, attachments expanded),
  oldest first. Another customer's raw mail on a shared ticket is not in it (its headers name others).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.outbound.composing import agent_display_name
from maild.outbound.stored_attachments import StoredAttachmentError, sent_bytes
from maild.storage.models import Agent, AuditLog, Contact, Message, Ticket
from maild.storage.spool import read_raw
from maild.tickets.contact_data import Holdings
from maild.tickets.export import generated, mbox_entry
from maild.tickets.ticket_ops import iso

VISIBLE_KINDS = ("customer", "agent")  # as the ticket page (maild.tickets.ticket_page)
_ANY_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"']+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")


def export_json(session: Session, held: Holdings, *, now: dt.datetime) -> dict[str, Any]:
    """contact.json: see the module."""
    contact = held.contact
    return {
        "address": held.address,
        "exported_at": iso(now.replace(tzinfo=None)),
        "internal_notes_included": False,
        "contact": _contact(contact) if contact is not None else None,
        "tickets": [_ticket(session, held, t) for t in held.tickets],
        "ratings": [
            {
                "ticket": _number(session, r.ticket_id),
                "message_id": r.message_id,
                "score": r.score,
                "comment": r.comment,
                "created_at": iso(r.created_at),
                "updated_at": iso(r.updated_at),
            }
            for r in held.ratings
        ],
        "ticket_links": [
            {
                "ticket": _number(session, link.ticket_id),
                "created_at": iso(link.created_at),
                "revoked_at": iso(link.revoked_at),
            }
            for link in held.links
        ],
        "audit": [_audit(session, held.address, entry) for entry in held.audits],
        "blocklist": [
            {"pattern": b.pattern, "reason": b.reason, "created_at": iso(b.created_at)} for b in held.blocks
        ],
        **_mail(session, held),
        "automatic_replies": {
            "count": len(held.auto_replies),
            "last_at": iso(held.auto_replies[-1].sent_at) if held.auto_replies else None,
        },
    }


def _mail(session: Session, held: Holdings) -> dict[str, Any]:
    return {
        "mail_from_them": [
            {
                "spool_id": row.id,
                "received_at": iso(row.received_at),
                "recipient": row.recipient,
                "outcome": row.outcome,
                "ticket": _number(session, row.ticket_id),
                "size": row.size,
                "raw_purged_at": iso(row.raw_purged_at),
            }
            for row in held.spool_rows
        ],
        "mail_to_them": [
            {
                "outbox_id": row.id,
                "template": row.template,
                "subject": row.subject,
                "status": row.status,
                "ticket": _number(session, row.ticket_id),
                "created_at": iso(row.created_at),
                "sent_at": iso(row.sent_at),
            }
            for row in held.outbox_rows
        ],
    }


def _contact(contact: Contact) -> dict[str, Any]:
    return {
        "email": contact.email,
        "name": contact.display_name,
        "status": contact.status,  # bouncing: their mail bounced for good, status_reason says how
        "status_reason": contact.status_reason,
        "attributes": dict(contact.attributes or {}),  # custom ones (`maildctl contact attr`)
        "created_at": iso(contact.created_at),
    }


def _number(session: Session, ticket_id: int | None) -> str | None:
    ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
    return ticket.number if ticket is not None else None


def _role(held: Holdings, ticket: Ticket) -> str:
    if ticket in held.owned:
        return "customer"
    if held.contact is not None and any(p.contact_id == held.contact.id for p in ticket.participants):
        return "cc"
    return "other"  # a former sub-customer, or a mail of theirs threaded onto someone else's ticket


def _ticket(session: Session, held: Holdings, ticket: Ticket) -> dict[str, Any]:
    visible = session.scalars(
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.kind.in_(VISIBLE_KINDS))
        .order_by(Message.created_at, Message.id)
    ).all()
    agents = {
        agent.email: agent_display_name(agent)
        for agent in session.scalars(
            select(Agent).where(
                Agent.email.in_({m.from_address.lower() for m in visible if m.kind == "agent"})
            )
        )
    }
    return {
        "number": ticket.number,
        "desk": ticket.desk.name,
        "role": _role(held, ticket),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "messages": [_message(held, ticket, m, agents) for m in visible],
    }


def _message(held: Holdings, ticket: Ticket, message: Message, agents: dict[str, str]) -> dict[str, Any]:
    mine = message.from_address.lower() == held.address
    if message.kind == "agent":
        author = agents.get(message.from_address.lower()) or ticket.desk.sender_name or ticket.desk.name
        text = message.visible_text  # what was relayed to them, not the agent's whole mail
    else:
        author = "you" if mine else (message.from_name.strip() or "another participant")
        text = message.visible_text or message.text
    return {
        "id": message.id,
        "kind": message.kind,
        "written_by_them": mine,
        "author": author,
        "created_at": iso(message.created_at),
        "subject": message.subject,
        "text": text,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in message.attachments
            if a.refused_reason is None and a.sha256
        ],
    }


def _redact(value: Any, address: str) -> Any:
    """`value` (JSON) with every address but `address` replaced: an audit entry may name other people."""
    if isinstance(value, str):
        return _ANY_ADDRESS.sub(lambda m: m[0] if m[0].lower() == address else "[other address]", value)
    if isinstance(value, list):
        return [_redact(v, address) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v, address) for k, v in value.items()}
    return value


def _audit(session: Session, address: str, entry: AuditLog) -> dict[str, Any]:
    return {
        "at": iso(entry.at),
        "actor": _redact(entry.actor, address),
        "action": entry.action,
        "ticket": _number(session, entry.ticket_id),
        "detail": _redact(entry.detail, address),
    }


def export_mbox(session: Session, cfg: Config, held: Holdings) -> Iterator[bytes]:
    """mail.mbox's entries, oldest first: see the module. A mail whose raw bytes are gone (the spool's
    retention) is written from its stored text, as `maildctl ticket export` does."""
    entries: list[tuple[dt.datetime, int, bytes]] = []
    with_raw: set[int] = set()
    for row in held.spool_rows:
        try:
            raw = read_raw(cfg.spool_dir, row)
        except FileNotFoundError:
            continue  # purged: a message made of it is written below from its stored text
        with_raw.add(row.id)
        entries.append(
            (row.received_at, len(entries), _entry(row.mail_from or held.address, row.received_at, raw))
        )
    for message in held.authored:
        if message.spool_id in with_raw or message.kind not in VISIBLE_KINDS:
            continue
        raw = generated(cfg, message.ticket, message)
        entries.append((message.created_at, len(entries), _entry(held.address, message.created_at, raw)))
    for out in held.outbox_rows:
        try:
            raw = bytes(sent_bytes(out.raw, cfg.attachment_dir))
        except StoredAttachmentError:
            raw = out.raw  # an attachment left the store: the mail as stored, its reference line in place
        entries.append((out.created_at, len(entries), _entry(out.mail_from, out.created_at, raw)))
    for _, _, entry in sorted(entries, key=lambda e: (e[0], e[1])):
        yield entry


def _entry(sender: str, when: dt.datetime, raw: bytes) -> bytes:
    envelope = f"From {sender or 'MAILER-DAEMON'} {when.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()
    return mbox_entry(envelope, raw)
