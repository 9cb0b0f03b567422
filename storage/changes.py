"""The change counter: every maildctl change that a running daemon caches (desks, their addresses and
patterns, the blocklist) bumps it in the change's own transaction; the daemon reads one integer to know
whether its caches are stale, instead of reloading everything on a timer."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from maild.storage.models import ChangeCounter, utcnow

CONFIG = "config"


def bump_changes(session: Session, name: str = CONFIG) -> None:
    """Count one change; commits with the caller's transaction."""
    done = session.execute(
        update(ChangeCounter)
        .where(ChangeCounter.name == name)
        .values(value=ChangeCounter.value + 1, changed_at=utcnow())
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        session.add(ChangeCounter(name=name, value=1, changed_at=utcnow()))


def current_changes(session: Session, name: str = CONFIG) -> int:
    value = session.scalar(select(ChangeCounter.value).where(ChangeCounter.name == name))
    return value or 0
