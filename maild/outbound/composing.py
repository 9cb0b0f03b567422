"""Compose an outgoing mail: its MIME structure (text, optional HTML, attachments) and its headers.

Composed with the compat32 classes: policy.default parses every header it is given, which made composing an
auto-reply cost ~3 ms against ~0.7 ms here, on the per-message path."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email import charset as _charset
from email import encoders
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr
from functools import cached_property
from pathlib import Path

from maild.mail.addresses import domain_of
from maild.outbound.stored_attachments import is_stored, reference_line
from maild.outbound.templating import Rendered
from maild.storage.models import Agent, Desk


@dataclass(frozen=True)
class OutgoingAttachment:
    """A file to attach to an outgoing mail (e.g. a customer's attachment, forwarded to the agents)."""

    filename: str
    content_type: str
    data: bytes
    sha256: str = ""  # the content's digest when the caller knows it: its name in the attachment store

    @cached_property  # once per file, however many agents' notices carry it
    def digest(self) -> str:
        return self.sha256 or hashlib.sha256(self.data).hexdigest()


def agent_display_name(agent: Agent) -> str:
    """How an agent is named in mail: the display name for tickets, else the name."""
    return agent.display_name.strip() or agent.name


def new_message_id(desk: Desk) -> str:
    return f"<{uuid.uuid4().hex}@{domain_of(desk.primary_address)}>"


_UTF8_QP = _charset.Charset("utf-8")
_UTF8_QP.body_encoding = _charset.QP


# Text copied into outgoing headers (Subject, Thread-Topic, display names) is cut to these many characters
# before email.header folds it: the stdlib's folding takes time superlinear in a value's length, and a
# sender's subject or name is theirs to make megabytes long (issue 14). References: cap_references.
HEADER_TEXT_MAX = 500
DISPLAY_NAME_MAX = 200


def capped_text(value: str, limit: int = HEADER_TEXT_MAX) -> str:
    """`value` on one line, at most `limit` characters ("…" last when it was cut)."""
    if len(value) > 4 * limit:  # only the start is kept: split() need not see megabytes
        value = value[: 4 * limit]
    value = " ".join(value.split())
    return value if len(value) <= limit else f"{value[: limit - 1].rstrip()}…"


def _address(name: str, addr: str) -> str:
    return formataddr((capped_text(name, DISPLAY_NAME_MAX), addr), charset="utf-8")


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(text, _UTF8_QP)
    return part


def _attachment_part(attachment: OutgoingAttachment, stored: bool) -> MIMEBase:
    """`stored`: the file is in the attachment store, so the part carries a reference to it, which
    `expand_stored` turns into the same base64 when the mail is sent."""
    maintype, _, subtype = attachment.content_type.partition("/")
    if not maintype or not subtype or "/" in subtype:
        maintype, subtype = "application", "octet-stream"
    part = MIMEBase(maintype, subtype)
    if stored:
        part.set_payload(reference_line(attachment.digest, len(attachment.data)))
        part["Content-Transfer-Encoding"] = "base64"  # where encode_base64 puts it: the same header order
    else:
        part.set_payload(attachment.data)
        encoders.encode_base64(part)  # base64 whatever the type: text attachments keep their exact bytes
    name = attachment.filename or "attachment"
    # RFC 2231 for non-ASCII names, which every current client reads.
    part.add_header(
        "Content-Disposition", "attachment", filename=name if name.isascii() else ("utf-8", "", name)
    )
    return part


def header_value(value: str) -> str | Header:
    """Header values stay ASCII on the wire: non-ASCII text goes as RFC 2047 encoded words. At most
    HEADER_TEXT_MAX characters (see capped_text)."""
    value = capped_text(value)
    return value if value.isascii() else Header(value, "utf-8")


def _from_name(desk: Desk, from_name: str | None) -> str:
    """The From display name: the given one (an agent's relay), else the desk's sender name, else its name.
    maild.tickets.replies gives the desk's name for a reply without an agent: that is the desk speaking
    too."""
    if from_name is None or from_name == desk.name:
        return desk.sender_name or desk.name
    return from_name


@dataclass(frozen=True)
class Addressing:
    """Who a mail goes to and what it answers: its address and threading headers."""

    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    reply_to: str
    in_reply_to: str
    references: list[str]
    thread_headers: Sequence[tuple[str, str | Header]] = ()
    from_name: str | None = None  # the From display name instead of the desk's (see _from_name)
    # The envelope's recipients when not every To and Cc address: one recipient's own copy of a mail
    # whose text is theirs (their ticket link), its headers the same as everybody's.
    envelope: tuple[str, ...] = ()

    @property
    def recipients(self) -> list[str]:
        """The envelope: every To and Cc address, once each, in order (or `envelope`)."""
        if self.envelope:
            return list(self.envelope)
        return list(dict.fromkeys(addr for _, addr in [*self.to, *self.cc]))


Composed = MIMENonMultipart | MIMEMultipart


def compose(
    desk: Desk,
    rendered: Rendered,
    subject: str,
    addressing: Addressing,
    *,
    message_id: str,
    now: dt.datetime,
    auto_submitted: str | None,
    attachments: Sequence[OutgoingAttachment] = (),
    attachment_dir: Path | None = None,
) -> Composed:
    """The mail from the desk. `auto_submitted`: its Auto-Submitted value, None for a mail a person wrote.
    `attachment_dir`: attachments whose file is there go in as references (see stored_attachments)."""
    msg = _with_attachments(_body(rendered), attachments, attachment_dir)
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(now)
    msg["From"] = _address(_from_name(desk, addressing.from_name), desk.primary_address)
    # The name a customer's reply shows in its To: the desk's friendly name too, not its internal one.
    msg["Reply-To"] = _address(desk.sender_name or desk.name, addressing.reply_to)
    msg["To"] = ", ".join(_address(name, addr) for name, addr in addressing.to)
    if addressing.cc:
        msg["Cc"] = ", ".join(_address(name, addr) for name, addr in addressing.cc)
    _set_header(msg, "Subject", header_value(subject))
    if addressing.in_reply_to:
        msg["In-Reply-To"] = addressing.in_reply_to
    if addressing.references:
        msg["References"] = " ".join(addressing.references)
    for name, value in addressing.thread_headers:
        _set_header(msg, name, value)
    if auto_submitted is not None:
        msg["Auto-Submitted"] = auto_submitted
    msg["X-Loop"] = desk.primary_address
    return msg


def _set_header(msg: Composed, name: str, value: str | Header) -> None:
    # compat32 messages take a Header (RFC 2047 words) as a value; typeshed types MIMEBase's values as str.
    msg[name] = value  # type: ignore[assignment]


def _body(rendered: Rendered) -> Composed:
    """The text part, or text and HTML as multipart/alternative."""
    text = _text_part(rendered.text, "plain")
    if rendered.html is None:
        return text
    alternative = MIMEMultipart("alternative")
    alternative.attach(text)
    alternative.attach(_text_part(rendered.html, "html"))
    return alternative


def _with_attachments(
    body: Composed, attachments: Sequence[OutgoingAttachment], attachment_dir: Path | None
) -> Composed:
    """`body` alone, or in a multipart/mixed with the attachments after it."""
    if not attachments:
        return body
    mixed = MIMEMultipart("mixed")
    mixed.attach(body)
    for attachment in attachments:
        mixed.attach(
            _attachment_part(attachment, is_stored(attachment_dir, attachment.digest, len(attachment.data)))
        )
    return mixed
