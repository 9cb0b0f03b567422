"""Engine and sessions for SQLite (WAL, the embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

# Execution options of the engines `reading()` and `urgent()` make.
READ_ONLY = "maild_read_only"  # their transactions only read
URGENT = "maild_urgent"  # someone waits on the line for their commit


# How long a transaction that can wait lets urgent ones go first, at most, before it takes its turn.
DEFER_SECONDS = 0.05


class _WriteLock:
    """The threads of one process queue here for SQLite's write lock. A transaction someone waits on the
    line for (the intake's commit before its 250) goes before those that can wait (the pipeline's batch,
    the sender's bookkeeping): it waits for the transaction running, never for a queue of them.

    `shared` (a multiprocessing Value, see `urgent_counter`) counts the urgent transactions waiting or
    running in every process that shares it: `maild serve` and its pipeline process. The other process's
    transactions that can wait do not start while it is above 0, for up to DEFER_SECONDS. Without it the
    pipeline process, whose threads hand the lock to each other at once, kept the daemon's intake polling
    SQLite's busy handler for seconds."""

    def __init__(self, shared: Any = None) -> None:
        self._free = threading.Condition()
        self._held = False
        self._urgent_waiting = 0
        self._released_at = 0.0
        self._shared = shared

    def acquire(self, urgent: bool, timeout: float) -> bool:
        with self._free:
            if urgent:
                self._count_shared(1)
                self._urgent_waiting += 1
                try:
                    got = self._free.wait_for(lambda: not self._held, timeout)
                finally:
                    self._urgent_waiting -= 1
                if not got:
                    self._count_shared(-1)
            else:
                got = self._wait_behind_urgent(time.monotonic() + timeout)
            self._held = self._held or got
            return got

    def _wait_behind_urgent(self, deadline: float) -> bool:
        # Urgent transactions go first for at most DEFER_SECONDS after the lock came free (or this wait
        # began): under a steady stream of them (200 mail/s of intake) the counter is rarely 0, and
        # deferring for ever starved the pipeline.
        started = time.monotonic()
        while True:
            now = time.monotonic()
            free_since = max(started, self._released_at)
            if not self._held and not (self._urgent_anywhere() and now < free_since + DEFER_SECONDS):
                return True
            if now >= deadline:
                return False
            # Another process's urgent transaction sends no notify here: look again every millisecond.
            self._free.wait(min(deadline - now, 0.001) if self._urgent_anywhere() else deadline - now)

    def _urgent_anywhere(self) -> bool:
        return bool(self._urgent_waiting) or self._urgent_elsewhere()

    def _urgent_elsewhere(self) -> bool:
        return self._shared is not None and self._shared.value > 0

    def _count_shared(self, step: int) -> None:
        if self._shared is not None:
            with self._shared.get_lock():
                self._shared.value += step

    def release(self, urgent: bool) -> None:
        with self._free:
            self._held = False
            self._released_at = time.monotonic()
            if urgent:
                self._count_shared(-1)
            self._free.notify_all()


def urgent_counter() -> Any:
    """A counter of urgent transactions to share between a process and the processes it spawns
    (make_engine's `urgent_shared`)."""
    import multiprocessing

    return multiprocessing.get_context("spawn").Value("i", 0)


class DatabaseUnavailable(Exception):
    """The database is locked, down or unreachable: the caller should try again later."""


def make_engine(url: str, busy_timeout_ms: int = 15000, urgent_shared: Any = None) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below); autocommit at the driver level lets us.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed 'received' spool row survives power loss, like the fsynced raw file.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.close()

        # SQLite's own lock makes a waiting connection sleep and poll (1, 2, 5 … up to 100 ms at a time),
        # so under load a writer that just committed takes the lock again before a sleeper wakes: spool
        # writes waited seconds behind pipeline transactions (bench/smtp_throughput.py). Threads of one
        # process therefore queue on a lock of ours first, which wakes the next one the moment it is free;
        # SQLite's lock still guards against other processes (maild pipe, maildctl).
        write_lock = _WriteLock(urgent_shared)
        wait_seconds = busy_timeout_ms / 1000

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            if conn.get_execution_options().get(READ_ONLY):
                # WAL lets readers run beside the one writer: a reader must not queue behind a batch.
                conn.exec_driver_sql("BEGIN")
                return
            info = conn.info  # the pooled connection's own dict: the checkin hook sees the same one
            if not info.get("write_lock"):
                # Bounded: a thread that somehow holds two connections falls back to SQLite's busy wait
                # (and its timeout error) instead of waiting on itself for ever.
                urgent = bool(conn.get_execution_options().get(URGENT))
                if write_lock.acquire(urgent, wait_seconds):
                    info["write_lock"] = "urgent" if urgent else "held"
            # IMMEDIATE takes the write lock up front, so two writers never deadlock on a
            # read-to-write upgrade (which busy_timeout cannot resolve): they queue instead.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine.pool, "checkin")
        def _release_write_lock(_dbapi_conn: Any, record: Any) -> None:
            # Held until the connection goes back to the pool: after the COMMIT or ROLLBACK, never before.
            held = record.info.pop("write_lock", None) if record is not None else None
            if held:
                write_lock.release(held == "urgent")

        return engine
    # A database host that drops packets would otherwise hang a connect for minutes (the kernel's TCP
    # timeout) while an MTA waits for its answer; 10 s then 451/exit 75, unless the URL sets its own.
    connect_args = {} if "connect_timeout=" in url else {"connect_timeout": 10}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@lru_cache(maxsize=32)
def _with_option(factory: sessionmaker[Session], option: str) -> sessionmaker[Session]:
    bind = factory.kw["bind"]
    return sessionmaker(bind.execution_options(**{option: True}), expire_on_commit=False)


def urgent(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions of `factory`'s database for transactions a client waits on (the intake's commit before
    its 250): on SQLite they take the write lock before any waiting pipeline or sender transaction."""
    return _with_option(factory, URGENT)


def reading(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions of `factory`'s database for transactions that only read. On SQLite they begin DEFERRED and
    take neither SQLite's write lock nor ours, so the reader that looks up a batch's rows never waits for
    the batch before it (a write in such a session may fail with "database is locked": transient)."""
    return _with_option(factory, READ_ONLY)


def is_transient(error: BaseException) -> bool:
    """Database locked, connection refused or dropped, serialization failure: worth a retry."""
    if isinstance(error, DatabaseUnavailable):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError):
        return True
    text = str(getattr(error, "orig", error)).lower()
    return "could not serialize" in text or "deadlock detected" in text


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session
