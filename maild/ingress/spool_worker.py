"""The on-demand worker, `maild work --exit-when-idle SECONDS`: processes the spool's 'received' rows with
the daemon's pipeline workers (maild.ingress.pipeline_workers) and exits once nothing came for SECONDS.
It has no listeners and no control socket, so a `maild serve` started meanwhile is not kept from binding
(the pipeline's row lock keeps the two from processing a row twice).

`maild pipe` starts one, detached, after committing a row when no daemon took the mail. At most one runs
per data directory: it holds an flock on `<data_dir>/worker.lock`. The pipe takes that lock itself before
starting the worker and hands it over (inherited: `--lock-fd`), so two pipes never start two workers.
The race of a worker deciding it is idle while a pipe commits a row is closed by the order on both sides:
the pipe commits its row, then tries the lock (held: the worker will see the row); the worker releases
the lock, then looks for 'received' rows once more (any: it takes the lock again, or leaves them to the
worker a pipe started meanwhile).

Importing this module costs only a few standard modules (no asyncio): the pipe uses its lock helpers."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session as DbSession
    from sqlalchemy.orm import sessionmaker

    from maild.config import Config
    from maild.ingress.pipeline_workers import PipelineWorkers

LOCK_NAME = "worker.lock"
IDLE_SECONDS = 30.0  # what `maild pipe` asks for, unless MAILD_WORKER_IDLE_SECONDS says otherwise
IDLE_ENV = "MAILD_WORKER_IDLE_SECONDS"
POLL_SECONDS = 0.1  # how often the worker looks for new 'received' rows


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_NAME


def try_lock(data_dir: Path) -> int | None:
    """The worker lock's file descriptor, held (exclusive); None when another process holds it."""
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT, 0o660)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def idle_seconds() -> float:
    """How long an on-demand worker waits for more mail before it exits."""
    try:
        return max(0.0, float(os.environ.get(IDLE_ENV, IDLE_SECONDS)))
    except ValueError:
        return IDLE_SECONDS


def start_worker(data_dir: Path, config: Path | None) -> bool:
    """Start a detached worker unless one runs (its lock is held). Call only after the row is committed.
    Whether one was started; OSError when it could not be (the row stays 'received' for the next worker
    or `maild serve`)."""
    fd = try_lock(data_dir)
    if fd is None:
        return False  # the running worker sees the row: it looks again after releasing the lock
    try:
        os.set_inheritable(fd, True)
        argv = [sys.executable, "-m", "maild.ingress.cli"]
        argv += ["--config", str(config)] if config is not None else []
        argv += ["work", "--exit-when-idle", str(idle_seconds()), "--lock-fd", str(fd)]
        devnull = [(os.POSIX_SPAWN_OPEN, n, os.devnull, os.O_RDWR, 0) for n in (0, 1, 2)]
        # A new session: the MTA's pipe may kill our process group when we exit.
        os.posix_spawn(sys.executable, argv, os.environ, file_actions=devnull, setsid=True)
    finally:
        os.close(fd)  # the worker holds the lock through its inherited copy
    return True


def run_worker(config: str | None, idle: float, lock_fd: int | None) -> int:
    """`maild work`: process 'received' rows until idle for `idle` seconds; 0 also when another worker
    holds the lock (it does the work)."""
    from maild.config import EX_CONFIG, ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        print(f"maild work: {exc}", file=sys.stderr)
        return EX_CONFIG
    fd = lock_fd if lock_fd is not None else try_lock(cfg.data_dir)
    if fd is None:
        print("maild work: another worker runs on this data directory", file=sys.stderr)
        return 0
    import asyncio

    from maild.logs import configure

    configure()
    return asyncio.run(_work(cfg, fd, idle))


async def _work(cfg: Config, fd: int, idle: float) -> int:
    from maild.ingress.pipeline_workers import PipelineWorkers
    from maild.logs import get_logger
    from maild.storage.db import make_engine, make_sessionmaker

    log = get_logger("maild.work")
    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
    factory = make_sessionmaker(engine)
    workers = PipelineWorkers(cfg, factory)
    log.info("worker_started", pid=os.getpid(), exit_when_idle=idle)
    held: int | None = fd
    try:
        while held is not None:
            await _until_idle(workers, factory, idle)
            release(held)
            held = None
            # After the release: a pipe that committed a row before it tried the lock is seen here.
            if await _received(factory):
                held = try_lock(cfg.data_dir)  # None: a pipe's new worker has it, and the rows
    finally:
        if held is not None:
            release(held)
        workers.close()
        engine.dispose()
    log.info("worker_idle_exit", pid=os.getpid())
    return 0


async def _received(factory: sessionmaker[DbSession]) -> list[int]:
    """The 'received' rows (none when the database cannot say: the next pipe starts a worker again)."""
    import asyncio

    try:
        return await asyncio.get_running_loop().run_in_executor(None, received_spool_ids, factory, 0.0)
    except Exception:
        return []


async def _until_idle(workers: PipelineWorkers, factory: sessionmaker[DbSession], idle: float) -> None:
    """Feed the workers every 'received' row until none came and none ran for `idle` seconds."""
    import asyncio

    idle_since = time.monotonic()
    while True:
        for spool_id in await _received(factory):
            if spool_id not in workers.in_flight:
                workers.submit((spool_id,), None)
        if workers.jobs:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= idle:
            return
        await asyncio.sleep(POLL_SECONDS)


def received_spool_ids(factory: sessionmaker[DbSession], grace_seconds: float) -> list[int]:
    """Blocking: the ids of the rows still 'received' at least `grace_seconds` after they arrived (the
    daemon's recovery sweep and this worker)."""
    import datetime as dt

    from sqlalchemy import select

    from maild.storage.db import reading
    from maild.storage.models import SpoolEntry, utcnow

    cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
    with reading(factory)() as session:
        return list(
            session.scalars(
                select(SpoolEntry.id)
                .where(SpoolEntry.state == "received", SpoolEntry.received_at <= cutoff)
                .order_by(SpoolEntry.id)
            )
        )
