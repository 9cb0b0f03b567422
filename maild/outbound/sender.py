"""The outbox sender: deliver due outbox rows to the Maildir (embedded default) or the smarthost.

Each recipient gets its own SMTP transaction with a VERP envelope sender (`bounces+<row>-<mac>@domain`,
maild.mail.tokens), so a bounce names the exact mail and recipient. Per recipient: accepted → `delivered_to`;
temporary failure (no connection, 4xx) → stays in `rcpt_to` and is retried with exponential backoff for
`[outgoing] retry_hours`; permanent failure (5xx) or retries exhausted → `failed_to`, with a system note on
the ticket so the agents learn the customer never got it (`maildctl outbox retry` tries those again).
Nothing is ever dropped silently.

Claims: a row is taken by setting its next attempt a lease ahead, in a short transaction that locks it
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises), so several senders (two
`maild serve`, `maildctl outbox flush`) never send one row at the same time. The claim records its holder
(`claimed_by`: host, pid, process start): a claim whose holder on this host is no longer running (a crash, a
kill -9) is taken again at once, as is a claim this process holds but no longer works on (the database write
after sending failed, and so did releasing it); a failed write releases the claim. A crash while sending
leaves the row due again at the next flush on the same host, or when the lease ends elsewhere: at least once,
never lost. Each recipient's acceptance is committed right after its 250 (and kept in memory when that write
fails), and Maildir delivery is named by the row, so a re-send after a crash skips whoever got it: a
re-delivery to the Maildir is a no-op, and over SMTP at most the recipient in flight gets a second copy."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.logs import get_logger
from maild.mail.tokens import bounce_address, load_secret
from maild.outbound import maildir
from maild.outbound.stored_attachments import expand_stored, sent_bytes
from maild.outbound.thread_headers import AGENT_ONLY_TEMPLATES
from maild.storage import events
from maild.storage.db import transaction
from maild.storage.models import OutboxMessage, Ticket
from maild.storage.notes import add_system_note

BACKOFF_BASE = dt.timedelta(minutes=1)
BACKOFF_MAX = dt.timedelta(hours=4)
CLAIM_LEASE = dt.timedelta(minutes=15)  # longer than any one send (timeout per recipient × recipients)
CLAIM_BATCH = 50

log = get_logger("maild.outbox")


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
Accepted = Callable[[str], None]  # told each recipient the server accepted, right after its 250


# --- who holds a claim ------------------------------------------------------------------------------


def _start_of(pid: int) -> str | None:
    """When process `pid` started (boot id and start time in clock ticks, from /proc), "" where there is no
    /proc, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():  # no procfs: ask the kernel whether the pid exists
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
            return ""
        return None
    except OSError:
        return ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = ""
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{boot}-{fields[19]}" if len(fields) > 19 else ""


def _host() -> str:
    return socket.gethostname().replace(" ", "_")


def holder() -> str:
    """This process as a claim holder: "host pid start" (the start tells a reused pid apart)."""
    return f"{_host()} {os.getpid()} {_start_of(os.getpid()) or ''}"[:200]


def _dead(claimed_by: str) -> bool:
    """Whether the holder is a process of this host that is no longer running (another host's: unknown)."""
    host, _, rest = claimed_by.partition(" ")
    pid_text, _, start = rest.partition(" ")
    if host != _host() or not pid_text.isdigit():
        return False
    now_start = _start_of(int(pid_text))
    if now_start is None:
        return True
    return bool(start and now_start and start != now_start)  # the pid was reused by another process


_lock = threading.Lock()
_in_hand: set[int] = set()  # rows this process is sending right now (claimed, not yet recorded or released)
# Recipients a server accepted whose recording may not have reached the database (it failed): not sent
# again by this process, and recorded at its next attempt.
_accepted: dict[int, set[str]] = {}


async def _send_smtp(cfg: Config, row: OutboxMessage, pending: list[str], accepted: Accepted) -> Refusals:
    """One connection, one transaction per recipient of `pending`; `accepted` is told each one accepted,
    at once; returns those not accepted, with the reason."""
    import aiosmtplib  # only the smarthost path pays for this import

    assert cfg.smarthost is not None
    host, port = cfg.smarthost
    secret = load_secret(cfg.data_dir)
    refused: Refusals = {}
    pending = list(pending)
    # Expanded before connecting (a missing attachment raises here, nothing sent), once for all recipients.
    message = sent_bytes(row.raw, cfg.attachment_dir)
    client = aiosmtplib.SMTP(hostname=host, port=port, timeout=cfg.smtp_timeout, start_tls=False)
    try:
        await client.connect()
        while pending:
            rcpt = pending[0]
            sender = bounce_address(secret, row.mail_from, row.id, rcpt)
            try:
                # aiosmtplib reads any bytes-like; it says bytes, but bytes() would copy a big mail.
                errors, _ = await client.sendmail(sender, [rcpt], message)  # type: ignore[arg-type]
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refused.update({e.recipient: (e.code, e.message) for e in exc.recipients})
                await _reset(client)
            except aiosmtplib.SMTPResponseException as exc:  # MAIL FROM or DATA refused, for this one
                refused[rcpt] = (exc.code, exc.message)
                await _reset(client)
            else:
                refused.update({r: (err.code, err.message) for r, err in errors.items()})
                if rcpt not in errors:
                    pending.pop(0)
                    accepted(rcpt)
                    continue
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


def maildir_name(row: OutboxMessage, pending: Iterable[str]) -> str:
    """The outgoing Maildir file of this row for these recipients: delivered once, whoever re-sends it."""
    rcpts = hashlib.sha256("\n".join(sorted(pending)).encode()).hexdigest()[:12]
    return f"maild-outbox-{row.id}-{rcpts}.{maildir.hostname()}"


def deliver(
    cfg: Config,
    row: OutboxMessage,
    pending: list[str] | None = None,
    accepted: Accepted | None = None,
) -> Refusals:
    """Deliver `row` to `pending` (default: all its recipients still to be served); returns those refused
    (smarthost only). Over SMTP `accepted` is told each recipient accepted, right after its 250."""
    pending = list(row.rcpt_to) if pending is None else pending
    if cfg.smarthost is None:
        maildir.deliver_pieces(
            cfg.outgoing_maildir,
            expand_stored(row.raw, cfg.attachment_dir),
            name=maildir_name(row, pending),
        )
        return {}
    return asyncio.run(_send_smtp(cfg, row, pending, accepted or (lambda _rcpt: None)))


def _describe(refusals: Refusals) -> str:
    return "; ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in refusals.items())


def claim(
    factory: sessionmaker[Session],
    now: dt.datetime,
    ids: Iterable[int] | None = None,
    limit: int = CLAIM_BATCH,
) -> list[OutboxMessage]:
    """Take up to `limit` due rows (only among `ids` when given) for this sender, for CLAIM_LEASE; they
    come back detached and loaded: on SQLite every transaction takes the write lock, so no second read.
    Due are also rows whose claim is held by a dead process of this host, or by this process when it no
    longer works on them (a failed write left the claim): neither waits for the lease to end."""
    me = holder()
    queued = OutboxMessage.status == "queued"
    with transaction(factory) as session:
        holders = session.scalars(
            select(OutboxMessage.claimed_by)
            .where(queued, OutboxMessage.next_attempt_at > now, OutboxMessage.claimed_by != "")
            .distinct()
        )
        stale = [h for h in holders if h != me and _dead(h)]
        with _lock:
            mine_idle = and_(OutboxMessage.claimed_by == me, OutboxMessage.id.not_in(list(_in_hand)))
        due = or_(OutboxMessage.next_attempt_at <= now, OutboxMessage.claimed_by.in_(stale), mine_idle)
        query = select(OutboxMessage).where(queued, due)
        if ids is not None:
            query = query.where(OutboxMessage.id.in_(list(ids)))
        query = query.order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        with _lock:  # another thread of this process may have taken one of its idle claims meanwhile
            rows = [
                r for r in rows if not (r.claimed_by == me and r.next_attempt_at > now and r.id in _in_hand)
            ]
            _in_hand.update(r.id for r in rows)
        try:
            for row in rows:
                row.next_attempt_at = now + CLAIM_LEASE
                row.claimed_by = me
            session.flush()
            session.expunge_all()
        except BaseException:
            _let_go(r.id for r in rows)
            raise
    return rows


def _let_go(ids: Iterable[int]) -> None:
    with _lock:
        _in_hand.difference_update(ids)


def release(factory: sessionmaker[Session], ids: Iterable[int], now: dt.datetime) -> int:
    """Give up this process's claim on `ids`: due again at once. Returns how many were released."""
    ids = list(ids)
    if not ids:
        return 0
    with transaction(factory) as session:
        result = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id.in_(ids),
                OutboxMessage.status == "queued",
                OutboxMessage.claimed_by == holder(),
            )
            .values(next_attempt_at=now, claimed_by="")
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def release_dead_claims(factory: sessionmaker[Session], now: dt.datetime | None = None) -> int:
    """At start-up: rows claimed by processes of this host that are no longer running (a previous
    instance killed while sending) become due now. Returns how many."""
    return release_claims_of_the_dead(factory, OutboxMessage, OutboxMessage.status == "queued", now)


def release_claims_of_the_dead(
    factory: sessionmaker[Session], model: Any, waiting: Any, now: dt.datetime | None = None
) -> int:
    """Rows of `model` (a queue with `claimed_by` and `next_attempt_at`: the outbox, webhook deliveries)
    that match `waiting` and are claimed by processes of this host that no longer run become due now."""
    now_naive = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    with transaction(factory) as session:
        holders = session.scalars(select(model.claimed_by).where(waiting, model.claimed_by != "").distinct())
        stale = [h for h in holders if h != holder() and _dead(h)]
        if not stale:
            return 0
        result = session.execute(
            update(model)
            .where(waiting, model.claimed_by.in_(stale))
            .values(next_attempt_at=now_naive, claimed_by="")
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _record_accepted(factory: sessionmaker[Session], outbox_id: int, rcpt: str) -> None:
    """One recipient accepted: committed at once, so a crash before the row's end does not send it again."""
    with transaction(factory) as session:
        row = session.get(OutboxMessage, outbox_id)
        if row is None or rcpt not in row.rcpt_to:
            return
        row.rcpt_to = [r for r in row.rcpt_to if r != rcpt]
        if rcpt not in row.delivered_to:
            row.delivered_to = [*row.delivered_to, rcpt]


def _note_on_ticket(session: Session, row: OutboxMessage, text: str, now: dt.datetime) -> None:
    """A system note agents see on the ticket: this mail did not reach these people."""
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    if ticket is None:
        return
    add_system_note(session, ticket, text, by="outbox", at=now, subject=row.subject)


# maild.tickets.automation.after_changes, which registers itself here (`on_sent`): the rules and webhooks
# of a ticket's mail handed over (message.sent), run in the transaction that records it. The outbound
# layer cannot import the ticket services; every process that sends imports them.
_after_changes: Callable[[Session, Config, dt.datetime], object] | None = None


def on_sent(after_changes: Callable[[Session, Config, dt.datetime], object]) -> None:
    global _after_changes
    _after_changes = after_changes


def _announce_sent(session: Session, cfg: Config, row: OutboxMessage, now: dt.datetime) -> None:
    """message.sent for a ticket's mail. In a savepoint, and never raising: the mail is out, and a rule or
    webhook that fails must not make the sender think otherwise (and send it again)."""
    if row.ticket_id is None or _after_changes is None:
        return
    try:
        with session.begin_nested():
            events.emit(
                session,
                "message.sent",
                row.ticket_id,
                row.desk_id,
                message_id=row.message_id,
                template=row.template,
                to=list(row.delivered_to),
                subject=row.subject,
                to_agents=row.template in AGENT_ONLY_TEMPLATES,  # a notice, not mail to the customer
            )
            _after_changes(session, cfg, now.replace(tzinfo=dt.UTC))  # aware, as the other writers pass it
    except Exception as exc:
        events.discard_pending(session)
        log.error("message_sent_not_announced", outbox_id=row.id, error=f"{type(exc).__name__}: {exc}")


def _record(
    factory: sessionmaker[Session],
    cfg: Config,
    outbox_id: int,
    refused: Refusals,
    now: dt.datetime,
    accepted: Iterable[str] = (),
) -> str:
    """Write one attempt's result: `accepted` got it (whatever the database says yet), `refused` did not,
    the other recipients still to be served got it too; returns the row's status afterwards."""
    accepted = set(accepted)
    with transaction(factory) as session:
        row = session.get(OutboxMessage, outbox_id)
        assert row is not None
        pending = list(row.rcpt_to)
        row.attempts += 1
        row.claimed_by = ""
        got = [r for r in pending if r in accepted or r not in refused]
        row.delivered_to = [*row.delivered_to, *(r for r in got if r not in row.delivered_to)]
        refused = {r: why for r, why in refused.items() if r in pending and r not in accepted}
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
            _announce_sent(session, cfg, row, now)
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
        left = [row.id for row in batch]
        try:
            for row in batch:
                try:
                    status = _attempt(factory, cfg, row, now_naive)
                except Exception:
                    # The result could not be written (disk full, read-only or locked database): give
                    # the claims back, this row's and the rest of the batch's, rather than hold them for
                    # the lease; what was accepted stays in _accepted, not sent again by this process.
                    with suppress(Exception):
                        release(factory, left, now_naive)
                    raise
                left.remove(row.id)
                _let_go((row.id,))
                sent += status == "sent"
                deferred += status == "queued"
                failed += status == "failed"
        finally:
            _let_go(left)  # still claimed if releasing failed too: this process's next flush takes them
        if wanted is not None:
            claimed = {row.id for row in batch}
            wanted = [i for i in wanted if i not in claimed]
        if len(batch) < CLAIM_BATCH or wanted == []:  # all due were claimed: no empty claim to find out
            return FlushResult(sent, deferred, failed)


def _attempt(factory: sessionmaker[Session], cfg: Config, row: OutboxMessage, now: dt.datetime) -> str:
    """Send one claimed row to whoever has not got it yet, and record the result; returns its status."""
    with _lock:
        done = set(_accepted.get(row.id, ()))
    pending = [r for r in row.rcpt_to if r not in done]

    def accepted(rcpt: str) -> None:
        with _lock:
            _accepted.setdefault(row.id, set()).add(rcpt)
            last = len(_accepted[row.id].intersection(pending)) == len(pending)
        # The row's result, written next, records the last one: a transaction (and fsync) less per mail.
        if not last:
            _record_accepted(factory, row.id, rcpt)

    refused: Refusals = {}
    if pending:
        # Sent outside any transaction: the database is not locked while a remote server thinks.
        try:
            refused = deliver(cfg, row, pending, accepted)
        except Exception as exc:  # Maildir unwritable and the like: whoever is left is retried later
            with _lock:
                done = set(_accepted.get(row.id, ()))
            refused = {r: (451, f"{type(exc).__name__}: {exc}") for r in pending if r not in done}
    with _lock:
        done = set(_accepted.get(row.id, ()))
    status = _record(factory, cfg, row.id, refused, now, done)
    with _lock:
        _accepted.pop(row.id, None)
    return status
