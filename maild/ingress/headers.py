"""The few header fields the intake reads itself (for the log, the blocklist, the envelope sender of
fetched mail): only the header block of a raw mail is parsed, at most HEADER_SCAN_BYTES of it."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

HEADER_SCAN_BYTES = 64 * 1024


def header_block(raw: bytes) -> bytes:
    """The raw header block: up to the first empty line, at most HEADER_SCAN_BYTES."""
    end = raw.find(b"\r\n\r\n", 0, HEADER_SCAN_BYTES)
    return raw[: end if end >= 0 else HEADER_SCAN_BYTES]


def message_id_of(raw: bytes) -> str:
    """The Message-ID header, for the log; only the header block is parsed."""
    value = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw)).get("Message-ID", "")
    return " ".join(str(value).split())[:300]


def from_addresses(raw: bytes) -> list[str]:
    """The addresses of the From header(s); only the header block is parsed."""
    values = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw)).get_all("From") or []
    return [address for _, address in getaddresses([str(v) for v in values]) if "@" in address]
