"""Outgoing webhooks (issue 19): placeholder until the webhook queue lands; queues nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.orm import Session

from maild.storage.events import TicketEvent


def enqueue(session: Session, events: Sequence[TicketEvent], now: dt.datetime) -> None:
    """Queue a delivery of each event to every webhook subscribed to it."""
    del session, events, now


def queue_to_webhook(session: Session, name: str, event: TicketEvent, now: dt.datetime) -> None:
    """Queue a delivery of `event` to the webhook named `name` (a rule's `webhook NAME` action), whatever
    it subscribes to. Raises LookupError for an unknown name. Placeholder: the webhooks helper's branch
    has the real one."""
    del session, event, now
    raise LookupError(f"no webhook {name!r}")
