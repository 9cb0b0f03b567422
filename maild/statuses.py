"""Which statuses a desk's tickets may have: the built-in ones and the desk's own (`maildctl status add`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import TICKET_STATUSES, DeskStatus


def custom_statuses(session: Session, desk_id: int) -> list[str]:
    return list(
        session.scalars(select(DeskStatus.name).where(DeskStatus.desk_id == desk_id).order_by(DeskStatus.id))
    )


def statuses_of(session: Session, desk_id: int) -> tuple[str, ...]:
    """The built-in statuses, then the desk's custom ones."""
    return (*TICKET_STATUSES, *(s for s in custom_statuses(session, desk_id) if s not in TICKET_STATUSES))
