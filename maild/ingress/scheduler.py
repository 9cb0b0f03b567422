"""The periodic jobs of `maild serve` on APScheduler 3: an AsyncIOScheduler on the daemon's loop with its
own in-memory job store (a job store shared by two schedulers runs jobs twice; what must happen once
across instances is guarded by the database, in each job, not by the scheduler)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler


@dataclass(frozen=True)
class Job:
    name: str
    seconds: float
    run: Callable[[], Awaitable[None]]  # never raises: each job logs its own failures
    at_start: bool = False  # also run once right away


def start_scheduler(jobs: Sequence[Job]) -> AsyncIOScheduler:
    # APScheduler logs every run at INFO ("Running job …", "… executed successfully": most lines of a
    # day's log at default intervals) and its start. The jobs log what they did themselves; its warnings
    # (a missed or skipped run) still show.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = AsyncIOScheduler(jobstores={"default": MemoryJobStore()}, timezone=dt.UTC)
    now = dt.datetime.now(dt.UTC)
    for job in jobs:
        scheduler.add_job(
            job.run,
            "interval",
            seconds=job.seconds,
            id=job.name,
            name=job.name,
            # One run at a time; runs missed while one was slow collapse into one.
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=now if job.at_start else now + dt.timedelta(seconds=job.seconds),
        )
    scheduler.start()
    return scheduler
