"""A parsed mail's MIME structure: the body text (and HTML) it is read by, and every other part as an
attachment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message

from maild.mail.attachment_policy import sanitize_filename
from maild.mail.charsets import SUPERSETS, clean_text, codec_name, decode_raw
from maild.mail.flowed import unflow
from maild.mail.headers import header_text, raw_values
from maild.mail.htmltext import html_to_text, sanitize_html
from maild.mail.parsed import ParsedAttachment


def decode_part(part: Message, defects: list[str]) -> str:
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
    candidates = [charset, "utf-8"]
    codec = codec_name(charset)
    if codec == "iso8859-1":
        # Labelled Latin-1, written in windows-1252 (curly quotes, €): what browsers do too (WHATWG).
        candidates.insert(0, "windows-1252")
    elif codec in SUPERSETS:
        candidates.append(SUPERSETS[codec])
    for candidate in candidates:
        try:
            text = payload.decode(candidate)
            break
        except (LookupError, UnicodeDecodeError, ValueError):  # ValueError: a NUL in the charset name
            continue
    else:
        # Undeclared or mislabelled 8-bit: windows-1252 decodes every byte and is the usual truth.
        defects.append(f"body: not {charset}, read as windows-1252")
        text = payload.decode("windows-1252", errors="replace")
    # SMTP and LMTP hand over CRLF, a pipe transport LF: the stored text must not depend on the ingress.
    text = text.replace("\r\n", "\n")
    if part.get_content_type() == "text/plain" and str(part.get_param("format", "")).lower() == "flowed":
        text = unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
    return clean_text(text)


def _leaves(part: Message, parent: str = "") -> Iterator[tuple[Message, str]]:
    """Every non-multipart part with the subtype of the multipart holding it. A message/rfc822 is a leaf:
    a forwarded mail is kept whole, as an attachment, not mixed into this one."""
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):  # always, in a parsed multipart; the stubs allow str
                yield from _leaves(child, part.get_content_subtype())
    else:
        yield part, parent


def _is_body_text(part: Message, parent: str) -> bool:
    """Text meant to be read in the mail itself: not attached, not named, not an alternative rendering."""
    if part.get_content_type() != "text/plain" or parent == "alternative":
        return False
    try:
        return part.get_content_disposition() != "attachment" and not part.get_filename()
    except Exception:
        return False


def _first_body_text(msg: Message) -> Message | None:
    try:
        return next((part for part, parent in _leaves(msg) if _is_body_text(part, parent)), None)
    except Exception:
        return None


def _part_bytes(part: Message, defects: list[str]) -> bytes:
    try:
        if part.get_content_type() == "message/rfc822" or part.is_multipart():
            inner = part.get_payload()
            if isinstance(inner, list):
                return b"".join(sub.as_bytes(policy=_VERBATIM) for sub in inner if isinstance(sub, Message))
        payload = part.get_payload(decode=True)
    except Exception as exc:  # a nested message whose headers cannot be written back out
        defects.append(f"attachment: {type(exc).__name__}")
        return b""
    return payload if isinstance(payload, bytes) else b""


# A forwarded mail written back as it came: headers not refolded or re-encoded, CRLF as on the wire.
_VERBATIM = policy.default.clone(refold_source="none", linesep="\r\n")


_QUOTED_NAME = re.compile(r'\b(?:file)?name\s*=\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)


def _windows_path_tail(part: Message) -> str | None:
    """Outlook writes Windows paths into quoted filenames with bare backslashes, which MIME quoting reads as
    escapes: "..\\Startup\\update.bat" arrives as "..Startupupdate.bat". The last path segment instead."""
    for header in ("Content-Disposition", "Content-Type"):
        for raw in raw_values(part, header):
            match = _QUOTED_NAME.search(raw.replace("\r\n", ""))
            if match and re.search(r'\\[^"\\]', match.group(1)):
                return decode_raw(match.group(1).rsplit("\\", 1)[-1])
    return None


def _attachment(part: Message, data: bytes, position: int, defects: list[str]) -> ParsedAttachment:
    ctype = part.get_content_type()
    try:
        filename = clean_text(_windows_path_tail(part) or part.get_filename() or "")
    except Exception:
        filename = ""
    if not filename and ctype == "message/rfc822":
        inner = part.get_payload()
        subject = ""
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            subject = header_text(inner[0], "Subject", defects)
        # A subject is no path: "Invoice 03/2026" must not be cut to "2026" by the filename sanitiser.
        subject = subject.replace("/", "_").replace("\\", "_")
        filename = f"{subject or 'message'}.eml"
    content_id = header_text(part, "Content-ID", defects).strip().strip("<>") or None
    try:
        inline = part.get_content_disposition() == "inline" or (
            content_id is not None and part.get_content_disposition() is None
        )
    except Exception:
        inline = False
    fallback = "inline" if inline else f"attachment-{position}"
    return ParsedAttachment(
        sanitize_filename(filename, ctype, fallback=fallback), ctype, data, content_id, inline
    )


def body_and_attachments(
    msg: EmailMessage, defects: list[str]
) -> tuple[str, str | None, list[ParsedAttachment]]:
    """text/plain preferred; HTML converted to text when there is none. Every other leaf is an attachment,
    inline images (cid:) included; extra inline text parts (Apple Mail puts text after an image in its own
    part) are appended to the text."""
    plain: Message | None
    html: Message | None
    try:
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
    except Exception as exc:
        # The stdlib trips over a nested multipart without a usable boundary: take the first text part.
        defects.append(f"structure: {type(exc).__name__}")
        plain, html = (msg, None) if not msg.is_multipart() else (_first_body_text(msg), None)
    if (
        plain is None
        and html is None
        and msg.get_content_maintype() == "multipart"
        and not msg.is_multipart()
    ):
        # A multipart without a usable boundary is left as one unparsed body: keep its text, not nothing.
        plain = msg
    html_source = decode_part(html, defects) if html is not None else None
    texts = [decode_part(plain, defects)] if plain is not None else []
    unparsed: list[str] = []
    found: list[ParsedAttachment] = []
    try:
        leaves = list(_leaves(msg))
    except Exception as exc:
        defects.append(f"attachments: {type(exc).__name__}")
        leaves = []
    for part, parent in leaves:
        if part is plain or part is html:
            continue
        if plain is not None and _is_body_text(part, parent):
            texts.append(decode_part(part, defects))
            continue
        if part.get_content_maintype() == "multipart" and part.get_payload():
            # A nested multipart without a usable boundary is one unparsed body: its text, not nothing.
            unparsed.append(decode_part(part, defects))
            continue
        if part.get_content_maintype() == "multipart" or (
            part.get_content_type() == "text/plain" and not part.get_payload()
        ):
            continue  # an empty shell, nothing to keep
        found.append(_attachment(part, _part_bytes(part, defects), len(found) + 1, defects))
    if texts:
        text = "\n".join(t for t in texts if t.strip()) if len(texts) > 1 else texts[0]
    else:
        text = html_to_text(html_source) if html_source is not None else ""
    if unparsed:
        text = "\n".join(t for t in [text, *unparsed] if t.strip())
    return text, (sanitize_html(html_source) if html_source is not None else None), found
