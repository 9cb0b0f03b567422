"""IMAP polling against a real Dovecot on loopback (tests/servers/dovecot.py): the real spool and
database, mail put into the mailbox with IMAP APPEND or LMTP, the outcome read back from the database
and from the mailbox (flags, folders). Nothing of aioimaplib or Dovecot is mocked; one test simulates
the database failing inside the spool transaction. Every wait is bounded and polls a condition."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import smtplib
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import maild.ingress.imap_poll
from maild.config import Config, ImapAccount
from maild.ingress.imap_poll import ImapPoller, imap_utf7, return_path, run_pollers
from maild.ingress.listeners import Spooled
from maild.pipeline.runner import process
from maild.storage.db import transaction
from maild.storage.files import content_path
from maild.storage.models import DeskAddress, ImapState, SpoolEntry
from tests.pipeline.helpers import SALES, SALES_PATTERN, SUP_PATTERN, SUPPORT, mail, make_desk, spool, tickets
from tests.servers.dovecot import Dovecot, dovecot_fixture  # noqa: F401  (the fixture `dovecot`)

Factory = sessionmaker[Session]
T = TypeVar("T")
TIMEOUT = 30.0  # the bound of every test's async part
WAIT = 20.0  # what a condition may take (generous: CI machines are busy)
SEEN = "\\Seen"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def eventually(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll a blocking condition (in a thread: the poller runs in this loop) until it is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
def support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT, "help@example.com"], SUP_PATTERN)


@pytest.fixture
def mailbox(dovecot: Dovecot) -> str:
    return dovecot.add_user("helpdesk", "imap-secret")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "imap.pass"
    path.write_text("imap-secret\n")
    return path


@pytest.fixture
def account(dovecot: Dovecot, mailbox: str, secret_file: Path) -> ImapAccount:
    return ImapAccount(
        name="helpdesk",
        desk="support",
        host=dovecot.host,
        port=dovecot.imap_port,
        tls=False,
        username=mailbox,
        password_file=secret_file,
        poll_seconds=300.0,  # long: a test that wants a second cycle asks for it (IDLE, stopping, …)
    )


class Handed:
    """on_spooled: what the poller handed to the pipeline, in order."""

    def __init__(self) -> None:
        self.spooled: list[Spooled] = []

    def __call__(self, spooled: Spooled) -> None:
        self.spooled.append(spooled)


def poller(cfg: Config, account: ImapAccount, factory: Factory, handed: Handed, **kw: Any) -> ImapPoller:
    kw = {"backoff_min": 0.1, "backoff_max": 0.5, "command_timeout": 10.0, **kw}
    return ImapPoller(dataclasses.replace(cfg, imap=(account,)), account, factory, handed, **kw)


def rows(factory: Factory) -> list[SpoolEntry]:
    with factory() as session:
        return spool(session)


def state(factory: Factory, account: ImapAccount) -> ImapState | None:
    with factory() as session:
        return session.get(ImapState, (account.name, account.folder))


def numbered(n: int, **kw: Any) -> bytes:
    return mail(subject=f"Problem {n}", message_id=f"<problem-{n}@customer.example>", **kw)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def events(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in list(captured) if e.get("event") == name]


# --- the fixture itself -----------------------------------------------------------------------------


def test_dovecot_fixture_delivers_reads_and_reports_flags(dovecot: Dovecot, mailbox: str) -> None:
    raw = numbered(1)
    dovecot.deliver(mailbox, raw)
    dovecot.deliver(mailbox, numbered(2), folder="Archive 2026")
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=TIMEOUT) as lmtp:
        lmtp.sendmail("alice@customer.example", [mailbox], numbered(3))

    inbox = dovecot.messages(mailbox)
    assert inbox[0] == raw
    assert b"Delivered-To: helpdesk@mail.test" in inbox[1] and inbox[1].endswith(numbered(3))
    assert dovecot.messages(mailbox, "Archive 2026") == [numbered(2)]
    assert dovecot.messages(mailbox, "No Such Folder") == []
    assert dovecot.flags(mailbox) == [set(), set()]  # reading with BODY.PEEK sets nothing
    assert dovecot.add_user("Other") == "other@mail.test"
    assert dovecot.messages("other@mail.test") == []


# --- spooling ---------------------------------------------------------------------------------------


def test_mail_in_the_mailbox_is_spooled_for_the_desk_and_marked_seen(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory, support: None
) -> None:
    first, second = numbered(1), numbered(2)
    dovecot.deliver(mailbox, first)
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=TIMEOUT) as lmtp:
        lmtp.sendmail("alice@customer.example", [mailbox], second)
    handed = Handed()

    assert run(poller(cfg, account, session_factory, handed).poll_once()) == 2

    found = rows(session_factory)
    assert [(r.ingress, r.recipient, r.state) for r in found] == [("imap", SUPPORT, "received")] * 2
    stored = dovecot.messages(mailbox)
    for row, raw in zip(found, stored, strict=True):  # in UID order, byte for byte
        assert row.sha256 == hashlib.sha256(raw).hexdigest() and row.size == len(raw)
        assert content_path(cfg.spool_dir, row.sha256, ".eml").read_bytes() == raw
    assert found[1].mail_from == "alice@customer.example"  # Dovecot's Return-Path of the LMTP delivery
    assert dovecot.flags(mailbox) == [{SEEN}, {SEEN}]
    assert [s.spool_ids for s in handed.spooled] == [(found[0].id,), (found[1].id,)]
    assert handed.spooled[0].message_id == "<problem-1@customer.example>"
    assert handed.spooled[0].ingress == "imap" and handed.spooled[0].recipients == (SUPPORT,)
    bookmark = state(session_factory, account)
    assert bookmark is not None and bookmark.last_uid == 2

    # Again: nothing new, nothing spooled twice.
    assert run(poller(cfg, account, session_factory, handed).poll_once()) == 0
    assert len(rows(session_factory)) == 2

    dovecot.deliver(mailbox, numbered(3))
    assert run(poller(cfg, account, session_factory, handed).poll_once()) == 1
    bookmark = state(session_factory, account)
    assert bookmark is not None and bookmark.last_uid == 3
    assert len(rows(session_factory)) == 3


def test_move_to_moves_spooled_mail_out_of_the_folder(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory, support: None
) -> None:
    account = dataclasses.replace(account, move_to="Gelöst")  # created when missing; a modified UTF-7 name
    for n in (1, 2):
        dovecot.deliver(mailbox, numbered(n))

    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 2

    assert dovecot.messages(mailbox) == []
    assert dovecot.messages(mailbox, imap_utf7("Gelöst")) == [numbered(1), numbered(2)]
    assert len(rows(session_factory)) == 2
    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 0


def test_a_message_a_human_already_read_is_still_spooled(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory, support: None
) -> None:
    dovecot.deliver(mailbox, numbered(1))
    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 1
    dovecot.deliver(mailbox, numbered(2))
    with dovecot.imap(mailbox) as conn:  # someone opens it in a mail client before maild polls
        conn.select("INBOX")
        conn.uid("STORE", "2", "+FLAGS", "(\\Seen)")

    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 1

    assert [r.sha256 for r in rows(session_factory)][1] == hashlib.sha256(numbered(2)).hexdigest()


def test_uidvalidity_change_refetches_without_duplicate_tickets(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory, support: None
) -> None:
    account = dataclasses.replace(account, folder="Helpdesk")
    dovecot.deliver(mailbox, numbered(1), folder="Helpdesk")
    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 1
    for row in rows(session_factory):
        assert process(session_factory, cfg, row.id).outcome == "created"
    before = state(session_factory, account)
    assert before is not None and before.last_uid == 1

    # The folder is recreated (a server migration, an admin's restore): new UIDVALIDITY, UIDs from 1.
    with dovecot.imap(mailbox) as conn:
        assert conn.delete('"Helpdesk"')[0] == "OK"
    dovecot.deliver(mailbox, numbered(1), folder="Helpdesk")  # the same mail again
    dovecot.deliver(mailbox, numbered(2), folder="Helpdesk")
    with structlog.testing.capture_logs() as captured:
        assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 2

    after = state(session_factory, account)
    assert after is not None and after.uidvalidity != before.uidvalidity and after.last_uid == 2
    [changed] = events(captured, "imap_uidvalidity_changed")
    assert changed["account"] == "helpdesk" and changed["old"] == before.uidvalidity
    outcomes = [process(session_factory, cfg, r.id).outcome for r in rows(session_factory)[1:]]
    assert outcomes == ["duplicate", "created"]
    with session_factory() as session:
        assert [t.subject for t in tickets(session)] == ["Problem 1", "Problem 2"]


# --- nothing is marked that is not durable ------------------------------------------------------------


def test_mail_that_cannot_be_written_to_the_spool_stays_unread(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory, support: None
) -> None:
    dovecot.deliver(mailbox, numbered(1))
    cfg.spool_dir.parent.mkdir(parents=True, exist_ok=True)
    cfg.spool_dir.write_text("a file where the spool directory belongs")  # root ignores chmod; this fails

    with pytest.raises(OSError):
        run(poller(cfg, account, session_factory, Handed()).poll_once())

    assert dovecot.flags(mailbox) == [set()]
    assert rows(session_factory) == []
    bookmark = state(session_factory, account)
    assert bookmark is None or bookmark.last_uid == 0

    cfg.spool_dir.unlink()  # fixed: the next cycle spools it
    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 1
    assert dovecot.flags(mailbox) == [{SEEN}]


@pytest.mark.parametrize("move_to", [None, "Done"])
def test_mail_whose_spool_row_cannot_be_committed_stays_unread_and_in_the_folder(
    dovecot: Dovecot,
    mailbox: str,
    account: ImapAccount,
    cfg: Config,
    session_factory: Factory,
    support: None,
    monkeypatch: pytest.MonkeyPatch,
    move_to: str | None,
) -> None:
    account = dataclasses.replace(account, move_to=move_to)
    dovecot.deliver(mailbox, numbered(1))

    def database_down(*args: Any, **kwargs: Any) -> SpoolEntry:
        raise OperationalError("INSERT INTO spool", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patch:
        patch.setattr(maild.ingress.imap_poll, "record_received", database_down)
        with pytest.raises(OperationalError):
            run(poller(cfg, account, session_factory, Handed()).poll_once())

    assert dovecot.flags(mailbox) == [set()]
    assert dovecot.messages(mailbox, "Done") == []
    bookmark = state(session_factory, account)
    assert bookmark is None or bookmark.last_uid == 0  # rolled back with the row
    # The database is back: spooled now, then marked.
    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 1
    if move_to is None:
        assert dovecot.flags(mailbox) == [{SEEN}]
    else:
        assert dovecot.messages(mailbox) == []
        assert dovecot.messages(mailbox, "Done") == [numbered(1)]


# --- the daemon's loop: IDLE, polling, failures -------------------------------------------------------


def test_mail_arriving_while_idling_is_spooled(
    dovecot: Dovecot,
    mailbox: str,
    account: ImapAccount,
    cfg: Config,
    session_factory: Factory,
    support: None,
    logs: list[dict[str, Any]],
) -> None:
    handed = Handed()

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(poller(cfg, account, session_factory, handed).run(stopping))
        await eventually(lambda: events(logs, "imap_idling"), "the poller to idle")
        # poll_seconds is 300: only the server's IDLE push can make this arrive within the wait.
        with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=TIMEOUT) as lmtp:
            await asyncio.to_thread(lmtp.sendmail, "alice@customer.example", [mailbox], numbered(1))
        await eventually(lambda: handed.spooled, "the mail to be spooled")
        await eventually(lambda: dovecot.flags(mailbox) == [{SEEN}], "\\Seen")
        stopping.set()
        await asyncio.wait_for(task, TIMEOUT)  # stopping ends IDLE at once

    run(scenario())
    assert [(r.ingress, r.recipient) for r in rows(session_factory)] == [("imap", SUPPORT)]
    assert not events(logs, "imap_failed")


def test_without_idle_it_polls_every_poll_seconds(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory, support: None
) -> None:
    account = dataclasses.replace(account, idle=False, poll_seconds=0.2)
    handed = Handed()

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(poller(cfg, account, session_factory, handed).run(stopping))
        await asyncio.to_thread(dovecot.deliver, mailbox, numbered(1))
        await eventually(lambda: len(handed.spooled) == 1, "the first mail")
        await asyncio.to_thread(dovecot.deliver, mailbox, numbered(2))
        await eventually(lambda: len(handed.spooled) == 2, "the second mail")
        stopping.set()
        await asyncio.wait_for(task, TIMEOUT)

    run(scenario())
    assert len(rows(session_factory)) == 2


def test_dovecot_down_is_logged_and_the_poller_reconnects(
    dovecot: Dovecot,
    mailbox: str,
    account: ImapAccount,
    cfg: Config,
    session_factory: Factory,
    support: None,
    logs: list[dict[str, Any]],
) -> None:
    account = dataclasses.replace(account, poll_seconds=1.0)
    dovecot.stop()
    handed = Handed()

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(poller(cfg, account, session_factory, handed).run(stopping))
        await eventually(lambda: len(events(logs, "imap_failed")) >= 2, "failures to be logged")
        assert not task.done()
        await asyncio.to_thread(dovecot.start)
        await asyncio.to_thread(dovecot.deliver, mailbox, numbered(1))
        await eventually(lambda: handed.spooled, "the mail after the restart")
        # And again while connected (idling): the server goes away, the poller comes back.
        await asyncio.to_thread(dovecot.stop)
        await asyncio.to_thread(dovecot.start)
        await asyncio.to_thread(dovecot.deliver, mailbox, numbered(2))
        await eventually(lambda: len(handed.spooled) == 2, "the mail after the second restart")
        stopping.set()
        await asyncio.wait_for(task, TIMEOUT)

    run(scenario())
    failed = events(logs, "imap_failed")[0]
    assert failed["account"] == "helpdesk" and failed["log_level"] == "warning"
    assert "Connection" in failed["error"] or "refused" in failed["error"]
    assert failed["retry_in_seconds"] == 0.1
    assert events(logs, "imap_failed")[1]["retry_in_seconds"] == 0.2  # doubling
    assert len(rows(session_factory)) == 2


def test_wrong_password_is_logged_without_it_and_retried(
    dovecot: Dovecot,
    account: ImapAccount,
    cfg: Config,
    session_factory: Factory,
    support: None,
    secret_file: Path,
    logs: list[dict[str, Any]],
) -> None:
    secret_file.write_text("not-the-password\n")

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(poller(cfg, account, session_factory, Handed()).run(stopping))
        # The second refusal takes Dovecot's auth penalty (a few seconds): WAIT covers it.
        await eventually(lambda: len(events(logs, "imap_failed")) >= 2, "two failed logins")
        stopping.set()
        await asyncio.wait_for(task, TIMEOUT)

    run(scenario())
    failed = events(logs, "imap_failed")[0]
    assert "LOGIN" in failed["error"] and "not-the-password" not in str(failed)


def test_missing_desk_is_logged_and_polling_starts_once_it_exists(
    dovecot: Dovecot,
    mailbox: str,
    account: ImapAccount,
    cfg: Config,
    session_factory: Factory,
    logs: list[dict[str, Any]],
) -> None:
    dovecot.deliver(mailbox, numbered(1))
    handed = Handed()

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(poller(cfg, account, session_factory, handed).run(stopping))
        await eventually(lambda: events(logs, "imap_desk_missing"), "the missing desk to be logged")
        assert dovecot.flags(mailbox) == [set()]
        await asyncio.to_thread(make_desk, session_factory, "support", [SUPPORT], SUP_PATTERN)
        await eventually(lambda: handed.spooled, "the mail once the desk exists")
        stopping.set()
        await asyncio.wait_for(task, TIMEOUT)

    run(scenario())
    missing = events(logs, "imap_desk_missing")[0]
    assert missing["log_level"] == "error" and missing["desk"] == "support"


def test_run_pollers_polls_every_account_for_its_desk(
    dovecot: Dovecot, secret_file: Path, cfg: Config, session_factory: Factory, support: None
) -> None:
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    accounts = []
    for name, desk in (("support-box", "support"), ("sales-box", "sales")):
        address = dovecot.add_user(name, "imap-secret")
        dovecot.deliver(address, numbered(len(accounts) + 1, to=address))
        accounts.append(
            ImapAccount(
                name=name,
                desk=desk,
                host=dovecot.host,
                port=dovecot.imap_port,
                tls=False,
                username=address,
                password_file=secret_file,
                poll_seconds=300.0,
            )
        )
    handed = Handed()

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(
            run_pollers(dataclasses.replace(cfg, imap=tuple(accounts)), session_factory, handed, stopping)
        )
        await eventually(lambda: len(handed.spooled) == 2, "both accounts")
        stopping.set()
        await asyncio.wait_for(task, TIMEOUT)

    run(scenario())
    assert sorted(r.recipient for r in rows(session_factory)) == sorted([SALES, SUPPORT])


def test_the_desks_first_address_is_the_recipient(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory
) -> None:
    make_desk(session_factory, "support", ["Help@Example.COM", SUPPORT], SUP_PATTERN)
    dovecot.deliver(mailbox, numbered(1))
    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 1
    with session_factory() as session:
        first = session.scalars(select(DeskAddress.address).order_by(DeskAddress.id)).first()
    assert [r.recipient for r in rows(session_factory)] == [first] == ["help@example.com"]


def test_processing_the_spooled_rows_makes_tickets(
    dovecot: Dovecot, mailbox: str, account: ImapAccount, cfg: Config, session_factory: Factory, support: None
) -> None:
    dovecot.deliver(mailbox, numbered(1))
    assert run(poller(cfg, account, session_factory, Handed()).poll_once()) == 1
    [row] = rows(session_factory)
    result = process(session_factory, cfg, row.id)
    assert result.outcome == "created"
    with transaction(session_factory) as session:
        assert session.get(SpoolEntry, row.id).state == "done"  # type: ignore[union-attr]


# --- helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoded"),
    [("INBOX", "INBOX"), ("Gelöscht", "Gel&APY-scht"), ("A&B", "A&-B"), ("日本語", "&ZeVnLIqe-")],
)
def test_folder_names_in_modified_utf7(name: str, encoded: str) -> None:
    assert imap_utf7(name) == encoded


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Return-Path: <bounce@list.example>\r\n", "bounce@list.example"),
        (b"Return-Path: <>\r\n", ""),
        (b"", ""),
    ],
)
def test_return_path_is_the_envelope_sender(header: bytes, expected: str) -> None:
    assert return_path(header + b"Subject: x\r\n\r\nbody\r\n") == expected
