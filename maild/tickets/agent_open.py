"""Tickets an agent opens to a customer (WHMCS's "open ticket" by staff): `maildctl ticket open`, the JSON
API, and an agent's new mail to the desk starting with `#to` (pipeline/agent_mail.py).

The ticket is numbered, the customer and the CC addresses become its contact and sub-customers, the
agent's text is its first message (kind `agent`, with the attachments the desk's policy takes), and it
goes from the desk to the customer (To) and the CCs (Cc) exactly as an agent's reply does
(maild.tickets.replies.relay_reply: signed Reply-To, the ticket's threading headers, each recipient's
ticket page link when `[web] public_url` is set), with the ticket's title as subject. The ticket is then
`waiting`, as after any agent's reply.

Refused, with nothing written: an invalid address; a desk's or an agent's address as customer or CC (the
desk would mail itself); a customer who gets no mail (blocked or bouncing: a ticket whose first mail never
leaves helps nobody; a CC who gets none is left out with a note, as for a reply); an attachment the
desk's policy refuses (the agent chose to send it: better told now than a mail without it); an empty
subject or text; an inactive agent, or one not on the desk."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.addresses import is_valid, normalize
from maild.mail.attachment_policy import Upload, sanitize_filename
from maild.numbering.allocate import allocate_number
from maild.outbound.blocklist import find_block
from maild.outbound.outgoing import OutgoingAttachment, agent_display_name
from maild.storage import attachments as attachment_store
from maild.storage.models import Agent, Attachment, Contact, Desk, Message, Participant, Ticket, naive_utc
from maild.tickets import ticket_ops
from maild.tickets.participants import (
    MAX_CC,
    NotAddable,
    add_cc,
    check_customer_address,
    get_or_create_contact,
)
from maild.tickets.replies import SentReply, relay_reply, replied

SUBJECT_MAX = 255
TEXT_MAX = 100_000


class OpenRefused(ValueError):
    """The ticket cannot be opened; the message says why (one line)."""


@dataclass(frozen=True)
class Checked:
    customer: str
    ccs: tuple[str, ...]
    subject: str
    files: tuple[Upload, ...]


def _check_address(session: Session, address: str, role: str) -> str:
    found = normalize(address)
    if not is_valid(found):
        raise OpenRefused(f"{role} {address.strip()!r} is not an email address")
    try:
        check_customer_address(session, found)
    except NotAddable as exc:
        raise OpenRefused(f"{role} {exc}: give the customer's own address") from None
    return found


def unreachable(session: Session, address: str) -> str | None:
    """Why the desk sends `address` no mail (blocked, bouncing), or None."""
    contact = session.scalars(select(Contact).where(Contact.email == address)).first()
    if contact is not None and contact.status == "bouncing":
        return "is bouncing (maildctl contact unbounce undoes it)"
    block = find_block(session, [address])
    return f"is blocked ({block[1].pattern})" if block is not None else None


def check_request(
    session: Session,
    desk: Desk,
    *,
    customer: str,
    cc: Sequence[str],
    subject: str,
    text: str,
    attachments: Sequence[Upload],
    agent: Agent | None,
) -> Checked:
    """Everything open_ticket refuses, checked before anything is written; OpenRefused names the first."""
    address = _check_address(session, customer, "customer")
    if (why := unreachable(session, address)) is not None:
        raise OpenRefused(f"customer {address} {why}: the desk cannot mail them")
    ccs = tuple(dict.fromkeys(_check_address(session, c, "cc") for c in cc if normalize(c) != address))
    if len(ccs) > MAX_CC:
        raise OpenRefused(f"at most {MAX_CC} cc addresses (got {len(ccs)})")
    title = " ".join(subject.split())
    if not title:
        raise OpenRefused("the subject is empty: the ticket needs a title")
    if len(title) > SUBJECT_MAX:
        raise OpenRefused(f"the subject is longer than {SUBJECT_MAX} characters")
    if not text.strip():
        raise OpenRefused("the text is empty: write the message the customer gets")
    if len(text) > TEXT_MAX:
        raise OpenRefused(f"the text is longer than {TEXT_MAX} characters")
    if agent is not None and (not agent.active or desk not in agent.desks):
        state = "not active" if not agent.active else f"not an agent of desk {desk.name}"
        raise OpenRefused(f"agent {agent.email} is {state}")
    files = []
    for upload in attachments:
        found = ticket_ops.refused_by_desk(desk, upload.filename, upload.content_type, upload.data)
        if found is not None:
            raise OpenRefused(f"attachment {upload.filename}: {found.text}")
        files.append(
            Upload(sanitize_filename(upload.filename, upload.content_type), upload.content_type, upload.data)
        )
    return Checked(address, ccs, title, tuple(files))


def new_ticket(
    session: Session, desk: Desk, customer: Contact, subject: str, *, status: str, now: dt.datetime
) -> Ticket:
    """A numbered ticket of `desk` for `customer` (its customer participant added)."""
    ticket = Ticket(
        number=allocate_number(session, desk, now),
        desk=desk,
        subject=subject,
        status=status,
        priority="normal",
        customer=customer,
        created_at=naive_utc(now),
        updated_at=naive_utc(now),
    )
    session.add(ticket)
    session.add(Participant(ticket=ticket, contact=customer, role="customer"))
    session.flush()  # its id: the messages written next name the desk and ticket by id
    return ticket


def attachment_rows(cfg: Config, files: Sequence[Upload], *, store: bool = True) -> list[Attachment]:
    """Rows for files the policy took (checked before): their bytes in the attachment store."""
    rows = []
    for upload in files:
        digest = attachment_store.store(cfg.attachment_dir, upload.data) if store else ""
        rows.append(
            Attachment(
                filename=upload.filename,
                content_type=upload.content_type[:255] or "application/octet-stream",
                size=len(upload.data),
                sha256=digest or _sha256(upload.data),
                refused_reason=None,
            )
        )
    return rows


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create_ticket(
    session: Session,
    cfg: Config,
    checked: Checked,
    *,
    desk: Desk,
    text: str,
    agent: Agent | None,
    actor: str,
    now: dt.datetime,
    message_id: str = "",
    store_files: bool = True,
) -> tuple[Ticket, Message]:
    """The ticket and the agent's first message, `waiting`, audited (`ticket_opened`); nothing sent yet
    (send_first_mail). `message_id`: the agent's mail's own (the pipeline: dedupe knows it again)."""
    ticket = new_ticket(
        session,
        desk,
        get_or_create_contact(session, checked.customer),
        checked.subject,
        status="waiting",
        now=now,
    )
    for address in checked.ccs:
        add_cc(session, ticket, address)
    author = (
        (agent_display_name(agent), agent.email) if agent is not None else (desk.name, desk.primary_address)
    )
    message = ticket_ops.written_message(
        ticket, "agent", text, author=author, subject=checked.subject, now=now
    )
    if message_id:
        message.message_id = message_id
    message.attachments.extend(attachment_rows(cfg, checked.files, store=store_files))
    session.add(message)
    session.flush()
    ticket_ops.audit(
        session,
        ticket,
        "ticket_opened",
        actor=actor,
        now=now,
        customer=checked.customer,
        cc=list(checked.ccs),
        as_agent=agent.email if agent is not None else None,
        message=message.id,
        attachments=[f.filename for f in checked.files],
    )
    return ticket, message


def send_first_mail(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    message: Message,
    files: Sequence[Upload],
    *,
    agent: Agent | None,
    actor: str,
    now: dt.datetime,
) -> SentReply:
    """The first mail of an agent-opened ticket, to the customer and the CCs, as an agent's reply; the
    other agents of the desk are told as of any reply. Audited as `reply` with whom it went to."""
    outgoing = [
        OutgoingAttachment(f.filename, f.content_type or "application/octet-stream", f.data) for f in files
    ]
    relayed = relay_reply(
        session,
        cfg,
        ticket,
        message.text,
        writer=agent,
        writer_label=agent.email if agent is not None else actor,
        now=now,
        files=outgoing,
        reply=message,
        opening=True,
    )
    if relayed.row is None:  # checked before, so only a race: nothing may look sent that was not
        raise OpenRefused(f"the first mail could not be sent: {relayed.not_sent}")
    return replied(session, cfg, ticket, message, relayed, agent=agent, actor=actor, now=now)


def open_ticket(
    session: Session,
    cfg: Config,
    *,
    desk: Desk,
    customer: str,
    cc: Sequence[str],
    subject: str,
    text: str,
    attachments: Sequence[Upload],
    agent: Agent | None,
    actor: str,
    now: dt.datetime,
) -> Ticket:
    """Open a ticket of `desk` for `customer` (CC `cc`) with the agent's `text` and `attachments` as its
    first mail, sent now (queued in the outbox); `agent` None: from the desk. OpenRefused when it cannot
    be (nothing written then). Flushes; the caller commits (after maild.tickets.automation.after_changes)."""
    checked = check_request(
        session,
        desk,
        customer=customer,
        cc=cc,
        subject=subject,
        text=text,
        attachments=attachments,
        agent=agent,
    )
    ticket, message = create_ticket(
        session, cfg, checked, desk=desk, text=text, agent=agent, actor=actor, now=now
    )
    send_first_mail(session, cfg, ticket, message, checked.files, agent=agent, actor=actor, now=now)
    return ticket
