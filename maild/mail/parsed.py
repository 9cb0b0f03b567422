"""What maild.mail.mailparse makes of a mail: ParsedMail and its attachments, or NotAMessage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

TOO_DEEP = "nested too deeply to read (MIME parts, attached messages or header comments)"


class NotAMessage(Exception):
    """The input cannot be treated as a mail (empty, no header field at all, nested beyond reading):
    quarantine it with this reason. A mail that names no sender is still a mail (see ParsedMail)."""


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

    @cached_property
    def md5(self) -> str:
        """For maildctl explain --json: outside checkers name attachments by their MD5 as often as by
        their SHA-256."""
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


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
    # addresses, else Sender's, Reply-To's, the envelope sender's or Return-Path's (mailparse._sender),
    # else "" (a delivery report from a mail system that names no sender: the bounce stage decides).
    from_addresses: list[str] = field(default_factory=list)
    sender_addresses: list[str] = field(default_factory=list)
    # The header block was repaired before parsing (maild.mail.header_repair): the stages that read the
    # raw mail again (bounce, the header rules) read the repaired bytes, as parse did.
    header_repaired: bool = False

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this mail answers, most specific first (In-Reply-To, then References newest-first)."""
        ids = dict.fromkeys([*self.in_reply_to, *reversed(self.references)])
        ids.pop(self.message_id, None)
        return list(ids)
