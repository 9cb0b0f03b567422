"""`maild pipe`'s fast path (maild.ingress.pipe): with `--recipient` and the desk-address table that
maildctl keeps (maild.ingress.desk_table), an unknown recipient is 67 at once; a desk's mail is spooled,
its 'received' row committed without SQLAlchemy (maild.storage.pipe_rows), and an on-demand worker
(`maild work`, maild.ingress.spool_worker) processes it after the pipe exited 0. Real subprocesses; every
test waits for the worker to exit."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from maild.config import load_config
from maild.ingress import spool_worker
from maild.ingress.desk_table import is_desk_address, read_table, table_path
from tests.conftest import BIN, run_cli
from tests.daemon import Factory, all_done, wait_until
from tests.pipe_worker import short_idle_worker, wait_for_worker_exit, worker_running  # noqa: F401
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, mail, spool, tickets

EX_OK, EX_NOUSER, EX_TEMPFAIL = 0, 67, 75
pytestmark = pytest.mark.usefixtures("short_idle_worker")


def ctl(config: Path, *args: str) -> None:
    proc = run_cli("maildctl", *args, config=config)
    assert proc.returncode == 0, proc.stderr


def pipe(config: Path, raw: bytes, recipient: str = SUPPORT) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "maild",
        "pipe",
        "--recipient",
        recipient,
        "--sender",
        "alice@customer.example",
        config=config,
        stdin=raw,
    )


@pytest.fixture
def support(config_file: Path) -> None:
    ctl(config_file, "desk", "add", "support", "--address", SUPPORT, "--pattern", SUP_PATTERN)


def test_the_matching_rule() -> None:
    known = frozenset({"support@example.com"})
    assert is_desk_address("Support+Billing@Example.com", known)
    assert is_desk_address("bounces+1f-" + "a" * 16 + "@example.com", known) == is_desk_address(
        "bounces+1f-" + "a" * 16 + "@example.com", known | {"x@example.com"}
    )
    assert not is_desk_address("sales@example.com", known)
    assert not is_desk_address("support@example.org", known)


def test_every_desk_change_rewrites_the_table_and_a_removed_address_is_67(
    config_file: Path, data_dir: Path, session_factory: Factory
) -> None:
    def rewritten_by(*args: str) -> frozenset[str] | None:
        table_path(data_dir).unlink(missing_ok=True)
        ctl(config_file, *args)
        return read_table(data_dir)

    pattern = ("--pattern", SUP_PATTERN)
    assert rewritten_by("desk", "add", "support", "--address", SUPPORT, *pattern) == {SUPPORT}
    assert rewritten_by("desk", "address", "add", "support", "help@example.com") == {
        SUPPORT,
        "help@example.com",
    }
    assert rewritten_by("desk", "set", "support", "--replies-only") == {SUPPORT, "help@example.com"}
    assert rewritten_by("desk", "rename", "support", "helpdesk") == {SUPPORT, "help@example.com"}
    assert rewritten_by("desk", "address", "remove", "helpdesk", "help@example.com") == {SUPPORT}
    ctl(config_file, "desk", "add", "sales", "--address", "sales@example.com", "--pattern", "SAL-{{nr}}")
    assert rewritten_by("desk", "remove", "sales") == {SUPPORT}

    # No daemon runs: an address the table does not know goes the slow way, and the database says 67
    # (the table alone never bounces a mail: it may miss an address added a moment ago).
    for gone in ("help@example.com", "sales@example.com"):
        proc = pipe(config_file, mail(), gone)
        assert proc.returncode == EX_NOUSER, proc.stderr
        assert proc.stderr == f"maild pipe: no desk has the address {gone}\n"
    with session_factory() as s:
        assert [(row.recipient, row.outcome) for row in spool(s)] == [
            ("help@example.com", "unknown_recipient"),
            ("sales@example.com", "unknown_recipient"),
        ]


def test_an_address_the_table_misses_is_not_bounced(
    config_file: Path, data_dir: Path, session_factory: Factory, support: None
) -> None:
    # A desk address added behind the table's back (by hand, in the database): still the desk's mail.
    ctl(config_file, "desk", "address", "add", "support", "help@example.com")
    (data_dir / "desk-addresses").write_text((data_dir / "desk-addresses").read_text().replace("help@", "x@"))
    proc = pipe(config_file, mail(), "help@example.com")
    assert proc.returncode == 0, proc.stderr
    with session_factory() as s:
        assert [(row.recipient, row.outcome) for row in spool(s)] == [("help@example.com", "created")]


def test_a_burst_of_pipes_is_processed_once_each(
    config_file: Path, data_dir: Path, session_factory: Factory, support: None
) -> None:
    raws = [
        mail(message_id=f"<burst-{i}@customer.example>", sender=f"c{i} <c{i}@customer.example>")
        for i in range(20)
    ]
    procs = [
        subprocess.Popen(
            [str(BIN / "maild"), "--config", str(config_file), "pipe", "--recipient", SUPPORT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in raws
    ]
    for proc, raw in zip(procs, raws, strict=True):
        _, err = proc.communicate(raw, timeout=60)
        assert proc.returncode == EX_OK, err
    wait_until(all_done(session_factory, 20), timeout=60, what="the burst processed")
    wait_for_worker_exit(data_dir)
    with session_factory() as s:
        rows = spool(s)
        assert sorted(r.outcome or "" for r in rows) == ["created"] * 20
        assert len(tickets(s)) == 20
        assert len({r.ticket_id for r in rows}) == 20


def test_the_row_is_committed_before_exit_0(
    config_file: Path, data_dir: Path, session_factory: Factory, support: None
) -> None:
    # A "running worker" (this test holds its lock): the pipe starts none, so only the pipe wrote.
    held = spool_worker.try_lock(data_dir)
    assert held is not None
    raw = mail(message_id="<committed@customer.example>")
    try:
        assert pipe(config_file, raw).returncode == EX_OK
        assert pipe(config_file, raw).returncode == EX_OK  # the MTA again: the pending row is reused
        with session_factory() as s:
            [row] = spool(s)
            assert (row.state, row.sha256, row.size, row.recipient, row.ingress, row.mail_from) == (
                "received",
                hashlib.sha256(raw).hexdigest(),
                len(raw),
                SUPPORT,
                "pipe",
                "alice@customer.example",
            )
    finally:
        spool_worker.release(held)
    worker = run_cli("maild", "work", "--exit-when-idle", "0", config=config_file)
    assert worker.returncode == 0, worker.stderr
    with session_factory() as s:
        [row] = spool(s)
        assert (row.state, row.outcome, len(tickets(s))) == ("done", "created", 1)


def test_a_pipe_arriving_as_the_worker_exits_is_processed(
    config_file: Path,
    data_dir: Path,
    session_factory: Factory,
    support: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race, made to happen: the worker decides it is idle; before it releases its lock a pipe commits
    a row and sees the lock held (so starts no worker). The worker's look after the release finds it."""
    real_until_idle = spool_worker._until_idle
    piped: list[int] = []

    async def idle_at_once_the_first_time(*args: object) -> None:
        if piped:
            await real_until_idle(*args)  # type: ignore[arg-type]
            return
        piped.append(pipe(config_file, mail(message_id="<late@customer.example>")).returncode)

    monkeypatch.setattr(spool_worker, "_until_idle", idle_at_once_the_first_time)
    held = spool_worker.try_lock(data_dir)
    assert held is not None
    assert asyncio.run(spool_worker._work(load_config(str(config_file)), held, 0.1)) == 0
    assert piped == [EX_OK]
    assert not worker_running(data_dir)
    with session_factory() as s:
        [row] = spool(s)
        assert (row.state, row.outcome) == ("done", "created")


def test_the_fast_path_imports_no_orm(
    config_file: Path, data_dir: Path, support: None, database_url: str
) -> None:
    argv = [sys.executable, "-X", "importtime", "-m", "maild.ingress.cli", "--config", str(config_file)]
    proc = subprocess.run(
        [*argv, "pipe", "--recipient", SUPPORT], input=mail(), capture_output=True, timeout=60
    )
    assert proc.returncode == EX_OK, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}
    assert "maild.storage.pipe_rows" in imported  # the fast path it was
    assert not {
        m for m in imported if m.split(".")[0] in ("sqlalchemy", "alembic", "jinja2", "maild.pipeline")
    }
    assert not any(m.startswith(("maild.pipeline", "maild.tickets")) for m in imported)
    if database_url.startswith("sqlite"):
        assert not any(m.startswith("psycopg") for m in imported)


def test_an_unreadable_table_falls_back_to_processing_here(
    config_file: Path, data_dir: Path, session_factory: Factory, support: None
) -> None:
    table_path(data_dir).write_text("not json")
    assert pipe(config_file, mail(), "nobody@example.com").returncode == EX_NOUSER  # from the pipeline
    assert pipe(config_file, mail(message_id="<here@customer.example>")).returncode == EX_OK
    with session_factory() as s:  # processed before exit: no worker was needed
        assert [r.outcome for r in spool(s)] == ["unknown_recipient", "created"]
    assert not worker_running(data_dir)


def test_a_locked_database_is_75_and_the_mail_stays_spooled(
    config_file: Path, data_dir: Path, database_url: str, support: None
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    config_file.write_text(config_file.read_text().replace("[database]", "[database]\nbusy_timeout_ms = 200"))
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    raw = mail(message_id="<locked@customer.example>")
    try:
        proc = pipe(config_file, raw)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == EX_TEMPFAIL
    assert proc.stderr.startswith("maild pipe: database unavailable (")
    digest = hashlib.sha256(raw).hexdigest()
    assert (data_dir / "spool" / digest[:2] / digest[2:4] / f"{digest}.eml").read_bytes() == raw
    assert pipe(config_file, raw).returncode == EX_OK  # the MTA's retry
