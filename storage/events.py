"""What a transaction changed on tickets, as events: collected by one flush hook, so that no service (the
pipeline, maildctl, the scheduler, the web pages, the API) has to remember to announce its changes.

Rules (`maild.tickets.rules_engine`) and webhooks (`maild.tickets.webhook_queue`) read them through
`maild.tickets.automation.after_changes`, which the writers call before they commit. The list lives on the
session: a rolled-back mail's events are discarded with `discard_pending`, and a commit or rollback ends
them all.

Events the flush shows:
- `ticket.created` (a new ticket row), `ticket.merged` (merged_into set: the merged ticket's event, with
  the survivor's id in `into`);
- `message.received` (a new customer or agent message; `kind` says which, `message_id` is the row's id),
  `note.added` (a new internal note);
- `status.changed`, `priority.changed`, `ticket.assigned` (with `before` and `after`);
- `rating.received` (a rating stored or changed: `rating_id`, `score`).
Events no flush shows (`message.sent`, when the sender hands a mail over) are added with `emit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, SessionTransaction

from maild.storage.models import Message, Rating, Ticket

EVENT_KINDS = (
    "ticket.created",
    "message.received",
    "note.added",
    "status.changed",
    "priority.changed",
    "ticket.assigned",
    "ticket.merged",
    "rating.received",
    "message.sent",
)

_PENDING = "maild.events.pending"


@dataclass(frozen=True)
class TicketEvent:
    kind: str
    ticket_id: int
    desk_id: int
    data: Mapping[str, Any] = field(default_factory=dict)


def emit(session: Session, kind: str, ticket_id: int, desk_id: int, **data: Any) -> None:
    """Add an event that no flush shows."""
    assert kind in EVENT_KINDS, kind
    session.info.setdefault(_PENDING, []).append(TicketEvent(kind, ticket_id, desk_id, data))


def take_pending(session: Session) -> list[TicketEvent]:
    """The events since the last take, flushing first so that every change so far is among them."""
    session.flush()
    taken: list[TicketEvent] = session.info.pop(_PENDING, [])
    return taken


def pending_mark(session: Session) -> int:
    """How many events are pending: `discard_since(session, mark)` forgets the ones after, when the
    savepoint that made them (a rule's action) is rolled back."""
    return len(session.info.get(_PENDING, []))


def discard_since(session: Session, mark: int) -> None:
    del session.info.get(_PENDING, [])[mark:]


def discard_pending(session: Session) -> None:
    """Forget the events not taken yet (their changes were rolled back)."""
    session.info.pop(_PENDING, None)


def _changed(obj: object, name: str) -> tuple[Any, Any] | None:
    history = inspect(obj).attrs[name].history
    if not history.has_changes():
        return None
    before = history.deleted[0] if history.deleted else None
    after = history.added[0] if history.added else None
    return (before, after) if before != after else None


def _ticket_changes(ticket: Ticket) -> list[TicketEvent]:
    found = []
    for name, kind in (
        ("status", "status.changed"),
        ("priority", "priority.changed"),
        ("assigned_agent_id", "ticket.assigned"),
    ):
        change = _changed(ticket, name)
        if change is not None:
            before, after = change
            found.append(TicketEvent(kind, ticket.id, ticket.desk_id, {"before": before, "after": after}))
    merged = _changed(ticket, "merged_into_id")
    if merged is not None and merged[1] is not None:
        found.append(TicketEvent("ticket.merged", ticket.id, ticket.desk_id, {"into": merged[1]}))
    return found


def _new_row(obj: object) -> list[TicketEvent]:
    if isinstance(obj, Ticket):
        return [TicketEvent("ticket.created", obj.id, obj.desk_id)]
    if isinstance(obj, Message) and obj.kind in ("customer", "agent", "note"):
        kind = "note.added" if obj.kind == "note" else "message.received"
        return [TicketEvent(kind, obj.ticket_id, obj.desk_id, {"message_id": obj.id, "kind": obj.kind})]
    if isinstance(obj, Rating):
        return [_rating(obj)]
    return []


def _rating(rating: Rating) -> TicketEvent:
    return TicketEvent(
        "rating.received", rating.ticket_id, rating.desk_id, {"rating_id": rating.id, "score": rating.score}
    )


@event.listens_for(Session, "after_flush")
def _collect(session: Session, _context: object) -> None:
    # after_flush: new rows have their ids, and the attributes' history still shows what the flush wrote.
    found: list[TicketEvent] = []
    for obj in session.new:
        found.extend(_new_row(obj))
    for obj in session.dirty:
        if isinstance(obj, Ticket):
            found.extend(_ticket_changes(obj))
        elif isinstance(obj, Rating) and _changed(obj, "score") is not None:
            found.append(_rating(obj))
    if found:
        session.info.setdefault(_PENDING, []).extend(found)


@event.listens_for(Session, "after_transaction_end")
def _end(session: Session, transaction: SessionTransaction) -> None:
    # Only the outermost transaction's end: a savepoint's release fires after_commit too, and its events
    # are the enclosing transaction's (a savepoint rolled back: its caller discards them).
    if transaction.parent is None:
        discard_pending(session)
