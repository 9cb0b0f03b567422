"""The few header fields the intake reads itself (for the log, the blocklist, the envelope sender of
fetched mail): only the header block of a raw mail is parsed, at most HEADER_SCAN_BYTES of it."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from maild.mail.headers import addresses
from maild.mail.parsed import NotAMessage

HEADER_SCAN_BYTES = 64 * 1024


def header_block(raw: bytes) -> bytes:
    """The raw header block: up to the first empty line, at most HEADER_SCAN_BYTES."""
    end = raw.find(b"\r\n\r\n", 0, HEADER_SCAN_BYTES)
    return raw[: end if end >= 0 else HEADER_SCAN_BYTES]


def parse_header_block(raw: bytes) -> Message:
    """The header fields of `raw` (the whole mail or its first bytes); only the header block is parsed."""
    return BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))


def message_id_in(headers: Message) -> str:
    return " ".join(str(headers.get("Message-ID", "")).split())[:300]


def from_addresses_in(headers: Message) -> list[str]:
    """The addresses of the From header(s), read as the pipeline reads them (split_mailboxes, 8-bit
    decoded, lower-cased), so the intake's blocklist check and the pipeline's agree on odd headers."""
    try:
        return [address for _, address in addresses(headers, "From") if "@" in address]
    except (NotAMessage, RecursionError):  # nested beyond reason: the pipeline refuses the mail itself
        return []


@dataclass(frozen=True)
class HeaderFields:
    message_id: str
    from_addresses: list[str]


def header_fields(raw: bytes) -> HeaderFields:
    """Message-ID and From addresses from one parse of the header block."""
    headers = parse_header_block(raw)
    return HeaderFields(message_id_in(headers), from_addresses_in(headers))


def message_id_of(raw: bytes) -> str:
    """The Message-ID header, for the log; only the header block is parsed."""
    return message_id_in(parse_header_block(raw))


def from_addresses(raw: bytes) -> list[str]:
    """The addresses of the From header(s); only the header block is parsed."""
    return from_addresses_in(parse_header_block(raw))
