"""A ticket an agent opens on behalf of a customer by forwarding the customer's mail to the desk with
`#customer` (pipeline/agent_mail.py): the original sender is the customer, the forwarded mail the ticket's
first (customer) message with its attachments (the desk's policy applied as to any customer mail: refused
ones recorded with the reason), the agent's words above the forward an internal note. The ticket is `open`:
the customer is waiting for an answer."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.forwards import Forwarded
from maild.mail.quotes import visible_text
from maild.outbound.outgoing import agent_display_name
from maild.storage import attachments as attachment_store
from maild.storage.models import Agent, Attachment, Desk, Message, Ticket, naive_utc
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops
from maild.tickets.agent_open import SUBJECT_MAX, new_ticket
from maild.tickets.participants import get_or_create_contact

_FORWARD_PREFIX = re.compile(r"^\s*(?:(?:fwd?|wg|tr|rv|vs|vb|enc|i)\s*:\s*)+", re.IGNORECASE)


def _rows(cfg: Config, desk: Desk, forwarded: Forwarded, *, store: bool) -> list[Attachment]:
    rows = []
    for part in forwarded.attachments:
        found = ticket_ops.refused_by_desk(desk, part.filename, part.content_type, part.data)
        reason = found.text if found is not None else None
        if reason is None and store:
            attachment_store.store(cfg.attachment_dir, part.data, part.sha256)
        rows.append(ticket_ops.attachment_row(part, reason))
    return rows


def ticket_title(forwarded: Forwarded, fallback: str) -> str:
    """The forwarded mail's subject (else the forwarding mail's without its Fwd:), one line, capped."""
    title = " ".join((forwarded.subject or _FORWARD_PREFIX.sub("", fallback)).split()) or "(no subject)"
    return title if len(title) <= SUBJECT_MAX else title[: SUBJECT_MAX - 1] + "…"


def open_on_behalf(
    session: Session,
    cfg: Config,
    *,
    desk: Desk,
    forwarded: Forwarded,
    note: str,
    subject: str,
    agent: Agent,
    message_id: str,
    now: dt.datetime,
    store_files: bool = True,
) -> tuple[Ticket, Message]:
    """The ticket, its customer message and the agent's note; audited `ticket_opened` (on_behalf). Sends
    nothing (the caller's notify does). `message_id`: the forwarding mail's (a re-delivery is known)."""
    customer = get_or_create_contact(session, forwarded.sender_address, forwarded.sender_name)
    title = ticket_title(forwarded, subject)
    ticket = new_ticket(session, desk, customer, title, status="open", now=now)
    message = Message(
        ticket=ticket,
        desk_id=desk.id,
        kind="customer",
        from_address=forwarded.sender_address,
        from_name=forwarded.sender_name[:200],
        subject=forwarded.subject or title,
        # the original's own id: a later reply of the customer to their first mail threads by it
        message_id=forwarded.message_id or message_id or f"<forward.{uuid.uuid4().hex}@maild.invalid>",
        text=forwarded.text,
        visible_text=visible_text(forwarded.text),
        threaded_by="forwarded",
        created_at=naive_utc(now),
    )
    message.attachments.extend(_rows(cfg, desk, forwarded, store=store_files))
    session.add(message)
    # The forwarding mail's Message-ID goes on the agent's note (a system note when they wrote none) unless
    # the customer message has it already: a re-delivery of the same mail is then a duplicate (dedupe).
    own_id = message_id if forwarded.message_id and message_id else None
    if note.strip():
        written = ticket_ops.written_message(
            ticket,
            "note",
            note.strip(),
            author=(agent_display_name(agent), agent.email),
            subject=title,
            now=now,
        )
        written.message_id = own_id or written.message_id
        session.add(written)
    else:
        text = f"{agent.email} forwarded this mail to the desk to open the ticket"
        add_system_note(session, ticket, text, by="agent_mail", at=now, message_id=own_id)
    session.flush()
    ticket_ops.audit(
        session,
        ticket,
        "ticket_opened",
        actor=agent.email,
        now=now,
        customer=customer.email,
        on_behalf=True,
        as_agent=agent.email,
        message=message.id,
    )
    return ticket, message
