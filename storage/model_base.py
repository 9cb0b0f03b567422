"""What every table module shares: the declarative Base, how times are stored (naive UTC), and the
vocabulary of ticket statuses, priorities and message kinds. Import these from maild.storage.models."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """`moment` as the database stores times: naive UTC (a naive `moment` is taken to be UTC already)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


TICKET_STATUSES = ("open", "in_progress", "waiting", "on_hold", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
# held: an agent's reply kept back by the collision guard until the agent says `#send`.
MESSAGE_KINDS = ("customer", "agent", "note", "system", "held")
