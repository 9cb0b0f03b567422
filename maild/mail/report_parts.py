"""The parts of a delivery report: its own words (text, or HTML made text), the returned mail's header
blocks, and header values read leniently. Pure: maild.mail.dsn reads reports with these."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from maild.mail import bounce_text

# Where a text bounce starts quoting the returned mail: what follows is the customer's mail, not the report.
RETURNED_MARK = re.compile(
    r"^[ \t]*-{2,}.*(copy of (the|your) message|original message|message follows|returned (mail|message)"
    r"|header of the original|below this line)",
    re.I | re.M,
)
MAX_TEXT = 200_000  # a report's own words are short; the rest is the returned mail


def returned_headers(msg: Message) -> list[Message]:
    """The header blocks of the returned mail: a message/rfc822 part, text/rfc822-headers, or the copy a text
    report quotes below its mark."""
    found: list[Message] = []
    for part in msg.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found.append(inner[0])
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            found.append(HeaderParser(policy=compat32).parsestr(text_of(part), headersonly=True))
    for part in text_parts(msg):
        text = text_of(part)
        mark = RETURNED_MARK.search(text)
        if mark is not None:
            copy = text[text.find("\n", mark.end()) + 1 :].lstrip("\n")
            found.append(HeaderParser(policy=compat32).parsestr(copy[:20_000], headersonly=True))
    return found


def report_text(msg: Message) -> str:
    """The report's own words: its text parts, without the returned mail quoted below them (an HTML-only
    report's text, when it has no plain part)."""
    chunks = []
    for part in text_parts(msg, html=True):
        text = text_of(part)
        if part.get_content_subtype() == "html":
            text = html_text(text)
        mark = RETURNED_MARK.search(text)
        chunks.append(text[: mark.start()] if mark else text)
    return "\n\n".join(chunks)[:MAX_TEXT]


def first_text(msg: Message) -> str:
    for part in text_parts(msg, html=True):
        text = text_of(part)
        return html_text(text) if part.get_content_subtype() == "html" else text
    return ""


def html_text(html: str) -> str:
    html = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", html)
    html = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h\d|table)>", "\n", html)
    text = re.sub(r"<[^>]*>", " ", html)
    for entity, char in (("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&amp;", "&")):
        text = text.replace(entity, char)
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def outside_returned(msg: Message) -> Iterator[Message]:
    """Every part but what is inside a returned or forwarded message (message/rfc822): a customer who
    forwards a report as an attachment wrote a mail, not a report."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        yield part
        if part.get_content_type().startswith("message/") and part is not msg:
            continue  # a returned mail, or the status blocks of a delivery-status part: read by their own
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack[:0] = [p for p in payload if isinstance(p, Message)]


def text_parts(msg: Message, *, html: bool = False) -> Iterator[Message]:
    """text/plain leaves outside any returned message (a message/rfc822 part is the customer's mail); with
    `html`, the text/html ones too when there is no plain one."""
    plain = [p for p in outside_returned(msg) if p.get_content_type() == "text/plain"]
    yield from plain
    if html and not plain:
        yield from (p for p in outside_returned(msg) if p.get_content_type() == "text/html")


def text_of(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def header(msg: Message, name: str) -> str:
    with contextlib.suppress(Exception):
        value = msg.get(name)
        if value is not None:
            return " ".join(str(value).split())
    return ""


_DAEMON_LOCALS = ("mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "postmaster")
# Exchange Online's NDR sender: MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@<tenant>.
_DAEMON_PREFIXES = ("microsoftexchange",)


def is_daemon_address(address: str) -> bool:
    local = address.rpartition("@")[0].lower() if "@" in address else address.lower()
    return local in _DAEMON_LOCALS or local.startswith(_DAEMON_PREFIXES)


MAX_FROM_CHARS = 16_384


def from_daemon(head: Message) -> bool:
    """From a mail system: MAILER-DAEMON / postmaster / Exchange's NDR sender, Courier's `<@>`, a From that
    names no mailbox (`MAILER-DAEMON <>`, `<MAILER-DAEMON>`), or a Return-Path of `<>` (written by the
    delivering MTA: an IMAP mailbox keeps it)."""
    if header(head, "return-path").replace(" ", "") == "<>":
        return True
    # A mail system writes a short From; a megabyte of display name is read no further than this.
    from_value = header(head, "from")[:MAX_FROM_CHARS]
    if not from_value:
        return False  # no From at all: the envelope or Return-Path decides, as for any mail
    if re.search(r"<@?>", from_value):
        return True
    addresses = [address for _, address in getaddresses([from_value]) if address]
    if not addresses or not any("@" in address for address in addresses):
        return True  # `From: MAILER-DAEMON <>`, `From: <MAILER-DAEMON>`: no mailbox at all
    return any(is_daemon_address(a) for a in addresses) or is_daemon_address(parseaddr(from_value)[1])


def system_named(head: Message) -> bool:
    """The sender calls itself a mail system ("Mail Delivery System", "Mail Router", MDaemon@, GroupWise's
    gateway): a sign, not proof, since a person may sign as "System Administrator"."""
    from_value = header(head, "from")[:MAX_FROM_CHARS]
    for name, address in getaddresses([from_value]):
        if bounce_text.SYSTEM_NAME.search(name) or bounce_text.SYSTEM_NAME.fullmatch(
            address.partition("@")[0]
        ):
            return True
    return False


def not_recipients(msg: Message, text: str) -> set[str]:
    """Addresses a report names that are no failed recipient: its own sender and addressee, the returned
    mail's sender, and every Message-ID in sight."""
    excluded = set(bounce_text.identifiers(text))
    blocks = [msg, *returned_headers(msg)]
    for block in blocks:
        for name in ("message-id", "in-reply-to", "references", "x-original-message-id"):
            excluded.update(i.strip("<>").lower() for i in re.findall(r"<[^<>\s]+>", header(block, name)))
    for block in blocks:
        for name in ("from", "sender", "return-path", "reply-to", "x-postfix-sender"):
            value = header(block, name)[:MAX_FROM_CHARS]
            excluded.update(a.lower() for _, a in getaddresses([value]) if a)
    excluded.update(a.lower() for _, a in getaddresses([header(msg, "to"), header(msg, "cc")]) if a)
    for match in re.finditer(r"X-Postfix-Sender:\s*(?:rfc822;)?\s*(\S+)", text, re.I):
        excluded.add(match[1].strip("<>").lower())
    return excluded


def for_detectors(msg: Message) -> Message:
    """flufl.bounce's detectors run in a row and the first that raises ends the row: Yale's on a missing
    From, Sina's on a From the parser kept as a Header object (8-bit or encoded). A plain str From (`<>`
    for none) lets every detector look."""
    value = header(msg, "from")
    if "from" in msg:
        msg.replace_header("from", value or "<>")
    else:
        msg["From"] = "<>"
    return msg
