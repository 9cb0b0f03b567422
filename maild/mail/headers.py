"""A parsed mail's headers read defensively, in bounded time: decoded text, Message-ID lists, mailboxes."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from email.message import Message

from maild.mail.addresses import TooDeep, split_mailboxes
from maild.mail.automatic import envelope_sender
from maild.mail.charsets import SUPERSETS, clean_text, codec_name, decode_8bit, decode_words
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
    # Nothing to decode is the common case, without the stdlib's header parser. Encoded words and 8-bit
    # bytes are read leniently (maild.mail.charsets): a wrong or failing label falls back to what the
    # bytes are, never to U+FFFD or an exception.
    plain = value.isascii() and "=?" not in value and "\x1b" not in value
    text = value if plain else decode_words(value, lambda: charset_hints(msg))
    return clean_text(re.sub(r"\s+", " ", text).strip())


# Where a mail's own software points to the charset of its undeclared 8-bit headers.
_MAILER_CHARSETS = (("foxmail", "gb18030"), ("qq", "gb18030"), ("netease", "gb18030"), ("becky", "cp932"))
_DOMAIN_CHARSETS = {
    "cn": "gb18030",
    "tw": "big5hkscs",
    "hk": "big5hkscs",
    "jp": "cp932",
    "kr": "cp949",
    "ru": "cp1251",
    "ua": "cp1251",
    "by": "cp1251",
    "bg": "cp1251",
    "gr": "cp1253",
    "il": "cp1255",
    "tr": "cp1254",
    "pl": "cp1250",
    "cz": "cp1250",
    "hu": "cp1250",
    "vn": "cp1258",
    "qq.com": "gb18030",
    "163.com": "gb18030",
    "126.com": "gb18030",
    "sina.com": "gb18030",
    "naver.com": "cp949",
    "daum.net": "cp949",
    "hanmail.net": "cp949",
}
_LABEL = re.compile(r"""=\?([^?\s*]{1,40})[?*]|charset\s*=\s*"?([^\s";]{1,40})""", re.IGNORECASE)


def charset_hints(msg: Message) -> tuple[str, ...]:
    """Charsets the mail names (encoded words, declared part charsets), its mailer's and its sender
    domain's usual one: the likely charset of undeclared 8-bit header bytes (Thunderbird reads them by
    the body's charset too). Only read when such bytes are there."""
    hints: list[str] = []
    for _, value in msg.raw_items():
        if isinstance(value, str):
            hints += [a or b for a, b in _LABEL.findall(value[:2000])]
    with contextlib.suppress(Exception):  # a hint, never a failure
        hints += [part.get_content_charset() or "" for part in list(msg.walk())[:20]]
    mailer = " ".join(raw_values(msg, "X-Mailer") + raw_values(msg, "User-Agent")).lower()
    hints += [charset for key, charset in _MAILER_CHARSETS if key in mailer]
    sender = " ".join(raw_values(msg, "From") + raw_values(msg, "Return-Path")).lower()
    for domain in re.findall(r"@([a-z0-9.-]+)", sender):
        hints += [_DOMAIN_CHARSETS.get(domain, ""), _DOMAIN_CHARSETS.get(domain.rpartition(".")[2], "")]
    found: dict[str, None] = {}
    for hint in hints:
        codec = codec_name(hint) if hint else ""
        if codec and codec not in ("ascii", "utf-8", "us-ascii"):
            found[SUPERSETS.get(codec, codec)] = None
    return tuple(found)


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
        hints = functools.partial(charset_hints, msg)
        try:
            pairs = split_mailboxes(value)
        except TooDeep:
            raise NotAMessage(TOO_DEEP) from None
        for display, address in pairs:
            found.append(
                (
                    clean_text(" ".join(decode_words(display, hints).split()))[:NAME_MAX],
                    clean_text(decode_8bit(address, hints)).lower(),
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
