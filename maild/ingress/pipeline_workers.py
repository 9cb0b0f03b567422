"""The pipeline of `maild serve`: spooled mails parsed in worker processes, then written in batches.

    submit ─> queue (FIFO) ─> reader thread: which rows still wait (one query)
          ─> parse processes (`[listen] workers`): bytes → ParsedMail, no database
          ─> writer thread: every mail at the head of the queue whose parse is done, in one transaction
             with a savepoint per mail (pipeline.runner.process_batch), one commit
          ─> sender thread: their replies (maild.outbound.sender.flush), while the writer goes on.

Mails are written in the order they were submitted, never in the order their parses finished: a reply is
not written before the mail it answers. A batch is whatever was ready when the writer came back, so it
grows with the load (group commit) and costs nothing when mail trickles in. A locked or unreachable
database defers the whole batch: its rows stay 'received' and the recovery sweep submits them again."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.config import Config
from maild.ingress.intake import Spooled
from maild.ingress.log_fields import describe, ms_since
from maild.ingress.parse_pool import TRIM_AFTER_BYTES, parse_spooled, release_memory, start_parse_pool
from maild.logs import get_logger
from maild.mail.mailparse import ParseOutcome
from maild.outbound.sender import flush
from maild.pipeline.runner import Job, Result, Waiting, process_batch, waiting_rows

log = get_logger("maild.serve")

Tell = Callable[[Result | None], None]
BATCH_MAX = 64  # mails per transaction at most
# What one batch transaction may take, by the writer's running estimate of a row's time: on SQLite the
# intake's commit (every 250) waits for the writer's transaction, and on PostgreSQL a batch holds its
# desks' number-counter rows until it commits. Short slices keep both waits short; the batch still
# saves the per-mail BEGIN, commit and fsync.
WRITE_SLICE_SECONDS = 0.05
BATCH_BYTES = 32 * 1024 * 1024  # and their raw bytes: a batch holds every parsed mail of it in memory
# A deferred message (database locked or down) is tried again after these seconds, then every minute:
# mail keeps flowing soon after the database is back, not only at the next recovery sweep.
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# Parsing takes ~8× a mail's size in memory (the standard library's parser): mails above this are parsed
# one at a time, so ten 25 MB attachments arriving together cost one parse's peak, not ten.
LARGE_MAIL_BYTES = 4 * 1024 * 1024


@dataclass(eq=False)
class _Queued:
    """One submitted message: its recipients' rows, and the task that reads and parses them."""

    ids: tuple[int, ...]
    message_id: str | None
    tell: Tell | None
    retries: int = 0  # how often its batch was deferred already
    prepared: asyncio.Task[list[Job]] = field(init=False)


class PipelineWorkers:
    """The queue, the parse processes and the writer, with the spool ids in them (the recovery sweep
    leaves those alone)."""

    def __init__(self, cfg: Config, factory: sessionmaker[DbSession]) -> None:
        self.cfg = cfg
        self.factory = factory
        self.in_flight: set[int] = set()  # queued, parsing or being written: the sweep leaves them alone
        self._queue: deque[_Queued] = deque()
        self._writing: list[_Queued] = []
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="reader")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="writer")
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="sender")
        self._parsers: ProcessPoolExecutor | None = None  # started with the first mail
        self._sending: set[asyncio.Future[None]] = set()
        self._wake: asyncio.Event | None = None
        self._large: asyncio.Semaphore | None = None
        self._row_seconds = 0.02  # the writer's running estimate of one row's time in a batch
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def jobs(self) -> list[_Queued]:
        """Messages queued, parsing or being written."""
        return [*self._writing, *self._queue]

    def on_spooled(self, spooled: Spooled) -> None:
        self.submit(spooled.spool_ids, spooled.message_id)

    def submit(self, spool_ids: tuple[int, ...], message_id: str | None, tell: Tell | None = None) -> bool:
        """Queue one message's rows (its recipients', in order). False when every row is queued or being
        processed already."""
        # dict.fromkeys: two RCPTs of one address (case, repeated) share one 'received' row.
        return self._enqueue(spool_ids, message_id, tell, 0)

    def _enqueue(
        self, spool_ids: tuple[int, ...], message_id: str | None, tell: Tell | None, retries: int
    ) -> bool:
        ids = tuple(i for i in dict.fromkeys(spool_ids) if i not in self.in_flight)
        if not ids or self._stopping:
            return False
        item = _Queued(ids, message_id, tell, retries)
        item.prepared = asyncio.get_running_loop().create_task(self._prepare(ids))
        item.prepared.add_done_callback(lambda _: self._kick())
        self._queue.append(item)
        self.in_flight.update(ids)
        if self._loop_task is None:
            self._wake = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._write_loop())
        return True

    async def drain(self) -> int:
        """Let the batch being written and the replies being sent finish; messages not written yet are
        dropped: their rows stay 'received'. How many rows were left so."""
        self._stopping = True
        left = [item for item in self._queue]
        self._queue.clear()
        for item in left:
            item.prepared.cancel()
        self._kick()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        # Replies not being sent yet stay queued in the outbox: its job or the next start sends them.
        self._sender.shutdown(wait=False, cancel_futures=True)
        await asyncio.gather(*self._sending, return_exceptions=True)
        return sum(len(item.ids) for item in left)

    def close(self) -> None:
        self._stopping = True
        for pool in (self._reader, self._writer, self._sender):
            pool.shutdown(wait=True, cancel_futures=True)
        if self._parsers is not None:
            self._parsers.shutdown(wait=True, cancel_futures=True)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # --- reading and parsing ------------------------------------------------------------------------

    async def _prepare(self, ids: tuple[int, ...]) -> list[Job]:
        """The rows' jobs, each parsed in a parse process; a row no longer 'received' gets an unparsed job
        (the writer reports what became of it). Database errors propagate: the writer defers them."""
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._reader, waiting_rows, self.factory, ids)
        parsed = await asyncio.gather(*(self._parse(row) for row in rows))
        jobs = {row.spool_id: job for row, job in zip(rows, parsed, strict=True)}
        return [jobs.get(i, Job(i)) for i in ids]

    async def _parse(self, row: Waiting) -> Job:
        if row.skip is not None:
            return Job(row.spool_id, row.sha256, row.mail_from, skip=row.skip, checked=True, size=row.size)
        try:
            if row.size > LARGE_MAIL_BYTES:
                self._large = self._large or asyncio.Semaphore(1)
                async with self._large:
                    outcome = await self._parse_in_pool(row)
            else:
                outcome = await self._parse_in_pool(row)
        except Exception as exc:  # a parse process died (memory, a crash): the writer parses it itself
            log.warning("parse_worker_failed", spool_id=row.spool_id, error=describe(exc))
            self._restart_parsers()
            outcome = None
        return Job(row.spool_id, row.sha256, row.mail_from, outcome, checked=True, size=row.size)

    async def _parse_in_pool(self, row: Waiting) -> ParseOutcome | None:
        path = str(row.path(self.cfg.spool_dir))
        future = self._parse_pool().submit(parse_spooled, path, row.mail_from, row.size)
        return await asyncio.wrap_future(future)

    def _parse_pool(self) -> ProcessPoolExecutor:
        if self._parsers is None:
            self._parsers = start_parse_pool(self.cfg.listen.workers)
        return self._parsers

    def _restart_parsers(self) -> None:
        broken, self._parsers = self._parsers, None
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)

    # --- writing ------------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            batch = self._ready_batch()
            if batch:
                self._writing = batch
                try:
                    await self._write(batch)
                finally:
                    self._writing = []
                continue
            if self._stopping:
                return
            self._wake.clear()
            await self._wake.wait()

    def _ready_batch(self) -> list[_Queued]:
        """The messages at the head of the queue whose parses are done, in order: as many rows as fit in
        WRITE_SLICE_SECONDS by the estimate (at most BATCH_MAX) and at most BATCH_BYTES of mail (at least
        one message, however large)."""
        batch: list[_Queued] = []
        rows = size = 0
        most = max(1, min(BATCH_MAX, int(WRITE_SLICE_SECONDS / self._row_seconds)))
        while self._queue and self._queue[0].prepared.done() and rows < most and size < BATCH_BYTES:
            item = self._queue.popleft()
            batch.append(item)
            rows += len(item.ids)
            if item.prepared.exception() is None:
                size += sum(job.size for job in item.prepared.result())
        return batch

    async def _write(self, batch: list[_Queued]) -> None:
        ready = [item for item in batch if item.prepared.exception() is None]
        for item in batch:
            if item.prepared.exception() is not None:  # the rows could not be read: the sweep retries
                self._deferred(item, item.prepared.exception(), 0.0)
        jobs = [job for item in ready for job in item.prepared.result()]
        if not jobs:
            return
        started = time.perf_counter()
        locked: list[float] = []
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(
                self._writer,
                lambda: process_batch(
                    self.factory, self.cfg, jobs, on_locked=lambda: locked.append(time.perf_counter())
                ),
            )
        except Exception as exc:  # database locked or down: every row stays 'received'
            for item in ready:
                self._deferred(item, exc, ms_since(started))
            return
        if sum(job.size for job in jobs) > TRIM_AFTER_BYTES:
            release_memory()  # the batch's parsed mails are garbage now
        by_id = {job.spool_id: (job, result) for job, result in zip(jobs, results, strict=True)}
        duration = ms_since(started)
        # How long the batch held the rows (SQLite: the write lock), not the wait for them: the slice
        # bounds what others wait for. A moving average: one slow mail does not halve the next batch.
        held = time.perf_counter() - (locked[0] if locked else started)
        self._row_seconds = 0.8 * self._row_seconds + 0.2 * max(held / len(jobs), 0.001)
        for item in ready:
            done = [(i, *by_id[i]) for i in item.ids if i in by_id]
            for spool_id, job, result in done:
                self._processed(item, spool_id, job, result, duration, len(jobs))
            self.in_flight.difference_update(item.ids)
            replies = [(spool_id, result) for spool_id, _, result in done if result.outbox_ids]
            if replies:
                self._send(replies)

    def _processed(
        self, item: _Queued, spool_id: int, job: Job, result: Result, duration: float, batch: int
    ) -> None:
        mail = job.parsed.mail if job.parsed is not None else None
        log.info(
            "processed",
            spool_id=spool_id,
            message_id=item.message_id or (mail.message_id if mail is not None else ""),
            ticket=result.ticket_number,
            outcome=result.outcome,
            reason=result.reason,
            duration_ms=duration,
            batch=batch,
        )
        if item.tell is not None:
            item.tell(result)

    def _deferred(self, item: _Queued, error: BaseException | None, duration: float) -> None:
        for spool_id in item.ids:
            log.warning(
                "processing_deferred",
                spool_id=spool_id,
                message_id=item.message_id or "",
                error=describe(error) if isinstance(error, Exception) else repr(error),
                duration_ms=duration,
            )
            if item.tell is not None:
                item.tell(None)
        self.in_flight.difference_update(item.ids)
        if not self._stopping:
            delay = RETRY_SECONDS[min(item.retries, len(RETRY_SECONDS) - 1)]
            asyncio.get_running_loop().call_later(delay, self._retry, item)

    def _retry(self, item: _Queued) -> None:
        # Told once already (its pipe was answered 75): a retry tells nobody.
        self._enqueue(item.ids, item.message_id, None, item.retries + 1)

    # --- replies ------------------------------------------------------------------------------------

    def _send(self, replies: Sequence[tuple[int, Result]]) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._sender, self._send_replies, replies)
        self._sending.add(future)
        future.add_done_callback(self._sending.discard)

    def _send_replies(self, replies: Sequence[tuple[int, Result]]) -> None:
        """Blocking, in the sender thread: each ticket's replies handed to the outgoing transport."""
        for spool_id, result in replies:
            try:  # the ticket is committed; what cannot be sent now stays queued in the outbox
                sent = flush(self.factory, self.cfg, result.outbox_ids)
            except Exception as exc:
                log.warning(
                    "replies_not_sent", spool_id=spool_id, ticket=result.ticket_number, error=describe(exc)
                )
                continue
            log.info(
                "replies_handed_over",
                spool_id=spool_id,
                ticket=result.ticket_number,
                sent=sent.sent,
                deferred=sent.deferred,
                failed=sent.failed,
            )
