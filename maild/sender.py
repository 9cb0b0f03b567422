"""The outbox sender: deliver due outbox rows to the Maildir (embedded default) or the smarthost.

Each recipient gets its own SMTP transaction with a VERP envelope sender (`bounces+<row>-<mac>@domain`,
maild.tokens), so a bounce names the exact mail and recipient. Per recipient: accepted → `delivered_to`;
temporary failure (no connection, 4xx) → stays in `rcpt_to` and is retried with exponential backoff for
`[outgoing] retry_hours`; permanent failure (5xx) or retries exhausted → `failed_to`, with a system note on
the ticket so the agents learn the customer never got it (`maildctl outbox retry` tries those again).
Nothing is ever dropped silently.

Claims: a row is taken by setting its next attempt a lease ahead, in a short transaction that locks it
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises), so several senders (two
`maild serve`, `maildctl outbox flush`) never send one row at the same time. A crash while sending leaves
the row due again when the lease ends: at least once, never lost."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild import maildir
from maild.config import Config
from maild.notes import add_system_note
from maild.outgoing import expand_stored, sent_bytes
from maild.tokens import bounce_address, load_secret
from storage.db import transaction
from storage.models import OutboxMessage, Ticket

BACKOFF_BASE = dt.timedelta(minutes=1)
BACKOFF_MAX = dt.timedelta(hours=4)
CLAIM_LEASE = dt.timedelta(minutes=15)  # longer than any one send (timeout per recipient × recipients)
CLAIM_BATCH = 50


@dataclass(frozen=True)
class FlushResult:
    sent: int
    deferred: int
    failed: int


def backoff(attempts: int) -> dt.timedelta:
    # Cap the exponent before multiplying: from attempt 42 on (about six days of 4xx at the 4-hour cap)
    # BACKOFF_BASE * 2**41 overflowed timedelta, the recording transaction raised, the row stayed due
    # and every later flush crashed on it before reaching the rest of the outbox.
    exponent = min(max(attempts - 1, 0), (BACKOFF_MAX // BACKOFF_BASE).bit_length())
    return min(BACKOFF_BASE * 2**exponent, BACKOFF_MAX)


Refusals = dict[str, tuple[int, str]]  # recipient -> (SMTP code, server text); 4xx for no connection


async def _send_smtp(cfg: Config, row: OutboxMessage) -> Refusals:
    """One connection, one transaction per recipient; returns those not accepted, with the reason."""
    import aiosmtplib  # only the smarthost path pays for this import

    assert cfg.smarthost is not None
    host, port = cfg.smarthost
    secret = load_secret(cfg.data_dir)
    refused: Refusals = {}
    pending = list(row.rcpt_to)
    # Expanded before connecting (a missing attachment raises here, nothing sent), once for all recipients.
    message = sent_bytes(row.raw, cfg.attachment_dir)
    client = aiosmtplib.SMTP(hostname=host, port=port, timeout=cfg.smtp_timeout, start_tls=False)
    try:
        await client.connect()
        while pending:
            rcpt = pending[0]
            sender = bounce_address(secret, row.mail_from, row.id, rcpt)
            try:
                errors, _ = await client.sendmail(sender, [rcpt], message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refused.update({e.recipient: (e.code, e.message) for e in exc.recipients})
                await _reset(client)
            except aiosmtplib.SMTPResponseException as exc:  # MAIL FROM or DATA refused, for this one
                refused[rcpt] = (exc.code, exc.message)
                await _reset(client)
            else:
                refused.update({r: (err.code, err.message) for r, err in errors.items()})
            pending.pop(0)
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        # The connection is gone: whoever was not served yet is retried later.
        reason = f"{type(exc).__name__}: {exc}"
        refused.update({rcpt: (451, reason) for rcpt in pending})
    finally:
        if client.is_connected:
            with suppress(Exception):
                await client.quit()
    return refused


async def _reset(client: object) -> None:
    with suppress(Exception):
        await client.rset()  # type: ignore[attr-defined]


def deliver(cfg: Config, row: OutboxMessage) -> Refusals:
    """Deliver `row` to its pending recipients; returns those refused (smarthost only)."""
    if cfg.smarthost is None:
        maildir.deliver_pieces(cfg.outgoing_maildir, expand_stored(row.raw, cfg.attachment_dir))
        return {}
    return asyncio.run(_send_smtp(cfg, row))


def _describe(refusals: Refusals) -> str:
    return "; ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in refusals.items())


def claim(
    factory: sessionmaker[Session],
    now: dt.datetime,
    ids: Iterable[int] | None = None,
    limit: int = CLAIM_BATCH,
) -> list[OutboxMessage]:
    """Take up to `limit` due rows (only among `ids` when given) for this sender, for CLAIM_LEASE; they
    come back detached and loaded: on SQLite every transaction takes the write lock, so no second read."""
    query = select(OutboxMessage).where(
        OutboxMessage.status == "queued", OutboxMessage.next_attempt_at <= now
    )
    if ids is not None:
        query = query.where(OutboxMessage.id.in_(list(ids)))
    query = query.order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True)
    with transaction(factory) as session:
        rows = list(session.scalars(query))
        for row in rows:
            row.next_attempt_at = now + CLAIM_LEASE
        session.flush()
        session.expunge_all()
        return rows


def _note_on_ticket(session: Session, row: OutboxMessage, text: str, now: dt.datetime) -> None:
    """A system note agents see on the ticket: this mail did not reach these people."""
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    if ticket is None:
        return
    add_system_note(session, ticket, text, by="outbox", at=now, subject=row.subject)


def _record(
    factory: sessionmaker[Session], cfg: Config, outbox_id: int, refused: Refusals, now: dt.datetime
) -> str:
    """Write one attempt's result; returns the row's status afterwards."""
    with transaction(factory) as session:
        row = session.get(OutboxMessage, outbox_id)
        assert row is not None
        pending = list(row.rcpt_to)
        row.attempts += 1
        row.delivered_to = [*row.delivered_to, *(r for r in pending if r not in refused)]
        permanent = {r: why for r, why in refused.items() if 500 <= why[0] < 600}
        temporary = {r: why for r, why in refused.items() if r not in permanent}
        if row.retry_until is None:
            row.retry_until = row.created_at + dt.timedelta(hours=cfg.retry_hours)
        expired = now >= row.retry_until
        if temporary and expired:
            permanent.update(temporary)
            temporary = {}
        row.last_error = _describe(refused)[:2000]
        row.rcpt_to = list(temporary)
        row.failed_to = [*row.failed_to, *permanent]
        if permanent:
            hours = f" (retried for {cfg.retry_hours:g} hours)" if expired else ""
            _note_on_ticket(
                session,
                row,
                f"The mail {row.subject!r} ({row.template}) could not be delivered{hours}:\n"
                + "\n".join(f"{r}: {code} {text}" for r, (code, text) in permanent.items()),
                now,
            )
        if temporary:
            row.status, row.next_attempt_at = "queued", now + backoff(row.attempts)
        elif row.delivered_to:
            row.status, row.sent_at = "sent", now
        else:
            row.status = "failed"
        return row.status


def flush(
    factory: sessionmaker[Session],
    cfg: Config,
    ids: Iterable[int] | None = None,
    now: dt.datetime | None = None,
) -> FlushResult:
    """Send what is due (only among `ids` when given), batch after batch until nothing is due."""
    now_naive = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    wanted = list(ids) if ids is not None else None
    sent = deferred = failed = 0
    while True:
        batch = claim(factory, now_naive, wanted)
        for row in batch:
            # Sent outside any transaction: the database is not locked while a remote server thinks.
            try:
                refused = deliver(cfg, row)
            except Exception as exc:  # Maildir unwritable and the like: every recipient retried later
                refused = {rcpt: (451, f"{type(exc).__name__}: {exc}") for rcpt in row.rcpt_to}
            status = _record(factory, cfg, row.id, refused, now_naive)
            sent += status == "sent"
            deferred += status == "queued"
            failed += status == "failed"
        if wanted is not None:
            claimed = {row.id for row in batch}
            wanted = [i for i in wanted if i not in claimed]
        if len(batch) < CLAIM_BATCH or wanted == []:  # all due were claimed: no empty claim to find out
            return FlushResult(sent, deferred, failed)
