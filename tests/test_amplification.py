"""No amplification (issue 14, points 3 and 8): strangers cannot make the desk mail third parties or the
world, forged senders get no backscatter, and one hostile mail or sender cannot flood agents' inboxes.
Every case goes through the real spool and pipeline."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Agents, Config, load_config
from maild.storage.db import transaction
from maild.storage.models import Attachment, Desk, Message, OutboxMessage, Ticket
from maild.tickets import notices
from maild.tickets.autoclose import auto_close
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    crlf,
    deliver,
    mail,
    make_agent,
    make_desk,
    outbox,
    ticket,
)

Factory = sessionmaker[Session]
ANNA, BOB = "anna@example.com", "bob@example.com"
ALICE = "alice@customer.example"
CCS = "Eve <eve@victim.example>, Mallory <mallory@victim.example>, trent@victim.example"


def setup(factory: Factory) -> None:
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(factory, ANNA, "Anna", ["support"])
    make_agent(factory, BOB, "Bob", ["support"])


def with_config(config_file: Path, text: str) -> Config:
    config_file.write_text(config_file.read_text() + "\n" + text)
    return load_config(str(config_file))


def rows(factory: Factory, template: str) -> list[OutboxMessage]:
    with factory() as s:
        return [r for r in outbox(s, agents=True) if r.template == template]


def system_notes(factory: Factory, number: str) -> list[str]:
    with factory() as s:
        return [m.text for m in ticket(s, number).messages if m.kind == "system"]


def parsed(row: OutboxMessage) -> EmailMessage:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def agent_reply(factory: Factory, cfg: Config, number: str, at: dt.datetime) -> None:
    raw = mail(
        sender=f"Anna <{ANNA}>",
        to=agent_address(factory, cfg, number, ANNA),
        subject=f"Re: [{number}] Printer on fire",
        body="We are on it.\n",
        message_id=f"<answer-{number}@example.com>",
    )
    result = deliver(factory, cfg, raw, agent_address(factory, cfg, number, ANNA), at)
    assert result.outcome == "replied", result


def with_files(count: int, *, size: int = 20, message_id: str = "<files@customer.example>") -> bytes:
    lines = [
        f"From: Alice Example <{ALICE}>",
        f"To: {SUPPORT}",
        "Subject: Many files",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "See the files.",
        "",
    ]
    for n in range(count):
        data = f"file number {n} ".encode().ljust(size, b"x")
        lines += [
            "--b",
            "Content-Type: application/pdf",
            f'Content-Disposition: attachment; filename="f{n}.pdf"',
            "Content-Transfer-Encoding: base64",
            "",
            base64.b64encode(data).decode(),
        ]
    lines += ["--b--", ""]
    return crlf("\n".join(lines))


# --- point 3: automatic mail to the sender only until an agent answers ---------------------------


def test_cc_addresses_get_no_automatic_mail_until_an_agent_answers(
    session_factory: Factory, cfg: Config
) -> None:
    setup(session_factory)
    result = deliver(session_factory, cfg, mail(extra=[("Cc", CCS)]), SUPPORT)
    assert result.outcome == "created"
    number = result.ticket_number
    with session_factory() as s:  # they are sub-customers (they get answers once an agent writes) ...
        assert sum(1 for p in ticket(s, number).participants if p.role == "cc") == 3
    [created] = rows(session_factory, "ticket_created")  # ... but the auto-reply goes to the sender only
    assert created.rcpt_to == [ALICE]
    assert parsed(created)["Cc"] is None

    agent_reply(session_factory, cfg, number, NOW + dt.timedelta(minutes=5))
    [answer] = rows(session_factory, "agent_reply")
    assert sorted(answer.rcpt_to) == sorted(
        [ALICE, "eve@victim.example", "mallory@victim.example", "trent@victim.example"]
    )


def test_closing_notices_go_to_sub_customers_only_after_an_agent_answered(
    session_factory: Factory, cfg: Config
) -> None:
    setup(session_factory)
    first = deliver(session_factory, cfg, mail(extra=[("Cc", CCS)]), SUPPORT).ticket_number
    second = deliver(
        session_factory,
        cfg,
        mail(subject="Other", message_id="<second@customer.example>", extra=[("Cc", CCS)]),
    ).ticket_number
    agent_reply(session_factory, cfg, second, NOW + dt.timedelta(minutes=1))
    with transaction(session_factory) as s:
        for t in s.scalars(select(Desk)):
            t.auto_close_hours = 1
        for t in s.scalars(select(Ticket)):
            t.status, t.updated_at = "waiting", NOW.replace(tzinfo=None)
    closed = auto_close(session_factory, cfg, NOW.replace(tzinfo=None) + dt.timedelta(hours=2))
    assert sorted(closed.closed) == sorted([first, second])
    by_ticket = {}
    with session_factory() as s:
        for row in s.scalars(select(OutboxMessage).where(OutboxMessage.template == "auto_close")):
            by_ticket[s.get(Ticket, row.ticket_id).number] = sorted(row.rcpt_to)
    assert by_ticket[first] == [ALICE]
    assert len(by_ticket[second]) == 4


def test_a_desk_wide_cap_on_automatic_mail_per_hour(session_factory: Factory, config_file: Path) -> None:
    cfg = with_config(config_file, "[hygiene]\nautoreply_desk_per_hour = 3\n")
    assert cfg.hygiene.autoreply_desk_per_hour == 3
    setup(session_factory)
    numbers = []
    for n in range(5):  # rotating addresses: each under the per-address limit
        raw = mail(sender=f"Robot {n} <robot{n}@rotating.example>", message_id=f"<rot{n}@rotating.example>")
        numbers.append(
            deliver(session_factory, cfg, raw, SUPPORT, NOW + dt.timedelta(minutes=n)).ticket_number
        )
    assert [r.rcpt_to for r in rows(session_factory, "ticket_created")] == [
        [f"robot{n}@rotating.example"] for n in range(3)
    ]
    for number in numbers[3:]:
        [note] = system_notes(session_factory, number)
        assert "desk rate limit" in note and "autoreply_desk_per_hour = 3" in note
    # agents still hear of every ticket: their notices do not count and are not capped
    assert len(rows(session_factory, "new_ticket_notice")) == 10
    # an hour later the desk answers again
    raw = mail(sender="Late <late@rotating.example>", message_id="<late@rotating.example>")
    deliver(session_factory, cfg, raw, SUPPORT, NOW + dt.timedelta(minutes=61))
    assert rows(session_factory, "ticket_created")[-1].rcpt_to == ["late@rotating.example"]


AUTH = "Authentication-Results"


@pytest.mark.parametrize(
    ("header", "answered"),
    [
        ("mx.example.com; spf=fail smtp.mailfrom=alice@customer.example", False),
        (
            "mx.example.com; dkim=pass header.d=customer.example; dmarc=fail header.from=customer.example",
            False,
        ),
        ("evil.example; spf=fail smtp.mailfrom=alice@customer.example", True),  # an untrusted host
        ("mx.example.com; spf=fail smtp.mailfrom=bounces@lists.example; dmarc=pass", True),  # another domain
    ],
)
def test_no_auto_reply_to_a_sender_that_failed_spf_or_dmarc(
    header: str, answered: bool, session_factory: Factory, cfg: Config
) -> None:
    cfg = dataclasses.replace(cfg, agents=Agents(trusted_authserv_ids=("mx.example.com",)))
    setup(session_factory)
    result = deliver(session_factory, cfg, mail(extra=[(AUTH, header)]), SUPPORT)
    assert result.outcome == "created"  # the mail is still a ticket; only the backscatter is avoided
    assert len(rows(session_factory, "ticket_created")) == (1 if answered else 0)
    assert len(rows(session_factory, "new_ticket_notice")) == 2


# --- point 8: caps on notices and parts ----------------------------------------------------------


def test_a_notice_attaches_at_most_ten_files_and_lists_the_rest(
    session_factory: Factory, cfg: Config
) -> None:
    setup(session_factory)
    deliver(session_factory, cfg, with_files(12), SUPPORT)
    notices = rows(session_factory, "new_ticket_notice")
    assert len(notices) == 2
    for row in notices:
        msg = parsed(row)
        assert [a.get_filename() for a in msg.iter_attachments()] == [f"f{n}.pdf" for n in range(10)]
        body = msg.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        for n in (10, 11):
            assert f"f{n}.pdf" in text and "limit of 10 files" in text


def test_a_notice_attaches_files_up_to_a_total_size(
    session_factory: Factory, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notices, "NOTICE_MAX_BYTES", 1000)
    setup(session_factory)
    deliver(session_factory, cfg, with_files(3, size=600), SUPPORT)
    for row in rows(session_factory, "new_ticket_notice"):
        assert [a.get_filename() for a in parsed(row).iter_attachments()] == ["f0.pdf"]


def test_a_flood_from_one_sender_pauses_agent_notices(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    numbers = []
    for n in range(8):
        raw = mail(subject=f"Flood {n}", message_id=f"<flood{n}@customer.example>")
        numbers.append(
            deliver(session_factory, cfg, raw, SUPPORT, NOW + dt.timedelta(seconds=10 * n)).ticket_number
        )
    assert len(set(numbers)) == 8  # every mail is still a ticket ...
    assert len(rows(session_factory, "new_ticket_notice")) == 5 * 2  # ... but agents heard of five
    for number in numbers[:5]:
        assert system_notes(session_factory, number) == []
    for number in numbers[5:]:
        [note] = system_notes(session_factory, number)
        assert "Notices to agents about mail from alice@customer.example are paused" in note
    # a reply to a paused ticket within the window adds no second note
    reply = mail(subject=f"Re: [{numbers[7]}] Flood 7", message_id="<flood-re@customer.example>")
    deliver(session_factory, cfg, reply, SUPPORT, NOW + dt.timedelta(seconds=90))
    assert len(system_notes(session_factory, numbers[7])) == 1
    assert len(rows(session_factory, "customer_reply_notice")) == 0
    # after the window, agents are told again
    later = mail(subject="Calm again", message_id="<calm@customer.example>")
    deliver(session_factory, cfg, later, SUPPORT, NOW + dt.timedelta(minutes=30))
    assert len(rows(session_factory, "new_ticket_notice")) == 6 * 2


def test_attachments_past_the_cap_are_recorded_refused(session_factory: Factory, config_file: Path) -> None:
    cfg = with_config(config_file, "[hygiene]\nmax_attachments_per_mail = 3\n")
    setup(session_factory)
    deliver(session_factory, cfg, with_files(5), SUPPORT)
    with session_factory() as s:
        found = [
            (a.filename, a.refused_reason) for a in s.scalars(select(Attachment).order_by(Attachment.id))
        ]
        [opening] = [m for m in s.scalars(select(Message)) if m.kind == "customer"]
        assert "2 attachment(s) refused: more than 3 attachments in one mail" in opening.notes
    assert found == [
        ("f0.pdf", None),
        ("f1.pdf", None),
        ("f2.pdf", None),
        ("f3.pdf", "more than 3 attachments in one mail"),
        ("f4.pdf", "more than 3 attachments in one mail"),
    ]
    stored = [p for p in cfg.attachment_dir.rglob("*") if p.is_file()]
    assert len(stored) == 3  # the refused ones are not stored


def test_the_default_cap_is_a_hundred_attachments(session_factory: Factory, cfg: Config) -> None:
    assert cfg.hygiene.max_attachments_per_mail == 100
    setup(session_factory)
    deliver(session_factory, cfg, with_files(102), SUPPORT)
    with session_factory() as s:
        refused = [a.refused_reason for a in s.scalars(select(Attachment)) if a.refused_reason]
    assert refused == ["more than 100 attachments in one mail"] * 2
