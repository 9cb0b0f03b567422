"""Adding, replacing and removing canned replies, each with its audit entry (maildctl canned)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import CannedReply, Desk, utcnow
from maild.tickets.ticket_ops import record


def find_reply(session: Session, name: str, desk: Desk | None) -> CannedReply | None:
    """The canned reply `name` of `desk` exactly (None: the all-desks one)."""
    desk_id = CannedReply.desk_id == desk.id if desk else CannedReply.desk_id.is_(None)
    return session.scalars(select(CannedReply).where(CannedReply.name == name, desk_id)).first()


def save_reply(session: Session, desk: Desk | None, name: str, body: str, *, actor: str) -> str:
    """Add the canned reply, or replace its body: "added" or "updated"."""
    reply = find_reply(session, name, desk)
    detail: dict[str, Any] = {"name": name, "desk": desk.name if desk else None, "size": len(body)}
    if reply is None:
        session.add(CannedReply(desk_id=desk.id if desk else None, name=name, body=body))
        record(session, "canned_add", detail, actor=actor)
        return "added"
    # The old body goes in the log: an update by mistake can be undone from it.
    detail["previous_body"] = reply.body
    reply.body, reply.updated_at = body, utcnow()
    record(session, "canned_update", detail, actor=actor)
    return "updated"


def remove_reply(session: Session, desk: Desk | None, reply: CannedReply, *, actor: str) -> None:
    detail = {"name": reply.name, "desk": desk.name if desk else None, "body": reply.body}
    record(session, "canned_remove", detail, actor=actor)
    session.delete(reply)
