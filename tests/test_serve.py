"""`maild serve` end to end: the real console script in a subprocess, listening on free loopback ports,
mail sent with aiosmtplib (SMTP) or line by line (LMTP), the outcome read back from the database, the
outgoing Maildir and the JSON log lines on stdout. Nothing is mocked; every wait is bounded."""

from __future__ import annotations

import asyncio
import signal
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import select

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import Message
from maild.storage.spool import record_received, write_raw
from tests.conftest import IS_POSTGRESQL, run_cli
from tests.daemon import (
    EX_OK,
    EX_OSERR,
    TIMEOUT,
    Factory,
    LineClient,
    Lock,
    Serve,
    all_done,
    free_port,
    queued_sent,
    self_signed,
    send,
    sent_mails,
    spooled_file,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import (
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    crlf,
    mail,
    make_desk,
    outbox,
    spool,
    tickets,
)


@pytest.fixture
def ports() -> dict[str, int]:
    return {"smtp": free_port(), "lmtp": free_port()}


@pytest.fixture
def serve_config(tmp_path: Path, data_dir: Path, database_url: str, ports: dict[str, int]) -> Path:
    listen = {"smtp": f"127.0.0.1:{ports['smtp']}", "lmtp": f"127.0.0.1:{ports['lmtp']}"}
    return write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen)


@pytest.fixture
def support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


# --- the happy paths --------------------------------------------------------------------------------


def test_smtp_mail_becomes_a_ticket_with_an_auto_reply(
    serve_config: Path, ports: dict[str, int], data_dir: Path, session_factory: Factory, start: Any
) -> None:
    serve = start(serve_config)
    # Added while serve runs, the way an admin does: accepted at once (the address cache asks on a miss).
    added = run_cli(
        "maildctl",
        "desk",
        "add",
        "support",
        "--address",
        SUPPORT,
        "--pattern",
        SUP_PATTERN,
        config=serve_config,
    )
    assert added.returncode == 0, added.stderr

    reply_text = send(ports["smtp"], mail(), [SUPPORT])

    assert reply_text.startswith("2.0.0 OK, spooled as ")
    wait_until(all_done(session_factory, 1), what="the spool row processed")
    with session_factory() as s:
        [ticket] = tickets(s)
        [row] = spool(s)
        assert (row.ingress, row.outcome, row.ticket_id) == ("smtp", "created", ticket.id)
        [queued] = outbox(s)
    wait_until(lambda: queued_sent(session_factory), what="the auto-reply sent")
    [auto_reply] = sent_mails(data_dir)
    assert auto_reply["To"].addresses[0].addr_spec == "alice@customer.example"
    assert f"[{ticket.number}]" in auto_reply["Subject"]
    assert auto_reply["In-Reply-To"] == "<first@customer.example>"

    assert serve.stop() == EX_OK
    # The log: JSON lines only, with what an operator needs to follow one mail.
    assert serve.not_json == [] and serve.stderr == b""
    assert all({"event", "level", "timestamp"} <= set(e) for e in serve.events)
    [listening_smtp] = serve.find("listening", protocol="smtp")
    assert listening_smtp["address"] == f"127.0.0.1:{ports['smtp']}"
    [accepted] = serve.find("accepted")
    assert (accepted["ingress"], accepted["message_id"], accepted["spool_ids"]) == (
        "smtp",
        "<first@customer.example>",
        [row.id],
    )
    assert isinstance(accepted["duration_ms"], float)
    [processed] = serve.find("processed")
    assert processed["spool_id"] == row.id
    assert processed["message_id"] == "<first@customer.example>"
    assert (processed["ticket"], processed["outcome"]) == (ticket.number, "created")
    assert isinstance(processed["duration_ms"], float)
    [handed_over] = serve.find("replies_handed_over")
    assert (handed_over["sent"], handed_over["ticket"]) == (1, ticket.number)
    assert serve.find("stopped")[0]["left_for_recovery"] == 0
    assert queued.message_id == auto_reply["Message-ID"]


def test_lmtp_over_tcp_and_a_unix_socket_answers_per_recipient(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    port, sock = free_port(), tmp_path / "lmtp.sock"
    listen = {"lmtp": [f"127.0.0.1:{port}", f"unix:{sock}"]}  # naming only lmtp: no SMTP listener
    serve = start(write_config(tmp_path / "lmtp.toml", data_dir, database_url, listen=listen))
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    assert [e["protocol"] for e in serve.find("listening")] == ["lmtp", "lmtp", "control"]

    cross_posted = mail(to=f"{SUPPORT}, {SALES}")
    tcp = LineClient(("127.0.0.1", port))
    assert tcp.replies()[0].startswith("220")
    assert tcp.one("LHLO mta.example").startswith("250")
    assert tcp.one("MAIL FROM:<alice@customer.example>").startswith("250")
    assert tcp.one(f"RCPT TO:<{SUPPORT}>").startswith("250")
    assert tcp.one("RCPT TO:<nobody@example.com>") == "550 5.1.1 <nobody@example.com>: no such desk"
    assert tcp.one(f"RCPT TO:<{SALES}>").startswith("250")
    assert tcp.one("DATA").startswith("354")
    tcp.send(cross_posted + b".\r\n")
    first, second = tcp.replies(2)
    assert first.startswith(f"250 2.0.0 <{SUPPORT}> OK")
    assert second.startswith(f"250 2.0.0 <{SALES}> OK")
    assert tcp.one("QUIT").startswith("221")
    tcp.close()

    local = LineClient(sock)
    local.replies()
    local.one("LHLO mta.example")
    local.one("MAIL FROM:<bob@customer.example>")
    local.one(f"RCPT TO:<{SUPPORT}>")
    local.one("DATA")
    local.send(mail(sender="Bob <bob@customer.example>", message_id="<bob@customer.example>") + b".\r\n")
    assert local.replies()[0].startswith(f"250 2.0.0 <{SUPPORT}> OK")
    local.close()

    wait_until(all_done(session_factory, 3), what="three spool rows processed")
    with session_factory() as s:
        assert sorted((t.desk.name, t.customer.email) for t in tickets(s)) == [
            ("sales", "alice@customer.example"),
            ("support", "alice@customer.example"),
            ("support", "bob@customer.example"),
        ]
        assert {r.ingress for r in spool(s)} == {"lmtp"}
    assert serve.stop() == EX_OK
    assert not sock.exists()  # removed on the way out


def test_a_reply_to_the_signed_reply_to_address_joins_the_ticket(
    serve_config: Path,
    ports: dict[str, int],
    data_dir: Path,
    session_factory: Factory,
    support: None,
    start: Any,
) -> None:
    serve = start(serve_config)
    send(ports["smtp"], mail(), [SUPPORT])
    wait_until(lambda: sent_mails(data_dir), what="the auto-reply")
    [auto_reply] = sent_mails(data_dir)
    token_address = auto_reply["Reply-To"].addresses[0].addr_spec
    assert token_address.startswith("support+")
    # No subject tag, no In-Reply-To: only the envelope recipient's token can thread it.
    reply = mail(subject="what about my printer", message_id="<second@customer.example>", to=token_address)

    send(ports["smtp"], reply, [token_address])

    wait_until(all_done(session_factory, 2), what="the reply processed")
    with session_factory() as s:
        assert len(tickets(s)) == 1
        threaded = s.scalars(select(Message.threaded_by).order_by(Message.id)).all()
        assert threaded == ["new", "token"]
        assert spool(s)[1].recipient == token_address.lower()
    assert serve.stop() == EX_OK


def test_smtputf8_mail_with_8bit_content_becomes_a_ticket(
    serve_config: Path,
    ports: dict[str, int],
    session_factory: Factory,
    support: None,
    start: Any,
    cfg: Config,
) -> None:
    raw = crlf(
        "From: Jörg Müller <jörg@buecher.example>\nTo: support@example.com\nSubject: Grüße, 你好\n"
        "Message-ID: <utf8@buecher.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n\nDer Drucker brennt. Ça brûle. 火事だ。\n"
    )
    serve = start(serve_config)

    send(
        ports["smtp"],
        raw,
        [SUPPORT],
        sender="jörg@buecher.example",
        mail_options=["SMTPUTF8", "BODY=8BITMIME"],
    )

    wait_until(all_done(session_factory, 1), what="the mail processed")
    assert spooled_file(cfg, raw).read_bytes() == raw
    with session_factory() as s:
        [ticket] = tickets(s)
        assert ticket.subject == "Grüße, 你好"
        assert ticket.customer.email == "jörg@buecher.example"
    assert serve.stop() == EX_OK


# --- refused at the edge ----------------------------------------------------------------------------


def test_unknown_recipient_is_refused_with_550(
    serve_config: Path, ports: dict[str, int], session_factory: Factory, support: None, start: Any
) -> None:
    serve = start(serve_config)

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        send(ports["smtp"], mail(to="nobody@example.com"), ["nobody@example.com"])

    [refusal] = info.value.recipients
    assert (refusal.code, refusal.message) == (550, "5.1.1 <nobody@example.com>: no such desk")
    with session_factory() as s:
        assert spool(s) == []
    # The log line is read by another thread: it may come a moment after the 550.
    assert serve.wait_for("recipient_rejected")["recipient"] == "nobody@example.com"
    assert serve.stop() == EX_OK


def test_oversize_mail_is_refused_with_552(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, support: None, start: Any
) -> None:
    port = free_port()
    listen = {"smtp": f"127.0.0.1:{port}", "max_message_bytes": 4096}
    serve = start(write_config(tmp_path / "small.toml", data_dir, database_url, listen=listen))
    big = mail(body="This line is seventy characters long, give or take a few of them.\n" * 80)

    # aiosmtplib declares SIZE= at MAIL, so the refusal comes there (without SIZE: after DATA, see
    # tests/test_listeners.py); either way the same reply.
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:
        send(port, big, [SUPPORT])

    assert info.value.code == 552
    assert info.value.message.startswith("5.3.4")
    assert send(port, mail(), [SUPPORT]).startswith("2.0.0")  # a small one passes
    assert serve.stop() == EX_OK


def test_starttls_with_the_configured_certificate(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, support: None, start: Any
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    listen = {"smtp": f"127.0.0.1:{port}", "tls_cert": str(cert), "tls_key": str(key)}
    serve = start(write_config(tmp_path / "tls.toml", data_dir, database_url, listen=listen))

    assert send(port, mail(), [SUPPORT], start_tls=True, validate_certs=False).startswith("2.0.0")

    wait_until(all_done(session_factory, 1), what="the mail processed")
    assert serve.stop() == EX_OK


# --- try again later --------------------------------------------------------------------------------


@pytest.fixture
def lock(database_url: str) -> Iterator[Lock]:
    held = Lock(database_url)
    yield held
    held.release()


def test_database_locked_answers_451_then_the_retry_is_accepted(
    tmp_path: Path, data_dir: Path, session_factory: Factory, support: None, lock: Lock, start: Any
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "locked.toml",
        data_dir,
        lock.serve_url(),
        listen={"smtp": f"127.0.0.1:{port}"},
        busy_timeout_ms=200,
    )
    serve = start(config)
    raw = mail()
    lock.acquire()

    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        send(port, raw, [SUPPORT])

    assert (info.value.code, info.value.message) == (451, "4.3.0 Temporary local problem, try again later")
    assert serve.find("accepted") == []
    assert serve.wait_for("spool_failed")["recipients"] == [SUPPORT]
    lock.release()
    # The MTA retries: now it is accepted, and becomes exactly one ticket.
    assert send(port, raw, [SUPPORT]).startswith("2.0.0")
    wait_until(all_done(session_factory, 1), what="the retry processed")
    with session_factory() as s:
        assert len(tickets(s)) == 1
    assert serve.stop() == EX_OK


def test_database_down_at_start_serves_451(
    tmp_path: Path, data_dir: Path, session_factory: Factory, start: Any
) -> None:
    if IS_POSTGRESQL:
        url = f"postgresql://maild@127.0.0.1:{free_port()}/maild"
    else:
        (tmp_path / "not-a-db").mkdir()
        url = f"sqlite:///{tmp_path / 'not-a-db'}"
    port = free_port()
    serve = start(write_config(tmp_path / "down.toml", data_dir, url, listen={"smtp": f"127.0.0.1:{port}"}))
    assert serve.find("desk_addresses_not_loaded")
    serve.wait_for("recovery_failed")

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        send(port, mail(), [SUPPORT])

    assert [(r.code, r.message[:5]) for r in info.value.recipients] == [(451, "4.3.0")]
    assert serve.stop() == EX_OK


def test_an_address_in_use_exits_71(
    tmp_path: Path, data_dir: Path, database_url: str, ports: dict[str, int]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "busy.toml", data_dir, database_url, listen={"smtp": f"127.0.0.1:{port}"}
        )
        serve = Serve(config)
        code = serve.wait_exit()
    assert code == EX_OSERR
    [event] = serve.find("cannot_listen")
    assert "Address already in use" in event["error"] or "Errno 98" in event["error"]


# --- stop, restart, recover -------------------------------------------------------------------------


def test_sigterm_lets_the_mail_in_transfer_finish_and_exits_0(
    serve_config: Path, ports: dict[str, int], session_factory: Factory, support: None, start: Any
) -> None:
    serve = start(serve_config)
    raw = mail()
    head, tail = raw[: len(raw) // 2], raw[len(raw) // 2 :]
    client = LineClient(("127.0.0.1", ports["smtp"]))
    client.replies()
    client.one("EHLO mta.example")
    client.one("MAIL FROM:<alice@customer.example>")
    client.one(f"RCPT TO:<{SUPPORT}>")
    assert client.one("DATA").startswith("354")
    client.send(head)

    serve.proc.send_signal(signal.SIGTERM)
    assert serve.wait_for("draining")["sessions"] == 1  # the listeners are closed by now
    with pytest.raises(ConnectionRefusedError):  # no new connections
        socket.create_connection(("127.0.0.1", ports["smtp"]), timeout=5).close()
    client.send(tail + b".\r\n")
    accepted = client.replies()[0]
    closing = client.replies()[0]  # then the session is closed: the next mail goes elsewhere or later
    client.close()

    assert accepted.startswith("250 2.0.0")
    assert closing.startswith("421 4.3.2")
    assert serve.stop() == EX_OK
    assert_nothing_lost(serve_config, session_factory, start, expected_tickets=1)


# Eight new tickets from one customer within the hour: above the default auto-reply rate limit (5).
ONE_SENDER_MANY_MAILS = "[hygiene]\nautoreply_per_hour = 100\nautoreply_per_day = 100"


def test_sigterm_while_replies_hang_leaves_them_queued_for_the_next_start(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, support: None, start: Any
) -> None:
    port = free_port()
    with socket.socket() as silent:
        # A smarthost that accepts the connection and never greets: the first reply hangs in the sender
        # for outgoing.timeout while the pipeline writes the eight tickets and queues the other replies.
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        smarthost = f"127.0.0.1:{silent.getsockname()[1]}"
        outgoing = f'[outgoing]\nsmarthost = "{smarthost}"\ntimeout = 4\n{ONE_SENDER_MANY_MAILS}'
        listen = {"smtp": f"127.0.0.1:{port}", "workers": 1}
        slow = write_config(tmp_path / "slow.toml", data_dir, database_url, listen=listen, extra=outgoing)
        serve = start(slow)
        raws = [mail(message_id=f"<m{n}@customer.example>", subject=f"request {n}") for n in range(8)]

        async def send_all() -> None:
            async with aiosmtplib.SMTP(
                hostname="127.0.0.1", port=port, timeout=TIMEOUT, start_tls=False
            ) as c:
                for raw in raws:
                    await c.sendmail("alice@customer.example", [SUPPORT], raw)

        asyncio.run(send_all())
        wait_until(all_done(session_factory, 8), what="the eight tickets written while a reply hangs")
        serve.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert serve.stop() == EX_OK
        # The reply being sent finishes (its timeout); the queued ones are not waited for one by one.
        assert time.monotonic() - started < 4 * 4
    assert serve.find("stopped")[0]["left_for_recovery"] == 0
    with session_factory() as s:
        assert len(tickets(s)) == 8
        assert sorted(o.status for o in outbox(s)) == ["queued"] * 8

    # The next start (outgoing to the Maildir now) sends what was queued; nothing is lost or doubled.
    config = write_config(
        tmp_path / "maildir.toml", data_dir, database_url, listen=listen, extra=ONE_SENDER_MANY_MAILS
    )
    restarted = start(config)
    wait_until(lambda: len(sent_mails(data_dir)) >= 7, what="the queued auto-replies")
    assert restarted.stop() == EX_OK
    with session_factory() as s:
        assert len(tickets(s)) == 8
        assert sorted(r.outcome or "" for r in spool(s)) == ["created"] * 8
        statuses = sorted(o.status for o in outbox(s))
        # One reply per ticket; the one whose attempt timed out may still wait for its retry.
        assert statuses in (["queued"] + ["sent"] * 7, ["sent"] * 8)
    assert len(sent_mails(data_dir)) == sum(status == "sent" for status in statuses)


def assert_nothing_lost(config: Path, factory: Factory, start: Any, expected_tickets: int) -> Serve:
    """Start serve again: whatever was still 'received' is processed; every mail is one ticket."""
    serve = start(config)
    with factory() as s:
        count = len(spool(s))
    wait_until(all_done(factory, count), what="every spool row processed after the restart")
    # Replies go out just after each ticket's commit: wait for the last one.
    wait_until(lambda: queued_sent(factory), what="every auto-reply sent")
    with factory() as s:
        assert len(tickets(s)) == expected_tickets
        assert sorted(r.outcome or "" for r in spool(s)) == ["created"] * count
        assert len(outbox(s)) == expected_tickets
    assert serve.stop() == EX_OK
    return serve


def test_rows_left_received_are_processed_at_start(
    serve_config: Path, data_dir: Path, session_factory: Factory, support: None, cfg: Config, start: Any
) -> None:
    # What a crash between the 250 and the pipeline leaves behind: the file and a 'received' row.
    raw = mail()
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(session_factory) as s:
        spool_id = record_received(s, digest, len(raw), SUPPORT, "lmtp").id

    serve = start(serve_config)

    processed = serve.wait_for("processed", spool_id=spool_id)
    assert (processed["outcome"], processed["message_id"]) == ("created", "<first@customer.example>")
    assert serve.find("recovering")[0]["spool_ids"] == [spool_id]
    with session_factory() as s:
        [row] = spool(s)
        assert (row.state, row.outcome) == ("done", "created")
        assert len(tickets(s)) == 1
    wait_until(lambda: sent_mails(data_dir), what="the auto-reply of the recovered mail")
    assert serve.stop() == EX_OK


def test_sighup_reloads_the_desk_addresses(
    serve_config: Path, session_factory: Factory, support: None, start: Any
) -> None:
    serve = start(serve_config)
    assert serve.find("desk_addresses_loaded", reason="start")[0]["count"] == 1
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)

    serve.proc.send_signal(signal.SIGHUP)

    assert serve.wait_for("desk_addresses_loaded", reason="SIGHUP")["count"] == 2
    assert serve.proc.poll() is None  # still running
    assert serve.stop(signal.SIGINT) == EX_OK
