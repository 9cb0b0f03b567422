"""Outgoing webhooks (issue 19): a delivery queued per event and subscribed webhook, in the transaction
that made the event, so a webhook is told of exactly what was committed. `maild serve` sends them
(maild.outbound.webhook_sender).

A webhook is subscribed to the event kinds in its `events` (empty: all of them), of its desk or, without
one, of every desk; inactive webhooks get nothing. The pipeline calls `enqueue` for every mail: the active
webhooks are read once per transaction (one small query), and with none nothing else is done."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.events import TicketEvent
from maild.storage.models import Webhook, WebhookDelivery, naive_utc
from maild.tickets.webhook_payload import base_payload, body_bytes

_CACHE = "maild.webhooks.active"


@dataclass(frozen=True)
class Subscriber:
    id: int
    events: frozenset[str]  # empty: every kind
    desk_id: int | None  # None: every desk

    def wants(self, event: TicketEvent) -> bool:
        return (not self.events or event.kind in self.events) and self.desk_id in (None, event.desk_id)


def _active(session: Session) -> list[Subscriber]:
    """The active webhooks, read once per transaction (cached on the session for its transaction)."""
    transaction = session.get_transaction()  # None between transactions: never a cache hit
    cached = session.info.get(_CACHE)
    if transaction is not None and cached is not None and cached[0] is transaction:
        found: list[Subscriber] = cached[1]
        return found
    rows = session.execute(select(Webhook.id, Webhook.events, Webhook.desk_id).where(Webhook.active))
    found = [Subscriber(i, frozenset(events or ()), desk_id) for i, events, desk_id in rows]
    session.info[_CACHE] = (session.get_transaction(), found)  # the one the query began, if it did
    return found


def forget_cached(session: Session) -> None:
    """After a webhook is added or removed in this transaction (maildctl)."""
    session.info.pop(_CACHE, None)


def _pending(webhook_id: int, kind: str, ticket_id: int | None, at: dt.datetime) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_id=webhook_id,
        event=kind,
        delivery_id=str(uuid.uuid4()),
        ticket_id=ticket_id,
        state="pending",
        attempts=0,
        next_attempt_at=at,
        claimed_by="",
        last_error="",
        created_at=at,
    )


def _queue(
    session: Session, webhook_id: int, event: TicketEvent, base: dict[str, Any], at: dt.datetime
) -> None:
    delivery = _pending(webhook_id, event.kind, event.ticket_id, at)
    delivery.body = body_bytes(base, delivery.delivery_id)
    session.add(delivery)


def enqueue(session: Session, events: Sequence[TicketEvent], now: dt.datetime) -> None:
    """Queue a delivery of each event to every webhook subscribed to it."""
    subscribers = _active(session)
    if not subscribers:
        return
    at = naive_utc(now)
    for event in events:
        wanted = [s for s in subscribers if s.wants(event)]
        if not wanted:
            continue
        base = base_payload(session, event, at)
        if base is None:
            continue
        for subscriber in wanted:
            _queue(session, subscriber.id, event, base, at)


def queue_to_webhook(session: Session, name: str, event: TicketEvent, now: dt.datetime) -> None:
    """Queue `event` to the webhook called `name`, whatever it is subscribed to (the rules' "call a
    webhook" action). LookupError when there is no such webhook or it is not active."""
    webhook = session.scalar(select(Webhook).where(Webhook.name == name))
    if webhook is None:
        raise LookupError(f"no webhook {name!r}")
    if not webhook.active:
        raise LookupError(f"webhook {name!r} is not active")
    at = naive_utc(now)
    base = base_payload(session, event, at)
    if base is None:
        raise LookupError(f"no ticket {event.ticket_id} for webhook {name!r}")
    _queue(session, webhook.id, event, base, at)


def redeliver(session: Session, delivery: WebhookDelivery, now: dt.datetime) -> WebhookDelivery:
    """Queue the same body again, to the same webhook, as a new delivery with an id of its own (the
    X-Maild-Delivery header); the body, its `delivery` field included, is the original's byte for byte."""
    again = _pending(delivery.webhook_id, delivery.event, delivery.ticket_id, naive_utc(now))
    again.body = delivery.body
    session.add(again)
    session.flush()
    return again
