"""The inbound spool: raw bytes durable on disk first, then a 'received' row, then the pipeline.

Importing this module costs only the standard library: `maild pipe` makes the mail durable before it
pays for SQLAlchemy (~0.3 s here), and a broken install cannot keep it from spooling."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from maild.storage.files import content_path, store_bytes, store_file

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from maild.storage.models import SpoolEntry

INCOMING = ".incoming"  # mails still arriving; not a content directory (those are two hex digits)
SUFFIX = ".eml"


def write_raw(spool_dir: Path, raw: bytes) -> str:
    """Make the raw message durable; returns its sha256. Must succeed before anything is acknowledged."""
    digest, _ = store_bytes(spool_dir, raw, SUFFIX)
    return digest


def read_raw(spool_dir: Path, entry: SpoolEntry) -> bytes:
    return content_path(spool_dir, entry.sha256, SUFFIX).read_bytes()


@dataclass(frozen=True)
class SpoolFile:
    """A received mail in a temporary file of the spool, not yet durable: `store` makes it so."""

    spool_dir: Path
    written: Path
    digest: str
    size: int
    head: bytes  # its first bytes, enough for the header fields the intake reads

    def store(self) -> None:
        """Blocking: fsync, rename to its content address, fsync the directory."""
        try:
            store_file(self.spool_dir, self.written, self.digest, SUFFIX)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        self.written.unlink(missing_ok=True)


class SpoolWriter:
    """A mail written to a temporary spool file as it arrives, hashed as it goes, its head kept.

    Its memory is the head and the file buffer, whatever the mail's size. Writes go to the page cache; the
    fsync comes later, in `SpoolFile.store`, off the caller's thread."""

    def __init__(self, spool_dir: Path, head_bytes: int) -> None:
        incoming = spool_dir / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        self._spool_dir = spool_dir
        self._path = incoming / f"{uuid.uuid4().hex}.tmp"
        self._file = self._path.open("xb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = bytearray()
        self._head_bytes = head_bytes

    def write(self, data: bytes) -> None:
        if len(self._head) < self._head_bytes:
            self._head += data[: self._head_bytes - len(self._head)]
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def finish(self) -> SpoolFile:
        """Closed (its bytes handed to the kernel), not yet durable."""
        self._file.close()
        return SpoolFile(self._spool_dir, self._path, self._hash.hexdigest(), self._size, bytes(self._head))

    def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


def discard_incoming(spool_dir: Path, older_than: float) -> int:
    """Remove temporary files a crash left in the spool's INCOMING directory, those not written to in
    the last `older_than` seconds (another daemon on the same spool may be receiving the others); returns
    how many. Their mails were never acknowledged: the client delivers them again."""
    import time

    removed = 0
    cutoff = time.time() - older_than
    for path in (spool_dir / INCOMING).glob("*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def spool_file_of(spool_dir: Path, raw: bytes, head_bytes: int) -> SpoolFile:
    """Blocking: bytes already in memory as a SpoolFile (a server that did not stream them)."""
    writer = SpoolWriter(spool_dir, head_bytes)
    try:
        writer.write(raw)
    except BaseException:
        writer.discard()
        raise
    return writer.finish()


@dataclass(frozen=True)
class ReceivedRow:
    digest: str
    size: int
    recipient: str  # normalized
    ingress: str
    mail_from: str = ""


def record_received(
    session: Session, digest: str, size: int, recipient: str, ingress: str, mail_from: str = ""
) -> SpoolEntry:
    """Insert the 'received' row, or return the one a crashed earlier delivery of the same bytes left."""
    from sqlalchemy import select

    from maild.storage.models import SpoolEntry

    pending = session.scalars(
        select(SpoolEntry).where(
            SpoolEntry.sha256 == digest, SpoolEntry.recipient == recipient, SpoolEntry.state == "received"
        )
    ).first()
    if pending is not None:
        return pending
    # The envelope sender is what a bounce is recognised by (VERP) and what a null sender (<>) means.
    entry = SpoolEntry(
        sha256=digest, recipient=recipient, ingress=ingress, size=size, mail_from=mail_from[:320]
    )
    session.add(entry)
    session.flush()
    return entry


def record_received_many(session: Session, rows: Sequence[ReceivedRow]) -> list[int]:
    """record_received for many rows at once (one SELECT, one executemany INSERT): the spool id of each
    row, in order. A 'received' row of the same bytes and recipient, left by an earlier delivery or
    earlier in `rows`, is reused, as record_received does."""
    from sqlalchemy import Table, insert, select

    from maild.storage.models import SpoolEntry

    assert isinstance(SpoolEntry.__table__, Table)
    spool = SpoolEntry.__table__
    found: dict[tuple[str, str], int] = {}
    if not rows:
        return []
    pending = session.execute(
        select(spool.c.id, spool.c.sha256, spool.c.recipient)
        .where(spool.c.sha256.in_({row.digest for row in rows}), spool.c.state == "received")
        .order_by(spool.c.id)
    )
    for spool_id, digest, recipient in pending:
        found.setdefault((digest, recipient), spool_id)
    new: dict[tuple[str, str], dict[str, object]] = {}
    for row in rows:
        key = (row.digest, row.recipient)
        if key not in found and key not in new:
            new[key] = {
                "sha256": row.digest,
                "recipient": row.recipient,
                "ingress": row.ingress,
                "size": row.size,
                "mail_from": row.mail_from[:320],
            }
    if new:
        inserted = session.execute(
            insert(spool).returning(spool.c.id, sort_by_parameter_order=True), list(new.values())
        )
        found.update(zip(new, inserted.scalars(), strict=True))
    return [found[(row.digest, row.recipient)] for row in rows]
