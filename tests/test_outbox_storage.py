"""Outgoing mail stores a reference to each stored attachment, not its bytes: the outbox row stays a few
KB however big the file, the attachment store holds it once, and the sender (SMTP and Maildir) and
`maildctl outbox show --raw` expand the references into the same base64 the mail always carried."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound.outgoing import OutgoingAttachment, expand_stored, queue_mail, sent_bytes, sent_size
from maild.outbound.sender import FlushResult, flush
from maild.storage import attachments as attachment_store
from maild.storage.db import transaction
from maild.storage.models import Agent, Desk, Message, OutboxMessage, Ticket
from maild.tickets.replies import relay_reply
from tests.conftest import run_cli
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, crlf, deliver, make_agent, make_desk
from tests.test_sender import Recorder, recording_server, via

Factory = sessionmaker[Session]
ANNA, BOB = "anna@example.com", "bob@example.com"
MiB = 1024 * 1024
BIG = 20 * MiB


def pdf_bytes(size: int, seed: int = 7) -> bytes:
    """Incompressible, reproducible bytes with a PDF header (and a final newline, which base64 keeps)."""
    head = b"%PDF-1.4\n"
    return head + random.Random(seed).randbytes(size - len(head) - 1) + b"\n"


def customer_mail(files: dict[str, bytes], body: str = "See the attached file.") -> bytes:
    lines = [
        "From: Alice Example <alice@customer.example>",
        f"To: {SUPPORT}",
        "Subject: Printer on fire",
        "Message-ID: <big@customer.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain; charset=utf-8",
        "",
        body,
    ]
    for name, data in files.items():
        lines += [
            "--b",
            "Content-Type: application/pdf",
            f'Content-Disposition: attachment; filename="{name}"',
            "Content-Transfer-Encoding: base64",
            "",
            base64.encodebytes(data).decode("ascii"),
        ]
    lines += ["--b--", ""]
    return crlf("\n".join(lines))


def setup_desk(factory: Factory) -> None:
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(factory, ANNA, "Anna", ["support"])
    make_agent(factory, BOB, "Bob", ["support"])


def notice_ids(factory: Factory) -> list[int]:
    with factory() as s:
        query = select(OutboxMessage.id).where(OutboxMessage.template == "new_ticket_notice")
        return list(s.scalars(query.order_by(OutboxMessage.id)))


def raw_sizes(factory: Factory) -> dict[str, int]:
    """length(raw) per template, summed, as the database counts it."""
    with factory() as s:
        rows = s.execute(text("SELECT template, sum(length(raw)) FROM outbox GROUP BY template"))
        return {template: int(total) for template, total in rows}


def stored_files(cfg: Config) -> list[Path]:
    return sorted(p for p in cfg.attachment_dir.rglob("*") if p.is_file())


def attachments_of(raw: bytes) -> dict[str, bytes]:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return {str(p.get_filename()): p.get_content() for p in msg.iter_attachments()}


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    """A real SMTP server on loopback that takes the ~28 MB a 20 MB attachment becomes."""
    with recording_server(data_size_limit=64 * MiB) as server:
        yield server


def test_a_big_attachment_is_stored_once_and_reaches_both_agents_whole(
    session_factory: Factory, cfg: Config, smtp: tuple[Recorder, int]
) -> None:
    setup_desk(session_factory)
    pdf = pdf_bytes(BIG)
    deliver(session_factory, cfg, customer_mail({"manual.pdf": pdf}), SUPPORT)

    sizes = raw_sizes(session_factory)
    print(f"outbox length(raw) by template: {sizes}, total {sum(sizes.values())}")
    assert len(notice_ids(session_factory)) == 2
    assert sizes["new_ticket_notice"] < 2 * 8 * 1024  # two notices, a few KB each
    assert sum(sizes.values()) < 32 * 1024
    # the attachment store holds the file once, whole
    [stored] = [p for p in stored_files(cfg) if p.stat().st_size == BIG]
    assert stored.name == hashlib.sha256(pdf).hexdigest()
    assert sum(p.stat().st_size for p in stored_files(cfg)) == BIG

    handler, port = smtp
    assert flush(session_factory, via(cfg, port), now=NOW) == FlushResult(sent=3, deferred=0, failed=0)
    got = {rcpts[0]: content for _, rcpts, content in handler.envelopes}
    assert sorted(got) == ["alice@customer.example", ANNA, BOB]
    for agent in (ANNA, BOB):
        sent = got[agent].replace(b"\r\n", b"\n")
        assert attachments_of(sent) == {"manual.pdf": pdf}
        body = sent[sent.index(b"filename") :]
        lines = body.split(b"\n\n", 1)[1].split(b"\n")
        assert {len(line) for line in lines[:-10]} == {76}  # base64 as the email package writes it


def test_an_attachment_reaches_both_agents_whole_in_the_maildir(
    session_factory: Factory, cfg: Config
) -> None:
    setup_desk(session_factory)
    pdf = pdf_bytes(2 * MiB + 5, seed=8)  # the 20 MB case is the SMTP test's: here many store reads suffice
    deliver(session_factory, cfg, customer_mail({"manual.pdf": pdf}), SUPPORT)
    assert raw_sizes(session_factory)["new_ticket_notice"] < 2 * 8 * 1024

    assert flush(session_factory, cfg, now=NOW) == FlushResult(sent=3, deferred=0, failed=0)
    delivered = [p.read_bytes() for p in (cfg.outgoing_maildir / "new").iterdir()]
    assert list((cfg.outgoing_maildir / "tmp").iterdir()) == []
    to_agents = [raw for raw in delivered if b"To: Anna" in raw or b"To: Bob" in raw]
    assert len(to_agents) == 2
    for raw in to_agents:
        assert attachments_of(raw) == {"manual.pdf": pdf}


# --- a stored file gone or changed --------------------------------------------------------------------


def small_ticket_with(factory: Factory, cfg: Config, data: bytes) -> tuple[str, Path]:
    """A new ticket whose mail carries `data` as report.pdf; (its sha256, its file in the store)."""
    setup_desk(factory)
    deliver(factory, cfg, customer_mail({"report.pdf": data}), SUPPORT)
    digest = hashlib.sha256(data).hexdigest()
    return digest, attachment_store.path_of(cfg.attachment_dir, digest)


@pytest.mark.parametrize("damage", ["deleted", "altered", "truncated"])
def test_a_missing_or_changed_file_keeps_the_mail_queued_with_the_reason(
    session_factory: Factory, cfg: Config, damage: str
) -> None:
    pdf = pdf_bytes(200_000)
    _, stored = small_ticket_with(session_factory, cfg, pdf)
    if damage == "deleted":
        stored.unlink()
    elif damage == "altered":  # same size, other bytes: only the digest tells
        stored.write_bytes(pdf[:-2] + b"X\n")
    else:
        stored.write_bytes(pdf[:1000])

    # the customer's ticket_created goes; the two notices wait for their attachment
    assert flush(session_factory, cfg, now=NOW) == FlushResult(sent=1, deferred=2, failed=0)
    assert len(list((cfg.outgoing_maildir / "new").iterdir())) == 1
    assert list((cfg.outgoing_maildir / "tmp").iterdir()) == []  # no half-written mail left behind
    with session_factory() as s:
        for outbox_id in notice_ids(session_factory):
            row = s.get(OutboxMessage, outbox_id)
            assert row is not None
            assert (row.status, row.delivered_to, row.failed_to) == ("queued", [], [])
            assert "attachment 'report.pdf'" in row.last_error
            assert "the mail is not sent without it" in row.last_error
            # the sender's usual form: each pending recipient, a temporary 451 and the reason
            assert row.last_error.startswith(f"{row.rcpt_to[0]}: 451 StoredAttachmentError: ")

    # the file is back (restored from a backup): the next attempt sends both, whole
    stored.write_bytes(pdf)
    assert flush(session_factory, cfg, now=NOW + dt.timedelta(hours=1)) == FlushResult(2, 0, 0)
    delivered = [p.read_bytes() for p in (cfg.outgoing_maildir / "new").iterdir()]
    assert [attachments_of(raw) for raw in delivered].count({"report.pdf": pdf}) == 2


def test_a_missing_file_sends_nothing_over_smtp(
    session_factory: Factory, cfg: Config, smtp: tuple[Recorder, int]
) -> None:
    _, stored = small_ticket_with(session_factory, cfg, pdf_bytes(5000))
    stored.unlink()
    handler, port = smtp
    assert flush(session_factory, via(cfg, port), now=NOW) == FlushResult(sent=1, deferred=2, failed=0)
    assert [rcpts for _, rcpts, _ in handler.envelopes] == [["alice@customer.example"]]


def test_a_file_missing_until_the_retries_run_out_fails_with_a_note_on_the_ticket(
    session_factory: Factory, cfg: Config
) -> None:
    _, stored = small_ticket_with(session_factory, cfg, pdf_bytes(5000))
    stored.unlink()
    assert flush(session_factory, cfg, now=NOW) == FlushResult(sent=1, deferred=2, failed=0)
    assert flush(session_factory, cfg, now=NOW + dt.timedelta(hours=cfg.retry_hours)) == FlushResult(0, 0, 2)
    with session_factory() as s:
        notes = [m.text for m in s.scalars(select(Message).where(Message.kind == "system"))]
    assert len(notes) == 2
    assert all("could not be delivered" in n and "attachment 'report.pdf'" in n for n in notes)


# --- the mail as sent is the mail as it was composed --------------------------------------------------

_BOUNDARY = re.compile(rb"={15}\d+==")
_MESSAGE_ID = re.compile(rb"\nMessage-ID: <[^>]+>\n")


def normalized(raw: bytes) -> bytes:
    """Without what differs between two compositions of one mail: boundaries and Message-ID."""
    return _MESSAGE_ID.sub(b"\nMessage-ID: <id>\n", _BOUNDARY.sub(b"BOUNDARY", bytes(raw)))


# sizes around base64's 3-byte groups, its 57-byte lines and the store's read size (57 * 1024)
SIZES = [0, 1, 2, 56, 57, 58, 57 * 1024 - 1, 57 * 1024, 57 * 1024 + 1, 200_000]


NOTICE_VARIABLES = {  # what pipeline.notify gives new_ticket_notice beyond the ticket's own variables
    "ticket_status": "open",
    "ticket_priority": "normal",
    "assigned_agent": "",
    "customer_email": "alice@customer.example",
    "agent_name": "Anna",
    "note_address": "",
    "sender_name": "",
    "sender_email": "alice@customer.example",
    "comment_content": "Hi",
    "attachments": [],
    "automatic": "",
}


def test_the_expanded_mail_is_byte_for_byte_the_inline_one(session_factory: Factory, cfg: Config) -> None:
    setup_desk(session_factory)
    deliver(session_factory, cfg, crlf("From: alice@customer.example\nTo: support@example.com\n\nHi\n"))
    files = [
        OutgoingAttachment(f"f{size}.bin", "application/octet-stream", random.Random(size).randbytes(size))
        for size in SIZES
    ]

    def queue_notice() -> OutboxMessage:
        with transaction(session_factory) as s:
            ticket = s.scalars(select(Ticket)).one()
            row = queue_mail(
                s,
                cfg,
                ticket,
                "new_ticket_notice",
                [("Anna", ANNA)],
                automatic=False,
                now=NOW,
                attachments=files,
                variables=NOTICE_VARIABLES,
            )
            assert row is not None
            s.flush()
            s.expunge(row)
            return row

    inline = queue_notice()  # nothing stored: the bytes go into the row, as before
    for file in files:
        attachment_store.store(cfg.attachment_dir, file.data)
    referring = queue_notice()

    assert len(referring.raw) < 8 * 1024 < len(inline.raw)
    assert sent_size(referring.raw) == len(sent_bytes(referring.raw, cfg.attachment_dir))
    expanded = b"".join(expand_stored(referring.raw, cfg.attachment_dir))
    assert normalized(expanded) == normalized(inline.raw)
    assert bytes(sent_bytes(referring.raw, cfg.attachment_dir)) == expanded
    assert attachments_of(expanded) == {f.filename: f.data for f in files}


def test_only_a_whole_base64_part_of_ours_is_taken_for_a_reference(cfg: Config) -> None:
    data = b"the stored file\n"
    digest = attachment_store.store(cfg.attachment_dir, data)
    line = f"maild-stored-attachment sha256={digest} size={len(data)}"

    def mail_with(part_headers: str, body: str) -> bytes:
        return (
            'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="==b=="\nSubject: x\n\n'
            "--==b==\nContent-Type: text/plain\n\nHello\n\n"
            f"--==b==\n{part_headers}\n\n{body}\n\n--==b==--\n"
        ).encode()

    base64_part = "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64"
    expanded = b"".join(expand_stored(mail_with(base64_part, line), cfg.attachment_dir))
    assert expanded == mail_with(base64_part, base64.encodebytes(data).decode().rstrip("\n"))
    for headers, body in [
        ("Content-Type: text/plain\nContent-Transfer-Encoding: 7bit", line),  # text that says it
        (base64_part, f"{line}\n{line}"),  # more than the one line
        (base64_part, f"x{line}"),
    ]:
        raw = mail_with(headers, body)
        assert b"".join(expand_stored(raw, cfg.attachment_dir)) == raw
    not_multipart = f"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{line}\n".encode()
    assert b"".join(expand_stored(not_multipart, cfg.attachment_dir)) == not_multipart


# --- maildctl outbox show -----------------------------------------------------------------------------


def test_outbox_show_prints_the_mail_as_sent(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    pdf = pdf_bytes(300_000)
    _, stored = small_ticket_with(session_factory, cfg, pdf)
    notice = notice_ids(session_factory)[0]

    shown = run_cli("maildctl", "outbox", "show", str(notice), "--raw", config=config_file)
    assert shown.returncode == 0, shown.stderr
    as_shown = shown.stdout.encode()
    assert attachments_of(as_shown) == {"report.pdf": pdf}
    fields = json.loads(
        run_cli("maildctl", "outbox", "show", str(notice), "--json", config=config_file).stdout
    )
    assert fields["size"] == len(as_shown)
    assert fields["stored_size"] < 8 * 1024 < 300_000 < fields["size"]

    # what the Maildir gets is what show printed
    flush(session_factory, cfg, ids=[notice], now=NOW)
    [delivered] = list((cfg.outgoing_maildir / "new").iterdir())
    assert delivered.read_bytes() == as_shown

    stored.unlink()
    gone = run_cli("maildctl", "outbox", "show", str(notice), "--raw", config=config_file)
    assert (gone.returncode, gone.stdout) == (1, "")
    assert f"outbox {notice}: attachment 'report.pdf'" in gone.stderr
    assert "missing from the attachment store" in gone.stderr


# --- the desk's sender name ---------------------------------------------------------------------------


def from_of(raw: bytes) -> tuple[str, str]:
    msg = message_from_bytes(raw, policy=policy.default)
    [address] = msg["From"].addresses
    return address.display_name, address.addr_spec


@pytest.mark.parametrize("sender_name", ["ACME Support", "Åsa's Støtte", ""])
def test_the_desks_own_mail_carries_its_sender_name(
    session_factory: Factory, cfg: Config, sender_name: str
) -> None:
    setup_desk(session_factory)
    make_desk(session_factory, "sales", ["sales@example.com"], "SALES-{{nr}}")
    with transaction(session_factory) as s:
        for desk in s.scalars(select(Desk)):
            desk.sender_name = sender_name
            desk.replies_only = desk.name == "sales"
        s.scalars(select(Agent).where(Agent.email == ANNA)).one().display_name = "Anna from Support"
    desk_name = sender_name or "support"
    deliver(session_factory, cfg, customer_mail({}), SUPPORT)
    deliver(session_factory, cfg, customer_mail({}).replace(b"big@", b"refused@"), "sales@example.com")
    with transaction(session_factory) as s:
        ticket = s.scalars(select(Ticket)).one()
        anna = s.scalars(select(Agent).where(Agent.email == ANNA)).one()
        by_anna = relay_reply(s, cfg, ticket, "Fixed.", writer=anna, writer_label=ANNA, now=NOW).row
        by_desk = relay_reply(s, cfg, ticket, "Fixed.", writer=None, writer_label="admin", now=NOW).row
        reminder = queue_mail(
            s,
            cfg,
            ticket,
            "reminder",
            [("", "alice@customer.example")],
            automatic=True,
            now=NOW,
            variables={"ticket_status": "waiting", "waiting_for": "3 days", "rule_name": "nudge"},
        )
        assert by_anna is not None and by_desk is not None and reminder is not None
        replies_to: dict[str, Any] = {}
        froms = {
            "by_anna": from_of(by_anna.raw),
            "by_desk": from_of(by_desk.raw),
            "reminder": from_of(reminder.raw),
        }
        for row in s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.template.in_(["ticket_created", "replies_only_refusal"])
            )
        ):
            froms[row.template] = from_of(row.raw)
            replies_to[row.template] = message_from_bytes(row.raw, policy=policy.default)["Reply-To"]
            if row.template == "ticket_created" and sender_name == "ACME Support":
                assert b"\nFrom: ACME Support <support@example.com>\n" in row.raw

    assert froms == {
        "ticket_created": (desk_name, SUPPORT),
        "replies_only_refusal": (sender_name or "sales", "sales@example.com"),
        "reminder": (desk_name, SUPPORT),
        "by_desk": (desk_name, SUPPORT),
        "by_anna": ("Anna from Support", SUPPORT),  # an agent's relay keeps the agent's name
    }
    # a customer's answer goes to the ticket's signed address, under the same friendly name
    [reply_to] = replies_to["ticket_created"].addresses
    assert reply_to.display_name == desk_name and reply_to.addr_spec.startswith("support+")
    assert replies_to["replies_only_refusal"].addresses[0].display_name == (sender_name or "sales")
