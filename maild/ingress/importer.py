"""Replay a mailbox backlog (mbox or Maildir) through the real pipeline, oldest mail first.

Each mail takes the path every ingress takes: raw bytes durable in the spool, a `received` row with
ingress `import` (notify sends nothing for those: no auto-replies, no agent notices) and the desk's
primary address as recipient (route picks the desk), then `pipeline.runner.process` with `now` set to
the mail's Date, so tickets, messages and numbers get their historic times.

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
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.pipeline.context import IMPORT_INGRESS
from maild.pipeline.runner import MAX_ATTEMPTS, process
from maild.storage.db import transaction
from maild.storage.models import Ticket
from maild.storage.spool import record_received, write_raw

KINDS = ("mbox", "maildir")
MAX_HEADER_BYTES = 256 * 1024  # a header block longer than this is not read for its Date
CHUNK = 500  # ticket numbers per IN (...) query: far below every backend's bound-parameter limit

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
    for done, (entry, raw) in enumerate(iter_raw(box, order), start=1):
        now = min(entry.date, import_time) if entry.date is not None else import_time
        if entry.date is None:
            summary.undated += 1
        else:
            summary.first_date = summary.first_date or now
            summary.last_date = now
        digest = write_raw(cfg.spool_dir, raw)
        with transaction(factory) as session:
            spool_id = record_received(session, digest, len(raw), recipient, IMPORT_INGRESS).id
        result = process(factory, cfg, spool_id, now)
        attempts = 1
        # A mail that trips a bug is retried now, not by the daemon later at today's time: after
        # MAX_ATTEMPTS the runner quarantines it, as it would any delivery.
        while result.outcome == "failed" and attempts < MAX_ATTEMPTS:
            result, attempts = process(factory, cfg, spool_id, now), attempts + 1
        summary.outcomes[result.outcome] += 1
        if result.outcome == "created" and result.ticket_number is not None:
            summary.created_numbers.append(result.ticket_number)
        if progress is not None:
            progress(done, len(order), time.perf_counter() - clock)
    summary.elapsed = summary.index_elapsed + time.perf_counter() - clock
