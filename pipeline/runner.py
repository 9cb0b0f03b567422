"""Run one spooled message through the stages in one database transaction.

The mail is read and parsed before that transaction begins: parsing is the CPU-heavy step, and on SQLite
the transaction holds the one write lock every other delivery waits for.

A database that is locked or down propagates (the caller answers 451 / exit 75 and the sender retries).
Any other error is counted on the spool row; after MAX_ATTEMPTS the message is quarantined with the
error as its reason, so a mail that trips a bug is kept and visible instead of retried forever.

Work per mail is bounded by `[hygiene] max_processing_seconds`: the stages check the clock between them,
and a mail over the budget (parsing included) is rolled back and quarantined at once with the reason,
never retried: another attempt would only hold a worker and the write lock as long again."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.addresses import normalize
from maild.mail.mailparse import NotAMessage, ParseOutcome, parse_file
from maild.pipeline import STAGES, apply, automation, notify
from maild.pipeline.context import Context, Stop
from maild.storage.db import is_transient, reading, transaction
from maild.storage.events import discard_pending
from maild.storage.files import content_path
from maild.storage.models import SpoolEntry, Ticket
from maild.storage.spool import read_raw

if TYPE_CHECKING:
    from maild.pipeline.explain import Explanation

MAX_ATTEMPTS = 3

# Called after each stage that returned (with its Stop, if it stopped there): maildctl explain describes
# the context at that point, while the session is still live.
AfterStage = Callable[[str, Context, Stop | None], None]


@dataclass(frozen=True)
class Result:
    outcome: str
    reason: str
    ticket_number: str | None
    outbox_ids: tuple[int, ...] = ()


class OverBudget(Exception):
    """The mail's processing took longer than `[hygiene] max_processing_seconds`."""

    PREFIX = "processing budget exceeded:"

    @classmethod
    def measured(cls, step: str, elapsed: float, budget: float) -> OverBudget:
        return cls(
            f"{cls.PREFIX} {elapsed:.1f} s by the end of {step} "
            f"(limit [hygiene] max_processing_seconds = {budget:g} s)"
        )

    AGAIN = "not processed again"

    @classmethod
    def again(cls, spool_id: int, reason: str) -> OverBudget:
        return cls(f"{reason} (the same mail as spool row {spool_id}, {cls.AGAIN})"[:2000])


@dataclass(frozen=True)
class _Deadline:
    started: float
    budget: float

    def check(self, step: str) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed > self.budget:
            raise OverBudget.measured(step, elapsed, self.budget)


def _run_stages(
    ctx: Context, after_stage: AfterStage | None = None, deadline: _Deadline | None = None
) -> None:
    for name, stage in STAGES:
        started = time.perf_counter()
        verdict = stage(ctx)
        if verdict is not None:
            record_stop(ctx, verdict)
        if deadline is not None:
            deadline.check(f"stage {name}")
        entry = {"stage": name, "ms": round((time.perf_counter() - started) * 1000, 3)}
        if verdict is not None:
            entry["stop"] = verdict.outcome
            ctx.trace.append(entry)
            if after_stage is not None:
                after_stage(name, ctx, Stop(ctx.outcome, ctx.reason))
            return
        ctx.trace.append(entry)
        if after_stage is not None:
            after_stage(name, ctx, None)


def record_stop(ctx: Context, verdict: Stop) -> None:
    """The verdict of a stage that stopped the mail, and the effects that stage recorded on the context:
    the writing step stores them (apply.record_stop), then notify sends what was decided
    (notify.answer_stop). Counted in the stopping stage's time, trace entry and budget check."""
    ctx.outcome, ctx.reason = verdict.outcome, verdict.reason
    apply.record_stop(ctx)
    automation.run(ctx)
    notify.answer_stop(ctx)


@dataclass(frozen=True)
class Job:
    """One spool row for `process_batch`: its mail parsed before the write transaction (by a parse worker
    process, or `prepare` here), or not (`parsed` None: the parse stage parses inside, as explain does).
    `skip`: the same bytes went over the budget before, so it is quarantined unparsed; `checked`: that
    was looked up already (`waiting_rows`), so the writer need not ask again."""

    spool_id: int
    sha256: str = ""
    mail_from: str = ""
    parsed: ParseOutcome | None = None
    skip: OverBudget | None = None
    checked: bool = False
    now: dt.datetime | None = None  # an imported mail's own time (its Date), else the batch's
    size: int = 0  # the raw mail's bytes (what a batch holds in memory is bounded by them)


@dataclass(frozen=True)
class Waiting:
    """A 'received' row as the writer needs it before parsing: where its bytes are and who sent them."""

    spool_id: int
    sha256: str
    mail_from: str
    skip: OverBudget | None
    size: int = 0

    def path(self, spool_dir: Path) -> Path:
        return content_path(spool_dir, self.sha256, ".eml")


def waiting_rows(factory: sessionmaker[Session], spool_ids: Sequence[int]) -> list[Waiting]:
    """The rows of `spool_ids` still 'received', in the order given, read with no write lock held."""
    with reading(factory)() as session:
        entries = {
            entry.id: entry
            for entry in session.scalars(select(SpoolEntry).where(SpoolEntry.id.in_(spool_ids)))
            if entry.state == "received"
        }
        return [
            Waiting(e.id, e.sha256, e.mail_from, _earlier_over_budget(session, e), e.size)
            for e in (entries.get(i) for i in spool_ids)
            if e is not None
        ]


def prepare(cfg: Config, row: Waiting) -> Job:
    """Parse `row`'s mail here, as a parse process does in `maild serve` (the same `parse_file`)."""
    if row.skip is not None:
        return Job(row.spool_id, row.sha256, row.mail_from, skip=row.skip, checked=True, size=row.size)
    # None (a parser bug, a missing file): the parse stage meets it inside, where it is counted.
    parsed = parse_file(str(row.path(cfg.spool_dir)), row.mail_from)
    return Job(row.spool_id, row.sha256, row.mail_from, parsed, checked=True, size=row.size)


def _earlier_over_budget(session: Session, entry: SpoolEntry) -> OverBudget | None:
    """The same bytes to the same address were quarantined over the budget before: a sender who sends the
    heavy mail again must not cost a worker the budget again. A row an admin released is processed (they
    may have raised the budget), and only a measured verdict counts, never an earlier "again" one."""
    if entry.released:
        return None
    earlier = session.scalars(
        select(SpoolEntry)
        .where(
            SpoolEntry.sha256 == entry.sha256,
            SpoolEntry.recipient == entry.recipient,
            SpoolEntry.outcome == "quarantined",
            SpoolEntry.reason.startswith(OverBudget.PREFIX),
            SpoolEntry.reason.not_like(f"%{OverBudget.AGAIN})"),
        )
        .order_by(SpoolEntry.id)
    ).first()
    if earlier is None:
        return None
    return OverBudget.again(earlier.id, earlier.reason)


def process_batch(
    factory: sessionmaker[Session],
    cfg: Config,
    jobs: Sequence[Job],
    now: dt.datetime | None = None,
    on_locked: Callable[[], None] | None = None,
) -> list[Result]:
    """`jobs` through the stages in one transaction, one commit; each mail in a savepoint of its own, so
    that a mail that fails or goes over its budget is rolled back alone and counted on its row, while the
    others commit. A locked or unreachable database propagates: every row stays 'received'.
    `on_locked` is called once the rows are locked (on SQLite: the write lock is held)."""
    now = now or dt.datetime.now(dt.UTC)
    with transaction(factory) as session:
        # Locked: two deliveries of the same bytes at once share one 'received' row (record_received), and
        # without the lock both would process it on PostgreSQL, the later one overwriting the outcome.
        # (SQLite's BEGIN IMMEDIATE already serialises the transactions; FOR UPDATE is a no-op there.)
        ids = [job.spool_id for job in jobs]
        entries = {
            e.id: e
            for e in session.scalars(select(SpoolEntry).where(SpoolEntry.id.in_(ids)).with_for_update())
        }
        if on_locked is not None:
            on_locked()
        return [_process_one(session, cfg, entries.get(job.spool_id), job, job.now or now) for job in jobs]


def _process_one(
    session: Session, cfg: Config, entry: SpoolEntry | None, job: Job, now: dt.datetime
) -> Result:
    if entry is None:  # deleted meanwhile (maildctl spool purge): nothing to process
        return Result("failed", f"spool row {job.spool_id} is gone", None)
    if entry.state != "received":  # processed meanwhile (another worker, an earlier run)
        number = None
        if entry.ticket_id is not None:
            ticket = session.get(Ticket, entry.ticket_id)
            number = ticket.number if ticket else None
        return Result(entry.outcome or "", entry.reason, number)
    skip = job.skip if job.checked else _earlier_over_budget(session, entry)
    if skip is not None:
        return _quarantine(entry, str(skip), now)
    for attempt in (1, 2):
        try:
            with session.begin_nested():
                return _run_one(session, cfg, entry, job, now)
        except IntegrityError as exc:
            # A concurrent delivery inserted the same contact or message first: run again, and the
            # stages now see that row (dedupe, identify) instead of inserting it.
            if attempt == 2:
                return _count_failure(entry, exc, now)
        except OverBudget as exc:
            return _quarantine(entry, str(exc), now)
        except Exception as exc:
            if is_transient(exc):
                raise
            return _count_failure(entry, exc, now)
    raise AssertionError("unreachable")


def _run_one(session: Session, cfg: Config, entry: SpoolEntry, job: Job, now: dt.datetime) -> Result:
    parsed = job.parsed if (job.sha256, job.mail_from) == (entry.sha256, entry.mail_from) else None
    discard_pending(session)  # an earlier mail's, rolled back with its savepoint
    ctx = Context(session=session, cfg=cfg, spool=entry, raw=read_raw(cfg.spool_dir, entry), now=now)
    if parsed is not None:
        ctx.preparsed = parsed.mail if parsed.mail is not None else NotAMessage(parsed.error or "")
        _Deadline(time.perf_counter() - parsed.seconds, cfg.hygiene.max_processing_seconds).check("parsing")
    # The budget is work: parsing plus the stages, not the wait for the write lock.
    seconds = parsed.seconds if parsed is not None else 0.0
    _run_stages(ctx, deadline=_Deadline(time.perf_counter() - seconds, cfg.hygiene.max_processing_seconds))
    entry.state = "done"
    entry.outcome = ctx.outcome
    entry.reason = ctx.reason
    entry.trace = ctx.trace
    entry.attempts += 1
    entry.processed_at = now.replace(tzinfo=None)
    entry.ticket_id = ctx.ticket.id if ctx.ticket is not None else None
    session.flush()
    return Result(
        ctx.outcome,
        ctx.reason,
        ctx.ticket.number if ctx.ticket is not None else None,
        tuple(row.id for row in ctx.queued),
    )


def process(
    factory: sessionmaker[Session], cfg: Config, spool_id: int, now: dt.datetime | None = None
) -> Result:
    """One row: parsed here before the transaction, then through the stages (maild pipe, maildctl,
    imports; `maild serve` batches with `process_batch`)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        rows = waiting_rows(factory, [spool_id])
        job = prepare(cfg, rows[0]) if rows else Job(spool_id)
        return process_batch(factory, cfg, [job], now)[0]
    except Exception as exc:
        if is_transient(exc):
            raise
        return _record_failure(factory, spool_id, exc, now)


def _quarantine(entry: SpoolEntry, reason: str, now: dt.datetime) -> Result:
    entry.attempts += 1
    _mark_quarantined(entry, reason, now)
    return Result("quarantined", reason, None)


def _mark_quarantined(entry: SpoolEntry, reason: str, now: dt.datetime) -> None:
    entry.state = "done"
    entry.outcome = "quarantined"
    entry.reason = reason
    entry.processed_at = now.replace(tzinfo=None)


def _count_failure(entry: SpoolEntry, error: Exception, now: dt.datetime) -> Result:
    """A stage raised: counted on the row, which stays 'received' for a retry until MAX_ATTEMPTS."""
    reason = f"processing failed: {type(error).__name__}: {error}"[:2000]
    entry.attempts += 1
    entry.reason = reason
    if entry.attempts < MAX_ATTEMPTS:
        return Result("failed", reason, None)
    _mark_quarantined(entry, reason, now)
    return Result("quarantined", reason, None)


def _record_failure(
    factory: sessionmaker[Session], spool_id: int, error: Exception, now: dt.datetime
) -> Result:
    with transaction(factory) as session:
        entry = session.get(SpoolEntry, spool_id)
        assert entry is not None
        return _count_failure(entry, error, now)


def explain(
    factory: sessionmaker[Session], cfg: Config, raw: bytes, recipient: str, now: dt.datetime | None = None
) -> Explanation:
    """Run the stages on `raw` as a dry run and say what each decided; the transaction is always rolled
    back and no file is written (Context.dry_run), so the database and the stores stay as they were.

    A stage that raises is reported as outcome "error" (the real pipeline would retry, then quarantine);
    a locked or unreachable database propagates, as in `process`."""
    from maild.pipeline import explain as explaining  # only maildctl explain pays for it

    now = now or dt.datetime.now(dt.UTC)
    stages: list[dict[str, str]] = []

    def describe(name: str, ctx: Context, stop: Stop | None) -> None:
        stages.append(explaining.describe(name, ctx, stop, dict(STAGES).get(name)))

    with factory() as session:
        session.begin()
        try:
            explaining.track_inserts(session)
            # A row of its own, never committed: apply links the message to it, as to a real delivery.
            entry = SpoolEntry(
                sha256=hashlib.sha256(raw).hexdigest(),
                recipient=normalize(recipient or ""),
                ingress="explain",
                size=len(raw),
            )
            session.add(entry)
            session.flush()
            ctx = Context(session=session, cfg=cfg, spool=entry, raw=raw, now=now, dry_run=True)
            try:
                _run_stages(ctx, describe)
            except Exception as exc:
                if is_transient(exc):
                    raise
                # The stage after the last one that returned is the one that raised.
                failed = STAGES[len(stages)][0] if len(stages) < len(STAGES) else "?"
                return explaining.failed(ctx, stages, failed, exc)
            # Plain data only: after the rollback below the ORM objects are gone or expired.
            return explaining.summarize(ctx, stages)
        finally:
            session.rollback()
