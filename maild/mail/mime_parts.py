"""A parsed mail's MIME structure: the body text (and HTML) it is read by, and every other part as an
attachment."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from email.message import EmailMessage, Message

from maild.mail.attachment_policy import sanitize_filename
from maild.mail.charsets import clean_text, decode_8bit, decode_bytes
from maild.mail.flowed import unflow
from maild.mail.headers import charset_hints, header_text, raw_values
from maild.mail.htmltext import html_to_text, sanitize_html
from maild.mail.lenient import LENIENT_POLICY, parameter
from maild.mail.parsed import ParsedAttachment
from maild.mail.rawparts import attached_mail_bytes
from maild.mail.uuencode import UU_TYPES, uu_blocks, uu_name, uudecode_lines

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)


def _declared_charset(part: Message, payload: bytes) -> str | None:
    """The Content-Type's charset, else (HTML) the one its <meta> names: web mailers and HTML editors
    often label only the document."""
    for raw in raw_values(part, "Content-Type"):
        charset = parameter(raw, "charset")
        if charset:
            return charset
    if part.get_content_subtype() == "html":
        meta = _META_CHARSET.search(payload[:4096])
        if meta:
            return meta.group(1).decode("ascii")
    return None


def _is_uuencoded(part: Message) -> bool:
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    return encoding in UU_TYPES or part.get_content_subtype() in UU_TYPES


def _raw_payload(part: Message) -> str:
    """The payload as parsed, 8-bit bytes still surrogates: get_payload() would turn a `begin` line's
    UTF-8 file name into U+FFFD."""
    raw = getattr(part, "_payload", None)
    return raw if isinstance(raw, str) else ""


def _payload(part: Message) -> bytes | None:
    """The part's decoded bytes; uuencoded payloads (also without a `begin` line) decoded here."""
    if _is_uuencoded(part):
        return uudecode_lines(_raw_payload(part))
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None


def decode_part(part: Message, defects: list[str]) -> str:
    # From the bytes, leniently (maild.mail.charsets.decode_bytes): get_content() decodes with
    # errors="replace", which turns mislabelled 8-bit text into U+FFFD before anything could read it.
    try:
        payload = _payload(part)
    except (LookupError, UnicodeError, AssertionError, KeyError, ValueError) as exc:
        defects.append(f"body: {type(exc).__name__}")
        return ""
    if payload is None:
        return ""
    text = decode_bytes(payload, _declared_charset(part, payload), lambda: charset_hints(part))
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
    if part.get_content_type() != "text/plain" or parent == "alternative" or _is_uuencoded(part):
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


def _part_bytes(part: Message, defects: list[str], as_sent: dict[int, bytes]) -> bytes:
    try:
        if id(part) in as_sent:
            return as_sent[id(part)]  # an attached mail: the bytes it came with
        if part.get_content_type() == "message/rfc822" or part.is_multipart():
            inner = part.get_payload()
            if isinstance(inner, list):
                return b"".join(sub.as_bytes(policy=_VERBATIM) for sub in inner if isinstance(sub, Message))
        payload = _payload(part)
    except Exception as exc:  # a nested message whose headers cannot be written back out
        defects.append(f"attachment: {type(exc).__name__}")
        return b""
    return payload if isinstance(payload, bytes) else b""


# A forwarded mail written back (when its bytes could not be cut from the raw mail): headers not refolded
# or re-encoded, CRLF as on the wire.
_VERBATIM = LENIENT_POLICY.clone(refold_source="none", linesep="\r\n")


def _filename(part: Message) -> str:
    """The name the sender gave: Content-Disposition's filename, else Content-Type's name, decoded
    leniently (maild.mail.lenient.parameter). Outlook's unescaped Windows paths keep their backslashes,
    so the sanitiser takes the last segment."""
    for header, name in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        for raw in raw_values(part, header):
            value = parameter(raw, name, lambda: charset_hints(part))
            if value and value.strip():
                return value
    if _is_uuencoded(part):
        return decode_8bit(uu_name(_raw_payload(part)), lambda: charset_hints(part))
    return ""


_NAMED_ID = re.compile(r"^([^@/\\]+\.[A-Za-z][A-Za-z0-9]{1,4})(?:@|$)")


def _inline_name(part: Message, defects: list[str]) -> str:
    """A nameless part's name as the sender's client knew it: Content-Location's last path segment, or
    the file name Outlook and Apple Mail put in the Content-ID (`image001.jpg@01D9…`)."""
    location = header_text(part, "Content-Location", defects)
    tail = urllib.parse.unquote(location.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
    if "." in tail:
        return tail
    match = _NAMED_ID.match(header_text(part, "Content-ID", defects).strip().strip("<>"))
    return match.group(1) if match else ""


def _attachment(part: Message, data: bytes, position: int, defects: list[str]) -> ParsedAttachment:
    ctype = part.get_content_type()
    try:
        filename = clean_text(_filename(part))
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
    filename = filename or clean_text(_inline_name(part, defects))
    fallback = "inline" if inline else f"attachment-{position}"
    return ParsedAttachment(
        sanitize_filename(filename, ctype, fallback=fallback), ctype, data, content_id, inline
    )


_UU_TYPE = "application/octet-stream"


def _uu_attachments(texts: list[str], found: list[ParsedAttachment]) -> list[str]:
    """The texts without their uuencoded blocks, each block an attachment."""
    kept = []
    for text in texts:
        text, blocks = uu_blocks(text)
        kept.append(text)
        for name, data in blocks:
            found.append(
                ParsedAttachment(
                    sanitize_filename(name, _UU_TYPE, fallback=f"attachment-{len(found) + 1}"),
                    _UU_TYPE,
                    data,
                )
            )
    return kept


def body_and_attachments(
    msg: EmailMessage, defects: list[str], raw: bytes = b""
) -> tuple[str, str | None, list[ParsedAttachment]]:
    """text/plain preferred; HTML converted to text when there is none or it is blank. Every other leaf
    is an attachment, inline images (cid:) included; extra inline text parts (Apple Mail puts text after
    an image in its own part) are appended to the text. `raw`: the mail's bytes, which an attached mail
    is cut from as it came."""
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
    as_sent = attached_mail_bytes(raw, msg)
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
        found.append(_attachment(part, _part_bytes(part, defects, as_sent), len(found) + 1, defects))
    texts = _uu_attachments(texts, found)
    if any(t.strip() for t in texts) or (texts and html_source is None):
        text = "\n".join(t for t in texts if t.strip()) if len(texts) > 1 else texts[0]
    else:  # no text/plain, or a blank one beside the HTML (some web mailers): the HTML is the body
        text = html_to_text(html_source, quote_marks=True) if html_source is not None else ""
    if unparsed:
        text = "\n".join(t for t in [text, *unparsed] if t.strip())
    return text, (sanitize_html(html_source) if html_source is not None else None), found
