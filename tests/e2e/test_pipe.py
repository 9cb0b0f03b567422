"""Postfix → pipe transport → `maild pipe` (docs/postfix.md (b)): a ticket and its auto-reply through the
same Postfix to the customer's Dovecot mailbox; exit 67 → Postfix bounces; exit 75 → Postfix defers and
delivers once the database is back.

`maild pipe` runs as `nobody` here (Postfix refuses root), so maild's data dir and a SQLite database are
handed to that user first."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IS_POSTGRESQL
from tests.daemon import Factory, Lock, wait_until, write_config
from tests.e2e.helpers import DESK, TIMEOUT, parse, relays, toml_table
from tests.pipeline.helpers import mail, outbox, spool, tickets
from tests.servers.dovecot import Dovecot
from tests.servers.postfix import Postfix, StartPostfix, give_to_pipe_user, maild_settings


def pipe_setup(
    postfix: StartPostfix, dovecot: Dovecot, tmp_path: Path, data_dir: Path, url: str, database_url: str
) -> Postfix:
    """Postfix with the pipe transport to maild; maild's config (database `url`, replies to that Postfix)."""
    config = tmp_path / "pipe.toml"
    mta = postfix(pipe_config=config, relays=relays(dovecot))
    outgoing = maild_settings(smarthost_port=mta.smtp_port)["outgoing"]
    # A short busy timeout: a locked SQLite database fails the attempt (exit 75) quickly.
    write_config(
        config, data_dir, url, listen={}, busy_timeout_ms=300, extra=toml_table("outgoing", outgoing)
    )
    owned = [data_dir] if IS_POSTGRESQL else [data_dir, Path(database_url.removeprefix("sqlite:///")).parent]
    give_to_pipe_user(*owned)
    return mta


def test_a_mail_through_the_pipe_becomes_a_ticket_and_the_auto_reply_reaches_the_customer(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    mta = pipe_setup(postfix, dovecot, tmp_path, data_dir, database_url, database_url)
    raw = mail(sender=f"Carol <{customer}>", to=DESK, message_id="<pipe-1@mail.test>")
    # Two addresses of the desk: maild_destination_recipient_limit = 1 makes two `maild pipe` runs.
    alias = "support+billing@support.test"

    mta.send(customer, [DESK, alias], raw)

    for rcpt in (DESK, alias):
        mta.wait_log(rf"to=<{re.escape(rcpt)}>, relay=maild, .*status=sent \(delivered via maild service\)")
    [reply_raw] = wait_until(lambda: dovecot.messages(customer), TIMEOUT, "the auto-reply in Dovecot", 0.25)
    mta.wait_queue_empty()
    with session_factory() as s:
        [ticket] = tickets(s)
        rows = sorted(spool(s), key=lambda r: r.outcome or "")
        assert [(r.ingress, r.outcome, r.recipient, r.mail_from) for r in rows] == [
            ("pipe", "created", DESK if rows[0].recipient == DESK else alias, customer),
            ("pipe", "duplicate", alias if rows[0].recipient == DESK else DESK, customer),
        ]
    reply = parse(reply_raw)
    assert f"[{ticket.number}]" in reply["Subject"]
    assert reply["In-Reply-To"] == "<pipe-1@mail.test>"
    assert reply["Return-Path"].startswith("<bounces+")
    # The spool was written by the pipe user, as an admin's data dir would be.
    assert all(path.owner() == "nobody" for path in (data_dir / "spool").rglob("*"))

    # A bounce's null sender: `null_sender=` in master.cf makes it an empty --sender (Postfix's default
    # would pass "MAILER-DAEMON").
    dsn = mail(sender=f"Mail Delivery System <{customer}>", to=DESK, message_id="<dsn-1@mail.test>")
    mta.send("<>", DESK, dsn)
    mta.wait_log(r"from=<>, size=\d+, nrcpt=1")
    mta.wait_queue_empty()
    with session_factory() as s:
        [null_sender] = [r for r in spool(s) if r.header_message_id == "<dsn-1@mail.test>"]
        assert (null_sender.mail_from, null_sender.state) == ("<>", "done")  # null sender


def test_no_auto_reply_to_a_null_sender(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    mta = pipe_setup(postfix, dovecot, tmp_path, data_dir, database_url, database_url)
    raw = mail(sender=f"Mail Delivery System <{customer}>", to=DESK, message_id="<dsn-2@mail.test>")

    mta.send("<>", DESK, raw)

    mta.wait_log(r"to=<support@support\.test>, relay=maild, .*status=sent")
    mta.wait_queue_empty()
    with session_factory() as s:
        assert outbox(s) == []
        # Kept as a ticket, flagged by the empty --sender together with the `Return-Path: <>` Postfix's pipe
        # flag R writes (a pipe without --sender would leave the envelope unknown).
        [row] = spool(s)
        assert (row.mail_from, row.outcome) == ("<>", "created")
        assert "automatic mail (auto-generated: envelope sender <>)" in row.reason
    assert dovecot.messages(customer) == []


def test_an_unknown_desk_address_exits_67_and_postfix_bounces(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    mta = pipe_setup(postfix, dovecot, tmp_path, data_dir, database_url, database_url)

    mta.send(customer, "nobody@support.test", mail(sender=customer, to="nobody@support.test"))

    line = mta.wait_log(r"to=<nobody@support\.test>, relay=maild, .*dsn=(\S+), status=bounced \((.*)\)")
    assert line.group(1) == "5.1.1"  # Postfix's meaning of EX_NOUSER
    assert "maild pipe: " in line.group(2)
    [bounce_raw] = wait_until(lambda: dovecot.messages(customer), TIMEOUT, "the bounce", 0.25)
    assert parse(bounce_raw).get_content_type() == "multipart/report"
    mta.wait_queue_empty()
    with session_factory() as s:
        assert [(r.outcome, r.recipient) for r in spool(s)] == [("unknown_recipient", "nobody@support.test")]
        assert tickets(s) == []


@pytest.fixture
def lock(database_url: str) -> Iterator[Lock]:
    held = Lock(database_url)
    yield held
    held.release()


def test_a_locked_database_exits_75_postfix_defers_and_delivers_once_it_is_free(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
    lock: Lock,
) -> None:
    mta = pipe_setup(postfix, dovecot, tmp_path, data_dir, lock.serve_url(), database_url)
    raw = mail(sender=customer, to=DESK, message_id="<locked@mail.test>")
    lock.acquire()

    mta.send(customer, DESK, raw)

    deferred = mta.wait_log(r"to=<support@support\.test>, relay=maild, .*status=deferred \((.*)\)")
    assert "maild pipe: database unavailable" in deferred.group(1)
    [queued] = mta.queue()  # kept by Postfix (deferred, or active again for the next attempt)
    assert [r["address"] for r in queued["recipients"]] == [DESK]
    lock.release()
    mta.wait_queue_empty()  # Postfix's next attempt succeeds
    sent = [line for line in mta.log_lines() if "to=<support@support.test>" in line and "status=sent" in line]
    assert len(sent) == 1
    with session_factory() as s:
        [ticket] = tickets(s)
        assert [(r.outcome, r.ticket_id) for r in spool(s)] == [("created", ticket.id)]
    wait_until(lambda: dovecot.messages(customer), TIMEOUT, "the auto-reply", 0.25)
