"""The spool's retention period: raw mail older than `[spool] retention_days` is deleted from disk.

The spool rows stay (what arrived, when, what became of it), marked `raw_purged_at`; so do the tickets'
messages and attachments, which were stored apart from the raw mail. A file is deleted only when every row
naming its bytes is processed, older than the cutoff and not waiting for a person (quarantined or held
mail keeps its raw bytes until an admin releases or removes it), and the file itself was not touched
since the cutoff (a new delivery of the same bytes; storage.files.discard_stale)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Row, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.files import content_path, discard_stale
from maild.storage.models import SpoolEntry, naive_utc

# Outcomes that wait for a person: their raw mail is what `maildctl spool release` processes again.
AWAITING_REVIEW = ("quarantined", "held")
BATCH = 500


@dataclass
class Purged:
    rows: int = 0  # spool rows whose raw mail is gone now
    files: int = 0  # files deleted
    bytes: int = 0  # their size
    kept: int = 0  # old rows whose bytes a newer, unprocessed or held row still needs (or written again)


def purge_raw_mail(
    factory: sessionmaker[Session],
    cfg: Config,
    older_than: dt.timedelta,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> Purged:
    """Delete the raw mail of spool rows received more than `older_than` before `now` (see the module).
    `dry_run`: count what would go, change nothing. In batches of BATCH rows, one transaction each."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = naive_utc(now) - older_than
    cutoff_posix = cutoff.replace(tzinfo=dt.UTC).timestamp()
    result = Purged()
    after_id = 0
    while True:
        with transaction(factory) as session:
            rows = _old_rows(session, after_id, cutoff)
            if not rows:
                return result
            after_id = rows[-1].id
            candidates = {row.sha256 for row in rows} - _still_needed(session, rows, cutoff)
            deleted: set[str] = set()
            for digest in sorted(candidates):
                freed = _discard(content_path(cfg.spool_dir, digest, ".eml"), cutoff_posix, dry_run)
                if freed is not None:
                    deleted.add(digest)
                    result.files += freed > 0
                    result.bytes += freed
            gone = [row.id for row in rows if row.sha256 in deleted]
            result.kept += len(rows) - len(gone)
            result.rows += len(gone)
            if gone and not dry_run:
                # Marked after the files are gone: a crash in between leaves rows that the next run
                # selects again and finds nothing to delete for, never a marked row whose file is left.
                session.execute(
                    update(SpoolEntry).where(SpoolEntry.id.in_(gone)).values(raw_purged_at=naive_utc(now)),
                    execution_options={"synchronize_session": False},
                )


def _old_rows(session: Session, after_id: int, cutoff: dt.datetime) -> list[Row[tuple[int, str]]]:
    """The next batch of (id, sha256) of processed rows older than the cutoff, not awaiting review and with
    their raw mail still there."""
    return list(
        session.execute(
            select(SpoolEntry.id, SpoolEntry.sha256)
            .where(
                SpoolEntry.id > after_id,
                SpoolEntry.state == "done",
                SpoolEntry.raw_purged_at.is_(None),
                SpoolEntry.received_at < cutoff,
                or_(SpoolEntry.outcome.is_(None), SpoolEntry.outcome.not_in(AWAITING_REVIEW)),
            )
            .order_by(SpoolEntry.id)
            .limit(BATCH)
        )
    )


def _still_needed(session: Session, rows: list[Row[tuple[int, str]]], cutoff: dt.datetime) -> set[str]:
    """The digests of `rows` that another row still needs: a newer one, unprocessed, or awaiting review."""
    return set(
        session.scalars(
            select(SpoolEntry.sha256)
            .where(
                SpoolEntry.sha256.in_({row.sha256 for row in rows}),
                or_(
                    SpoolEntry.received_at >= cutoff,
                    SpoolEntry.state != "done",
                    SpoolEntry.outcome.in_(AWAITING_REVIEW),
                ),
            )
            .distinct()
        )
    )


def _discard(path: Path, cutoff: float, dry_run: bool) -> int | None:
    if not dry_run:
        return discard_stale(path, cutoff)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    return stat.st_size if stat.st_mtime < cutoff else None
