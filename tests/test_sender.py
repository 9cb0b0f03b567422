"""The outbox sender: Maildir delivery (the embedded default) and a smarthost (a real aiosmtpd server on
loopback). Temporary failures stay queued with backoff, permanent ones are marked failed, nothing is lost."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import bounce_address, bounce_matches, load_secret, parse_bounce_address
from maild.outbound.outgoing import queue_mail
from maild.outbound.sender import BACKOFF_BASE, CLAIM_LEASE, FlushResult, backoff, claim, flush
from maild.storage.models import Contact, Desk, DeskAddress, Message, OutboxMessage, Ticket
from tests.conftest import run_cli

NOW = dt.datetime(2026, 3, 7, 12, 0, tzinfo=dt.UTC)
NAIVE = NOW.replace(tzinfo=None)

OK_250 = "250 2.0.0 OK"
TEMP_451 = "451 4.3.0 Mailbox temporarily unavailable, try later"
PERM_550 = "550 5.1.1 No such user here"
PERM_554 = "554 5.6.0 Message content rejected"


# --- a real SMTP server -----------------------------------------------------------------------------


class Recorder:
    """aiosmtpd handler: records accepted envelopes; `rcpt_reply` / `data_reply` make it refuse."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.refuse: dict[str, str] = {}  # address -> reply, for single recipients

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)  # with handle_RCPT defined, this is ours to do
        return OK_250

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return OK_250


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def recording_server(data_size_limit: int = 33554432) -> Iterator[tuple[Recorder, int]]:
    """A real SMTP server on loopback that records what it accepts (aiosmtpd's default size limit)."""
    handler = Recorder()
    for attempt in range(5):  # the free port may be taken between asking and binding: take another
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=data_size_limit)
        try:
            controller.start()
            break
        except OSError:
            if attempt == 4:
                raise
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with recording_server() as server:
        yield server


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and then never says a word (no SMTP greeting)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def via(cfg: Config, port: int) -> Config:
    return dataclasses.replace(cfg, smarthost=("127.0.0.1", port), smtp_timeout=10.0)


# --- outbox rows ------------------------------------------------------------------------------------


@pytest.fixture
def ticket_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as s, s.begin():
        desk = Desk(name="support", pattern="SUP-{{nr}}", timezone="UTC")
        desk.addresses = [DeskAddress(address="support@example.com")]
        customer = Contact(email="carol@customer.test", display_name="Carol")
        ticket = Ticket(number="SUP-1", desk=desk, subject="Printer on fire", customer=customer)
        s.add(ticket)
        s.flush()
        return ticket.id


def queue(
    factory: sessionmaker[Session],
    cfg: Config,
    ticket_id: int,
    to: tuple[str, ...] = ("carol@customer.test",),
    now: dt.datetime = NOW,
) -> int:
    with factory() as s, s.begin():
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        row = queue_mail(
            s, cfg, ticket, "ticket_created", [("", addr) for addr in to], automatic=True, now=now
        )
        s.flush()
        return row.id


def outbox_row(factory: sessionmaker[Session], outbox_id: int) -> OutboxMessage:
    with factory() as s:
        row = s.get(OutboxMessage, outbox_id)
        assert row is not None
        return row


# --- Maildir ----------------------------------------------------------------------------------------


def test_flush_delivers_to_the_outgoing_maildir(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int
) -> None:
    outbox_id = queue(session_factory, cfg, ticket_id)

    assert flush(session_factory, cfg, now=NOW) == FlushResult(sent=1, deferred=0, failed=0)

    new = list((cfg.outgoing_maildir / "new").iterdir())
    assert len(new) == 1
    assert list((cfg.outgoing_maildir / "tmp").iterdir()) == []
    row = outbox_row(session_factory, outbox_id)
    assert new[0].read_bytes() == row.raw
    assert row.status == "sent"
    assert row.attempts == 1
    assert row.sent_at == NAIVE
    assert row.last_error == ""

    # sent is sent: a second flush does nothing
    assert flush(session_factory, cfg, now=NOW + dt.timedelta(hours=1)) == FlushResult(0, 0, 0)
    assert len(list((cfg.outgoing_maildir / "new").iterdir())) == 1


def test_flush_sends_only_what_is_due_and_ids_only_narrow_it(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int
) -> None:
    later = queue(session_factory, cfg, ticket_id, now=NOW + dt.timedelta(minutes=10))
    due = queue(session_factory, cfg, ticket_id, now=NOW)

    assert flush(session_factory, cfg, now=NOW) == FlushResult(1, 0, 0)
    assert outbox_row(session_factory, due).status == "sent"
    assert outbox_row(session_factory, later).status == "queued"

    # ids narrow what is sent, they do not make a row due: `maildctl outbox retry` does that
    assert flush(session_factory, cfg, ids=[later], now=NOW) == FlushResult(0, 0, 0)
    assert flush(session_factory, cfg, ids=[due], now=NOW + dt.timedelta(hours=1)) == FlushResult(0, 0, 0)
    assert flush(session_factory, cfg, ids=[later], now=NOW + dt.timedelta(minutes=10)) == FlushResult(
        1, 0, 0
    )
    assert outbox_row(session_factory, later).status == "sent"
    assert len(list((cfg.outgoing_maildir / "new").iterdir())) == 2


def test_an_unwritable_maildir_keeps_the_mail_queued(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int
) -> None:
    cfg.outgoing_maildir.write_text("a file where the Maildir should be")
    outbox_id = queue(session_factory, cfg, ticket_id)

    assert flush(session_factory, cfg, now=NOW) == FlushResult(0, 1, 0)

    row = outbox_row(session_factory, outbox_id)
    assert row.status == "queued"
    assert row.attempts == 1
    assert row.last_error
    assert row.next_attempt_at == NAIVE + BACKOFF_BASE


# --- smarthost --------------------------------------------------------------------------------------


def test_smarthost_receives_the_message_with_its_envelope(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, smtp: tuple[Recorder, int]
) -> None:
    handler, port = smtp
    outbox_id = queue(session_factory, cfg, ticket_id, to=("carol@customer.test", "dave@customer.test"))

    assert flush(session_factory, via(cfg, port), now=NOW) == FlushResult(1, 0, 0)

    # one transaction per recipient, each with its own VERP envelope sender naming the row and recipient
    assert [rcpts for _, rcpts, _ in handler.envelopes] == [["carol@customer.test"], ["dave@customer.test"]]
    senders = [mail_from for mail_from, _, _ in handler.envelopes]
    secret = load_secret(cfg.data_dir)
    for sender, rcpt in zip(senders, ["carol@customer.test", "dave@customer.test"], strict=True):
        assert sender.startswith("bounces+") and sender.endswith("@example.com")
        parsed = parse_bounce_address(sender)
        assert parsed is not None and parsed[0] == outbox_id
        assert bounce_matches(secret, outbox_id, parsed[1], rcpt)
        assert sender == bounce_address(secret, "support@example.com", outbox_id, rcpt)
    assert senders[0] != senders[1]
    assert not bounce_matches(secret, outbox_id, parse_bounce_address(senders[0])[1], "dave@customer.test")  # type: ignore[index]
    content = handler.envelopes[0][2]
    assert handler.envelopes[1][2] == content
    row = outbox_row(session_factory, outbox_id)
    assert row.delivered_to == ["carol@customer.test", "dave@customer.test"] and row.rcpt_to == []
    received = message_from_bytes(content, policy=policy.default)
    assert received["Message-ID"] == row.message_id
    assert received["Subject"] == "[SUP-1] Printer on fire"
    assert row.status == "sent"
    assert row.attempts == 1
    assert row.sent_at == NAIVE
    assert not (cfg.outgoing_maildir / "new").exists() or not list((cfg.outgoing_maildir / "new").iterdir())


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_a_temporary_refusal_keeps_it_queued_with_backoff_until_the_server_recovers(
    session_factory: sessionmaker[Session],
    cfg: Config,
    ticket_id: int,
    smtp: tuple[Recorder, int],
    stage: str,
) -> None:
    handler, port = smtp
    setattr(handler, f"{stage}_reply", TEMP_451)
    outbox_id = queue(session_factory, cfg, ticket_id)
    cfg = via(cfg, port)

    assert flush(session_factory, cfg, now=NOW) == FlushResult(sent=0, deferred=1, failed=0)
    row = outbox_row(session_factory, outbox_id)
    assert row.status == "queued"
    assert row.attempts == 1
    assert "451" in row.last_error
    assert row.next_attempt_at == NAIVE + backoff(1)
    assert row.next_attempt_at > NAIVE
    assert row.sent_at is None

    # not due yet: not even tried
    assert flush(session_factory, cfg, now=NOW + dt.timedelta(seconds=30)) == FlushResult(0, 0, 0)
    assert outbox_row(session_factory, outbox_id).attempts == 1

    # due, still refused: the wait doubles
    second = NOW + dt.timedelta(minutes=1)
    assert flush(session_factory, cfg, now=second) == FlushResult(0, 1, 0)
    row = outbox_row(session_factory, outbox_id)
    assert row.attempts == 2
    assert row.next_attempt_at == second.replace(tzinfo=None) + 2 * BACKOFF_BASE

    # the server recovers
    setattr(handler, f"{stage}_reply", None)
    third = second + dt.timedelta(minutes=2)
    assert flush(session_factory, cfg, now=third) == FlushResult(1, 0, 0)
    row = outbox_row(session_factory, outbox_id)
    assert row.status == "sent"
    assert row.attempts == 3
    assert row.last_error == ""
    assert row.sent_at == third.replace(tzinfo=None)
    assert len(handler.envelopes) == 1


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [BACKOFF_BASE * f for f in (1, 2, 4, 8)]
    assert backoff(9) == dt.timedelta(hours=4)
    assert backoff(50) == dt.timedelta(hours=4)
    assert backoff(10_000) == dt.timedelta(hours=4)


def test_a_mail_deferred_for_days_keeps_being_retried(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, closed_port: int
) -> None:
    """A week of a smarthost refusing is some 45 attempts; the 46th must still be recorded, and the
    other mail behind it still be sent."""
    stuck = queue(session_factory, cfg, ticket_id)
    with session_factory() as s, s.begin():
        row = s.get(OutboxMessage, stuck)
        assert row is not None
        row.attempts = 45
    fresh = queue(session_factory, cfg, ticket_id)

    assert flush(session_factory, via(cfg, closed_port), ids=[stuck], now=NOW) == FlushResult(0, 1, 0)
    row = outbox_row(session_factory, stuck)
    assert row.attempts == 46
    assert row.next_attempt_at == NAIVE + dt.timedelta(hours=4)

    # and with both due, the Maildir path sends the fresh one and the stuck one alike
    later = NOW + dt.timedelta(hours=5)
    assert flush(session_factory, cfg, now=later) == FlushResult(2, 0, 0)
    assert outbox_row(session_factory, fresh).status == "sent"
    assert outbox_row(session_factory, stuck).status == "sent"


def test_a_permanent_refusal_of_every_recipient_marks_it_failed(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, smtp: tuple[Recorder, int]
) -> None:
    handler, port = smtp
    handler.rcpt_reply = PERM_550
    outbox_id = queue(session_factory, cfg, ticket_id, to=("carol@customer.test", "dave@customer.test"))
    cfg = via(cfg, port)

    assert flush(session_factory, cfg, now=NOW) == FlushResult(sent=0, deferred=0, failed=1)

    row = outbox_row(session_factory, outbox_id)
    assert row.status == "failed"
    assert row.attempts == 1
    assert "550" in row.last_error
    assert "No such user here" in row.last_error  # the server's own words
    assert "carol@customer.test" in row.last_error and "dave@customer.test" in row.last_error
    assert row.sent_at is None

    # failed is final: never retried, never dropped
    handler.rcpt_reply = None
    assert flush(session_factory, cfg, now=NOW + dt.timedelta(days=1)) == FlushResult(0, 0, 0)
    assert handler.envelopes == []
    assert outbox_row(session_factory, outbox_id).status == "failed"


def test_a_refusal_of_some_recipients_is_recorded_while_the_others_get_the_mail(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, smtp: tuple[Recorder, int]
) -> None:
    handler, port = smtp
    handler.refuse = {"dave@customer.test": PERM_550}
    outbox_id = queue(session_factory, cfg, ticket_id, to=("carol@customer.test", "dave@customer.test"))

    assert flush(session_factory, via(cfg, port), now=NOW) == FlushResult(1, 0, 0)

    [(_, rcpt_tos, _)] = handler.envelopes
    assert rcpt_tos == ["carol@customer.test"]
    row = outbox_row(session_factory, outbox_id)
    assert row.status == "sent"
    # the admin can see in `maildctl outbox list` who did not get it, and why
    assert "dave@customer.test" in row.last_error
    assert "550" in row.last_error and "No such user here" in row.last_error
    assert "carol@customer.test" not in row.last_error


def test_a_permanent_refusal_of_the_content_marks_it_failed(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, smtp: tuple[Recorder, int]
) -> None:
    handler, port = smtp
    handler.data_reply = PERM_554
    outbox_id = queue(session_factory, cfg, ticket_id)

    assert flush(session_factory, via(cfg, port), now=NOW) == FlushResult(0, 0, 1)

    row = outbox_row(session_factory, outbox_id)
    assert row.status == "failed"
    assert "554" in row.last_error
    assert "Message content rejected" in row.last_error


def test_a_closed_port_keeps_it_queued(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, closed_port: int
) -> None:
    outbox_id = queue(session_factory, cfg, ticket_id)

    assert flush(session_factory, via(cfg, closed_port), now=NOW) == FlushResult(0, 1, 0)

    row = outbox_row(session_factory, outbox_id)
    assert row.status == "queued"
    assert row.attempts == 1
    assert row.last_error
    assert row.next_attempt_at == NAIVE + BACKOFF_BASE
    assert row.sent_at is None


def test_a_smarthost_that_never_answers_is_given_up_on_and_retried_later(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, silent_port: int
) -> None:
    outbox_id = queue(session_factory, cfg, ticket_id)
    cfg = dataclasses.replace(cfg, smarthost=("127.0.0.1", silent_port), smtp_timeout=0.3)

    assert flush(session_factory, cfg, now=NOW) == FlushResult(0, 1, 0)

    row = outbox_row(session_factory, outbox_id)
    assert row.status == "queued"
    assert row.attempts == 1
    assert "timed out" in row.last_error.lower() or "timeout" in row.last_error.lower()
    assert row.next_attempt_at == NAIVE + BACKOFF_BASE


def test_maildctl_outbox_flush_sends_through_the_smarthost(
    session_factory: sessionmaker[Session],
    cfg: Config,
    ticket_id: int,
    smtp: tuple[Recorder, int],
    config_file: Path,
) -> None:
    handler, port = smtp
    first = queue(session_factory, cfg, ticket_id)
    second = queue(session_factory, cfg, ticket_id, to=("dave@customer.test",))
    config_file.write_text(config_file.read_text() + f'\n[outgoing]\nsmarthost = "127.0.0.1:{port}"\n')

    proc = run_cli("maildctl", "outbox", "flush", config=config_file)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "sent 2, deferred 0, failed 0"
    assert sorted(rcpts[0] for _, rcpts, _ in handler.envelopes) == [
        "carol@customer.test",
        "dave@customer.test",
    ]
    with session_factory() as s:
        statuses = dict(s.execute(select(OutboxMessage.id, OutboxMessage.status)).all())
    assert statuses == {first: "sent", second: "sent"}
    listed = run_cli(
        "maildctl", "outbox", "list", "--status", "sent", "--json", config=config_file, subprocess=True
    )
    assert listed.returncode == 0, listed.stderr
    assert {row["id"] for row in json.loads(listed.stdout)} == {first, second}


def test_a_temporary_refusal_of_one_recipient_retries_only_that_one(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, smtp: tuple[Recorder, int]
) -> None:
    handler, port = smtp
    handler.refuse = {"dave@customer.test": TEMP_451}
    outbox_id = queue(session_factory, cfg, ticket_id, to=("carol@customer.test", "dave@customer.test"))

    assert flush(session_factory, via(cfg, port), now=NOW) == FlushResult(0, 1, 0)
    row = outbox_row(session_factory, outbox_id)
    assert (row.status, row.rcpt_to) == ("queued", ["dave@customer.test"])
    assert "451" in row.last_error and row.next_attempt_at > NAIVE

    handler.refuse = {}
    later = NOW + backoff(1)
    assert flush(session_factory, via(cfg, port), now=later) == FlushResult(1, 0, 0)
    # carol got it once, dave once: nobody twice
    assert [rcpts for _, rcpts, _ in handler.envelopes] == [["carol@customer.test"], ["dave@customer.test"]]
    assert outbox_row(session_factory, outbox_id).status == "sent"


def system_notes(factory: sessionmaker[Session], ticket_id: int) -> list[str]:
    with factory() as s:
        return list(
            s.scalars(select(Message.text).where(Message.ticket_id == ticket_id, Message.kind == "system"))
        )


def test_a_permanent_refusal_puts_a_note_on_the_ticket(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, smtp: tuple[Recorder, int]
) -> None:
    handler, port = smtp
    handler.refuse = {"dave@customer.test": PERM_550}
    outbox_id = queue(session_factory, cfg, ticket_id, to=("carol@customer.test", "dave@customer.test"))

    assert flush(session_factory, via(cfg, port), now=NOW) == FlushResult(1, 0, 0)

    row = outbox_row(session_factory, outbox_id)
    assert (row.delivered_to, row.failed_to, row.rcpt_to) == (
        ["carol@customer.test"],
        ["dave@customer.test"],
        [],
    )
    [note] = system_notes(session_factory, ticket_id)
    assert "could not be delivered" in note
    assert "dave@customer.test: 550" in note and "No such user here" in note
    assert "carol@customer.test" not in note


def test_temporary_failures_are_given_up_after_retry_hours_with_a_note(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int, smtp: tuple[Recorder, int]
) -> None:
    handler, port = smtp
    handler.rcpt_reply = TEMP_451
    outbox_id = queue(session_factory, cfg, ticket_id)
    cfg = dataclasses.replace(via(cfg, port), retry_hours=2)

    assert flush(session_factory, cfg, now=NOW) == FlushResult(0, 1, 0)
    assert system_notes(session_factory, ticket_id) == []
    row = outbox_row(session_factory, outbox_id)
    assert row.retry_until == NAIVE + dt.timedelta(hours=2)

    assert flush(session_factory, cfg, now=NOW + dt.timedelta(hours=1)) == FlushResult(0, 1, 0)
    assert flush(session_factory, cfg, now=NOW + dt.timedelta(hours=2)) == FlushResult(0, 0, 1)

    row = outbox_row(session_factory, outbox_id)
    assert (row.status, row.failed_to, row.rcpt_to) == ("failed", ["carol@customer.test"], [])
    [note] = system_notes(session_factory, ticket_id)
    assert "retried for 2 hours" in note and "451" in note
    assert handler.envelopes == []


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(
    session_factory: sessionmaker[Session], cfg: Config, ticket_id: int
) -> None:
    first = queue(session_factory, cfg, ticket_id)
    second = queue(session_factory, cfg, ticket_id)

    def claimed(now: dt.datetime, limit: int = 50) -> list[int]:
        return [row.id for row in claim(session_factory, now, limit=limit)]

    assert claimed(NAIVE, limit=1) == [first]
    assert claimed(NAIVE) == [second]  # another sender takes what is left
    assert claimed(NAIVE) == []
    # a sender that died while sending: the row is due again once the lease is over (at least once)
    assert claimed(NAIVE + CLAIM_LEASE) == [first, second]
    # and a flush meanwhile sends nothing twice
    assert flush(session_factory, cfg, now=NOW) == FlushResult(0, 0, 0)
    assert flush(session_factory, cfg, now=NOW + 2 * CLAIM_LEASE) == FlushResult(2, 0, 0)


def test_maildctl_outbox_show_and_retry_a_failed_mail(
    session_factory: sessionmaker[Session],
    cfg: Config,
    ticket_id: int,
    smtp: tuple[Recorder, int],
    config_file: Path,
) -> None:
    handler, port = smtp
    handler.refuse = {"dave@customer.test": PERM_550}
    outbox_id = queue(session_factory, cfg, ticket_id, to=("carol@customer.test", "dave@customer.test"))
    config_file.write_text(config_file.read_text() + f'\n[outgoing]\nsmarthost = "127.0.0.1:{port}"\n')
    assert flush(session_factory, via(cfg, port)) == FlushResult(1, 0, 0)

    shown = run_cli("maildctl", "outbox", "show", str(outbox_id), "--json", config=config_file)
    assert shown.returncode == 0, shown.stderr
    fields = json.loads(shown.stdout)
    assert fields["status"] == "sent" and fields["ticket"] == "SUP-1"
    assert fields["delivered_to"] == ["carol@customer.test"]
    assert fields["failed_to"] == ["dave@customer.test"]
    assert fields["headers"]["Subject"] == "[SUP-1] Printer on fire"
    text = run_cli("maildctl", "outbox", "show", str(outbox_id), config=config_file)
    assert "failed for: dave@customer.test" in text.stdout and "550" in text.stdout
    raw = run_cli("maildctl", "outbox", "show", str(outbox_id), "--raw", config=config_file)
    assert raw.stdout.replace("\r\n", "\n") == outbox_row(session_factory, outbox_id).raw.decode().replace(
        "\r\n", "\n"
    )

    # dave's mailbox exists now: retry sends to dave only, not again to carol
    handler.refuse = {}
    retried = run_cli("maildctl", "outbox", "retry", str(outbox_id), config=config_file)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == "retried 1: sent 1, deferred 0, failed 0"
    assert [rcpts for _, rcpts, _ in handler.envelopes] == [["carol@customer.test"], ["dave@customer.test"]]
    row = outbox_row(session_factory, outbox_id)
    assert (row.status, row.delivered_to, row.failed_to) == (
        "sent",
        ["carol@customer.test", "dave@customer.test"],
        [],
    )

    again = run_cli("maildctl", "outbox", "retry", str(outbox_id), config=config_file)
    assert again.returncode == 1
    assert again.stderr.strip().endswith("was delivered to every recipient: nothing to retry")
    missing = run_cli("maildctl", "outbox", "show", "999", config=config_file)
    assert missing.returncode == 1 and "no outgoing mail with id 999" in missing.stderr
    assert "Traceback" not in missing.stderr + again.stderr
    neither = run_cli("maildctl", "outbox", "retry", config=config_file)
    assert neither.returncode == 1 and "--failed" in neither.stderr


def test_maildctl_outbox_retry_failed_requeues_every_failed_mail(
    session_factory: sessionmaker[Session],
    cfg: Config,
    ticket_id: int,
    smtp: tuple[Recorder, int],
    config_file: Path,
) -> None:
    handler, port = smtp
    handler.rcpt_reply = PERM_550
    failed = [queue(session_factory, cfg, ticket_id), queue(session_factory, cfg, ticket_id)]
    assert flush(session_factory, via(cfg, port)) == FlushResult(0, 0, 2)
    handler.rcpt_reply = None
    config_file.write_text(config_file.read_text() + f'\n[outgoing]\nsmarthost = "127.0.0.1:{port}"\n')

    proc = run_cli("maildctl", "outbox", "retry", "--failed", config=config_file)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "retried 2: sent 2, deferred 0, failed 0"
    assert [outbox_row(session_factory, i).status for i in failed] == ["sent", "sent"]
