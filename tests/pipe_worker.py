"""For tests of `maild pipe`'s fast path: its on-demand worker (maild.ingress.spool_worker) processes the
mail after the pipe exited, so a test waits for that worker to finish and exit. Tests make it exit soon
after the last mail (MAILD_WORKER_IDLE_SECONDS) and wait for it at the end, so none is left running."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.ingress.spool_worker import IDLE_ENV, lock_path

SHORT_IDLE = "0.3"


def worker_running(data_dir: Path) -> bool:
    """Whether a worker holds the lock (probed by taking it for an instant: call only when no pipe runs)."""
    try:
        fd = os.open(lock_path(data_dir), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def wait_for_worker_exit(data_dir: Path, timeout: float = 60.0) -> None:
    """Until the on-demand worker of `data_dir` has exited (it processed everything and was idle)."""
    deadline = time.monotonic() + timeout
    while worker_running(data_dir):
        assert time.monotonic() < deadline, "the on-demand worker did not exit"
        time.sleep(0.05)


@pytest.fixture
def short_idle_worker(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str) -> Iterator[None]:
    """Workers started by the pipes of this test exit 0.3 s after their last mail; the test ends after
    (before its database is dropped)."""
    monkeypatch.setenv(IDLE_ENV, SHORT_IDLE)
    yield
    wait_for_worker_exit(data_dir)
