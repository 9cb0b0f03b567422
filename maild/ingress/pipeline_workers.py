"""The pipeline of `maild serve` in worker threads: one job per message, its rows through the pipeline,
then its queued replies handed to the sender, as `maild pipe` does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.config import Config
from maild.ingress.headers import HEADER_SCAN_BYTES, message_id_of
from maild.ingress.intake import Spooled
from maild.ingress.log_fields import describe, ms_since
from maild.logs import get_logger
from maild.outbound.sender import flush
from maild.pipeline.runner import Result, process
from maild.storage.files import content_path
from maild.storage.models import SpoolEntry

log = get_logger("maild.serve")

Tell = Callable[[Result | None], None]


class PipelineWorkers:
    """The worker pool and the jobs in it (running or queued), with their spool ids: the recovery sweep
    leaves those alone."""

    def __init__(self, cfg: Config, factory: sessionmaker[DbSession]) -> None:
        self.cfg = cfg
        self.factory = factory
        self.pool = ThreadPoolExecutor(cfg.listen.workers, thread_name_prefix="worker")
        self.jobs: dict[asyncio.Future[None], tuple[int, ...]] = {}  # running or queued pipeline jobs
        self.in_flight: set[int] = set()  # their spool ids: the sweep leaves them alone

    def on_spooled(self, spooled: Spooled) -> None:
        self.submit(spooled.spool_ids, spooled.message_id)

    def submit(self, spool_ids: tuple[int, ...], message_id: str | None, tell: Tell | None = None) -> bool:
        """Queue one job per message: its recipients' rows in order, in one worker (fewer lock fights).
        False when every row is queued or running already."""
        # dict.fromkeys: two RCPTs of one address (case, repeated) share one 'received' row.
        ids = tuple(i for i in dict.fromkeys(spool_ids) if i not in self.in_flight)
        if not ids:
            return False
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.pool, self._process, ids, message_id, tell)
        self.jobs[job] = ids
        self.in_flight.update(ids)
        job.add_done_callback(self._job_done)
        return True

    async def drain(self) -> int:
        """Let running jobs finish; jobs not started yet are dropped: their rows stay 'received'. How
        many rows were left so."""
        jobs = dict(self.jobs)
        self.pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.gather(*jobs, return_exceptions=True)
        return sum(len(ids) for job, ids in jobs.items() if job.cancelled())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _job_done(self, job: asyncio.Future[None]) -> None:
        self.in_flight.difference_update(self.jobs.pop(job, ()))
        error = None if job.cancelled() else job.exception()
        if error is not None:  # _process catches everything; this would be a bug in it
            log.error("job_failed", error=repr(error)[:300])

    def _process(self, spool_ids: tuple[int, ...], message_id: str | None, tell: Tell | None = None) -> None:
        """Blocking, in a worker thread: each spool row through the pipeline, then its replies out.
        `tell` gets each row's result (None: deferred) before its replies are sent."""
        for spool_id in spool_ids:
            mid = message_id if message_id is not None else self._stored_message_id(spool_id)
            result = self._process_row(spool_id, mid)
            if tell is not None:
                tell(result)
            if result is not None and result.outbox_ids:
                self._send_replies(spool_id, result)

    def _process_row(self, spool_id: int, message_id: str) -> Result | None:
        """One row through the pipeline, logged; None when it was deferred."""
        started = time.perf_counter()
        try:
            result = process(self.factory, self.cfg, spool_id)
        except Exception as exc:  # database locked or down: the row stays 'received', the sweep retries
            log.warning(
                "processing_deferred",
                spool_id=spool_id,
                message_id=message_id,
                error=describe(exc),
                duration_ms=ms_since(started),
            )
            return None
        log.info(
            "processed",
            spool_id=spool_id,
            message_id=message_id,
            ticket=result.ticket_number,
            outcome=result.outcome,
            reason=result.reason,
            duration_ms=ms_since(started),
        )
        return result

    def _send_replies(self, spool_id: int, result: Result) -> None:
        try:  # the ticket is committed; what cannot be sent now stays queued in the outbox
            sent = flush(self.factory, self.cfg, result.outbox_ids)
        except Exception as exc:
            log.warning(
                "replies_not_sent", spool_id=spool_id, ticket=result.ticket_number, error=describe(exc)
            )
        else:
            log.info(
                "replies_handed_over",
                spool_id=spool_id,
                ticket=result.ticket_number,
                sent=sent.sent,
                deferred=sent.deferred,
                failed=sent.failed,
            )

    def _stored_message_id(self, spool_id: int) -> str:
        """For a recovered row: the Message-ID from the spooled file's header, for the log."""
        try:
            with self.factory() as session:
                entry = session.get(SpoolEntry, spool_id)
                if entry is None:
                    return ""
                with content_path(self.cfg.spool_dir, entry.sha256, ".eml").open("rb") as fh:
                    return message_id_of(fh.read(HEADER_SCAN_BYTES))
        except Exception:
            return ""  # only for the log: processing reports the real problem
