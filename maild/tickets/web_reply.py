"""A customer's reply written on the ticket page, as the mail they would have sent (issue 18).

The page does not store the reply itself: it builds an RFC 5322 mail From the contact To the ticket's
signed reply address, in reply to the ticket's latest mail, with the files as MIME parts, and hands it to
the intake (spooled and fsynced like any mail, then the pipeline). So a reply from the page is threaded,
stored, audited and announced to the agents exactly as the same person's mail would be, attachment policy
included. What the page checks first (empty text, the desk's attachment policy) is only so that the
customer reads why on the page instead of in a later mail; the pipeline applies the policy again.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Protocol

from maild.mail.attachment_policy import sanitize_filename
from maild.mail.tokens import load_secret, reply_address
from maild.outbound.language import N_
from maild.storage.models import Contact, Desk, Ticket
from maild.tickets.ticket_ops import refused_by_desk

REFERENCES_KEPT = 20  # the newest Message-IDs of the ticket in References: enough to thread anywhere
TEXT_MAX = 100_000  # characters of a reply typed on the page
WEB_INGRESS = "web"  # SpoolEntry.ingress of mail made by the pages
CLOSED = "closed"
CONTAINERS = ("multipart", "message")
MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")


class File(Protocol):
    @property
    def filename(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True)
class WebReply:
    raw: bytes
    recipient: str  # the envelope recipient: the ticket's signed reply address
    mail_from: str  # the envelope sender: the contact
    message_id: str


@dataclass(frozen=True)
class Refused:
    """Why the page does not take a file (plain English with %(name)s places, for the template)."""

    text: str
    args: dict[str, str]


def can_reply(ticket: Ticket) -> bool:
    return ticket.status != CLOSED


def refused_file(desk: Desk, files: Sequence[File]) -> Refused | None:
    """The first file the desk's attachment policy refuses, and why; None when it keeps them all."""
    for file in files:
        name = sanitize_filename(file.filename, file.content_type)
        found = refused_by_desk(desk, name, content_type_of(file), file.data)
        if found is None:
            continue
        if found.code == "too_large":
            return Refused(
                N_("%(name)s is larger than the limit of %(limit)s MB per file."),
                {"name": name, "limit": str(desk.max_attachment_mb)},
            )
        if found.code == "type_not_allowed":
            return Refused(
                N_("%(name)s: this kind of file is not accepted here (accepted: %(allowed)s)."),
                {"name": name, "allowed": ", ".join(found.allowed)},
            )
        return Refused(N_("%(name)s: programs and scripts are not accepted."), {"name": name})
    return None


def content_type_of(file: File) -> str:
    """The type the browser gave, unless it gave none worth having: then the name's."""
    given = file.content_type.split(";")[0].strip().lower()
    maintype = given.partition("/")[0]
    # A multipart or message type would make the part a container: such a file is plain bytes here.
    if MIME_TYPE.fullmatch(given) and given != "application/octet-stream" and maintype not in CONTAINERS:
        return given
    guessed = mimetypes.guess_type(file.filename)[0] or "application/octet-stream"
    return "application/octet-stream" if guessed.partition("/")[0] in CONTAINERS else guessed


def _thread_ids(ticket: Ticket) -> list[str]:
    """The Message-IDs of the ticket's mail, oldest first (what the customer's mail program would know)."""
    ordered = sorted(ticket.messages, key=lambda m: (m.created_at, m.id or 0))
    return [m.message_id for m in ordered if m.message_id and m.kind in ("customer", "agent")]


def _one_line(text: str) -> str:
    """A header's text without line breaks (stored names and subjects came from mail; never trust them to
    be one line: the header would not be written)."""
    return " ".join(text.split())


def build_reply(
    data_dir: Path, ticket: Ticket, contact: Contact, text: str, files: Sequence[File], *, now: dt.datetime
) -> WebReply:
    """The mail `contact` sends by replying on the ticket's page."""
    desk = ticket.desk
    recipient = reply_address(load_secret(data_dir), desk.primary_address, ticket.id, None)
    domain = desk.primary_address.rpartition("@")[2] or "maild.invalid"
    message_id = f"<web.{uuid.uuid4().hex}@{domain}>"
    mail = EmailMessage(policy=SMTP)
    mail["From"] = formataddr((_one_line(contact.display_name), contact.email))
    mail["To"] = formataddr((_one_line(desk.sender_name or desk.name), recipient))
    mail["Subject"] = _one_line(f"Re: [{ticket.number}] {ticket.subject}")
    mail["Date"] = format_datetime(now.astimezone(dt.UTC))
    mail["Message-ID"] = message_id
    thread = _thread_ids(ticket)
    if thread:
        mail["In-Reply-To"] = thread[-1]
        mail["References"] = " ".join(thread[-REFERENCES_KEPT:])
    mail.set_content(text.replace("\r\n", "\n"), charset="utf-8")
    for file in files:
        maintype, _, subtype = content_type_of(file).partition("/")
        mail.add_attachment(
            file.data,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=sanitize_filename(file.filename, content_type_of(file)),
        )
    return WebReply(mail.as_bytes(policy=SMTP), recipient, contact.email, message_id)
