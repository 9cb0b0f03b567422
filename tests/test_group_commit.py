"""Group commit and DATA streamed to disk (maild.ingress.group_commit, maild.ingress.listeners), over real
loopback LMTP/SMTP: many senders' mails share a transaction, no 250 goes out before its group is
committed, a failed group loses nothing acknowledged, and the spooled file holds exactly the bytes sent
(dot-stuffing undone, CRLF and 8-bit kept), never a file for a refused mail."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

import maild.ingress.group_commit
from maild.config import Config
from maild.ingress.intake import DotReader
from maild.storage.spool import INCOMING
from tests.daemon import spooled_file
from tests.pipeline.helpers import SALES, SALES_PATTERN, SUP_PATTERN, SUPPORT, mail, make_desk, spool
from tests.test_listeners import Client, intake, run

Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)


def unique_mail(i: int, body: str = "Hello,\n\nthe printer is on fire.\n") -> bytes:
    return mail(message_id=f"<m{i}@customer.example>", subject=f"Printer {i}", body=body)


async def send(port: int, raw: bytes, recipients: tuple[str, ...] = (SUPPORT,)) -> list[str]:
    """One LMTP transaction on its own connection: the replies to DATA (one per recipient)."""
    c = await Client.connect(port)
    await c.greet("LHLO")
    await c.one("MAIL FROM:<alice@customer.example>")
    for rcpt in recipients:
        await c.one(f"RCPT TO:<{rcpt}>")
    answers = await c.data(raw, count=len(recipients))
    await c.close()
    return answers


@pytest.fixture
def commits(session_factory: Factory) -> Iterator[list[int]]:
    """Every commit of the engine, counted."""
    engine = session_factory.kw["bind"]
    seen: list[int] = []

    def counted(conn: Any) -> None:
        seen.append(1)

    event.listen(engine, "commit", counted)
    yield seen
    event.remove(engine, "commit", counted)


def spool_files(cfg: Config) -> list[Path]:
    return [p for p in cfg.spool_dir.rglob("*") if p.is_file()]


def test_concurrent_senders_share_commits_and_each_250_has_its_file_and_row(
    cfg: Config, session_factory: Factory, commits: list[int]
) -> None:
    mails = [unique_mail(i) for i in range(40)]

    async def scenario() -> tuple[list[list[str]], int, int]:
        async with intake(cfg, session_factory) as srv:
            answers = await asyncio.gather(*(send(srv.lmtp_port, raw) for raw in mails))
            return answers, srv.handler.committer.groups, srv.handler.committer.grouped

    answers, groups, grouped = run(scenario())
    assert all(a[0].startswith("250 2.0.0") for a in answers)
    assert grouped == 40 and groups < 40  # some group held more than one mail
    assert len(commits) < 40
    with session_factory() as s:
        rows = spool(s)
    assert sorted(r.sha256 for r in rows) == sorted(hashlib.sha256(raw).hexdigest() for raw in mails)
    for raw in mails:
        assert spooled_file(cfg, raw).read_bytes() == raw
    assert {f"spooled as {r.id}" for r in rows} == {a[0].split("> OK, ")[1] for a in answers}


async def queued(committer: Any, count: int) -> None:
    """Until `count` mails wait in the committer's queue (their DATA complete, their 250 not sent)."""
    for _ in range(500):
        if len(committer._queue) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(committer._queue)} queued, not {count}")


class Gate:
    """Holds the committer before its transaction until released; counts the groups that passed."""

    def __init__(self, patch: pytest.MonkeyPatch, failing: Any = ()) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []
        real = maild.ingress.group_commit.record_received_many

        def gated(session: Session, rows: Any) -> list[int]:
            self.entered.set()
            assert self.open.wait(10)
            ids = real(session, rows)  # inserted, then the transaction fails: rolled back
            self.sizes.append(len(rows))
            if len(self.sizes) - 1 in failing:
                raise RuntimeError("database went away")
            return ids

        patch.setattr(maild.ingress.group_commit, "record_received_many", gated)


def test_no_250_before_the_group_is_committed(
    cfg: Config, session_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)

    async def scenario() -> list[list[str]]:
        async with intake(cfg, session_factory) as srv:
            first = asyncio.ensure_future(send(srv.lmtp_port, unique_mail(0)))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)
            rest = [asyncio.ensure_future(send(srv.lmtp_port, unique_mail(i))) for i in range(1, 6)]
            await queued(srv.handler.committer, 5)
            done, _ = await asyncio.wait([first, *rest], timeout=0.3)
            assert not done  # the committer holds: nobody has a 250
            with session_factory() as s:
                assert spool(s) == []
            gate.open.set()
            return await asyncio.gather(first, *rest)

    answers = run(scenario())
    assert all(a[0].startswith("250") for a in answers)
    assert gate.sizes[0] == 1 and sum(gate.sizes) == 6 and len(gate.sizes) < 6  # the waiting five grouped


def test_a_failing_database_answers_451_to_the_group_and_keeps_no_row(
    cfg: Config, session_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch, failing=range(1000))
    gate.open.set()

    async def scenario() -> list[list[str]]:
        async with intake(cfg, session_factory) as srv:
            return await asyncio.gather(
                *(send(srv.lmtp_port, unique_mail(i), (SUPPORT, SALES)) for i in range(5))
            )

    answers = run(scenario())
    assert all(a == ["451 4.3.0 Temporary local problem, try again later"] * 2 for a in answers)
    with session_factory() as s:
        assert spool(s) == []


def test_a_group_that_fails_once_is_retried_mail_by_mail_and_loses_nothing(
    cfg: Config, session_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch, failing={1})  # the second transaction: the group of the six
    mails = [unique_mail(i) for i in range(6)]

    async def scenario() -> list[list[str]]:
        async with intake(cfg, session_factory) as srv:
            first = asyncio.ensure_future(send(srv.lmtp_port, unique_mail(99)))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)
            rest = [asyncio.ensure_future(send(srv.lmtp_port, raw)) for raw in mails]
            await queued(srv.handler.committer, 6)  # behind the held first group
            gate.open.set()
            return [await first, *await asyncio.gather(*rest)]

    answers = run(scenario())
    assert all(a[0].startswith("250") for a in answers)
    assert gate.sizes[1] == 6 and gate.sizes[2:] == [1] * 6  # the group failed, then each mail alone
    with session_factory() as s:
        rows = spool(s)
    acknowledged = {hashlib.sha256(raw).hexdigest() for raw in mails}
    assert acknowledged <= {r.sha256 for r in rows}
    assert len(rows) == len({(r.sha256, r.recipient) for r in rows})  # one row each, no duplicate


@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
def test_a_mail_over_the_limit_leaves_no_file(protocol: str, cfg: Config, session_factory: Factory) -> None:
    raw = mail(body=("y" * 70 + "\n") * 200)  # about 14 kB

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory, max_message_bytes=4096) as srv:
            c = await Client.connect(srv.lmtp_port if protocol == "lmtp" else srv.smtp_port)
            await c.greet("LHLO" if protocol == "lmtp" else "EHLO")
            await c.one("MAIL FROM:<alice@customer.example>")
            await c.one(f"RCPT TO:<{SUPPORT}>")
            answers = await c.data(raw)
            assert (await c.one("NOOP")).startswith("250")
            await c.close()
            return answers

    assert run(scenario())[0].startswith("552 5.3.4")
    assert spool_files(cfg) == []


WIRE_CASES = {
    # name: (what the client writes after DATA, what must be spooled)
    "dot-stuffed": (
        b"Subject: dots\r\n\r\n..leading dot\r\n...\r\n..\r\nmid . dot\r\n.\r\n",
        b"Subject: dots\r\n\r\n.leading dot\r\n..\r\n.\r\nmid . dot\r\n",
    ),
    "8-bit and bare LF": (
        b"Subject: \xe4\xf6\xff\r\n\r\nline\nwith bare LF\r\n\xc3\xa9\xff\r\n.\r\n",
        b"Subject: \xe4\xf6\xff\r\n\r\nline\nwith bare LF\r\n\xc3\xa9\xff\r\n",
    ),
    "empty last line": (b"Subject: x\r\n\r\nbody\r\n\r\n.\r\n", b"Subject: x\r\n\r\nbody\r\n\r\n"),
    "no final CRLF of its own": (b"Subject: x\r\n\r\nbody.\r\n.\r\n", b"Subject: x\r\n\r\nbody.\r\n"),
}


@pytest.mark.parametrize("case", sorted(WIRE_CASES))
def test_streamed_bytes_are_the_bytes_sent(case: str, cfg: Config, session_factory: Factory) -> None:
    wire, expected = WIRE_CASES[case]

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            await c.one("MAIL FROM:<alice@customer.example>")
            await c.one(f"RCPT TO:<{SUPPORT}>")
            assert (await c.one("DATA")).startswith("354")
            for i in range(0, len(wire), 7):  # in small pieces: line ends and dots split across reads
                c.writer.write(wire[i : i + 7])
                await c.writer.drain()
                await asyncio.sleep(0.001)
            answers = await c.replies()
            await c.close()
            return answers

    assert run(scenario())[0].startswith("250 2.0.0")
    assert spooled_file(cfg, expected).read_bytes() == expected


def test_a_large_mail_and_a_pipelined_command_after_the_dot(cfg: Config, session_factory: Factory) -> None:
    body = "".join(f"{'.' if i % 7 == 0 else ''}line {i} {'x' * (i % 90)}\n" for i in range(40_000))
    raw = mail(body=body)  # ~2.5 MB: many reads, dots and line ends across their boundaries

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            await c.one("MAIL FROM:<alice@customer.example>")
            await c.one(f"RCPT TO:<{SUPPORT}>")
            assert (await c.one("DATA")).startswith("354")
            stuffed = raw.replace(b"\r\n.", b"\r\n..")
            c.writer.write(stuffed + b".\r\nNOOP\r\n")  # the next command in the same write
            answers = await c.replies(2)
            await c.close()
            return answers

    answers = run(scenario())
    assert answers[0].startswith("250 2.0.0") and answers[1].startswith("250")
    assert spooled_file(cfg, raw).read_bytes() == raw
    assert not any((cfg.spool_dir / INCOMING).iterdir())


def test_dot_reader_at_every_split_point() -> None:
    data, expected = WIRE_CASES["dot-stuffed"]
    wire = data + b"NEXT\r\n"
    for split in range(len(wire) + 1):
        reader = DotReader(1024)
        out, fed = b"", b""
        for piece in (wire[:split], wire[split:]):
            if not reader.ended:  # as the listener does: nothing is read after the final dot
                out += reader.feed(piece)[0]
                fed += piece
        assert reader.ended and out == expected, split
        assert reader.after == fed[len(data) :], split  # what was read beyond the dot goes back


def test_dot_reader_refuses_a_line_over_the_limit_and_still_finds_the_end() -> None:
    reader = DotReader(100)
    for piece in (b"short\r\n", b"x" * 150, b"x" * 150 + b"\r\nafter\r\n", b".\r\n"):
        reader.feed(piece)
    assert reader.too_long and reader.ended


def test_a_crash_leftover_in_incoming_is_removed_at_start_and_a_fresh_one_kept(
    cfg: Config, session_factory: Factory
) -> None:
    import os
    from concurrent.futures import ThreadPoolExecutor

    from maild.ingress.intake import STALE_INCOMING_SECONDS, Intake
    from maild.ingress.intake_caches import DeskAddresses

    incoming = cfg.spool_dir / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    old, fresh = incoming / "old.tmp", incoming / "fresh.tmp"
    old.write_bytes(b"half a mail")
    fresh.write_bytes(b"another daemon's mail, arriving")
    os.utime(old, (0, os.stat(old).st_mtime - STALE_INCOMING_SECONDS - 60))
    with ThreadPoolExecutor(1) as pool:
        Intake(cfg, session_factory, DeskAddresses(session_factory), pool, print).close()
    assert sorted(p.name for p in incoming.iterdir()) == ["fresh.tmp"]


@pytest.mark.parametrize(
    "value",
    [
        "blocked@spam.example <>",
        "Doe, John <Blocked@Spam.example>",
        "<olga@acme.test> (Olga Orr)",
        "a@b.example.",
        '"Support" <support@example.com> <evil@spam.example>',
        "=?utf-8?q?J=C3=B6rg?= <j@b.example>, Other <o@b.example>",
    ],
)
def test_the_intake_reads_from_as_the_pipeline_does(value: str) -> None:
    from maild.ingress.headers import header_fields
    from maild.mail.mailparse import parse_mail

    raw = f"From: {value}\r\nTo: {SUPPORT}\r\nMessage-ID: <odd@x.example>\r\n\r\nbody\r\n".encode()
    fields = header_fields(raw)
    assert fields.from_addresses == parse_mail(raw, "").from_addresses
    assert fields.message_id == "<odd@x.example>"
