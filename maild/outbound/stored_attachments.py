"""Attachments an outbox row refers to in the attachment store instead of holding their bytes, and the row's
mail as sent with those references expanded (maild.outbound.sender, maildctl queue commands)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

from maild.storage import attachments as attachment_store

# An outbox row holds the mail as composed, except that the body of an attachment part whose file is in the
# attachment store is one reference line naming the file (a 20 MB PDF to two agents: two rows of a few KB,
# not two of 27 MB each beside the stored file). Only such a body counts: a whole top-level part of a
# multipart/mixed mail, base64 by its header. Nobody else can write one there: text a customer sends us
# sits inside the first part (quoted-printable, under a boundary chosen after it was written), and the
# reference's spaces never occur in base64, so neither text nor an inline attachment is ever taken for one.

_REFERENCE = re.compile(rb"maild-stored-attachment sha256=([0-9a-f]{64}) size=([0-9]+)\n")
_READ_SIZE = 57 * 1024  # whole base64 lines (57 bytes each) per read: each chunk encodes on its own


class StoredAttachmentError(Exception):
    """A referenced attachment is not in the store as composed (gone, or other bytes): the mail is not
    sent without it."""


def reference_line(digest: str, size: int) -> str:
    return f"maild-stored-attachment sha256={digest} size={size}\n"


def _base64_size(size: int) -> int:
    """Bytes of base64.encodebytes of `size` bytes: 4 per 3 (rounded up), a newline per 76."""
    return 4 * -(-size // 3) + -(-size // 57)


@dataclass(frozen=True)
class _Reference:
    start: int  # where the reference line is in the stored mail
    end: int
    sha256: str
    size: int
    filename: str


def _references(raw: bytes) -> list[_Reference]:
    """The references in a stored mail, in order (see above for what counts as one)."""
    if b"maild-stored-attachment " not in raw:  # most mail: no attachment, or only inline ones
        return []
    head_end = raw.find(b"\n\n")
    if head_end < 0:
        return []
    head = BytesHeaderParser(policy=compat32).parsebytes(raw[: head_end + 1])
    boundary = head.get_boundary()
    if head.get_content_type() != "multipart/mixed" or not boundary:
        return []
    delimiter = b"\n--" + boundary.encode("ascii", "replace")
    found: list[_Reference] = []
    at = raw.find(delimiter + b"\n", head_end)
    while at >= 0:
        part_start = at + len(delimiter) + 1
        end = raw.find(delimiter, part_start)
        if end < 0:
            break
        headers_end = raw.find(b"\n\n", part_start, end)
        if headers_end >= 0:
            body_start = headers_end + 2
            match = _REFERENCE.fullmatch(raw, body_start, end)
            if match is not None:
                part = BytesHeaderParser(policy=compat32).parsebytes(raw[part_start : headers_end + 1])
                if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
                    digest, size = match.group(1).decode(), int(match.group(2))
                    found.append(_Reference(body_start, end, digest, size, _filename(part)))
        at = end if raw.startswith(b"\n", end + len(delimiter)) else -1  # "--boundary--": the end
    return found


def _filename(part: EmailMessage) -> str:
    name = part.get_filename()
    return str(name) if name else "attachment"


def sent_size(raw: bytes) -> int:
    """The size of the stored mail `raw` as sent, its references expanded."""
    return len(raw) + sum(_base64_size(r.size) - (r.end - r.start) for r in _references(raw))


def check_stored(raw: bytes, attachment_dir: Path) -> None:
    """Raise StoredAttachmentError if a file the mail refers to is not in the store at its size (before
    sending anything; `expand_stored` also checks the bytes as it reads them)."""
    for ref in _references(raw):
        path = attachment_store.path_of(attachment_dir, ref.sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StoredAttachmentError(_missing(ref, "is missing from the attachment store")) from None
        if size != ref.size:
            raise StoredAttachmentError(
                _missing(ref, f"has {size} bytes in the attachment store, not {ref.size}")
            )


def _missing(ref: _Reference, what: str) -> str:
    return f"attachment {ref.filename!r} (sha256 {ref.sha256[:16]}…) {what}: the mail is not sent without it"


def expand_stored(raw: bytes, attachment_dir: Path) -> Iterator[bytes]:
    """The stored mail `raw` as sent, in pieces: each reference replaced by its file's base64, as
    email.encoders writes it (76-character lines), read from the attachment store a chunk at a time.
    Raises StoredAttachmentError (before the piece that would be wrong) when a file is gone or is not
    the bytes it was stored as. Every reader of an outbox row's mail goes through here."""
    check_stored(raw, attachment_dir)
    at = 0
    for ref in _references(raw):
        yield raw[at : ref.start]
        digest, size = hashlib.sha256(), 0
        changed = StoredAttachmentError(_missing(ref, "is not the file it was stored as"))
        try:
            # A buffered read returns all it is asked for but at the end of the file: whole base64 lines.
            with attachment_store.path_of(attachment_dir, ref.sha256).open("rb") as fh:
                while chunk := fh.read(_READ_SIZE):
                    size += len(chunk)
                    if size > ref.size:
                        raise changed
                    digest.update(chunk)
                    if size == ref.size and digest.hexdigest() != ref.sha256:
                        raise changed  # before its last piece: a Maildir file or SMTP DATA stays unfinished
                    yield base64.encodebytes(chunk)
        except FileNotFoundError:
            raise StoredAttachmentError(_missing(ref, "is missing from the attachment store")) from None
        if size != ref.size:
            raise changed
        at = ref.end
    yield raw[at:]


def sent_bytes(raw: bytes, attachment_dir: Path) -> bytes | bytearray:
    """The stored mail `raw` as sent, whole (for SMTP, whose client takes bytes): `raw` itself when it
    refers to nothing, else written into one buffer of its final size, so one copy is held, not two."""
    if not _references(raw):
        return raw
    buffer = bytearray(sent_size(raw))
    with memoryview(buffer) as view:
        at = 0
        for piece in expand_stored(raw, attachment_dir):
            view[at : at + len(piece)] = piece
            at += len(piece)
    return buffer


def is_stored(attachment_dir: Path | None, digest: str, size: int) -> bool:
    """Whether the attachment store has this file (a customer's attachment does; generated content and a
    dry run's files do not, and stay inline)."""
    if attachment_dir is None:
        return False
    try:
        stored = attachment_store.path_of(attachment_dir, digest).stat().st_size
    except FileNotFoundError:
        return False
    return stored == size
