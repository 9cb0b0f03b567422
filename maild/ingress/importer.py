"""Replay a mailbox backlog (mbox or Maildir) through the real pipeline, oldest mail first.

Each mail takes the path every ingress takes: raw bytes durable in the spool, a `received` row with
ingress `import` (notify sends nothing for those: no auto-replies, no agent notices) and the desk's
primary address as recipient (route picks the desk), then the pipeline with `now` set to the mail's Date,
so tickets, messages and numbers get their historic times. Mails go in batches (`process_batch`: one
transaction, a savepoint per mail, in date order), parsed in processes for a large backlog.

Order: mail with a parseable Date in date order (ties in file order); mail without one, or with one
that cannot be read, after all dated mail, in file order, stamped with the time of the import (nothing
better is known about it). A Date in the future is clamped to the time of the import.

Quiet for automation: a ticket the import creates carries `imported_at` (pipeline.apply), so auto-close,
escalations and reminders leave it alone until something live happens on it (maild.tickets.quiet). With
`automate` the import clears it on the tickets it created once the replay ends, and they are treated as
any live ticket from then on (an old `waiting` ticket is then auto-closed at the next run, with its mail).

A large mbox is never held in memory: the index keeps only each message's key, file position and date
(read from its header block alone); the raw bytes are read one message at a time while replaying."""

from __future__ import annotations

import datetime as dt
import mailbox
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.ingress.parse_pool import start_parse_pool
from maild.mail.mailparse import parse_file
from maild.pipeline.context import IMPORT_INGRESS
from maild.pipeline.runner import MAX_ATTEMPTS, Job, prepare, process, process_batch, waiting_rows
from maild.storage.db import transaction
from maild.storage.models import SpoolEntry, Ticket
from maild.storage.spool import record_received, write_raw

KINDS = ("mbox", "maildir")
MAX_HEADER_BYTES = 256 * 1024  # a header block longer than this is not read for its Date
CHUNK = 500  # ticket numbers per IN (...) query: far below every backend's bound-parameter limit
IMPORT_BATCH = 100  # mails per transaction: replies in a batch see their tickets (one session, in order)
POOL_MIN_MAILS = 500  # a smaller backlog is parsed here: starting the parse processes costs ~0.3 s

# Progress: (mails done, mails in all, seconds since the replay began).
Progress = Callable[[int, int, float], None]


class SourceError(Exception):
    """The path is missing or not a mailbox of the kind asked for: one line for the admin."""


@dataclass(frozen=True)
class Indexed:
    key: Any  # the mailbox's key (an int for mbox, a file name for Maildir)
    position: int  # file order
    date: dt.datetime | None  # aware UTC; None: missing or unparseable


@dataclass
class Summary:
    mails: int = 0
    undated: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0  # the whole import: index and replay
    index_elapsed: float = 0.0
    first_date: dt.datetime | None = None
    last_date: dt.datetime | None = None
    created_numbers: list[str] = field(default_factory=list)  # the tickets this import created
    # their statuses when the import ended: closed, and every other (still open) status
    created_statuses: Counter[str] = field(default_factory=Counter)
    automated: bool = False  # the created tickets are live for automation (`automate`), not quiet

    @property
    def rate(self) -> float:
        return self.mails / self.elapsed if self.elapsed > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        headline = {"created", "replied", "duplicate", "looped", "desk_reply"}
        return {
            "mails": self.mails,
            "created": self.outcomes["created"],
            "threaded": self.outcomes["replied"],
            "duplicates": self.outcomes["duplicate"],
            # the desk's old answers: stored on their tickets as agent messages; those following no ticket
            "desk_replies": self.outcomes["desk_reply"],
            "desk_own_mail": self.outcomes["looped"],
            "other": {k: v for k, v in sorted(self.outcomes.items()) if k not in headline},
            "undated": self.undated,
            "first_date": _iso(self.first_date),
            "last_date": _iso(self.last_date),
            "elapsed_s": round(self.elapsed, 3),
            "index_s": round(self.index_elapsed, 3),
            "rate_per_s": round(self.rate, 1),
            "tickets_closed": self.created_statuses["closed"],
            "tickets_open": sum(n for status, n in self.created_statuses.items() if status != "closed"),
            "tickets_by_status": dict(sorted(self.created_statuses.items())),
            "automated": self.automated,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def open_source(kind: str, path: Path) -> mailbox.Mailbox:
    """The mailbox at `path`, read-only; SourceError when it is missing or not of that kind."""
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if kind == "mbox":
        if path.is_dir():
            raise SourceError(f"{path} is a directory, not an mbox file: for a Maildir use 'import maildir'")
        with path.open("rb") as handle:
            head = handle.read(5)
        if head and head != b"From ":
            raise SourceError(f"{path} is not an mbox: it does not begin with a 'From ' line")
        return mailbox.mbox(str(path), create=False)
    if kind == "maildir":
        if not path.is_dir() or not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise SourceError(f"{path} is not a Maildir: it needs cur/ and new/ subdirectories")
        return mailbox.Maildir(str(path), factory=None, create=False)
    raise SourceError(f"unknown mailbox kind {kind!r}: use one of {', '.join(KINDS)}")


def _header_block(handle: Iterable[bytes]) -> bytes:
    lines: list[bytes] = []
    size = 0
    for line in handle:
        if line in (b"\n", b"\r\n") or size > MAX_HEADER_BYTES:
            break
        lines.append(line)
        size += len(line)
    return b"".join(lines)


def parse_date(value: str | None) -> dt.datetime | None:
    """A Date header as aware UTC, or None when missing or unreadable. A zone-less date is UTC."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


def _keys_in_file_order(box: mailbox.Mailbox) -> list[Any]:
    if isinstance(box, mailbox.Maildir):
        return sorted(box.keys())  # Maildir names begin with the delivery time: the nearest to file order
    return list(box.keys())


def index(box: mailbox.Mailbox) -> list[Indexed]:
    """Every message's key and date, in replay order: dated mail by date (ties in file order), then the
    undated mail in file order."""
    parser = BytesHeaderParser(policy=compat32)
    entries: list[Indexed] = []
    for position, key in enumerate(_keys_in_file_order(box)):
        handle = box.get_file(key)
        try:
            headers = parser.parsebytes(_header_block(handle))
        finally:
            handle.close()
        entries.append(Indexed(key, position, parse_date(headers["Date"])))
    dated = sorted((e for e in entries if e.date is not None), key=lambda e: (e.date, e.position))
    return dated + [e for e in entries if e.date is None]


def iter_raw(box: mailbox.Mailbox, order: list[Indexed]) -> Iterator[tuple[Indexed, bytes]]:
    for entry in order:
        yield entry, box.get_bytes(entry.key)


def replay(
    factory: sessionmaker[Session],
    cfg: Config,
    recipient: str,
    box: mailbox.Mailbox,
    order: list[Indexed],
    progress: Progress | None = None,
    started_at: dt.datetime | None = None,
    index_elapsed: float = 0.0,
    automate: bool = False,
) -> Summary:
    """Run every indexed message through the pipeline as mail to `recipient` (a desk's primary
    address); returns what became of them. A locked or unreachable database propagates: what was
    imported stays, and a second run counts it as duplicates. `automate`: the created tickets are made
    live for automation when the replay ends (also when it ends early)."""
    summary = Summary(mails=len(order), index_elapsed=index_elapsed, automated=automate)
    try:
        _replay(factory, cfg, recipient, box, order, summary, progress, started_at)
    finally:
        if automate:
            _make_live(factory, summary.created_numbers)
    summary.created_statuses = _statuses(factory, summary.created_numbers)
    return summary


def _chunks(numbers: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(numbers), CHUNK):
        yield numbers[start : start + CHUNK]


def _make_live(factory: sessionmaker[Session], numbers: list[str]) -> None:
    """Automation treats these tickets as any live ticket from now on."""
    for chunk in _chunks(numbers):
        with transaction(factory) as session:
            session.execute(update(Ticket).where(Ticket.number.in_(chunk)).values(imported_at=None))


def _statuses(factory: sessionmaker[Session], numbers: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    with factory() as session:
        for chunk in _chunks(numbers):
            rows = session.execute(
                select(Ticket.status, func.count()).where(Ticket.number.in_(chunk)).group_by(Ticket.status)
            )
            for status, count in rows:
                found[status] += count
    return found


def _replay(
    factory: sessionmaker[Session],
    cfg: Config,
    recipient: str,
    box: mailbox.Mailbox,
    order: list[Indexed],
    summary: Summary,
    progress: Progress | None,
    started_at: dt.datetime | None,
) -> None:
    import_time = started_at or dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    done = 0
    with _parse_pool(len(order)) as pool:
        for chunk in _batches(iter_raw(box, order)):
            jobs = _spool_batch(factory, cfg, recipient, chunk, import_time, summary, pool)
            for job, result in zip(jobs, process_batch(factory, cfg, jobs), strict=True):
                attempts = 1
                # A mail that trips a bug is retried now, not by the daemon later at today's time: after
                # MAX_ATTEMPTS the runner quarantines it, as it would any delivery.
                while result.outcome == "failed" and attempts < MAX_ATTEMPTS:
                    result, attempts = process(factory, cfg, job.spool_id, job.now), attempts + 1
                summary.outcomes[result.outcome] += 1
                if result.outcome == "created" and result.ticket_number is not None:
                    summary.created_numbers.append(result.ticket_number)
                done += 1
                if progress is not None:
                    progress(done, len(order), time.perf_counter() - clock)
    summary.elapsed = summary.index_elapsed + time.perf_counter() - clock


def _batches(mails: Iterator[tuple[Indexed, bytes]]) -> Iterator[list[tuple[Indexed, bytes]]]:
    batch: list[tuple[Indexed, bytes]] = []
    for mail in mails:
        batch.append(mail)
        if len(batch) == IMPORT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _spool_batch(
    factory: sessionmaker[Session],
    cfg: Config,
    recipient: str,
    chunk: list[tuple[Indexed, bytes]],
    import_time: dt.datetime,
    summary: Summary,
    pool: ProcessPoolExecutor | None,
) -> list[Job]:
    """The chunk's mails durable in the spool, their rows committed at once, then parsed (in the pool's
    processes when there is one); each job carries its mail's own time."""
    times: list[dt.datetime] = []
    digests: list[tuple[str, int]] = []
    for entry, raw in chunk:
        now = min(entry.date, import_time) if entry.date is not None else import_time
        if entry.date is None:
            summary.undated += 1
        else:
            summary.first_date = summary.first_date or now
            summary.last_date = now
        times.append(now)
        digests.append((write_raw(cfg.spool_dir, raw), len(raw)))
    with transaction(factory) as session:
        ids = [_received_row(session, d, n, recipient, seen) for seen, (d, n) in _firsts(digests)]
    rows = {row.spool_id: row for row in waiting_rows(factory, ids)}
    if pool is None:
        jobs = {i: prepare(cfg, row) for i, row in rows.items()}
    else:
        paths = [(str(row.path(cfg.spool_dir)), row.mail_from) for row in rows.values()]
        outcomes = pool.map(parse_file, *zip(*paths, strict=True)) if paths else []
        jobs = {
            row.spool_id: Job(row.spool_id, row.sha256, row.mail_from, parsed, row.skip, checked=True)
            for row, parsed in zip(rows.values(), outcomes, strict=True)
        }
    return [replace(jobs.get(i, Job(i)), now=now) for i, now in zip(ids, times, strict=True)]


def _firsts(digests: list[tuple[str, int]]) -> Iterator[tuple[bool, tuple[str, int]]]:
    """Each digest, and whether it came earlier in the batch already."""
    seen: set[str] = set()
    for digest, size in digests:
        yield digest in seen, (digest, size)
        seen.add(digest)


def _received_row(session: Session, digest: str, size: int, recipient: str, again: bool) -> int:
    """The mail's 'received' row. The same bytes twice in one batch get a row each, as two deliveries
    would: the second is then processed (a duplicate), not reported with the first one's outcome."""
    if not again:
        return record_received(session, digest, size, recipient, IMPORT_INGRESS).id
    entry = SpoolEntry(sha256=digest, recipient=recipient, ingress=IMPORT_INGRESS, size=size)
    session.add(entry)
    session.flush()
    return entry.id


@contextmanager
def _parse_pool(mails: int) -> Iterator[ProcessPoolExecutor | None]:
    """Parse processes, one per core, for a backlog big enough to pay for starting them."""
    cores = os.cpu_count() or 1
    if mails < POOL_MIN_MAILS or cores < 2:
        yield None
        return
    with start_parse_pool(cores) as pool:
        yield pool
