"""Typed SQLAlchemy 2 models: the whole schema of maild, importable from this one place.

The helpdesk's tables are here; Base, utcnow and the status vocabulary are in model_base.py, the
records of mail in and out, audit and jobs in records.py, the tables of automation (webhooks, rules,
API tokens) in automation_models.py (both re-exported).

Timestamps are stored as naive UTC (`utcnow()`), identically on SQLite and PostgreSQL.
Email addresses are stored lower-cased in their lookup columns; display names are kept beside them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from maild.storage.automation_models import ApiToken, Rule, RuleFiring, Webhook, WebhookDelivery
from maild.storage.model_base import (
    MESSAGE_KINDS,
    PRIORITIES,
    TICKET_STATUSES,
    Base,
    naive_utc,
    utcnow,
)
from maild.storage.records import (
    AuditLog,
    AutoReplySent,
    BlockEntry,
    ChangeCounter,
    ImapState,
    JobRun,
    OutboxMessage,
    SpoolEntry,
)

# Re-exported: every table and name of the schema is importable from here.
__all__ = [
    "MESSAGE_KINDS",
    "PRIORITIES",
    "TICKET_STATUSES",
    "ApiToken",
    "AuditLog",
    "AutoReplySent",
    "Base",
    "BlockEntry",
    "ChangeCounter",
    "ImapState",
    "JobRun",
    "OutboxMessage",
    "Rule",
    "RuleFiring",
    "SpoolEntry",
    "Webhook",
    "WebhookDelivery",
    "naive_utc",
    "utcnow",
]


class Desk(Base):
    __tablename__ = "desks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    pattern: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    auto_reply: Mapped[bool] = mapped_column(Boolean, default=True)
    # A stranger quoting a number in the subject does not join that ticket (a new, linked one instead).
    hijack_guard: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # A customer reply to a ticket closed longer ago than this opens a new, linked ticket.
    reopen_days: Mapped[int] = mapped_column(Integer, default=14, server_default="14")
    # Only senders who are already contacts may open tickets by mail (others are refused, unanswered).
    clients_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # New tickets by mail are refused with the replies_only_refusal answer; replies still thread.
    replies_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Comma-separated extensions ("pdf,png"); empty: any but executables and scripts.
    allowed_extensions: Mapped[str] = mapped_column(String(500), default="", server_default="")
    max_attachment_mb: Mapped[int] = mapped_column(Integer, default=25, server_default="25")
    # Auto-close: after this many hours without activity (0 = never), only from these statuses.
    auto_close_hours: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    auto_close_statuses: Mapped[str] = mapped_column(
        String(500), default="waiting,resolved", server_default="waiting,resolved"
    )
    # The name on the desk's own mail (`From: "ACME Support" <support@…>`); empty: the desk's name.
    sender_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # The customers' language (mail templates, web pages, status names, dates): en, de, pl, hu or pt.
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    # Customers may rate each agent reply 1-5 on the ticket page (off by default, as in MUTicket).
    web_ratings: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Anyone may open a ticket with the web form /new/<desk>; with web_confirm_address, only once the
    # address has been confirmed through a link mailed to it.
    web_new_tickets: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    web_confirm_address: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # With none of its agents present: notify-all (every active agent anyway) or desk-unavailable (the
    # customer gets the desk_unavailable mail once per ticket, no agent a notice): maild.tickets.notices.
    when_nobody_present: Mapped[str] = mapped_column(
        String(20), default="notify-all", server_default="notify-all"
    )
    # The desk's hours in its timezone ("mon-fri 09:00-17:00, sat 10:00-14:00"; "": none), for rules.
    business_hours: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # Bumped by every change to the desk's rules: the engine's cache of them is good while it is the same.
    rules_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    addresses: Mapped[list[DeskAddress]] = relationship(
        back_populates="desk", cascade="all, delete-orphan", order_by="DeskAddress.id"
    )
    agents: Mapped[list[Agent]] = relationship(secondary="agent_desks", back_populates="desks")

    @property
    def primary_address(self) -> str:
        return self.addresses[0].address


class RetiredPattern(Base):
    """A number pattern a desk used before `desk set --pattern`: its numbers still thread, and no desk may
    take a pattern that could produce them again."""

    __tablename__ = "retired_patterns"

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), index=True)
    pattern: Mapped[str] = mapped_column(String(200))
    retired_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class DeskAddress(Base):
    __tablename__ = "desk_addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)

    desk: Mapped[Desk] = relationship(back_populates="addresses")


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The name customers see on replies ("Anna from Support"); empty: `name` is used.
    display_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Away from away_since until away_until (open-ended when NULL); maild.tickets.presence reads them.
    away_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    away_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    desks: Mapped[list[Desk]] = relationship(secondary="agent_desks", back_populates="agents")


class AgentDesk(Base):
    __tablename__ = "agent_desks"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), primary_key=True)


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | bouncing
    status_reason: Mapped[str] = mapped_column(Text, default="", server_default="")  # why bouncing
    # Custom attributes (`maildctl contact attr`), text values: rules' `contact KEY is|within` conditions.
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(100), unique=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id"), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(30), default="open", index=True)
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    customer_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    assigned_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="SET NULL"))
    # When the status last changed (escalations count hours in a status; reports time resolutions). Kept
    # by the before_flush hook below from updated_at, which every status change sets with it.
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Set on a ticket merged into another: its number, headers and token keep leading to the survivor.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    # Set on a ticket an import created (the real time of the import): automation (auto-close,
    # escalations, reminders) leaves it alone until something happens on it after that moment.
    imported_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When its customer got the desk_unavailable mail (nobody present, desk option): once per ticket.
    desk_unavailable_sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    desk: Mapped[Desk] = relationship()
    customer: Mapped[Contact] = relationship()
    category: Mapped[Category | None] = relationship()
    linked_ticket: Mapped[Ticket | None] = relationship(
        remote_side="Ticket.id", foreign_keys="Ticket.linked_ticket_id"
    )
    merged_into: Mapped[Ticket | None] = relationship(
        remote_side="Ticket.id", foreign_keys="Ticket.merged_into_id"
    )
    messages: Mapped[list[Message]] = relationship(
        # Chronological: a merge interleaves two tickets' messages (ids keep the order within a second).
        back_populates="ticket",
        order_by="(Message.created_at, Message.id)",
        cascade="all, delete-orphan",
    )
    participants: Mapped[list[Participant]] = relationship(
        back_populates="ticket", order_by="Participant.id", cascade="all, delete-orphan"
    )


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "contact_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))  # customer | cc

    ticket: Mapped[Ticket] = relationship(back_populates="participants")
    contact: Mapped[Contact] = relationship()


class Message(Base):
    """One mail (or note) on a ticket. `message_id` is the RFC 5322 Message-ID, or one derived from
    the raw bytes' hash when the mail had none; it is unique per desk, which makes re-delivery idempotent."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("desk_id", "message_id"),
        # The flood pause (pipeline.notify) counts a desk's mails of the last minutes on every customer mail.
        Index("ix_messages_desk_id_created_at", "desk_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id"))
    spool_id: Mapped[int | None] = mapped_column(ForeignKey("spool.id"))
    kind: Mapped[str] = mapped_column(String(10))
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    # What the mail says (sender, subject, text, attachments): a re-delivery has the same, a device that
    # reuses its Message-ID for new content (scanners do) does not.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    in_reply_to: Mapped[str] = mapped_column(String(998), default="")
    text: Mapped[str] = mapped_column(Text, default="")  # the whole body, quotes and signature included
    # What a reader needs: the text without the quoted history and the signature.
    visible_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    html: Mapped[str | None] = mapped_column(Text)  # sanitised (nh3) before it is stored
    # What a reader should know about the content: MIME defects, removed HTML, refused attachments.
    notes: Mapped[list[Any]] = mapped_column(default=list)
    threaded_by: Mapped[str] = mapped_column(String(30), default="")
    # autoreply stage: out-of-office | auto-generated | list | challenge-response (None: a person wrote it)
    automatic: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # A customer mail whose notice to agents was held back (its sender flooded the desk, pipeline.notify):
    # when. The flood digest job (maild.tickets.flood_digest) tells the agents of it and clears it.
    notice_held_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.id", cascade="all, delete-orphan"
    )


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    # Always the content's digest; the file is in the store only when refused_reason is None.
    sha256: Mapped[str | None] = mapped_column(String(64))
    refused_reason: Mapped[str | None] = mapped_column(String(200))
    content_id: Mapped[str | None] = mapped_column(String(255))  # what `cid:` links in the HTML name
    inline: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    message: Mapped[Message] = relationship(back_populates="attachments")


class NumberCounter(Base):
    """One row per (desk, counter token, period): `{{nr-m}}` in March 2026 counts in period '2026-03'."""

    __tablename__ = "number_counters"

    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), primary_key=True)
    counter: Mapped[str] = mapped_column(String(10), primary_key=True)
    period: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class DeskStatus(Base):
    """A custom status of one desk (`maildctl status add`), beside the built-in TICKET_STATUSES."""

    __tablename__ = "desk_statuses"
    __table_args__ = (UniqueConstraint("desk_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Category(Base):
    """A category of a desk's tickets; its agents (if any) get the notices of its tickets."""

    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("desk_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    desk: Mapped[Desk] = relationship()
    agents: Mapped[list[Agent]] = relationship(secondary="category_agents", order_by="Agent.id")


class CategoryAgent(Base):
    __tablename__ = "category_agents"

    category_id: Mapped[int] = mapped_column(
        ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)


class TicketFlag(Base):
    """A ticket flagged to an agent's attention (`maildctl ticket flag`), until cleared."""

    __tablename__ = "ticket_flags"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    flagged_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class EscalationRule(Base):
    """ "After `after_hours` in status `in_status` (and priority `with_priority`, if set) → set status,
    priority or desk, notify the agents, or send the customer `remind_template`." Fires once per ticket
    state (EscalationFired)."""

    __tablename__ = "escalation_rules"
    __table_args__ = (UniqueConstraint("desk_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    after_hours: Mapped[float] = mapped_column(Float)
    in_status: Mapped[str] = mapped_column(String(30))
    with_priority: Mapped[str | None] = mapped_column(String(10))
    set_status: Mapped[str | None] = mapped_column(String(30))
    set_priority: Mapped[str | None] = mapped_column(String(10))
    set_desk_id: Mapped[int | None] = mapped_column(ForeignKey("desks.id", ondelete="SET NULL"))
    notify_agents: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    remind_template: Mapped[str | None] = mapped_column(String(50))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    desk: Mapped[Desk] = relationship(foreign_keys=[desk_id])
    set_desk: Mapped[Desk | None] = relationship(foreign_keys=[set_desk_id])


class EscalationFired(Base):
    """A rule fired for a ticket in one state (`state_key`: the status and when it was entered); the
    unique constraint makes the firing exactly-once even with two daemons."""

    __tablename__ = "escalation_fired"
    __table_args__ = (UniqueConstraint("rule_id", "ticket_id", "state_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("escalation_rules.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    state_key: Mapped[str] = mapped_column(String(200))
    fired_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CannedReply(Base):
    """A prepared answer agents insert with `#canned NAME`; `desk_id` None: offered on every desk."""

    __tablename__ = "canned_replies"
    __table_args__ = (UniqueConstraint("desk_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int | None] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TicketTag(Base):
    __tablename__ = "ticket_tags"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class TimeEntry(Base):
    """Time an agent spent on a ticket (`#time 25m`)."""

    __tablename__ = "time_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    minutes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class QuarantineReport(Base):
    """A quarantined spool row the agents were told of (maild.tickets.quarantine_digest): each is reported
    once, whatever restarts, and a desk's latest report is when its last digest went (the rate limit).
    A table of its own rather than a spool column: it also holds the desk, which a quarantined row has
    not (route may not have run), and rows quarantined before it existed need no backfill."""

    __tablename__ = "quarantine_reports"
    __table_args__ = (Index("ix_quarantine_reports_desk_id_reported_at", "desk_id", "reported_at"),)

    spool_id: Mapped[int] = mapped_column(ForeignKey("spool.id", ondelete="CASCADE"), primary_key=True)
    # The desk whose agents were told; None: no desk could be told (the row's desk is unknown), only logged.
    desk_id: Mapped[int | None] = mapped_column(ForeignKey("desks.id", ondelete="SET NULL"))
    reported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    agents: Mapped[int] = mapped_column(Integer, default=0)  # digests queued for it (0: only logged)


class TicketLink(Base):
    """One recipient's link to a ticket's page (`<public_url>/t/<token>`, maild.tickets.ticket_links). The
    token is the random `nonce` and an HMAC over it, the ticket and the contact under the server secret:
    a copy of the database alone opens no page. Revoked links stay, for the record (nonce None: issued
    before migration 0015); a recipient has at most one link not revoked."""

    __tablename__ = "ticket_links"
    __table_args__ = (Index("ix_ticket_links_ticket_id_contact_id", "ticket_id", "contact_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    nonce: Mapped[str | None] = mapped_column(String(22), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    ticket: Mapped[Ticket] = relationship()
    contact: Mapped[Contact] = relationship()


class Rating(Base):
    """A customer's rating (1-5, optional comment) of one agent reply, from the ticket page: one per reply
    and contact, changed in place. `agent_id`/`desk_id` are copied from the reply for the reports."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("message_id", "contact_id", name="uq_ratings_message_id_contact_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), index=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


@event.listens_for(Session, "before_flush")
def _keep_status_changed_at(session: Session, _context: object, _instances: object) -> None:
    """Every status change sets `updated_at` with it (apply, commands, auto-close, merge, maildctl): the
    time the status changed is that updated_at. One hook instead of a rule each of them must remember."""
    for obj in session.new:
        if isinstance(obj, Ticket) and obj.status_changed_at is None:
            obj.status_changed_at = obj.updated_at or obj.created_at
    for obj in session.dirty:
        if isinstance(obj, Ticket) and inspect(obj).attrs.status.history.has_changes():
            obj.status_changed_at = obj.updated_at
