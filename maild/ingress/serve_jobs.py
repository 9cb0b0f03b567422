"""The scheduled jobs of `maild serve` ([scheduler] in the config): which run how often (`job_intervals`,
also what `maildctl health` expects), and what each run does and logs (`ScheduledJobs`). Every run is
recorded, in memory for the status request and in `job_runs` for `maildctl health`."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.config import Config
from maild.ingress.log_fields import describe, iso_utc, ms_since
from maild.logs import get_logger
from maild.outbound.sender import FlushResult, flush, release_dead_claims
from maild.storage.db import transaction
from maild.storage.models import JobRun, utcnow
from maild.tickets import web_pending
from maild.tickets.autoclose import auto_close
from maild.tickets.escalations import escalate
from maild.tickets.flood_digest import INTERVAL_SECONDS as FLOOD_DIGEST_SECONDS
from maild.tickets.flood_digest import send_flood_digests
from maild.tickets.quarantine_digest import INTERVAL_SECONDS as QUARANTINE_DIGEST_SECONDS
from maild.tickets.quarantine_digest import send_quarantine_digests
from maild.tickets.retention import purge_raw_mail

WEB_PENDING_SECONDS = 3600.0
JOB_THREADS = 2  # the scheduler's blocking work: sending the outbox, auto-close, escalations
LOGGED_AT_MOST = 100  # items of a job's result named in its log line (the count says how many in all)

log = get_logger("maild.serve")

T = TypeVar("T")
Run = Callable[[], Awaitable[None]]


def job_intervals(cfg: Config) -> dict[str, float]:
    """The scheduled jobs `maild serve` runs with this config, and their intervals in seconds."""
    schedule = cfg.schedule
    return {
        "outbox": schedule.outbox_seconds,
        "auto_close": schedule.auto_close_seconds,
        "escalations": schedule.escalation_seconds,
        "flood_digest": FLOOD_DIGEST_SECONDS,
        "quarantine_digest": QUARANTINE_DIGEST_SECONDS,
        "spool_recovery": schedule.recovery_seconds,
        **({"spool_retention": schedule.retention_seconds} if cfg.spool_retention_days > 0 else {}),
        # /new's requests waiting for their address to be confirmed: gone when expired, posts or not
        **({"web_pending": WEB_PENDING_SECONDS} if cfg.web.listen else {}),
    }


def _sweep_web_pending(_factory: sessionmaker[DbSession], cfg: Config) -> int:
    return web_pending.sweep(cfg.data_dir, now=dt.datetime.now(dt.UTC))


class ScheduledJobs:
    """The jobs' runs, in a pool of their own, each one recorded (`stats`: per job, its runs and the
    last one's times). The spool recovery is the daemon's (it feeds the workers) but recorded here too."""

    def __init__(self, cfg: Config, factory: sessionmaker[DbSession], instance: str) -> None:
        self.cfg = cfg
        self.factory = factory
        self.instance = instance
        self.pool = ThreadPoolExecutor(JOB_THREADS, thread_name_prefix="job")
        self.stats: dict[str, dict[str, Any]] = {}  # per scheduled job: runs, the last one's times

    def runs(self) -> dict[str, tuple[Run, bool]]:
        """Per job name (but spool_recovery): what a run does, and whether the first run is at start."""
        return {
            "outbox": (self.send_outbox, True),
            "auto_close": (self.auto_close, True),
            "escalations": (self.escalate, True),
            "flood_digest": (self.flood_digest, True),
            "quarantine_digest": (self.quarantine_digest, True),
            "spool_retention": (self.purge_raw_mail, True),
            "web_pending": (self.sweep_web_pending, True),
        }

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def run(self, name: str, job: Callable[..., T], *args: Any) -> tuple[T | None, float]:
        """`job(self.factory, self.cfg, *args)` in the job pool, its run recorded: its result (None when
        it failed, which is logged) and when it started."""
        started = time.perf_counter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self.pool, self.recorded, name, job, self.factory, self.cfg, *args
            )
        except asyncio.CancelledError:
            # A stop while the job ran (its thread finishes on its own; the pool waits for it on close):
            # not a failure, and APScheduler would log a cancelled job as an error with a traceback.
            log.info("job_cancelled", job=name)
            return None, started
        except Exception as exc:
            log.error("job_failed", job=name, error=describe(exc))
            return None, started
        return result, started

    def recorded(self, name: str, job: Callable[..., T], *args: Any) -> T:
        """Blocking, in a pool thread: `job(*args)`, its run recorded (`_record_run`)."""
        started_at = utcnow()
        try:
            result = job(*args)
        except Exception as exc:
            self._record_run(name, started_at, describe(exc))
            raise
        self._record_run(name, started_at, None)
        return result

    def _record_run(self, name: str, started_at: dt.datetime, error: str | None) -> None:
        """Blocking: one run of a scheduled job, in memory (the status request) and in `job_runs` (one
        row per job, whichever instance ran it last: `maildctl health`). A failure to record is logged,
        never raised: the job's own work is done (or failed) either way."""
        finished_at = utcnow()
        stats = self.stats.setdefault(name, {"runs": 0})
        stats["runs"] += 1
        stats.update(
            last_started_at=iso_utc(started_at),
            last_finished_at=iso_utc(finished_at),
            last_ok=error is None,
            last_error=error or "",
        )
        if error is None:
            stats["last_ok_at"] = iso_utc(finished_at)
        try:
            with transaction(self.factory) as session:
                row = session.get(JobRun, name)
                if row is None:
                    row = JobRun(name=name)
                    session.add(row)
                row.instance = self.instance[:200]
                row.started_at, row.finished_at = started_at, finished_at
                row.ok, row.error = error is None, (error or "")[:2000]
                if error is None:
                    row.last_ok_at = finished_at
        except Exception as exc:
            log.warning("job_run_not_recorded", job=name, error=describe(exc))

    async def release_dead_claims(self) -> None:
        """Outbox rows a previous instance on this host claimed and was killed while sending: due now,
        not after the lease (flush would take them too; this says so in the log)."""
        loop = asyncio.get_running_loop()
        try:
            released = await loop.run_in_executor(self.pool, release_dead_claims, self.factory)
        except Exception as exc:
            log.warning("outbox_claims_not_released", error=describe(exc))
            return
        if released:
            log.info("outbox_claims_released", rows=released)

    async def send_outbox(self) -> None:
        result, started = await self.run("outbox", flush)
        if result is not None and result != FlushResult(0, 0, 0):
            log.info(
                "outbox_sent",
                sent=result.sent,
                deferred=result.deferred,
                failed=result.failed,
                duration_ms=ms_since(started),
            )

    async def auto_close(self) -> None:
        result, started = await self.run("auto_close", auto_close)
        if result is not None:
            await self._done(started, "auto_closed", "tickets", result.closed, result.outbox_ids)

    async def escalate(self) -> None:
        result, started = await self.run("escalations", escalate)
        if result is not None:
            firings = [{"desk": d, "rule": r, "ticket": t} for d, r, t in result.fired]
            await self._done(started, "escalations_fired", "firings", firings, result.outbox_ids)

    async def flood_digest(self) -> None:
        result, started = await self.run("flood_digest", send_flood_digests)
        if result is not None:
            digests = [{"desk_id": d, "sender": s, "mails": n} for d, s, n in result.digests]
            await self._done(started, "flood_digests_queued", "digests", digests, result.outbox_ids)

    async def quarantine_digest(self) -> None:
        result, started = await self.run("quarantine_digest", send_quarantine_digests)
        if result is not None:
            digests = [{"desk_id": d, "mails": n, "digests": q} for d, n, q in result.digests]
            await self._done(started, "quarantine_digests_queued", "digests", digests, result.outbox_ids)

    async def _done(
        self, started: float, event: str, field: str, items: Sequence[Any], outbox_ids: Sequence[int]
    ) -> None:
        """After a job that may queue mail: what it did logged as `event` (the first LOGGED_AT_MOST
        `items` under `field`, and their count) when it did anything, then the outbox sent when it queued
        mail."""
        if items:
            log.info(
                event,
                **{field: list(items[:LOGGED_AT_MOST])},
                count=len(items),
                duration_ms=ms_since(started),
            )
        if outbox_ids:
            await self.send_outbox()

    async def sweep_web_pending(self) -> None:
        await self.run("web_pending", _sweep_web_pending)

    async def purge_raw_mail(self) -> None:
        older_than = dt.timedelta(days=self.cfg.spool_retention_days)
        purged, started = await self.run("spool_retention", purge_raw_mail, older_than)
        if purged is not None and purged.rows:
            log.info(
                "raw_mail_purged",
                rows=purged.rows,
                files=purged.files,
                bytes=purged.bytes,
                kept=purged.kept,
                duration_ms=ms_since(started),
            )
