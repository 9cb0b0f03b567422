"""A parsed mail's headers read defensively, in bounded time: decoded text, Message-ID lists, mailboxes."""

from __future__ import annotations

import hashlib
import re
from email.message import Message

from maild.mail.addresses import TooDeep, split_mailboxes
from maild.mail.automatic import envelope_sender
from maild.mail.charsets import clean_text, decode_8bit, decode_raw, decode_words
from maild.mail.parsed import TOO_DEEP, NotAMessage

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


def message_ids(value: str) -> list[str]:
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


def header_text(msg: Message, name: str, defects: list[str], *, ends: bool = False) -> str:
    """The first `name` header as decoded text, read from at most HEADER_PARSE_MAX characters (see
    `_bounded`); falls back to the raw value when the policy cannot parse it."""
    raw = raw_values(msg, name)
    if not raw:
        return ""
    value = _bounded(raw[0], ends)
    try:
        text = str(msg.policy.header_fetch_parse(name, value))
    except Exception as exc:  # policy.default raises on some malformed headers
        defects.append(f"{name}: {type(exc).__name__}")
        text = decode_raw(value)
    if "\ufffd" in text or _UNDECODED.search(text):
        text = decode_raw(value)
    return clean_text(re.sub(r"\s+", " ", text).strip())


def capped_ids(ids: list[str]) -> list[str]:
    """The first id and the newest REFERENCES_MAX - 1."""
    return ids if len(ids) <= REFERENCES_MAX else [ids[0], *ids[len(ids) - REFERENCES_MAX + 1 :]]


# Undeclared 8-bit bytes the parser left as surrogates (the raw fallbacks keep them).
_UNDECODED = re.compile("[\udc80-\udcff]")


def raw_values(msg: Message, name: str) -> list[str]:
    return [v for k, v in msg.raw_items() if k.lower() == name.lower() and isinstance(v, str)]


def mailboxes(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) of every mailbox in the header(s) `name`, read from the raw value as mail
    clients read it (maild.mail.addresses.split_mailboxes): unquoted specials in names, a trailing dot, the
    angle-addr preferred over an address-like name. The address is "" for `<>`."""
    found: list[tuple[str, str]] = []
    for value in raw_values(msg, name):
        try:
            pairs = split_mailboxes(value)
        except TooDeep:
            raise NotAMessage(TOO_DEEP) from None
        for display, address in pairs:
            found.append(
                (
                    clean_text(" ".join(decode_words(display).split()))[:NAME_MAX],
                    clean_text(decode_8bit(address)).lower(),
                )
            )
    return found


def addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    return [(display, address) for display, address in mailboxes(msg, name) if address]


def envelope_address(msg: Message, mail_from: str) -> str:
    """The envelope sender (MAIL FROM, else the topmost Return-Path) as an address, or ""."""
    try:
        value = envelope_sender(mail_from, msg) or ""
        found = [a for _, a in split_mailboxes(value) if a]
    except Exception:  # a Return-Path the header parser trips over: no envelope sender, not a failure
        return ""
    return clean_text(decode_8bit(found[0])).lower() if found else ""
