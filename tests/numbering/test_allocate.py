"""Number allocation against the real database (SQLite or PostgreSQL, see tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.numbering.allocate import allocate_number
from maild.storage.models import Desk, NumberCounter

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 7, 12, tzinfo=UTC)

MakeDesk = Callable[..., Desk]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def make_desk(session_factory: sessionmaker[Session]) -> MakeDesk:
    def make(name: str, pattern: str, timezone: str = "UTC") -> Desk:
        with session_factory() as s, s.begin():
            desk = Desk(name=name, pattern=pattern, timezone=timezone)
            s.add(desk)
        return desk  # expire_on_commit=False: usable after the session closes

    return make


def allocate(factory: sessionmaker[Session], desk: Desk, now: datetime = NOW) -> str:
    with factory() as s, s.begin():
        return allocate_number(s, desk, now)


def test_first_and_consecutive_numbers(session_factory: sessionmaker[Session], make_desk: MakeDesk) -> None:
    desk = make_desk("it", "TK-{{nr}}")
    assert [allocate(session_factory, desk) for _ in range(11)] == [f"TK-{n}" for n in range(1, 12)]


def test_default_now_is_the_current_time(session_factory: sessionmaker[Session], make_desk: MakeDesk) -> None:
    desk = make_desk("it", "TK-{{yyyy}}-{{nr-y}}")
    with session_factory() as s, s.begin():
        number = allocate_number(s, desk)
    assert number == f"TK-{datetime.now(UTC).year}-1"


@pytest.mark.parametrize(
    ("pattern", "steps"),
    [
        ("N-{{nr}}", [(utc(2026, 1, 1), "N-1"), (utc(2027, 6, 1), "N-2"), (utc(2030, 1, 1), "N-3")]),
        (
            "Y{{yy}}-{{nr-y}}",
            [(utc(2026, 6, 1), "Y26-1"), (utc(2026, 12, 31, 23), "Y26-2"), (utc(2027, 1, 1), "Y27-1")],
        ),
        (
            "M{{yy}}{{mm}}-{{nr-m}}",
            [
                (utc(2026, 3, 1), "M2603-1"),
                (utc(2026, 3, 31, 23), "M2603-2"),
                (utc(2026, 4, 1), "M2604-1"),
                (utc(2026, 3, 15), "M2603-3"),  # each period keeps its own count
            ],
        ),
        (
            "W{{yy}}{{ww}}-{{nr-w}}",
            [(utc(2026, 12, 28), "W2653-1"), (utc(2027, 1, 3, 23), "W2653-2"), (utc(2027, 1, 4), "W2701-1")],
        ),
        (
            # With {{ww}} shown, {{nr-y}} follows the ISO year: 2027-01-01 still counts in 2026.
            "F{{yy}}{{ww}}-{{nr-y}}",
            [(utc(2026, 12, 31), "F2653-1"), (utc(2027, 1, 1), "F2653-2"), (utc(2027, 1, 4), "F2701-1")],
        ),
        (
            "D{{yyyy}}{{mm}}{{dd}}-{{nr-d}}",
            [
                (utc(2026, 3, 7), "D20260307-1"),
                (utc(2026, 3, 7, 23, 59), "D20260307-2"),
                (utc(2026, 3, 8), "D20260308-1"),
            ],
        ),
    ],
)
def test_counters_reset_per_period(
    session_factory: sessionmaker[Session],
    make_desk: MakeDesk,
    pattern: str,
    steps: list[tuple[datetime, str]],
) -> None:
    desk = make_desk("it", pattern)
    assert [allocate(session_factory, desk, now) for now, _ in steps] == [number for _, number in steps]


def test_periods_follow_the_desk_time_zone(
    session_factory: sessionmaker[Session], make_desk: MakeDesk
) -> None:
    desk = make_desk("hu", "M{{yy}}{{mm}}-{{nr-m}}", timezone="Europe/Budapest")
    assert allocate(session_factory, desk, utc(2026, 2, 28, 22, 30)) == "M2602-1"  # 23:30 local
    assert allocate(session_factory, desk, utc(2026, 2, 28, 23, 30)) == "M2603-1"  # 00:30 local, March


def test_counter_rows_and_period_keys(session_factory: sessionmaker[Session], make_desk: MakeDesk) -> None:
    desk = make_desk("it", "{{yyyy}}{{mm}}{{dd}}{{ww}}-{{nr}}-{{nr-y}}-{{nr-m}}-{{nr-w}}-{{nr-d}}")
    assert allocate(session_factory, desk) == "2026030710-1-1-1-1-1"
    assert allocate(session_factory, desk) == "2026030710-2-2-2-2-2"
    with session_factory() as s:
        rows = s.execute(select(NumberCounter).order_by(NumberCounter.counter)).scalars().all()
        assert {(r.desk_id, r.counter, r.period, r.value) for r in rows} == {
            (desk.id, "nr", "", 2),
            (desk.id, "nr-y", "2026", 2),
            (desk.id, "nr-m", "2026-03", 2),
            (desk.id, "nr-w", "2026-W10", 2),
            (desk.id, "nr-d", "2026-03-07", 2),
        }


def test_rollback_leaves_no_gap(session_factory: sessionmaker[Session], make_desk: MakeDesk) -> None:
    desk = make_desk("it", "TK-{{nr}}")
    assert allocate(session_factory, desk) == "TK-1"
    with pytest.raises(RuntimeError), session_factory() as s, s.begin():
        assert allocate_number(s, desk, NOW) == "TK-2"
        raise RuntimeError("ticket creation failed after the number was drawn")
    assert allocate(session_factory, desk) == "TK-2"


def test_numbers_are_drawn_inside_the_callers_transaction(
    session_factory: sessionmaker[Session], make_desk: MakeDesk
) -> None:
    desk = make_desk("it", "TK-{{nr}}")
    with session_factory() as s, s.begin():
        assert allocate_number(s, desk, NOW) == "TK-1"
        assert allocate_number(s, desk, NOW) == "TK-2"
        s.rollback()
    assert allocate(session_factory, desk) == "TK-1"


def test_desk_created_in_the_same_transaction(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s, s.begin():
        desk = Desk(name="new", pattern="NEW-{{nr}}", timezone="UTC")
        s.add(desk)
        assert allocate_number(s, desk, NOW) == "NEW-1"


def test_desks_count_independently(session_factory: sessionmaker[Session], make_desk: MakeDesk) -> None:
    a = make_desk("a", "A-{{yy}}-{{nr-y}}")
    b = make_desk("b", "B-{{yy}}-{{nr-y}}")
    drawn = [allocate(session_factory, desk) for desk in (a, b, a, a, b)]
    assert drawn == ["A-26-1", "B-26-1", "A-26-2", "A-26-3", "B-26-2"]


# Run by each of the concurrent worker processes: wait for the go signal on stdin so that all processes
# allocate at the same time, then draw COUNT numbers, each in its own transaction, and print them as JSON.
WORKER = """
import json, sys
from datetime import datetime

from maild.numbering.allocate import allocate_number
from maild.storage.db import make_engine, make_sessionmaker
from maild.storage.models import Desk

url, desk_id, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = datetime.fromisoformat(sys.argv[4])
factory = make_sessionmaker(make_engine(url))
with factory() as s:
    desk = s.get(Desk, desk_id)
print("ready", flush=True)
sys.stdin.readline()
numbers = []
for _ in range(count):
    with factory() as s, s.begin():
        numbers.append(allocate_number(s, desk, now))
print(json.dumps(numbers), flush=True)
"""
PROCESSES = 4
PER_PROCESS = 250


def test_concurrent_processes_get_distinct_numbers_without_gaps(
    database_url: str, make_desk: MakeDesk
) -> None:
    # Two counters per number: both must advance together under concurrency, in one transaction.
    desk = make_desk("it", "C{{nr}}-{{yy}}{{mm}}-{{nr-m}}")
    argv = [sys.executable, "-c", WORKER, database_url, str(desk.id), str(PER_PROCESS), NOW.isoformat()]
    procs = [
        subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdin is not None
            if proc.stdout.readline().strip() != "ready":
                proc.kill()
                pytest.fail(f"worker did not start: {proc.communicate()[1]}")
        started = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        numbers: list[str] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            numbers += json.loads(out)
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"{PROCESSES}x{PER_PROCESS} allocations in {elapsed:.2f}s")
    total = PROCESSES * PER_PROCESS
    assert len(numbers) == total
    assert len(set(numbers)) == total
    pairs = [number.removeprefix("C").split("-2603-") for number in numbers]
    assert all(nr == nr_m for nr, nr_m in pairs), "{{nr}} and {{nr-m}} must advance together"
    assert sorted(int(nr) for nr, _ in pairs) == list(range(1, total + 1))
