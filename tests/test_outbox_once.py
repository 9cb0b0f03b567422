"""Outgoing mail once and on time (issue 14, point 4): a claim held by a dead instance of this host is sent at
the next flush, not after the lease; a failed write of the result releases the claim; Maildir delivery is
named by the row (a re-delivery is a no-op); each recipient's acceptance is committed at once, so a crash
after the first 250 re-sends only to the others (a real aiosmtpd server on loopback)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound import sender
from maild.outbound.sender import CLAIM_LEASE, FlushResult, flush, holder, release_dead_claims
from maild.storage.models import OutboxMessage
from tests import test_sender
from tests.test_sender import NAIVE, NOW, Recorder, outbox_row, queue, via

TWO = ("carol@customer.test", "dave@customer.test")


class Crash(BaseException):
    """The process dies here: nothing after it runs (not even `except Exception`)."""


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """What this process holds in memory starts empty, as in a new process."""
    monkeypatch.setattr(sender, "_in_hand", set())
    monkeypatch.setattr(sender, "_accepted", {})


@pytest.fixture
def ticket_id(session_factory: sessionmaker[Session]) -> int:
    return test_sender.ticket_id.__wrapped__(session_factory)  # type: ignore[attr-defined]


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    yield from test_sender.smtp.__wrapped__()  # type: ignore[attr-defined]


@pytest.fixture
def dead_holder() -> str:
    """A claim holder on this host whose process has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()} {proc.pid} 0-1"


@pytest.fixture
def live_holder() -> Iterator[str]:
    """A claim holder on this host that is still running (another sender mid-send)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield f"{socket.gethostname()} {proc.pid} {sender._start_of(proc.pid)}"
    finally:
        proc.kill()
        proc.wait()


def set_claim(factory: sessionmaker[Session], outbox_id: int, by: str, until: dt.datetime) -> None:
    with factory() as s, s.begin():
        row = s.get(OutboxMessage, outbox_id)
        assert row is not None
        row.claimed_by, row.next_attempt_at = by, until


def maildir_files(cfg: Config) -> list[str]:
    return sorted(p.name for sub in ("new", "cur") for p in (cfg.outgoing_maildir / sub).iterdir())


# --- claims of a dead instance ----------------------------------------------------------------------


def test_a_dead_instances_claim_on_this_host_is_sent_at_the_next_flush(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, dead_holder: str, live_holder: str
) -> None:
    dead = queue(session_factory, cfg, ticket_id)
    live = queue(session_factory, cfg, ticket_id)
    elsewhere = queue(session_factory, cfg, ticket_id)
    lease_end = NAIVE + CLAIM_LEASE
    set_claim(session_factory, dead, dead_holder, lease_end)
    set_claim(session_factory, live, live_holder, lease_end)
    set_claim(session_factory, elsewhere, "other-host.test 1 0-1", lease_end)

    # at once, not after the 15-minute lease; a live sender's claim and another host's are left alone
    assert flush(session_factory, cfg, now=NOW) == FlushResult(1, 0, 0)
    assert outbox_row(session_factory, dead).status == "sent"
    assert outbox_row(session_factory, dead).claimed_by == ""
    assert [outbox_row(session_factory, i).status for i in (live, elsewhere)] == ["queued", "queued"]
    assert len(maildir_files(cfg)) == 1


def test_start_up_releases_a_dead_instances_claims(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, dead_holder: str, live_holder: str
) -> None:
    dead = queue(session_factory, cfg, ticket_id)
    live = queue(session_factory, cfg, ticket_id)
    set_claim(session_factory, dead, dead_holder, NAIVE + CLAIM_LEASE)
    set_claim(session_factory, live, live_holder, NAIVE + CLAIM_LEASE)

    assert release_dead_claims(session_factory, now=NOW) == 1

    row = outbox_row(session_factory, dead)
    assert (row.claimed_by, row.next_attempt_at, row.status) == ("", NAIVE, "queued")
    assert outbox_row(session_factory, live).claimed_by == live_holder
    assert release_dead_claims(session_factory, now=NOW) == 0


# --- a failed write of the result -------------------------------------------------------------------


def failing_once(monkeypatch: pytest.MonkeyPatch, name: str, error: BaseException) -> list[int]:
    """Make sender.<name> raise `error` on its first call (after doing its work when it is a Crash)."""
    original = getattr(sender, name)
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            return original(*args, **kwargs)
        if isinstance(error, Crash):
            original(*args, **kwargs)
        raise error

    monkeypatch.setattr(sender, name, wrapper)
    return calls


def disk_full() -> OperationalError:
    return OperationalError("UPDATE outbox", {}, Exception("database or disk is full"))


def test_a_failed_result_write_releases_the_claim(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox_id = queue(session_factory, cfg, ticket_id)
    failing_once(monkeypatch, "_record", disk_full())

    with pytest.raises(OperationalError):
        flush(session_factory, cfg, now=NOW)

    row = outbox_row(session_factory, outbox_id)
    assert (row.status, row.claimed_by, row.next_attempt_at) == ("queued", "", NAIVE)  # due again now
    assert len(maildir_files(cfg)) == 1
    # the next flush (no lease to wait out) records it; the Maildir copy is not written twice
    assert flush(session_factory, cfg, now=NOW) == FlushResult(1, 0, 0)
    assert outbox_row(session_factory, outbox_id).status == "sent"
    assert len(maildir_files(cfg)) == 1


def test_when_releasing_fails_too_this_process_takes_its_claim_again_without_resending(
    session_factory: sessionmaker[Session],
    cfg: Config,
    ticket_id: int,
    smtp: tuple[Recorder, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler, port = smtp
    cfg = via(cfg, port)
    outbox_id = queue(session_factory, cfg, ticket_id)
    failing_once(monkeypatch, "_record", disk_full())
    failing_once(monkeypatch, "release", disk_full())

    with pytest.raises(OperationalError):  # replies_not_sent: a read-only database, a live process
        flush(session_factory, cfg, now=NOW)
    row = outbox_row(session_factory, outbox_id)
    assert (row.claimed_by, row.next_attempt_at) == (holder(), NAIVE + CLAIM_LEASE)
    assert len(handler.envelopes) == 1

    # the same process's next flush takes its idle claim at once and records what was accepted
    assert flush(session_factory, cfg, now=NOW + dt.timedelta(minutes=1)) == FlushResult(1, 0, 0)
    row = outbox_row(session_factory, outbox_id)
    assert (row.status, row.delivered_to, row.claimed_by) == ("sent", ["carol@customer.test"], "")
    assert len(handler.envelopes) == 1  # not sent twice


# --- Maildir: named by the row ----------------------------------------------------------------------


def test_maildir_redelivery_of_the_same_row_yields_one_file(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, dead_holder: str
) -> None:
    outbox_id = queue(session_factory, cfg, ticket_id)
    row = outbox_row(session_factory, outbox_id)

    assert sender.deliver(cfg, row) == {}
    assert sender.deliver(cfg, row) == {}
    [name] = maildir_files(cfg)
    assert name.startswith(f"maild-outbox-{outbox_id}-")
    assert (cfg.outgoing_maildir / "new" / name).read_bytes() == row.raw
    assert list((cfg.outgoing_maildir / "tmp").iterdir()) == []

    # a reader moved it to cur/ with flags: still delivered
    (cfg.outgoing_maildir / "new" / name).rename(cfg.outgoing_maildir / "cur" / f"{name}:2,S")
    assert sender.deliver(cfg, row) == {}
    assert maildir_files(cfg) == [f"{name}:2,S"]

    # a crash after delivering, before recording: the re-send after the restart is a no-op
    set_claim(session_factory, outbox_id, dead_holder, NAIVE + CLAIM_LEASE)
    assert flush(session_factory, cfg, now=NOW) == FlushResult(1, 0, 0)
    assert maildir_files(cfg) == [f"{name}:2,S"]


# --- SMTP: each recipient recorded at once ----------------------------------------------------------


def test_a_crash_after_the_first_250_resends_only_to_the_second_recipient(
    session_factory: sessionmaker[Session],
    cfg: Config,
    ticket_id: int,
    smtp: tuple[Recorder, int],
    dead_holder: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler, port = smtp
    cfg = via(cfg, port)
    outbox_id = queue(session_factory, cfg, ticket_id, to=TWO)
    failing_once(monkeypatch, "_record_accepted", Crash())  # dies right after committing the first

    with pytest.raises(Crash):
        flush(session_factory, cfg, now=NOW)

    assert [rcpts for _, rcpts, _ in handler.envelopes] == [[TWO[0]]]
    row = outbox_row(session_factory, outbox_id)
    assert (row.status, row.delivered_to, row.rcpt_to) == ("queued", [TWO[0]], [TWO[1]])

    # the restarted daemon: nothing in memory, the dead instance's claim taken at once
    monkeypatch.setattr(sender, "_accepted", {})
    monkeypatch.setattr(sender, "_in_hand", set())
    set_claim(session_factory, outbox_id, dead_holder, row.next_attempt_at)
    assert flush(session_factory, cfg, now=NOW) == FlushResult(1, 0, 0)

    assert [rcpts for _, rcpts, _ in handler.envelopes] == [[TWO[0]], [TWO[1]]]
    row = outbox_row(session_factory, outbox_id)
    assert (row.status, row.delivered_to, row.rcpt_to, row.failed_to) == ("sent", list(TWO), [], [])
