"""Allocate a desk's next ticket number inside the caller's transaction.

Each counter of the desk's pattern is one number_counters row per period, bumped by a single
INSERT … ON CONFLICT DO UPDATE … RETURNING. There is no read-then-write window for another process to
slip into: on PostgreSQL the statement waits for the row lock of a concurrent allocation and then
increments the committed value; on SQLite the writer lock taken at BEGIN IMMEDIATE (storage.db)
serialises allocations. Nothing is committed here, so a ticket whose transaction rolls back takes its
number with it and the next ticket reuses it: no gaps.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from numbering.pattern import compile_pattern
from storage.models import Desk, NumberCounter

_KEY = [NumberCounter.desk_id, NumberCounter.counter, NumberCounter.period]


def allocate_number(session: Session, desk: Desk, now: datetime | None = None) -> str:
    """The next number of `desk` at `now` (aware, default the current time), e.g. "SUP-26-02-7"."""
    pattern = compile_pattern(desk.pattern)
    when = now if now is not None else datetime.now(UTC)
    if desk.id is None:  # a desk created in this same transaction and not flushed yet
        session.flush()
    # periods() lists counters in a fixed order, so two allocations lock rows in the same order.
    values = {
        counter: _increment(session, desk.id, counter, period)
        for counter, period in pattern.periods(when, desk.timezone).items()
    }
    return pattern.render(when, desk.timezone, values)


def _increment(session: Session, desk_id: int, counter: str, period: str) -> int:
    """Add one to the counter's row for this period (creating it at 1) and return the new value."""
    row = {"desk_id": desk_id, "counter": counter, "period": period, "value": 1}
    bump = {"value": NumberCounter.value + 1}
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        lite = sqlite.insert(NumberCounter).values(row)
        stmt = lite.on_conflict_do_update(index_elements=_KEY, set_=bump).returning(NumberCounter.value)
    elif dialect == "postgresql":
        pg = postgresql.insert(NumberCounter).values(row)
        stmt = pg.on_conflict_do_update(index_elements=_KEY, set_=bump).returning(NumberCounter.value)
    else:
        raise RuntimeError(f"ticket numbers need SQLite or PostgreSQL, not {dialect}")
    return session.execute(stmt).scalar_one()
