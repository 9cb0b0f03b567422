"""Raw bytes → ParsedMail, with stdlib `email` (policy.default made lenient: maild.mail.lenient) as the
source of truth.

Never raises on bad MIME: each header and part is read defensively and problems are recorded as
defects. `NotAMessage` is raised only for input that is not a mail at all (quarantined by the caller).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser

from maild.mail.automatic import NULL_SENDER
from maild.mail.header_repair import repair_header_block
from maild.mail.headers import HEADER_PARSE_MAX as HEADER_PARSE_MAX
from maild.mail.headers import NAME_MAX as NAME_MAX
from maild.mail.headers import REFERENCES_MAX as REFERENCES_MAX
from maild.mail.headers import SUBJECT_MAX as SUBJECT_MAX
from maild.mail.headers import (
    addresses,
    capped_ids,
    envelope_address,
    header_text,
    mailboxes,
    message_ids,
)
from maild.mail.lenient import LENIENT_POLICY
from maild.mail.mime_parts import body_and_attachments
from maild.mail.parsed import TOO_DEEP
from maild.mail.parsed import NotAMessage as NotAMessage
from maild.mail.parsed import ParsedAttachment as ParsedAttachment
from maild.mail.parsed import ParsedMail as ParsedMail
from maild.mail.quotes import visible_text

# The parts: charsets (decoding text), headers, mime_parts (body and attachments), parsed (the result). The
# names imported "as" themselves above stay importable from here, where callers import them.


def parse_mail(raw: bytes, mail_from: str = "") -> ParsedMail:
    """`mail_from`: the envelope sender as the spool recorded it (SpoolEntry.mail_from), the sender of a
    mail whose From names nobody."""
    try:
        return _parse(raw, mail_from)
    except RecursionError:
        # The stdlib parses MIME nesting, forwarded messages and header comments recursively: a few hundred
        # levels of any of them (no client writes that) exhaust the stack wherever the mail is read.
        raise NotAMessage(TOO_DEEP) from None


def _parse(original: bytes, mail_from: str) -> ParsedMail:
    if not original.strip():
        raise NotAMessage("empty input")
    repaired = repair_header_block(original)
    raw = repaired.raw
    msg = BytesParser(policy=LENIENT_POLICY).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    if not msg.keys():
        raise NotAMessage("not a mail message: no header fields")
    defects = [*repaired.repairs, *(type(d).__name__ for d in msg.defects)]
    from_boxes, sender_boxes = mailboxes(msg, "From"), mailboxes(msg, "Sender")
    from_name, from_address = _sender(msg, from_boxes, sender_boxes, mail_from, defects)
    header_ids = message_ids(header_text(msg, "Message-ID", defects))
    # Without a Message-ID the spool's bytes name the mail, whatever was repaired for parsing.
    digest = hashlib.sha256(original).hexdigest()
    message_id = header_ids[0] if header_ids else f"<{digest}@no-message-id.maild>"
    text, html, attachments = body_and_attachments(msg, defects, raw)
    return ParsedMail(
        message_id=message_id,
        has_message_id=bool(header_ids),
        subject=header_text(msg, "Subject", defects)[:SUBJECT_MAX],
        from_address=from_address,
        from_name=from_name,
        to=addresses(msg, "To"),
        cc=addresses(msg, "Cc"),
        delivered_to=[a for _, a in addresses(msg, "Delivered-To") + addresses(msg, "X-Original-To")],
        in_reply_to=message_ids(header_text(msg, "In-Reply-To", defects, ends=True)),
        references=capped_ids(message_ids(header_text(msg, "References", defects, ends=True))),
        text=text,
        html=html,
        visible_text=visible_text(text),
        attachments=attachments,
        defects=defects,
        from_addresses=[address for _, address in from_boxes if address],
        sender_addresses=[address for _, address in sender_boxes if address],
        header_repaired=raw is not original,
    )


def _sender(
    msg: EmailMessage,
    from_boxes: list[tuple[str, str]],
    sender_boxes: list[tuple[str, str]],
    mail_from: str,
    defects: list[str],
) -> tuple[str, str]:
    """(display name, address) of whoever sent the mail: From, else Sender, Reply-To, the envelope sender
    (the spool's MAIL FROM, else the topmost Return-Path). Each fallback is a defect, so the agents see
    which one answered. The address is "" when nothing names a sender: a delivery report from a mail
    system (`From: MAILER-DAEMON <>`, Courier's `<@>`, a null envelope) goes on to the bounce stage,
    which quarantines anything else without a sender."""
    named = [box for box in from_boxes if box[1]]
    if named:
        return named[0]
    # `"Support team" <>`: the name From gives stays the name, whoever stands in for the address.
    from_name = next((name for name, _ in from_boxes if name), "")
    why = "From names no address" if from_boxes else "no From header"
    for header, boxes in (("Sender", sender_boxes), ("Reply-To", mailboxes(msg, "Reply-To"))):
        found = next((box for box in boxes if box[1]), None)
        if found is not None:
            defects.append(f"{why}: the sender is taken from {header}")
            return from_name or found[0], found[1]
    envelope = envelope_address(msg, mail_from)
    if envelope:
        source = "the envelope sender" if mail_from and mail_from != NULL_SENDER else "Return-Path"
        defects.append(f"{why}: the sender is taken from {source}")
        return from_name, envelope
    return from_name, ""


@dataclass(frozen=True)
class ParseOutcome:
    """What parsing a file made of it, picklable: it crosses from a parse worker process to the writer."""

    mail: ParsedMail | None
    error: str | None  # NotAMessage's reason: the parse stage quarantines with it
    seconds: float  # the parse's own time, counted in the mail's processing budget


def parse_file(path: str, mail_from: str = "") -> ParseOutcome | None:
    """Read and parse one spooled file (in a parse worker process: no state, no database). None when the
    parser itself failed: the parse stage meets the error again in the writer, where it is counted."""
    started = time.perf_counter()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        mail = parse_mail(raw, mail_from)
    except NotAMessage as exc:
        return ParseOutcome(None, str(exc), time.perf_counter() - started)
    except Exception:
        return None
    return ParseOutcome(mail, None, time.perf_counter() - started)
