"""The tables that record what the daemon and maildctl did, beside the helpdesk's own: mail in (spool,
IMAP state), mail out (outbox, auto-reply rate limit), the blocklist, the audit log, the change counter
and scheduled job runs. None of them has an ORM relationship; they point at tickets and desks by foreign
key only. Import these from maild.storage.models, which re-exports them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from maild.storage.model_base import Base, utcnow


class SpoolEntry(Base):
    """Every message that arrived, from the moment its raw bytes are durable on disk.

    state: received (not processed yet) → done. outcome says what became of it."""

    __tablename__ = "spool"
    __table_args__ = (Index("ix_spool_sha_rcpt", "sha256", "recipient"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320), default="")
    mail_from: Mapped[str] = mapped_column(String(320), default="", server_default="")  # envelope sender
    ingress: Mapped[str] = mapped_column(String(10))
    size: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), default="received", index=True)
    outcome: Mapped[str | None] = mapped_column(String(30), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    header_message_id: Mapped[str] = mapped_column(String(998), default="")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    trace: Mapped[list[Any]] = mapped_column(default=list)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When the retention period's purge removed the raw file (maild/tickets/retention.py); the row stays.
    raw_purged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # `maildctl spool release`: an admin let it through; the spam stage does not hold it again.
    released: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class OutboxMessage(Base):
    """A rendered outgoing mail, queued in the same transaction as the ticket change that caused it."""

    __tablename__ = "outbox"
    # The desk-wide automatic-mail limit counts a desk's mail of the last hour by template at every
    # auto-reply (maild.outbound.screening): read from the index alone.
    __table_args__ = (Index("ix_outbox_desk_id_created_at", "desk_id", "created_at", "template"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    template: Mapped[str] = mapped_column(String(50))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[list[Any]] = mapped_column()  # recipients still to be served
    delivered_to: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")  # who accepted it
    failed_to: Mapped[list[Any]] = mapped_column(
        default=list, server_default="[]"
    )  # given up on (5xx, expiry)
    retry_until: Mapped[dt.datetime | None] = mapped_column(DateTime)  # temporary failures retried until then
    subject: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The sender process holding the claim until next_attempt_at ("host pid start", maild.outbound.sender);
    # "" when
    # none: a daemon releases its own claims, and a dead instance's on its host, without waiting.
    claimed_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class ImapState(Base):
    """How far IMAP polling of one account's folder got: its UIDVALIDITY and the last UID spooled."""

    __tablename__ = "imap_state"

    account: Mapped[str] = mapped_column(String(200), primary_key=True)  # the [[imap]] entry's name
    folder: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class BlockEntry(Base):
    """A blocklist entry: `alice@example.com`, `@example.com` (with `subdomains`, also its subdomains), or
    a wildcard such as `*@*.spam.test` (fnmatch, case-insensitive)."""

    __tablename__ = "blocklist"

    id: Mapped[int] = mapped_column(primary_key=True)
    pattern: Mapped[str] = mapped_column(String(320), unique=True)
    subdomains: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AutoReplySent(Base):
    """One automatic mail sent to an address: what the per-address rate limit counts."""

    __tablename__ = "auto_replies"
    __table_args__ = (Index("ix_auto_replies_address_sent_at", "address", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(50))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ChangeCounter(Base):
    """Bumped by every maildctl change a running daemon caches (desks, addresses, patterns, blocklist):
    the daemon compares the value instead of reloading everything on a timer."""

    __tablename__ = "change_counter"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class JobRun(Base):
    """The last run of each of `maild serve`'s scheduled jobs (by any instance): `maildctl health`."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    instance: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ok: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    last_ok_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
