"""Allocate a desk's next ticket number inside the caller's transaction.

Each counter of the desk's pattern is one number_counters row per period, bumped by a single
INSERT … ON CONFLICT DO UPDATE … RETURNING. There is no read-then-write window for another process to
slip into: on PostgreSQL the statement waits for the row lock of a concurrent allocation and then
increments the committed value; on SQLite the writer lock taken at BEGIN IMMEDIATE (storage.db)
serialises allocations. Nothing is committed here, so a ticket whose transaction rolls back takes its
number with it and the next ticket reuses it: no gaps.

Counters belong to the desk, not to its pattern: after `desk set --pattern` a counter token the new
pattern keeps ({{nr}} in TK-{{nr}} → HD-{{nr}}) keeps counting. `seed_counters` raises the new pattern's
counters past every existing number it could render again, and allocation skips a number that exists
all the same (tickets.number is unique), so a pattern change never hands out a number twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from maild.numbering.pattern import Pattern, compile_pattern
from maild.storage.models import Desk, NumberCounter, Ticket

_KEY = [NumberCounter.desk_id, NumberCounter.counter, NumberCounter.period]
# Seeding leaves nothing to skip; this bound only turns a bug into an error instead of an endless loop.
MAX_SKIPPED = 1000


def allocate_number(session: Session, desk: Desk, now: datetime | None = None) -> str:
    """The next number of `desk` at `now` (aware, default the current time), e.g. "SUP-26-02-7"."""
    pattern = compile_pattern(desk.pattern)
    when = now if now is not None else datetime.now(UTC)
    if desk.id is None:  # a desk created in this same transaction and not flushed yet
        session.flush()
    for _ in range(MAX_SKIPPED + 1):
        # periods() lists counters in a fixed order, so two allocations lock rows in the same order.
        values = {
            counter: _increment(session, desk.id, counter, period)
            for counter, period in pattern.periods(when, desk.timezone).items()
        }
        number = pattern.render(when, desk.timezone, values)
        if session.scalar(select(Ticket.id).where(Ticket.number == number)) is None:
            return number
    raise RuntimeError(f"desk {desk.name}: {MAX_SKIPPED} numbers in a row of {desk.pattern} exist already")


def seed_counters(session: Session, desk_id: int, pattern: Pattern) -> dict[str, int]:
    """Raise the desk's counters of `pattern` to at least the highest value of each (counter, period)
    among the existing ticket numbers the pattern matches (any desk's, ignoring case), so its next number
    is new. Returns those values by "counter period" ("nr-y 2026"); counters already higher stay."""
    numbers = select(Ticket.number)
    if pattern.prefix:  # numbers of other shapes need not be read (most patterns start with a prefix)
        numbers = numbers.where(func.lower(Ticket.number).startswith(pattern.prefix.lower(), autoescape=True))
    highest: dict[tuple[str, str], int] = {}
    for number in session.scalars(numbers):
        for counter, (period, value) in (pattern.counters_of(number) or {}).items():
            highest[counter, period] = max(value, highest.get((counter, period), 0))
    for (counter, period), value in sorted(highest.items()):
        _raise_to(session, desk_id, counter, period, value)
    return {f"{counter} {period}".rstrip(): value for (counter, period), value in sorted(highest.items())}


def _upsert(session: Session, row: Mapping[str, Any], value: Mapping[str, Any]) -> Insert:
    """INSERT `row`, or on conflict set `value`: the statement, in the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(NumberCounter).values(row).on_conflict_do_update(index_elements=_KEY, set_=value)
    if dialect == "postgresql":
        pg = postgresql.insert(NumberCounter).values(row)
        return pg.on_conflict_do_update(index_elements=_KEY, set_=value)
    raise RuntimeError(f"ticket numbers need SQLite or PostgreSQL, not {dialect}")


def _increment(session: Session, desk_id: int, counter: str, period: str) -> int:
    """Add one to the counter's row for this period (creating it at 1) and return the new value."""
    row = {"desk_id": desk_id, "counter": counter, "period": period, "value": 1}
    stmt = _upsert(session, row, {"value": NumberCounter.value + 1})
    return session.execute(stmt.returning(NumberCounter.value)).scalar_one()


def _raise_to(session: Session, desk_id: int, counter: str, period: str, value: int) -> None:
    """The counter's row for this period is at least `value` afterwards, in one statement (a concurrent
    allocation cannot slip between a read and a write)."""
    row = {"desk_id": desk_id, "counter": counter, "period": period, "value": value}
    # SQLite's two-argument max() is scalar, PostgreSQL spells it greatest().
    larger = func.max if session.get_bind().dialect.name == "sqlite" else func.greatest
    session.execute(_upsert(session, row, {"value": larger(NumberCounter.value, value)}))
