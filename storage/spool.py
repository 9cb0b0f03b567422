"""The inbound spool: raw bytes durable on disk first, then a 'received' row, then the pipeline.

Importing this module costs only the standard library: `maild pipe` makes the mail durable before it
pays for SQLAlchemy (~0.3 s here), and a broken install cannot keep it from spooling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from maild.storage.files import content_path, store_bytes

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from maild.storage.models import SpoolEntry


def write_raw(spool_dir: Path, raw: bytes) -> str:
    """Make the raw message durable; returns its sha256. Must succeed before anything is acknowledged."""
    digest, _ = store_bytes(spool_dir, raw, ".eml")
    return digest


def read_raw(spool_dir: Path, entry: SpoolEntry) -> bytes:
    return content_path(spool_dir, entry.sha256, ".eml").read_bytes()


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
