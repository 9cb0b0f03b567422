"""SQLite's write lock among the threads of one process (storage/db.py): readers never queue for it, and a
commit a client waits on (the intake's, before its 250) goes before transactions that can wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from maild.storage.db import make_engine, make_sessionmaker, reading, transaction, urgent, urgent_counter

Factory = sessionmaker[Session]


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[Factory]:
    engine = make_engine(f"sqlite:///{tmp_path / 'lock.sqlite3'}", busy_timeout_ms=10000)
    made = make_sessionmaker(engine)
    with transaction(made) as session:
        session.execute(text("CREATE TABLE log (who TEXT)"))
    yield made
    engine.dispose()


def _hold(factory: Factory, holding: threading.Event, release: threading.Event) -> threading.Thread:
    def run() -> None:
        with transaction(factory) as session:
            session.execute(text("INSERT INTO log VALUES ('holder')"))
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert holding.wait(10)
    return thread


def test_a_reading_session_does_not_wait_for_a_running_write(factory: Factory) -> None:
    holding, release = threading.Event(), threading.Event()
    holder = _hold(factory, holding, release)
    try:
        with reading(factory)() as session:
            # The holder's insert is not committed: the reader sees the last commit, at once.
            assert session.execute(text("SELECT count(*) FROM log")).scalar() == 0
        assert holder.is_alive()  # read while the write transaction was still open
    finally:
        release.set()
        holder.join()


def test_an_urgent_commit_goes_before_transactions_that_waited_longer(factory: Factory) -> None:
    holding, release = threading.Event(), threading.Event()
    holder = _hold(factory, holding, release)
    order: list[str] = []

    def write(made: Factory, who: str) -> None:
        with transaction(made) as session:
            session.execute(text("INSERT INTO log VALUES (:who)"), {"who": who})
            order.append(who)

    waiting = [threading.Thread(target=write, args=(factory, f"batch{i}")) for i in range(3)]
    for thread in waiting:
        thread.start()
    time.sleep(0.5)  # the batches queue first
    intake = threading.Thread(target=write, args=(urgent(factory), "intake"))
    intake.start()
    time.sleep(0.5)
    release.set()
    for thread in [holder, *waiting, intake]:
        thread.join(10)
    assert order[0] == "intake"
    assert sorted(order[1:]) == ["batch0", "batch1", "batch2"]


def test_a_stream_of_urgent_commits_from_another_process_does_not_starve_the_others(tmp_path: Path) -> None:
    # Two engines sharing one counter stand for the daemon and its pipeline process.
    shared = urgent_counter()
    url = f"sqlite:///{tmp_path / 'lock.sqlite3'}"
    daemon, pipeline = (make_engine(url, busy_timeout_ms=20000, urgent_shared=shared) for _ in range(2))
    intake, writer = urgent(make_sessionmaker(daemon)), make_sessionmaker(pipeline)
    with transaction(writer) as session:
        session.execute(text("CREATE TABLE log (who TEXT)"))
    stop = threading.Event()

    def stream() -> None:  # two threads: one of them is always counted, waiting or committing
        while not stop.is_set():
            with transaction(intake) as session:
                session.execute(text("INSERT INTO log VALUES ('intake')"))

    streams = [threading.Thread(target=stream) for _ in range(2)]
    for thread in streams:
        thread.start()
    try:
        time.sleep(0.2)
        began = time.monotonic()
        with transaction(writer) as session:
            session.execute(text("INSERT INTO log VALUES ('batch')"))
        # Its turn came while they went on: after ~50 ms of deferring, not at the 20 s lock timeout.
        assert time.monotonic() - began < 5
        assert all(thread.is_alive() for thread in streams)
    finally:
        stop.set()
        for thread in streams:
            thread.join(30)
        daemon.dispose()
        pipeline.dispose()
