"""Raw bytes → ParsedMail, with stdlib `email` (policy.default) as the source of truth.

Never raises on bad MIME: each header and part is read defensively and problems are recorded as
defects. `NotAMessage` is raised only for input that is not a mail at all (quarantined by the caller).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses

from maild.htmltext import html_to_text

_MSGID = re.compile(r"<[^<>\s]+>")
_MAX_ID = 900
# As wide as the columns they are stored in (contacts/messages names, attachment filenames): PostgreSQL
# refuses a longer value, and the mail must not fail over a signature-length display name.
NAME_MAX = 200
FILENAME_MAX = 255


def _clean(text: str) -> str:
    """Without NUL characters, which PostgreSQL text cannot hold and no reader needs."""
    return text.replace("\x00", "")


def _fit_filename(name: str) -> str:
    if len(name) <= FILENAME_MAX:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and 0 < len(ext) <= 10:  # keep the extension: it says what the file is
        return f"{stem[: FILENAME_MAX - len(ext) - 1]}.{ext}"
    return name[:FILENAME_MAX]


class NotAMessage(Exception):
    """The input cannot be treated as a mail (no header, no sender): quarantine it with this reason."""


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class ParsedMail:
    message_id: str
    has_message_id: bool
    subject: str
    from_address: str
    from_name: str
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    delivered_to: list[str]
    in_reply_to: list[str]
    references: list[str]
    text: str
    html: str | None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this mail answers, most specific first (In-Reply-To, then References newest-first)."""
        seen: list[str] = []
        for mid in [*self.in_reply_to, *reversed(self.references)]:
            if mid not in seen and mid != self.message_id:
                seen.append(mid)
        return seen


def _message_ids(value: str) -> list[str]:
    """The <id>s in a header. An id too long for the message_id column (RFC 5322 allows 998 per line,
    clients send longer) is replaced by a digest of it: still unique, and every header naming it maps
    to the same stand-in, so threading by it keeps working."""
    return [
        mid if len(mid) <= _MAX_ID else f"<{hashlib.sha256(mid.encode()).hexdigest()}@long-message-id.maild>"
        for mid in _MSGID.findall(value)
    ]


def _header(msg: Message, name: str, defects: list[str]) -> str:
    """A header as decoded text; falls back to the raw value when the policy cannot parse it."""
    try:
        value = msg.get(name)
    except Exception as exc:  # policy.default raises on some malformed headers
        defects.append(f"{name}: {type(exc).__name__}")
        raw = msg.get_all(name) if hasattr(msg, "get_all") else None
        value = raw[0] if raw else None
    if value is None:
        return ""
    return _clean(re.sub(r"\s+", " ", str(value)).strip())


def _all_headers(msg: Message, name: str, defects: list[str]) -> list[str]:
    try:
        values = msg.get_all(name) or []
    except Exception as exc:
        # E.g. a display name that decodes to a line break: the address beside it is still good, so
        # fall back to the undecoded value rather than lose the sender.
        defects.append(f"{name}: {type(exc).__name__}")
        return [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]
    return [str(v) for v in values]


def _addresses(msg: Message, name: str, defects: list[str]) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    for display, addr in getaddresses(_all_headers(msg, name, defects)):
        addr = addr.strip().strip("<>")
        if "@" in addr:
            result.append((_clean(" ".join(display.split()))[:NAME_MAX], addr.lower()))
    return result


def _decode_part(part: Message, defects: list[str]) -> str:
    # From the bytes, strictly: get_content() decodes with errors="replace", which turns mislabelled
    # 8-bit text into U+FFFD before the fallbacks below could read it.
    try:
        payload = part.get_payload(decode=True)
    except (LookupError, UnicodeError, AssertionError, KeyError, ValueError) as exc:
        defects.append(f"body: {type(exc).__name__}")
        return ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    for candidate in (charset, "utf-8"):
        try:
            text = payload.decode(candidate)
            break
        except (LookupError, UnicodeDecodeError):
            continue
    else:
        # Undeclared or mislabelled 8-bit: windows-1252 decodes every byte and is the usual truth.
        defects.append(f"body: not {charset}, read as windows-1252")
        text = payload.decode("windows-1252", errors="replace")
    # SMTP and LMTP hand over CRLF, a pipe transport LF: the stored text must not depend on the ingress.
    return _clean(text.replace("\r\n", "\n"))


def _body(msg: EmailMessage, defects: list[str]) -> tuple[str, str | None]:
    try:
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
    except Exception as exc:
        defects.append(f"structure: {type(exc).__name__}")
        plain, html = (msg, None) if not msg.is_multipart() else (None, None)
    if (
        plain is None
        and html is None
        and msg.get_content_maintype() == "multipart"
        and not msg.is_multipart()
    ):
        # A multipart without a usable boundary is left as one unparsed body: keep its text, not nothing.
        plain = msg
    html_text = _decode_part(html, defects) if html is not None else None
    if plain is not None:
        return _decode_part(plain, defects), html_text
    if html_text is not None:
        return html_to_text(html_text), html_text
    return "", None


def _attachments(msg: EmailMessage, defects: list[str]) -> list[ParsedAttachment]:
    found: list[ParsedAttachment] = []
    try:
        parts = list(msg.iter_attachments())
    except Exception as exc:
        defects.append(f"attachments: {type(exc).__name__}")
        return found
    for part in parts:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            data = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
        try:
            filename = part.get_filename() or ""
        except Exception:
            filename = ""
        found.append(
            ParsedAttachment(_fit_filename(_clean(filename)) or "attachment", part.get_content_type(), data)
        )
    return found


def parse_mail(raw: bytes) -> ParsedMail:
    if not raw.strip():
        raise NotAMessage("empty input")
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    if not msg.keys():
        raise NotAMessage("not a mail message: no header fields")
    defects = [type(d).__name__ for d in msg.defects]
    senders = _addresses(msg, "From", defects) or _addresses(msg, "Sender", defects)
    if not senders:
        raise NotAMessage("no sender address in From or Sender")
    from_name, from_address = senders[0]
    header_ids = _message_ids(_header(msg, "Message-ID", defects))
    message_id = header_ids[0] if header_ids else f"<{hashlib.sha256(raw).hexdigest()}@no-message-id.maild>"
    text, html = _body(msg, defects)
    return ParsedMail(
        message_id=message_id,
        has_message_id=bool(header_ids),
        subject=_header(msg, "Subject", defects),
        from_address=from_address,
        from_name=from_name,
        to=_addresses(msg, "To", defects),
        cc=_addresses(msg, "Cc", defects),
        delivered_to=[
            a for _, a in _addresses(msg, "Delivered-To", defects) + _addresses(msg, "X-Original-To", defects)
        ],
        in_reply_to=_message_ids(_header(msg, "In-Reply-To", defects)),
        references=_message_ids(_header(msg, "References", defects)),
        text=text,
        html=html,
        attachments=_attachments(msg, defects),
        defects=defects,
    )
