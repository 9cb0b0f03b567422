"""System notes: what maild itself records on a ticket (why a policy decided, a bounce, a merge, a held
mail). Internal, never sent; their Message-IDs are stand-ins no client knows."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.orm import Session

from maild.storage.models import Message, Ticket, naive_utc


def note_message_id() -> str:
    return f"<note.{uuid.uuid4().hex}@maild.invalid>"


def add_system_note(
    session: Session,
    ticket: Ticket,
    text: str,
    *,
    by: str,
    at: dt.datetime,
    subject: str = "",
    message_id: str | None = None,
    spool_id: int | None = None,
) -> Message:
    """Add a system note to `ticket`; `by` names what wrote it (stored as the message's threaded_by)."""
    note = Message(
        ticket=ticket,
        desk_id=ticket.desk.id,
        spool_id=spool_id,
        kind="system",
        message_id=message_id or note_message_id(),
        subject=subject,
        text=text,
        visible_text=text,
        threaded_by=by,
        created_at=naive_utc(at),
    )
    session.add(note)
    return note
