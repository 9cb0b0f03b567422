"""The customer mail an agent forwarded: attached (message/rfc822, "forward as attachment"), or inline
below the agent's own words with the header block mail clients write:

    Gmail          ---------- Forwarded message --------- / From: Name <addr> / Date: / Subject: / To:
    Gmail (de)     ---------- Weitergeleitete Nachricht --------- / Von: … / Date: / Subject: / To:
    Outlook        ________________________________ / From: Name <addr> / Sent: / To: / Subject:
                   (older: -----Original Message----- / From: Name [mailto:addr])
    Outlook (de)   ________________________________ / Von: Name <addr> / Gesendet: / An: / Betreff:
    Thunderbird    -------- Forwarded Message -------- / Subject: / Date: / From: / To:
                   (de: -------- Weitergeleitete Nachricht -------- / Betreff: / Datum: / Von: / An:)
    Apple Mail     Begin forwarded message: / From: / Subject: / Date: / To:

Pure: no database, no maild module outside maild.mail."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from maild.mail.addresses import is_valid, normalize
from maild.mail.mailparse import parse_mail
from maild.mail.parsed import NotAMessage, ParsedAttachment, ParsedMail

_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded message|weitergeleitete nachricht|original message|ursprüngliche nachricht|"
    r"message transféré|message d'origine|messaggio inoltrato|mensaje reenviado|doorgestuurd bericht)"
    r"\s*-{2,}|_{10,}|begin forwarded message:|anfang der weitergeleiteten nachricht:)\s*$",
    re.IGNORECASE,
)
_FROM_KEYS = ("from", "von", "de", "da", "van", "från", "fra", "od")
_SUBJECT_KEYS = ("subject", "betreff", "objet", "oggetto", "asunto", "onderwerp", "ämne", "emne", "temat")
# `Key: value`, also bold as Gmail's and Outlook's HTML reads in text (`*From:* …`)
_HEADER_LINE = re.compile(r"^\s*\*?([A-Za-zÀ-ÿ][\w .-]{0,20}?)\*?\s*:\*?\s*(.*)$")
_MAILTO = re.compile(r"\[mailto:([^\]]+)\]|<([^>]+)>")
_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")


@dataclass(frozen=True)
class Forwarded:
    """The original mail: its sender, subject and text, and its own attachments (an attached mail's;
    for an inline forward, the forwarding mail's, which the client carried over)."""

    sender_address: str
    sender_name: str
    subject: str
    text: str
    message_id: str = ""  # an attached mail's own Message-ID ("" for an inline forward)
    attachments: list[ParsedAttachment] = field(default_factory=list)


def _sender(value: str) -> tuple[str, str]:
    """(name, address) from `Name <addr>`, `Name [mailto:addr]`, `addr` or `"Name" addr`."""
    bracketed = _MAILTO.search(value)
    if bracketed is not None:
        address = normalize(bracketed[1] or bracketed[2])
        name = value[: bracketed.start()].strip().strip('"').strip()
        return name, address
    found = _ADDRESS_IN_TEXT.search(value)
    if found is None:
        return value.strip(), ""
    return value.replace(found[0], "").strip().strip('"').strip(), normalize(found[0])


def _header_block(lines: list[str], start: int) -> tuple[dict[str, str], int] | None:
    """The `Key: value` lines from `start` (blank lines before them skipped), keyed by the lower-cased
    key, and the index after the block; None when it names no sender."""
    index = start
    while index < len(lines) and not lines[index].strip():
        index += 1
    found: dict[str, str] = {}
    while index < len(lines):
        match = _HEADER_LINE.match(lines[index])
        if match is None:
            break
        found.setdefault(match[1].strip().lower(), match[2].strip())
        index += 1
    if not any(key in found for key in _FROM_KEYS):
        return None
    return found, index


def _inline(text: str, attachments: list[ParsedAttachment]) -> tuple[str, Forwarded] | None:
    """(the agent's words above it, the forwarded mail) of an inline forward, or None."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for index, line in enumerate(lines):
        plain = line.lstrip("> ").rstrip()
        if _SEPARATOR.match(plain):
            block = _header_block([x.lstrip("> ") if x.startswith(">") else x for x in lines], index + 1)
        elif (start := _HEADER_LINE.match(plain)) is not None and start[1].strip().lower() in _FROM_KEYS:
            block = _header_block(lines, index)  # Outlook's block may come without a line above it
            if block is not None and len(block[0]) < 3:
                block = None  # one "From:" line in the agent's words is no header block
        else:
            continue
        if block is None:
            continue
        headers, end = block
        name, address = _sender(next(headers[k] for k in _FROM_KEYS if k in headers))
        if not is_valid(address):
            continue
        subject = next((headers[k] for k in _SUBJECT_KEYS if k in headers), "")
        body = "\n".join(x[2:] if x.startswith("> ") else x for x in lines[end:]).strip("\n")
        note = "\n".join(lines[:index]).strip()
        return note, Forwarded(address, name, subject, body, "", list(attachments))
    return None


def _attached(mail: ParsedMail, rest: str) -> tuple[str, Forwarded] | None:
    """The first attached mail (forward as attachment) and the agent's words (`rest`, all of them)."""
    for part in mail.attachments:
        if part.content_type.lower() != "message/rfc822":
            continue
        try:
            inner = parse_mail(part.data)
        except NotAMessage:
            continue
        if not is_valid(inner.from_address):
            continue
        others = [p for p in mail.attachments if p is not part]
        return rest.strip(), Forwarded(
            normalize(inner.from_address),
            inner.from_name,
            inner.subject,
            inner.text,
            inner.message_id if inner.has_message_id else "",
            [*inner.attachments, *others],
        )
    return None


def forwarded_mail(mail: ParsedMail, rest: str) -> tuple[str, Forwarded] | None:
    """(the agent's note, the forwarded mail) of `mail`, whose text after the command line is `rest`:
    an attached mail first, else an inline forward in `rest`; None when there is neither."""
    return _attached(mail, rest) or _inline(rest, mail.attachments)
