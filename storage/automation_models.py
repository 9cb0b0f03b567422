"""The tables of automation (issue 19): webhooks and their deliveries, the desks' rules and their firings,
the JSON API's tokens. None of them has an ORM relationship; they point at desks, tickets and each other by
foreign key only. Import these from maild.storage.models, which re-exports them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from maild.storage.model_base import Base, utcnow


class Webhook(Base):
    """A URL told of ticket events (maild.tickets.webhook_queue): those in `events` (empty: every kind), of
    one desk or (desk_id NULL) of all desks; bodies are signed with `secret` (X-Hub-Signature-256)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[Any]] = mapped_column(default=list)  # event kinds; [] subscribes to all
    desk_id: Mapped[int | None] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event's POST to one webhook, queued in the transaction that made the event. `body` is the JSON
    exactly as sent, so a retry or a redelivery sends the same bytes (and the same signature).

    state: pending (due at next_attempt_at; a sender claims it by moving that a lease ahead and setting
    claimed_by) → delivered (a 2xx) | failed (max attempts reached)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)  # a uuid4: X-Maild-Delivery
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    claimed_by: Mapped[str] = mapped_column(String(200), default="")
    last_status: Mapped[int | None] = mapped_column(Integer)  # the last answer's HTTP status, if any
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Rule(Base):
    """A desk's workflow rule (maild.tickets.rules_engine): on `trigger`, if every condition holds, do the
    actions in order. Conditions and actions are stored as the text expressions maildctl takes
    (maild.tickets.rule_grammar parses them); rules run by `position`."""

    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("desk_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(200))
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # Round-robin assignment: the agent the rule assigned last (the next present one follows).
    last_agent_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RuleFiring(Base):
    """A rule fired on a ticket for one event (`event_key`: the event, or for a time trigger the ticket's
    state): the unique constraint makes each firing happen once, with two daemons too."""

    __tablename__ = "rule_firings"
    __table_args__ = (UniqueConstraint("rule_id", "ticket_id", "event_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    event_key: Mapped[str] = mapped_column(String(200))
    fired_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token of the JSON API (`maildctl api-token add`): only its sha256 is kept. `scope` read
    or write; a revoked token (`api-token remove`) stays, its name taken, for the audit trail."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scope: Mapped[str] = mapped_column(String(10))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
