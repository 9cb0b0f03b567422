"""Raw bytes → ParsedMail, with stdlib `email` (policy.default) as the source of truth.

Never raises on bad MIME: each header and part is read defensively and problems are recorded as
defects. `NotAMessage` is raised only for input that is not a mail at all (quarantined by the caller).
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy, quoprimime
from email.header import decode_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from functools import cached_property

from maild.mail.addresses import TooDeep, split_mailboxes
from maild.mail.attachment_policy import sanitize_filename
from maild.mail.automatic import envelope_sender
from maild.mail.flowed import unflow
from maild.mail.htmltext import html_to_text, sanitize_html
from maild.mail.quotes import visible_text

_MSGID = re.compile(r"<[^<>\s]+>")
_MAX_ID = 900
# As wide as the columns they are stored in (contacts/messages names, attachment filenames): PostgreSQL
# refuses a longer value, and the mail must not fail over a signature-length display name.
NAME_MAX = 200
# Work per mail stays linear in its size (issue 14): the stdlib's header parser takes time superlinear in
# a header's length (a 1 MB Subject 7 s, 5 MB 9 minutes), so it reads at most HEADER_PARSE_MAX characters
# of a header, the start (Subject) or the start and the end (Message-ID lists: the root and the newest ids).
# The full header stays in the raw mail.
HEADER_PARSE_MAX = 16_384
# RFC 5322's line limit: no client writes a longer subject; the ticket's is shorter (pipeline.apply).
SUBJECT_MAX = 998
# The ids of References kept: the first (the thread's root) and the newest, as RFC 5322 3.6.4 suggests
# for a long chain. Threading looks at the newest ids first.
REFERENCES_MAX = 100


# C1 controls (U+0080-U+009F) are never meant in mail text: they are windows-1252 bytes read as Latin-1
# (curly quotes, €, dashes), by the sender's software or by a Latin-1 label on windows-1252 text.
_C1_AS_CP1252 = {
    byte: bytes([byte]).decode("windows-1252")
    for byte in range(0x80, 0xA0)
    if byte not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # undefined in windows-1252
}


def _clean(text: str) -> str:
    """Without NUL characters, which PostgreSQL text cannot hold and no reader needs, and with C1 controls
    read as the windows-1252 characters they stand for."""
    return text.replace("\x00", "").translate(_C1_AS_CP1252)


# Charset labels mail clients write that Python has no alias for (Thai and Hebrew Outlook, Java mailers,
# old Netscape and Mac clients). Registered as codecs, so RFC 2047 words in headers decode by them too.
_CHARSET_LABELS = {
    "windows-874": "cp874",
    "windows-31j": "cp932",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "iso-8859-8-i": "iso8859_8",
    "iso-8859-8-e": "iso8859_8",
    "iso-8859-6-i": "iso8859_6",
    "iso-8859-6-e": "iso8859_6",
    "x-gbk": "gbk",
    "gb_2312-80": "gb2312",
    "csgb2312": "gb2312",
    "x-euc-cn": "gb2312",
    "cn-big5": "big5",
    "x-x-big5": "big5",
    "windows-949": "cp949",
    "x-windows-949": "cp949",
    "x-mac-roman": "mac_roman",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-ce": "mac_latin2",
    **{f"x-cp125{n}": f"cp125{n}" for n in range(9)},
}


def _charset_label(name: str) -> codecs.CodecInfo | None:
    target = _CHARSET_LABELS.get(name.lower().replace("_", "-"))
    return codecs.lookup(target) if target else None


codecs.register(_charset_label)

# Labels that stand for a smaller charset than the one the sender's software really wrote (GBK characters
# in mail labelled gb2312, Microsoft's extensions of Shift_JIS and EUC-KR): tried after the label and UTF-8.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}


class NotAMessage(Exception):
    """The input cannot be treated as a mail (no header, no sender): quarantine it with this reason."""


@dataclass
class ParsedAttachment:
    filename: str  # sanitised
    content_type: str
    data: bytes
    content_id: str | None = None  # without the angle brackets, as `cid:` URLs name it
    inline: bool = False

    @cached_property
    def sha256(self) -> str:
        """Hashed once: dedupe, the attachment policy's record and the store all need it (30 MB mail)."""
        return hashlib.sha256(self.data).hexdigest()


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
    text: str  # the whole body
    html: str | None  # sanitised
    visible_text: str  # without quoted history and signature
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    # Every address of the From header(s), and of Sender: an agent's reply names exactly one From, and a
    # Sender only when it is that one (pipeline.identify). `from_address` is the first of the From
    # addresses, else Sender's, else the envelope sender's when From names nobody (`"Doe, John" <>`).
    from_addresses: list[str] = field(default_factory=list)
    sender_addresses: list[str] = field(default_factory=list)

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this mail answers, most specific first (In-Reply-To, then References newest-first)."""
        ids = dict.fromkeys([*self.in_reply_to, *reversed(self.references)])
        ids.pop(self.message_id, None)
        return list(ids)


def _message_ids(value: str) -> list[str]:
    """The <id>s in a header. An id too long for the message_id column (RFC 5322 allows 998 per line,
    clients send longer) is replaced by a digest of it: still unique, and every header naming it maps
    to the same stand-in, so threading by it keeps working."""
    return [
        mid if len(mid) <= _MAX_ID else f"<{hashlib.sha256(mid.encode()).hexdigest()}@long-message-id.maild>"
        for mid in _MSGID.findall(value)
    ]


def _bounded(value: str, ends: bool) -> str:
    """At most HEADER_PARSE_MAX characters of a raw header value: its start, or with `ends` its start and
    its end (a space between, so no two ids are joined)."""
    if len(value) <= HEADER_PARSE_MAX:
        return value
    if not ends:
        return value[:HEADER_PARSE_MAX]
    half = HEADER_PARSE_MAX // 2
    return f"{value[:half]} {value[-half:]}"


def _header(msg: Message, name: str, defects: list[str], *, ends: bool = False) -> str:
    """The first `name` header as decoded text, read from at most HEADER_PARSE_MAX characters (see
    `_bounded`); falls back to the raw value when the policy cannot parse it."""
    raw = _raw_values(msg, name)
    if not raw:
        return ""
    value = _bounded(raw[0], ends)
    try:
        text = str(msg.policy.header_fetch_parse(name, value))
    except Exception as exc:  # policy.default raises on some malformed headers
        defects.append(f"{name}: {type(exc).__name__}")
        text = _decode_raw(value)
    if "\ufffd" in text or _UNDECODED.search(text):
        text = _decode_raw(value)
    return _clean(re.sub(r"\s+", " ", text).strip())


def _capped_ids(ids: list[str]) -> list[str]:
    """The first id and the newest REFERENCES_MAX - 1."""
    return ids if len(ids) <= REFERENCES_MAX else [ids[0], *ids[len(ids) - REFERENCES_MAX + 1 :]]


# Undeclared 8-bit bytes the parser left as surrogates (the raw fallbacks keep them).
_UNDECODED = re.compile("[\udc80-\udcff]")


def _raw_values(msg: Message, name: str) -> list[str]:
    return [v for k, v in msg.raw_items() if k.lower() == name.lower() and isinstance(v, str)]


def _decode_bytes(data: bytes, charset: str | None) -> str:
    superset = _SUPERSETS.get(_codec_name(charset)) if charset else None
    for candidate in (charset, "utf-8", superset):
        if candidate:
            try:
                return data.decode(candidate)
            except (LookupError, UnicodeDecodeError, ValueError):
                continue
    return data.decode("windows-1252", errors="replace")


def _decode_raw(value: str) -> str:
    """A header the policy decoded to U+FFFD, decoded by hand: an encoded word by the superset of its
    label (GBK in a gb2312 word, as Foxmail writes), undeclared 8-bit as UTF-8 or windows-1252."""
    try:
        chunks = decode_header(value.replace("\r\n", ""))
    except Exception:
        return value
    return "".join(
        _decode_bytes(
            chunk.encode("ascii", "surrogateescape") if isinstance(chunk, str) else chunk,
            None if isinstance(chunk, str) else charset,
        )
        for chunk, charset in chunks
    )


# An encoded word (RFC 2047); a language (RFC 2231: `utf-8*de`) after the charset is dropped.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,75})(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_UNDECODED_RUN = re.compile("[\udc80-\udcff]+")


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            payload = payload.rstrip("=")  # padding is often wrong or missing: recomputed
            return binascii.a2b_base64(payload + "=" * (-len(payload) % 4))
        return quoprimime.header_decode(payload).encode("latin-1")
    except (binascii.Error, ValueError):
        return None


def _decode_8bit(text: str) -> str:
    """Undeclared 8-bit bytes (left as surrogates by the parser), run by run, as UTF-8 or windows-1252."""
    return _UNDECODED_RUN.sub(
        lambda run: _decode_bytes(run.group().encode("ascii", "surrogateescape"), None), text
    )


def _decode_words(text: str) -> str:
    """A display name as written → as shown: 8-bit bytes decoded, encoded words decoded (quoted or not,
    as clients do), whitespace between two of them dropped, and adjacent words in one charset decoded as
    one byte string (some encoders split a character between two words). A word that does not decode
    stays as written."""
    text = _decode_8bit(text)
    out: list[str] = []
    run, run_charset, pos = bytearray(), "", 0
    for word in _ENCODED_WORD.finditer(text):
        data = _word_bytes(word[2], word[3])
        if data is None:
            continue  # left in the text between words
        gap, charset = text[pos : word.start()], word[1].lower()
        if run_charset:
            if not gap.strip() and charset == run_charset:
                run += data
                pos = word.end()
                continue
            out.append(_decode_bytes(bytes(run), run_charset))
            if gap.strip():
                out.append(gap)
        else:
            out.append(gap)
        run, run_charset, pos = bytearray(data), charset, word.end()
    if run_charset:
        out.append(_decode_bytes(bytes(run), run_charset))
    out.append(text[pos:])
    return "".join(out)


def _mailboxes(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) of every mailbox in the header(s) `name`, read from the raw value as mail
    clients read it (maild.mail.addresses.split_mailboxes): unquoted specials in names, a trailing dot, the
    angle-addr preferred over an address-like name. The address is "" for `<>`."""
    found: list[tuple[str, str]] = []
    for value in _raw_values(msg, name):
        try:
            pairs = split_mailboxes(value)
        except TooDeep:
            raise NotAMessage(_TOO_DEEP) from None
        for display, address in pairs:
            found.append(
                (
                    _clean(" ".join(_decode_words(display).split()))[:NAME_MAX],
                    _clean(_decode_8bit(address)).lower(),
                )
            )
    return found


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    return [(display, address) for display, address in _mailboxes(msg, name) if address]


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
    candidates = [charset, "utf-8"]
    codec = _codec_name(charset)
    if codec == "iso8859-1":
        # Labelled Latin-1, written in windows-1252 (curly quotes, €): what browsers do too (WHATWG).
        candidates.insert(0, "windows-1252")
    elif codec in _SUPERSETS:
        candidates.append(_SUPERSETS[codec])
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
    return _clean(text)


def _codec_name(charset: str) -> str:
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError):
        return ""


def _leaves(part: Message, parent: str = "") -> Iterator[tuple[Message, str]]:
    """Every non-multipart part with the subtype of the multipart holding it. A message/rfc822 is a leaf:
    a forwarded mail is kept whole, as an attachment, not mixed into this one."""
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
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
        for raw in _raw_values(part, header):
            match = _QUOTED_NAME.search(raw.replace("\r\n", ""))
            if match and re.search(r'\\[^"\\]', match.group(1)):
                return _decode_raw(match.group(1).rsplit("\\", 1)[-1])
    return None


def _attachment(part: Message, data: bytes, position: int, defects: list[str]) -> ParsedAttachment:
    ctype = part.get_content_type()
    try:
        filename = _clean(_windows_path_tail(part) or part.get_filename() or "")
    except Exception:
        filename = ""
    if not filename and ctype == "message/rfc822":
        inner = part.get_payload()
        subject = ""
        if isinstance(inner, list) and inner:
            subject = _header(inner[0], "Subject", defects)
        # A subject is no path: "Invoice 03/2026" must not be cut to "2026" by the filename sanitiser.
        subject = subject.replace("/", "_").replace("\\", "_")
        filename = f"{subject or 'message'}.eml"
    content_id = _header(part, "Content-ID", defects).strip().strip("<>") or None
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


def _body_and_attachments(
    msg: EmailMessage, defects: list[str]
) -> tuple[str, str | None, list[ParsedAttachment]]:
    """text/plain preferred; HTML converted to text when there is none. Every other leaf is an attachment,
    inline images (cid:) included; extra inline text parts (Apple Mail puts text after an image in its own
    part) are appended to the text."""
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
    html_source = _decode_part(html, defects) if html is not None else None
    texts = [_decode_part(plain, defects)] if plain is not None else []
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
            texts.append(_decode_part(part, defects))
            continue
        if part.get_content_maintype() == "multipart" and part.get_payload():
            # A nested multipart without a usable boundary is one unparsed body: its text, not nothing.
            unparsed.append(_decode_part(part, defects))
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


_TOO_DEEP = "nested too deeply to read (MIME parts, attached messages or header comments)"


def parse_mail(raw: bytes, mail_from: str = "") -> ParsedMail:
    """`mail_from`: the envelope sender as the spool recorded it (SpoolEntry.mail_from), the sender of a
    mail whose From names nobody."""
    try:
        return _parse(raw, mail_from)
    except RecursionError:
        # The stdlib parses MIME nesting, forwarded messages and header comments recursively: a few hundred
        # levels of any of them (no client writes that) exhaust the stack wherever the mail is read.
        raise NotAMessage(_TOO_DEEP) from None


def _envelope_sender(msg: Message, mail_from: str) -> str:
    """The envelope sender (MAIL FROM, else the topmost Return-Path) as an address, or ""."""
    try:
        value = envelope_sender(mail_from, msg) or ""
        found = [a for _, a in split_mailboxes(value) if a]
    except Exception:  # a Return-Path the header parser trips over: no envelope sender, not a failure
        return ""
    return _clean(_decode_8bit(found[0])).lower() if found else ""


def _parse(raw: bytes, mail_from: str) -> ParsedMail:
    if not raw.strip():
        raise NotAMessage("empty input")
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    if not msg.keys():
        raise NotAMessage("not a mail message: no header fields")
    defects = [type(d).__name__ for d in msg.defects]
    from_boxes, sender_boxes = _mailboxes(msg, "From"), _mailboxes(msg, "Sender")
    senders = [box for box in from_boxes if box[1]] or [box for box in sender_boxes if box[1]]
    if not senders and from_boxes:
        # `"Doe, John" <>` (an address withheld, or a gateway that lost it): the envelope sender is who
        # the delivering MTA says sent it. Only with a From header: a mail without one stays unanswered.
        envelope = _envelope_sender(msg, mail_from)
        if envelope:
            senders = [(from_boxes[0][0], envelope)]
            defects.append("From: no address, the envelope sender's used")
    if not senders and msg.get_content_type() != "multipart/report":
        raise NotAMessage("no sender address in From or Sender")
    # A delivery report may come from a mail system that names no sender (Courier: `From: … <@>`): the
    # bounce stage reads it; anything else without a sender is quarantined there.
    from_name, from_address = senders[0] if senders else ("", "")
    header_ids = _message_ids(_header(msg, "Message-ID", defects))
    message_id = header_ids[0] if header_ids else f"<{hashlib.sha256(raw).hexdigest()}@no-message-id.maild>"
    text, html, attachments = _body_and_attachments(msg, defects)
    return ParsedMail(
        message_id=message_id,
        has_message_id=bool(header_ids),
        subject=_header(msg, "Subject", defects)[:SUBJECT_MAX],
        from_address=from_address,
        from_name=from_name,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        delivered_to=[a for _, a in _addresses(msg, "Delivered-To") + _addresses(msg, "X-Original-To")],
        in_reply_to=_message_ids(_header(msg, "In-Reply-To", defects, ends=True)),
        references=_capped_ids(_message_ids(_header(msg, "References", defects, ends=True))),
        text=text,
        html=html,
        visible_text=visible_text(text),
        attachments=attachments,
        defects=defects,
        from_addresses=[address for _, address in from_boxes if address],
        sender_addresses=[address for _, address in sender_boxes if address],
    )
