"""The outbox sender: deliver due outbox rows to the Maildir (embedded default) or the smarthost.

A temporary failure (connection trouble, 4xx) stays queued with exponential backoff; a permanent one
(5xx for every recipient) is marked failed with the server's answer. Nothing is ever dropped."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild import maildir
from maild.config import Config
from storage.db import transaction
from storage.models import OutboxMessage

BACKOFF_BASE = dt.timedelta(minutes=1)
BACKOFF_MAX = dt.timedelta(hours=4)


class PermanentFailure(Exception):
    """The receiving server refused the message for good (5xx)."""


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


Refusals = dict[str, tuple[int, str]]  # recipient -> (SMTP code, server text)


async def _send_smtp(cfg: Config, row: OutboxMessage) -> Refusals:
    """Send via the smarthost; returns the recipients the server refused (empty when all accepted)."""
    import aiosmtplib  # only the smarthost path pays for this import

    assert cfg.smarthost is not None
    host, port = cfg.smarthost
    try:
        errors, _ = await aiosmtplib.send(
            row.raw,
            sender=row.mail_from,
            recipients=list(row.rcpt_to),
            hostname=host,
            port=port,
            timeout=cfg.smtp_timeout,
            start_tls=False,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient refused
        return {e.recipient: (e.code, e.message) for e in exc.recipients}
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise PermanentFailure(f"{exc.code} {exc.message}") from exc
        raise
    return {rcpt: (err.code, err.message) for rcpt, err in errors.items()}


def deliver(cfg: Config, row: OutboxMessage) -> Refusals:
    """Deliver `row`; returns the refused recipients (smarthost only), empty when there were none."""
    if cfg.smarthost is None:
        maildir.deliver(cfg.outgoing_maildir, row.raw)
        return {}
    return asyncio.run(_send_smtp(cfg, row))


def _describe(refusals: Refusals) -> str:
    return "; ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in refusals.items())


def flush(
    factory: sessionmaker[Session],
    cfg: Config,
    ids: Iterable[int] | None = None,
    now: dt.datetime | None = None,
) -> FlushResult:
    """Send what is due (or just `ids`, when given, regardless of their next attempt time)."""
    now_naive = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    if ids is not None:
        due = sorted(ids)  # each row's status is checked when it is loaded below
    else:
        with factory() as session:
            due = list(
                session.scalars(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.status == "queued", OutboxMessage.next_attempt_at <= now_naive)
                    .order_by(OutboxMessage.id)
                )
            )
    sent = deferred = failed = 0
    for outbox_id in due:
        with factory() as session:
            row = session.get(OutboxMessage, outbox_id)
            if row is None or row.status != "queued":
                continue
            session.expunge(row)
        # Sent outside any transaction: the database is not locked while a remote server thinks.
        # A crash between sending and recording means the mail goes out again (at least once, never lost).
        retry: list[str] = []  # recipients refused for now (4xx): the row stays queued for just them
        try:
            refused = deliver(cfg, row)
        except PermanentFailure as exc:
            status, error, failed = "failed", str(exc), failed + 1
        except Exception as exc:  # temporary: network, 4xx, disk; retried later
            status, error, deferred = "queued", f"{type(exc).__name__}: {exc}", deferred + 1
        else:
            retry = [rcpt for rcpt, (code, _) in refused.items() if not 500 <= code < 600]
            error = _describe(refused)
            if retry:
                status, deferred = "queued", deferred + 1
            elif refused and len(refused) == len(row.rcpt_to):
                status, failed = "failed", failed + 1
            else:
                status, sent = "sent", sent + 1
        with transaction(factory) as session:
            row = session.get(OutboxMessage, outbox_id)
            assert row is not None
            row.attempts += 1
            row.status, row.last_error = status, error[:2000]
            if retry:
                # Those who accepted have the mail; only the deferred ones get it on the next attempt.
                row.rcpt_to = retry
            if status == "sent":
                row.sent_at = now_naive
            elif status == "queued":
                row.next_attempt_at = now_naive + backoff(row.attempts)
    return FlushResult(sent, deferred, failed)
