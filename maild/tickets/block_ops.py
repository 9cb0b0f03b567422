"""The blocklist's changes, each with its audit entry: maildctl block add|remove and ticket
block-and-delete."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.changes import bump_changes
from maild.storage.models import BlockEntry, Ticket
from maild.tickets import ticket_ops
from maild.tickets.ticket_ops import iso, record

MAX_REASON = 2000


class BlockExists(ValueError):
    """The pattern is listed already."""


def entry_json(entry: BlockEntry) -> dict[str, Any]:
    return {
        "pattern": entry.pattern,
        "subdomains": entry.subdomains,
        "reason": entry.reason,
        "added_by": entry.added_by,
        "created_at": iso(entry.created_at),
    }


def find_entry(session: Session, pattern: str) -> BlockEntry | None:
    return session.scalars(select(BlockEntry).where(BlockEntry.pattern == pattern)).first()


def add_entry(session: Session, pattern: str, subdomains: bool, reason: str, added_by: str) -> BlockEntry:
    """A new entry, not audited (ticket block-and-delete audits it in its own row); BlockExists when the
    pattern is listed already."""
    if find_entry(session, pattern) is not None:
        raise BlockExists(f"{pattern} is blocked already: see 'maildctl block list'")
    entry = BlockEntry(pattern=pattern, subdomains=subdomains, reason=reason[:MAX_REASON], added_by=added_by)
    session.add(entry)
    session.flush()
    bump_changes(session)  # a running maild serve reloads its blocklist snapshot
    return entry


def block(session: Session, pattern: str, subdomains: bool, reason: str, *, actor: str) -> BlockEntry:
    """maildctl block add: the entry and its `block_add` audit row."""
    entry = add_entry(session, pattern, subdomains, reason, actor)
    record(session, "block_add", entry_json(entry), actor=actor)
    return entry


def unblock(session: Session, entry: BlockEntry, *, actor: str) -> None:
    record(session, "block_remove", entry_json(entry), actor=actor)
    session.delete(entry)
    bump_changes(session)


def block_and_delete(
    session: Session,
    ticket: Ticket,
    merged: Sequence[Ticket],
    *,
    pattern: str,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """Spam: block `pattern` (the customer; listed already is fine) and delete `ticket` and the tickets
    merged into it (ticket_ops.delete_tickets). What the `ticket_block_and_delete` audit row says."""
    already = find_entry(session, pattern) is not None
    if not already:
        add_entry(session, pattern, False, reason, actor)
    return ticket_ops.delete_tickets(
        session,
        ticket,
        merged,
        actor=actor,
        now=now,
        action="ticket_block_and_delete",
        why="as spam (maildctl ticket block-and-delete)",
        pattern=pattern,
        reason=reason,
        already_blocked=already,
    )
