"""Changes to desks and their addresses, each with its audit entry and a bump of the change counter (a
running maild serve caches desks): maildctl desk add|set|rename|remove|address. The checks that refuse a
change (names, patterns, addresses taken) are maildctl's, made before these are called."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from maild.numbering.allocate import seed_counters
from maild.numbering.pattern import Pattern
from maild.storage.changes import bump_changes
from maild.storage.models import (
    Desk,
    DeskAddress,
    EscalationRule,
    Message,
    OutboxMessage,
    RetiredPattern,
    Ticket,
)
from maild.tickets.statuses import statuses_of
from maild.tickets.ticket_ops import record


def audit_desk_change(session: Session, action: str, detail: dict[str, Any], *, actor: str) -> None:
    record(session, action, detail, actor=actor)
    bump_changes(session)  # every desk change is one a running maild serve caches


def add_desk(
    session: Session,
    name: str,
    pattern: str,
    timezone: str,
    options: dict[str, Any],
    addresses: list[str],
    *,
    actor: str,
) -> Desk:
    desk = Desk(name=name, pattern=pattern, timezone=timezone, **options)
    desk.addresses = [DeskAddress(address=a) for a in addresses]
    session.add(desk)
    detail = {"desk": name, "addresses": addresses, "pattern": pattern, **options}
    audit_desk_change(session, "desk_add", {**detail, "timezone": timezone}, actor=actor)
    return desk


def set_desk(
    session: Session, desk: Desk, options: dict[str, Any], pattern: Pattern | None, *, actor: str
) -> tuple[dict[str, Any], dict[str, int]]:
    """Set `options` and, when it differs, the number `pattern` (overlaps checked by the caller). What
    changed (the audit row's `after`) and the counters seeded for the new pattern."""
    before: dict[str, Any] = {key: getattr(desk, key) for key in options}
    after: dict[str, Any] = dict(options)
    seeded: dict[str, int] = {}
    if pattern is not None and pattern.source != desk.pattern:
        # The old pattern is retired, not forgotten: its numbers keep threading (pipeline/thread.py).
        session.add(RetiredPattern(desk_id=desk.id, pattern=desk.pattern))
        before["pattern"], after["pattern"] = desk.pattern, pattern.source
        desk.pattern = pattern.source
        session.flush()
        seeded = seed_counters(session, desk.id, pattern)
    for key, value in options.items():
        setattr(desk, key, value)
    audit_desk_change(session, "desk_set", {"desk": desk.name, "before": before, "after": after}, actor=actor)
    return after, seeded


def rename_desk(session: Session, desk: Desk, name: str, *, actor: str) -> None:
    old, desk.name = desk.name, name
    audit_desk_change(session, "desk_rename", {"desk": name, "before": old, "after": name}, actor=actor)


def remove_desk(session: Session, desk: Desk, target: Desk | None, tickets: int, *, actor: str) -> list[str]:
    """Remove `desk` (addresses, categories, statuses, canned replies, rules, counters cascade), its
    `tickets` moved to `target` first. The escalation rules of other desks that moved tickets here and no
    longer do (the FK sets NULL)."""
    detail: dict[str, Any] = {
        "desk": desk.name,
        "tickets": tickets,
        "addresses": [a.address for a in desk.addresses],
    }
    if target is not None:
        detail["moved_to"] = target.name
        detail["statuses_reset"] = _move_tickets(session, desk, target)
    rules = list(
        session.scalars(
            select(EscalationRule.name).where(
                EscalationRule.set_desk_id == desk.id, EscalationRule.desk_id != desk.id
            )
        ).all()
    )
    if rules:
        detail["escalation_rules_no_longer_moving"] = rules
    audit_desk_change(session, "desk_remove", detail, actor=actor)
    session.delete(desk)
    return rules


def _move_tickets(session: Session, desk: Desk, target: Desk) -> int:
    """Move every ticket of `desk` (with its messages and outgoing mail) to `target`; its patterns become
    `target`'s retired ones, so the moved numbers keep threading. Returns how many tickets had a custom
    status `target` does not have, and are `open` now."""
    known = statuses_of(session, target.id)
    # An UPDATE statement's result is a CursorResult, which has the rowcount; execute() is typed wider.
    reset = cast(
        "CursorResult[Any]",
        session.execute(
            update(Ticket)
            .where(Ticket.desk_id == desk.id, Ticket.status.not_in(known))
            .values(status="open")
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    # Categories are the desk's own and go with it: the moved tickets have none on the target.
    session.execute(
        update(Ticket)
        .where(Ticket.desk_id == desk.id)
        .values(desk_id=target.id, category_id=None)
        .execution_options(synchronize_session=False)
    )
    for model in (Message, OutboxMessage):
        session.execute(
            update(model)
            .where(model.desk_id == desk.id)
            .values(desk_id=target.id)
            .execution_options(synchronize_session=False)
        )
    retired = [
        desk.pattern,
        *session.scalars(select(RetiredPattern.pattern).where(RetiredPattern.desk_id == desk.id)),
    ]
    for source in retired:
        session.add(RetiredPattern(desk_id=target.id, pattern=source))
    session.flush()
    return int(reset or 0)


def add_address(session: Session, desk: Desk, address: str, *, actor: str) -> None:
    desk.addresses.append(DeskAddress(address=address))
    audit_desk_change(session, "desk_address_add", {"desk": desk.name, "address": address}, actor=actor)


def remove_address(session: Session, desk: Desk, row: DeskAddress, *, actor: str) -> None:
    desk.addresses.remove(row)
    audit_desk_change(
        session, "desk_address_remove", {"desk": desk.name, "address": row.address}, actor=actor
    )
