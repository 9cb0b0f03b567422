"""A ticket's conversation as an mbox: every customer and agent message in chronological order.

A message that came by mail is written as its raw bytes from the spool (attachments and all). One
without raw mail (a note, an agent reply made with maildctl, a system note) or whose spool file is gone
is written as a generated RFC 5322 message: its text and its stored attachments, with the ticket number
and the message's kind in X-Maild-* headers. Internal notes and system notes only on request.

The mbox is the classic one (what Python's mailbox, mutt and Thunderbird read): LF line ends, a
`From ` separator line per message, body lines beginning with "From " written as ">From "."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.storage import attachments as attachment_store
from maild.storage.models import Message, SpoolEntry, Ticket
from maild.storage.spool import read_raw

INTERNAL_KINDS = ("note", "system", "held")  # never seen by the customer: only with include_notes
_FROM_LINE = re.compile(rb"^(From )", re.MULTILINE)


def exported_messages(session: Session, ticket: Ticket, *, include_notes: bool) -> list[Message]:
    query = select(Message).where(Message.ticket_id == ticket.id).order_by(Message.created_at, Message.id)
    if not include_notes:
        query = query.where(Message.kind.not_in(INTERNAL_KINDS))
    return list(session.scalars(query))


def _raw_of(cfg: Config, session: Session, message: Message) -> bytes | None:
    entry = session.get(SpoolEntry, message.spool_id) if message.spool_id is not None else None
    if entry is None:
        return None
    try:
        return read_raw(cfg.spool_dir, entry)
    except FileNotFoundError:
        return None  # purged from the spool: the stored text stands in for it


def generated(cfg: Config, ticket: Ticket, message: Message) -> bytes:
    """A message without raw mail, as mail: its text and its stored attachments."""
    desk_address = ticket.desk.primary_address
    mail = EmailMessage(policy=default_policy)
    mail["From"] = formataddr((message.from_name, message.from_address or desk_address))
    # Agent replies went to the customer; notes stayed with the desk.
    to = ticket.customer.email if message.kind == "agent" else desk_address
    mail["To"] = to
    mail["Subject"] = message.subject or ticket.subject
    mail["Date"] = format_datetime(message.created_at.replace(tzinfo=dt.UTC))
    if message.message_id:
        mail["Message-ID"] = message.message_id
    if message.in_reply_to:
        mail["In-Reply-To"] = message.in_reply_to
    mail["X-Maild-Ticket"] = ticket.number
    mail["X-Maild-Kind"] = message.kind
    text = message.visible_text or message.text
    missing = []
    files = []
    for row in message.attachments:
        if row.refused_reason is not None or not row.sha256:
            missing.append(f"[attachment {row.filename} was refused: {row.refused_reason}]")
            continue
        try:
            data = attachment_store.path_of(cfg.attachment_dir, row.sha256).read_bytes()
        except FileNotFoundError:
            missing.append(f"[attachment {row.filename} is missing from the attachment store]")
            continue
        files.append((row, data))
    if missing:
        text = text.rstrip("\n") + "\n\n" + "\n".join(missing)
    mail.set_content(text if text.endswith("\n") else text + "\n")
    for row, data in files:
        maintype, _, subtype = row.content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=row.filename)
    return mail.as_bytes()


def _envelope(message: Message, ticket: Ticket) -> bytes:
    sender = message.from_address or ticket.desk.primary_address
    when = message.created_at.strftime("%a %b %d %H:%M:%S %Y")
    return f"From {sender} {when}\n".encode()


def mbox_entry(envelope: bytes, raw: bytes) -> bytes:
    body = raw.replace(b"\r\n", b"\n")
    body = _FROM_LINE.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    return envelope + body + b"\n"


def export_mbox(
    session: Session, cfg: Config, ticket: Ticket, *, include_notes: bool = False
) -> Iterator[bytes]:
    """The conversation's mbox entries, one message at a time."""
    written: set[int] = set()
    for message in exported_messages(session, ticket, include_notes=include_notes):
        raw = None
        # Two messages can share one mail (a #send note and the released reply): its bytes once only.
        if message.spool_id is not None and message.spool_id not in written:
            raw = _raw_of(cfg, session, message)
            written.add(message.spool_id)
        yield mbox_entry(
            _envelope(message, ticket), raw if raw is not None else generated(cfg, ticket, message)
        )
