"""The LMTP/SMTP intake in process: the real aiosmtpd protocols of `maild.ingress.listeners` on loopback
ports,
the real spool and database, a client speaking the protocol line by line. What the MTA reads back is
the contract: 550 5.1.1 at RCPT for an address no desk has, 552 5.3.4 over the size limit, 451 4.3.0 for
disk or database trouble, 250 only once the bytes are fsynced and the 'received' row is committed, and
over LMTP one reply per recipient. The pipeline is not run here (tests/test_serve.py runs the daemon)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, ListenAddress
from maild.ingress.listeners import (
    MAX_RECIPIENTS,
    Connections,
    DeskAddresses,
    Intake,
    Listener,
    Spooled,
    message_id_of,
    start_listeners,
    stop_listeners,
)
from maild.storage.db import transaction
from maild.storage.models import DeskAddress
from tests.pipeline.helpers import SALES, SALES_PATTERN, SUP_PATTERN, SUPPORT, crlf, mail, make_desk, spool
from tests.test_serve import spooled_file

Factory = sessionmaker[Session]
T = TypeVar("T")
TIMEOUT = 15

# Reply codes as an MTA reads them (first three characters, then the enhanced code).
OK, NO_SUCH_DESK, TOO_BIG, TRY_LATER = "250", "550 5.1.1", "552 5.3.4", "451 4.3.0"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class Client:
    """A line-by-line SMTP/LMTP client: it sends exactly what the test says and returns every reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def replies(self, count: int = 1) -> list[str]:
        """`count` complete replies; a multi-line reply is returned as its last line."""
        found = []
        while len(found) < count:
            line = (await self.reader.readline()).decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                raise ConnectionError("connection closed")
            if line[3:4] != "-":
                found.append(line)
        return found

    async def command(self, line: str | bytes, count: int = 1) -> list[str]:
        data = line.encode() if isinstance(line, str) else line
        self.writer.write(data + b"\r\n")
        await self.writer.drain()
        return await self.replies(count)

    async def one(self, line: str | bytes) -> str:
        return (await self.command(line))[0]

    async def greet(self, verb: str = "EHLO") -> None:
        assert (await self.replies())[0].startswith("220")
        assert (await self.one(f"{verb} client.example")).startswith("250")

    async def data(self, raw: bytes, count: int = 1) -> list[str]:
        assert (await self.one("DATA")).startswith("354")
        body = b"".join(b"." + line if line.startswith(b".") else line for line in raw.splitlines(True))
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        return await self.command(body + b".", count)

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


@dataclasses.dataclass
class Running:
    lmtp_port: int
    smtp_port: int
    spooled: list[Spooled]
    connections: Connections
    addresses: DeskAddresses
    handler: Intake


@asynccontextmanager
async def intake(
    cfg: Config, factory: Factory, tls: ssl.SSLContext | None = None, **limits: Any
) -> AsyncIterator[Running]:
    """One LMTP and one SMTP listener on free loopback ports, as `maild serve` starts them."""
    loopback = (ListenAddress("127.0.0.1", 0),)
    listen = dataclasses.replace(cfg.listen, lmtp=loopback, smtp=loopback, **limits)
    cfg = dataclasses.replace(cfg, listen=listen)
    spooled: list[Spooled] = []
    pool = ThreadPoolExecutor(2)
    connections = Connections(listen.max_connections)
    addresses = DeskAddresses(factory)
    handler = Intake(cfg, factory, addresses, pool, spooled.append)
    listeners = await start_listeners(cfg, handler, connections, tls)
    ports = {lst.protocol: _port(lst) for lst in listeners}
    try:
        yield Running(ports["lmtp"], ports["smtp"], spooled, connections, addresses, handler)
    finally:
        await stop_listeners(listeners)
        await connections.drain(1)
        handler.close()
        pool.shutdown(wait=True)


def _port(listener: Listener) -> int:
    return int(listener.server.sockets[0].getsockname()[1])


@pytest.fixture
def desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)


# --- SMTP -------------------------------------------------------------------------------------------


def test_smtp_spools_before_250(cfg: Config, session_factory: Factory, desks: None) -> None:
    raw = mail()

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            answers = [await c.one("MAIL FROM:<alice@customer.example>"), await c.one(f"RCPT TO:<{SUPPORT}>")]
            answers += await c.data(raw)
            await c.one("QUIT")
            await c.close()
            assert [(s.ingress, s.recipients, s.message_id) for s in srv.spooled] == [
                ("smtp", (SUPPORT,), "<first@customer.example>")
            ]
            return answers

    answers = run(scenario())

    assert answers[0].startswith(OK) and answers[1].startswith("250 2.1.5")
    assert answers[2].startswith("250 2.0.0")
    # By the time the 250 was written the bytes were on disk and the row committed.
    assert spooled_file(cfg, raw).read_bytes() == raw
    with session_factory() as s:
        [row] = spool(s)
        assert (row.state, row.ingress, row.recipient, row.size) == ("received", "smtp", SUPPORT, len(raw))
        assert f"spooled as {row.id}" in answers[2]


def test_unknown_recipient_is_refused_at_rcpt(cfg: Config, session_factory: Factory, desks: None) -> None:
    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            await c.one("MAIL FROM:<alice@customer.example>")
            answers = [await c.one("RCPT TO:<nobody@example.com>"), await c.one("DATA")]
            await c.close()
            return answers

    refused, data = run(scenario())
    assert refused == f"{NO_SUCH_DESK} <nobody@example.com>: no such desk"
    assert data.startswith("503")  # no accepted recipient, no DATA


@pytest.mark.parametrize(
    "recipient",
    ["support+abc123@example.com", "Support@Example.COM", "SUPPORT+X-Y@example.com"],
    ids=["token", "case", "token-and-case"],
)
def test_subaddress_and_case_forms_of_a_desk_address_are_accepted(
    recipient: str, cfg: Config, session_factory: Factory, desks: None
) -> None:
    async def scenario() -> str:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            await c.one("MAIL FROM:<alice@customer.example>")
            answer = await c.one(f"RCPT TO:<{recipient}>")
            await c.close()
            return answer

    assert run(scenario()).startswith("250 2.1.5")


def test_too_many_recipients_is_a_temporary_refusal(
    cfg: Config, session_factory: Factory, desks: None
) -> None:
    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            await c.one("MAIL FROM:<alice@customer.example>")
            answers = [await c.one(f"RCPT TO:<support+{n}@example.com>") for n in range(MAX_RECIPIENTS + 1)]
            await c.close()
            return answers

    answers = run(scenario())
    assert all(a.startswith("250") for a in answers[:MAX_RECIPIENTS])
    assert answers[-1].startswith("452 4.5.3")


def test_smtputf8_and_8bit_mail_is_kept_byte_for_byte(
    cfg: Config, session_factory: Factory, desks: None
) -> None:
    raw = crlf(
        "From: Jörg Müller <jörg@bücher.example>\nTo: support@example.com\nSubject: Grüße, 你好\n"
        "Message-ID: <utf8@bücher.example>\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n\nDer Drucker brennt. Ça brûle. 火事だ。\n"
    )

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            answers = [await c.one("MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME")]
            answers.append(await c.one(f"RCPT TO:<{SUPPORT}>"))
            answers += await c.data(raw)
            await c.close()
            return answers

    assert [a[:3] for a in run(scenario())] == ["250", "250", "250"]
    assert spooled_file(cfg, raw).read_bytes() == raw


def test_long_lines_are_accepted(cfg: Config, session_factory: Factory, desks: None) -> None:
    # aiosmtpd alone answers 500 (permanent) to a DATA line over 1000 bytes: unwrapped HTML would bounce.
    raw = mail(body="<p>" + "x" * 5000 + "</p>\n")

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            await c.one("MAIL FROM:<alice@customer.example>")
            await c.one(f"RCPT TO:<{SUPPORT}>")
            answers = await c.data(raw)
            await c.close()
            return answers

    assert run(scenario())[0].startswith("250 2.0.0")
    assert spooled_file(cfg, raw).read_bytes() == raw


# --- size limit -------------------------------------------------------------------------------------


def test_declared_size_over_the_limit_is_refused_at_mail(
    cfg: Config, session_factory: Factory, desks: None
) -> None:
    async def scenario() -> list[str]:
        async with intake(cfg, session_factory, max_message_bytes=4096) as srv:
            c = await Client.connect(srv.smtp_port)
            assert (await c.replies())[0].startswith("220")
            ehlo = await c.command("EHLO client.example")
            answer = await c.one("MAIL FROM:<alice@customer.example> SIZE=5000")
            await c.close()
            return [*ehlo, answer]

    _, refused = run(scenario())
    assert refused == f"{TOO_BIG} Message size exceeds the limit of 4096 bytes"


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_data_over_the_limit_is_refused_and_not_spooled(
    protocol: str, cfg: Config, session_factory: Factory, desks: None
) -> None:
    raw = mail(body=("y" * 70 + "\n") * 100)  # about 7 kB

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory, max_message_bytes=4096) as srv:
            c = await Client.connect(srv.lmtp_port if protocol == "lmtp" else srv.smtp_port)
            await c.greet("LHLO" if protocol == "lmtp" else "EHLO")
            await c.one("MAIL FROM:<alice@customer.example>")
            await c.one(f"RCPT TO:<{SUPPORT}>")
            await c.one(f"RCPT TO:<{SALES}>")
            # LMTP: one reply per recipient even for the size error, or the MTA waits for the second.
            answers = await c.data(raw, count=2 if protocol == "lmtp" else 1)
            assert (await c.one("NOOP")).startswith("250")  # the session goes on
            await c.close()
            return answers

    answers = run(scenario())
    assert answers == [f"{TOO_BIG} Message size exceeds the limit of 4096 bytes"] * len(answers)
    with session_factory() as s:
        assert spool(s) == []


def test_mail_from_is_kept_with_its_parameters(cfg: Config, session_factory: Factory, desks: None) -> None:
    """Intake defines handle_MAIL (blocked senders, reject mode): the envelope keeps what aiosmtpd's own
    MAIL handling would record, and a second MAIL in one transaction is still refused."""

    async def scenario() -> tuple[list[str], list[str]]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            answers = [
                await c.one("MAIL FROM:<Alice@Customer.Example> BODY=8BITMIME SIZE=1000"),
                await c.one("MAIL FROM:<other@customer.example>"),
                await c.one(f"RCPT TO:<{SUPPORT}>"),
            ]
            answers += await c.data(mail())
            await c.close()
            return answers, [s.ingress for s in srv.spooled]

    answers, ingresses = run(scenario())
    assert answers[0] == "250 2.1.0 OK"
    assert answers[1].startswith("503")  # nested MAIL: the sender was recorded
    assert answers[2].startswith("250 2.1.5") and answers[3].startswith("250 2.0.0")
    assert ingresses == ["smtp"]
    with session_factory() as s:
        [row] = spool(s)
    assert row.mail_from == "Alice@Customer.Example"  # as given: the pipeline normalises where it compares


# --- LMTP -------------------------------------------------------------------------------------------


def test_lmtp_answers_once_per_recipient(cfg: Config, session_factory: Factory, desks: None) -> None:
    raw = mail(to=f"{SUPPORT}, {SALES}")

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.lmtp_port)
            await c.greet("LHLO")
            await c.one("MAIL FROM:<alice@customer.example>")
            rcpts = [await c.one(f"RCPT TO:<{a}>") for a in (SUPPORT, "nobody@example.com", SALES)]
            answers = rcpts + await c.data(raw, count=2)
            await c.close()
            assert [s.recipients for s in srv.spooled] == [(SUPPORT, SALES)]
            return answers

    support_ok, refused, sales_ok, first, second = run(scenario())
    assert support_ok.startswith("250") and sales_ok.startswith("250")
    assert refused.startswith(NO_SUCH_DESK)
    with session_factory() as s:
        rows = spool(s)
    assert [(r.recipient, r.ingress, r.state) for r in rows] == [
        (SUPPORT, "lmtp", "received"),
        (SALES, "lmtp", "received"),
    ]
    assert first == f"250 2.0.0 <{SUPPORT}> OK, spooled as {rows[0].id}"
    assert second == f"250 2.0.0 <{SALES}> OK, spooled as {rows[1].id}"


def test_lmtp_refuses_helo_and_ehlo(cfg: Config, session_factory: Factory) -> None:
    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.lmtp_port)
            await c.replies()
            answers = [await c.one("EHLO client.example"), await c.one("HELO client.example")]
            await c.close()
            return answers

    assert [a[:3] for a in run(scenario())] == ["500", "500"]


# --- trouble: try again later -----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_spool_trouble_answers_451_per_recipient(
    protocol: str, cfg: Config, session_factory: Factory, desks: None
) -> None:
    cfg.spool_dir.write_text("a file where the spool directory should be")

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.lmtp_port if protocol == "lmtp" else srv.smtp_port)
            await c.greet("LHLO" if protocol == "lmtp" else "EHLO")
            await c.one("MAIL FROM:<alice@customer.example>")
            await c.one(f"RCPT TO:<{SUPPORT}>")
            await c.one(f"RCPT TO:<{SALES}>")
            answers = await c.data(mail(), count=2 if protocol == "lmtp" else 1)
            await c.close()
            assert srv.spooled == []
            return answers

    answers = run(scenario())
    assert len(answers) == (2 if protocol == "lmtp" else 1)
    assert all(a.startswith(TRY_LATER) for a in answers)
    assert not any("NotADirectory" in a or "Errno" in a for a in answers)  # no internals to the client


def test_database_trouble_at_rcpt_answers_451(cfg: Config, tmp_path: Path) -> None:
    from maild.storage.db import make_engine, make_sessionmaker

    (tmp_path / "not-a-db").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'not-a-db'}")

    async def scenario() -> str:
        async with intake(cfg, make_sessionmaker(engine)) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            await c.one("MAIL FROM:<alice@customer.example>")
            answer = await c.one(f"RCPT TO:<{SUPPORT}>")
            await c.close()
            return answer

    try:
        assert run(scenario()).startswith(TRY_LATER)
    finally:
        engine.dispose()


class FailingMail(Intake):
    async def handle_MAIL(self, *args: Any) -> str:
        raise RuntimeError("secret internal detail")


def test_an_exception_in_a_hook_is_451_without_the_error_text(
    cfg: Config, session_factory: Factory, desks: None
) -> None:
    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        listen = dataclasses.replace(cfg.listen, lmtp=(), smtp=(ListenAddress("127.0.0.1", 0),))
        with ThreadPoolExecutor(1) as pool:
            handler = FailingMail(cfg, session_factory, DeskAddresses(session_factory), pool, print)
            connections = Connections(10)
            [listener] = await start_listeners(
                dataclasses.replace(cfg, listen=listen), handler, connections, None
            )
            c = await Client.connect(_port(listener))
            await c.greet()
            answer = await c.one("MAIL FROM:<alice@customer.example>")
            await c.close()
            await stop_listeners([listener])
            await connections.drain(1)
        assert loop.is_running()
        return answer

    answer = run(scenario())
    assert answer.startswith(TRY_LATER)  # aiosmtpd alone: a permanent "500 Error: (RuntimeError) …"
    assert "secret" not in answer


# --- desk address cache -----------------------------------------------------------------------------


def test_a_desk_added_later_is_accepted_at_once_and_a_removed_one_after_a_refresh(
    session_factory: Factory,
) -> None:
    addresses = DeskAddresses(session_factory, refresh_seconds=3600)
    assert addresses.refresh() == 0
    assert not addresses.is_desk(SUPPORT)

    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)  # what `maildctl desk add` does
    assert addresses.is_desk(SUPPORT)  # a miss asks the database
    assert addresses.is_desk("support+tok@example.com")

    with transaction(session_factory) as s:
        s.execute(delete(DeskAddress))
    assert addresses.is_desk(SUPPORT)  # cached until the next refresh (periodic, or SIGHUP)
    assert addresses.refresh() == 0
    assert not addresses.is_desk(SUPPORT)


def test_the_cache_reloads_itself_when_stale(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    addresses = DeskAddresses(session_factory, refresh_seconds=0)
    assert addresses.is_desk(SUPPORT)
    with transaction(session_factory) as s:
        s.execute(delete(DeskAddress))
    assert not addresses.is_desk(SUPPORT)


# --- connections ------------------------------------------------------------------------------------


def test_connections_over_the_limit_get_421(cfg: Config, session_factory: Factory, desks: None) -> None:
    async def scenario() -> tuple[str, str, str]:
        async with intake(cfg, session_factory, max_connections=2) as srv:
            first, second = await Client.connect(srv.smtp_port), await Client.connect(srv.lmtp_port)
            greetings = [(await first.replies())[0], (await second.replies())[0]]
            third = await Client.connect(srv.smtp_port)
            refused = (await third.replies())[0]
            await first.one("QUIT")
            await first.close()
            await asyncio.sleep(0.1)
            fourth = await Client.connect(srv.smtp_port)  # a slot is free again
            after = (await fourth.replies())[0]
            for c in (second, third, fourth):
                await c.close()
            assert all(g.startswith("220") for g in greetings)
            return greetings[0], refused, after

    _, refused, after = run(scenario())
    assert refused.startswith("421 4.7.0")
    assert after.startswith("220")


def test_drain_closes_idle_sessions_and_lets_a_transaction_finish(
    cfg: Config, session_factory: Factory, desks: None
) -> None:
    raw = mail()

    async def scenario() -> tuple[str, list[str], str]:
        async with intake(cfg, session_factory) as srv:
            idle, busy = await Client.connect(srv.smtp_port), await Client.connect(srv.smtp_port)
            await idle.greet()
            await busy.greet()
            await busy.one("MAIL FROM:<alice@customer.example>")
            await busy.one(f"RCPT TO:<{SUPPORT}>")
            draining = asyncio.create_task(srv.connections.drain(10))
            shut = (await idle.replies())[0]  # idle: told at once
            accepted = await busy.data(raw)  # in a transaction: finishes it
            after = (await busy.replies())[0]  # then it is closed too
            cut_off = await draining
            assert cut_off == 0
            return shut, accepted, after

    shut, accepted, after = run(scenario())
    assert shut.startswith("421 4.3.2")
    assert accepted[0].startswith("250 2.0.0")
    assert after.startswith("421 4.3.2")


# --- STARTTLS ---------------------------------------------------------------------------------------


def test_starttls_with_the_configured_certificate(
    cfg: Config, session_factory: Factory, desks: None, tmp_path: Path
) -> None:
    from tests.test_serve import self_signed

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed(tmp_path))

    async def scenario() -> tuple[dict[str, Any], str]:
        async with intake(cfg, session_factory, tls=context) as srv:
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1",
                port=srv.smtp_port,
                timeout=TIMEOUT,
                start_tls=True,
                validate_certs=False,
            )
            await client.connect()
            errors, message = await client.sendmail("alice@customer.example", [SUPPORT], mail())
            encrypted = client.get_transport_info("sslcontext") is not None
            await client.quit()
            assert encrypted
            # The TLS session is released like any other (it would count against max_connections).
            for _ in range(40):
                if not srv.connections.open:
                    break
                await asyncio.sleep(0.05)
            assert not srv.connections.open
            return errors, message

    errors, message = run(scenario())
    assert errors == {} and message.startswith("2.0.0")


# --- helpers ----------------------------------------------------------------------------------------


def test_message_id_of_reads_only_the_header() -> None:
    assert message_id_of(mail()) == "<first@customer.example>"
    assert message_id_of(mail(message_id=None)) == ""
    folded = crlf("Subject: x\nMessage-ID:\n <folded@x.example>\n\nMessage-ID: <body@x>\n")
    assert message_id_of(folded) == "<folded@x.example>"
    assert message_id_of(b"\x00\xff garbage") == ""
