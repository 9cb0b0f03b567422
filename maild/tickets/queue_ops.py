"""Changes to the mail queues by hand, each with its audit entry: maildctl outbox retry and spool
release|delete|purge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import Message, OutboxMessage, SpoolEntry
from maild.tickets.retention import Purged, purge_raw_mail
from maild.tickets.ticket_ops import record


class NothingToRetry(ValueError):
    """An outbox row delivered to every recipient."""


def retry_outbox(
    session: Session, rows: Sequence[OutboxMessage], *, now: dt.datetime, retry_hours: float, actor: str
) -> None:
    """Queue `rows` again for all their pending and failed recipients, due `now` (naive UTC), retried for
    `retry_hours`; NothingToRetry when one was delivered to everyone."""
    for row in rows:
        if row.status == "sent" and not row.failed_to:
            raise NothingToRetry(f"outbox {row.id} was delivered to every recipient: nothing to retry")
        before = {"status": row.status, "to": list(row.rcpt_to), "failed_to": list(row.failed_to)}
        row.rcpt_to = list(dict.fromkeys([*row.rcpt_to, *row.failed_to]))
        row.failed_to = []
        row.status, row.next_attempt_at = "queued", now
        row.retry_until = now + dt.timedelta(hours=retry_hours)
        detail = {"outbox_id": row.id, "before": before, "to": list(row.rcpt_to)}
        record(session, "outbox_retry", detail, actor=actor, ticket_id=row.ticket_id)


def release_spool(session: Session, entry: SpoolEntry, *, actor: str) -> None:
    """Set a quarantined row back to 'received', released, with its full count of attempts again."""
    before = {"outcome": entry.outcome, "reason": entry.reason, "attempts": entry.attempts}
    entry.released = True
    entry.state, entry.outcome, entry.reason = "received", None, ""
    entry.attempts = 0  # a mail quarantined after failed attempts gets its full count again
    record(session, "spool_release", {"spool_id": entry.id, "before": before}, actor=actor)


def delete_spool(
    session: Session, entry: SpoolEntry, fields: dict[str, Any], *, actor: str
) -> tuple[list[int], list[int]]:
    """Delete the row `entry` (`fields`: what the audit row says of it). The other rows with the same raw
    mail, and the messages unlinked from it: a held reply is also a message on its ticket, which stays (an
    agent's `#send` may still release it) and only loses the link to the raw mail."""
    sharing = list(
        session.scalars(
            select(SpoolEntry.id).where(SpoolEntry.sha256 == entry.sha256, SpoolEntry.id != entry.id)
        )
    )
    messages = list(session.scalars(select(Message).where(Message.spool_id == entry.id)))
    for message in messages:
        message.spool_id = None
    unlinked = [message.id for message in messages]
    detail = {**fields, "raw_kept_for": sharing, "messages_unlinked": unlinked}
    record(session, "spool_delete", detail, actor=actor, ticket_id=entry.ticket_id)
    session.flush()  # the messages let go of the row before it goes (foreign key)
    session.delete(entry)
    return sharing, unlinked


def purge_spool(
    factory: sessionmaker[Session], cfg: Config, days: float, *, dry_run: bool, actor: str
) -> Purged:
    """Delete the raw mail of spool rows older than `days` (retention.purge_raw_mail); audited when it
    deleted any."""
    purged = purge_raw_mail(factory, cfg, dt.timedelta(days=days), dry_run=dry_run)
    if not dry_run and purged.rows:
        with transaction(factory) as session:
            record(session, "spool_purge", purge_json(days, dry_run, purged), actor=actor)
    return purged


def purge_json(days: float, dry_run: bool, purged: Purged) -> dict[str, Any]:
    """What a purge did (maildctl spool purge --json), and its audit row says."""
    return {
        "older_than_days": days,
        "dry_run": dry_run,
        "rows": purged.rows,
        "files": purged.files,
        "bytes": purged.bytes,
        "kept": purged.kept,
    }
