"""Ticket split (DESIGN §3, issue 7): maild.tickets.split.split_ticket and `maildctl ticket split`.

Tickets are made by delivering mail through the real pipeline; the split runs in one transaction as the
CLI runs it; mail replying to a moved message afterwards goes through the pipeline again."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import AuditLog, Desk, OutboxMessage, SpoolEntry, Ticket
from maild.tickets.merge import merge_tickets
from maild.tickets.split import SplitRefused, split_ticket
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import NOW, SALES, SUPPORT, crlf, deliver, mail, make_desk, ticket, tickets

Factory = sessionmaker[Session]
HOUR = dt.timedelta(hours=1)
SPLIT_AT = NOW + 10 * HOUR
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
ALICE, DAVE = "alice@customer.example", "dave@other.example"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_desk(session_factory, "sales", [SALES], "SALES-{{nr}}")


def with_attachment() -> bytes:
    pdf = base64.encodebytes(PDF).decode().replace("\n", "\r\n")
    return crlf(
        "From: Alice Example <alice@customer.example>\nTo: support@example.com\n"
        "Subject: Re: problem\nMessage-ID: <r2@customer.example>\nIn-Reply-To: <t1@customer.example>\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b0"\n\n'
        "--b0\nContent-Type: text/plain; charset=utf-8\n\nand the invoice is wrong, see the scan\n\n--b0\n"
        "Content-Type: application/pdf\nContent-Disposition: attachment; filename=scan.pdf\n"
        f"Content-Transfer-Encoding: base64\n\n{pdf}\n--b0--\n"
    )


def conversation(factory: Factory, cfg: Config) -> tuple[str, list[int]]:
    """alice's ticket, her reply with a PDF, and dave's reply (he joins by In-Reply-To): the number and
    the three message ids, oldest first."""
    # Dave is on Alice's first mail (Cc): a stranger answering by In-Reply-To would open a ticket of his
    # own (the hijack guard)
    first_mail = mail(subject="problem", message_id="<t1@customer.example>", extra=[("Cc", f"Dave <{DAVE}>")])
    first = deliver(factory, cfg, first_mail, SUPPORT)
    assert first.outcome == "created" and first.ticket_number is not None
    second = deliver(factory, cfg, with_attachment(), SUPPORT, now=NOW + HOUR)
    dave = mail(
        sender=f"Dave <{DAVE}>",
        subject="Re: problem",
        message_id="<r3@other.example>",
        body="Same here: billed twice.\n",
        extra=[("In-Reply-To", "<r2@customer.example>")],
    )
    third = deliver(factory, cfg, dave, SUPPORT, now=NOW + 2 * HOUR)
    assert [second.ticket_number, third.ticket_number] == [first.ticket_number] * 2
    with factory() as s:
        ids = [m.id for m in ticket(s, first.ticket_number).messages]
    assert len(ids) == 3
    return first.ticket_number, ids


def split(
    factory: Factory,
    cfg: Config,
    number: str,
    ids: list[int],
    *,
    desk: str | None = None,
    priority: str | None = None,
    subject: str | None = None,
) -> str:
    """split_ticket in one transaction, the way maildctl calls it; the new ticket's number."""
    with transaction(factory) as s:
        target = s.scalars(select(Desk).where(Desk.name == desk)).one() if desk else None
        new = split_ticket(
            s,
            cfg,
            ticket(s, number),
            ids,
            desk=target,
            priority=priority,
            subject=subject,
            actor="tester",
            now=SPLIT_AT,
        )
        return new.number


def test_the_chosen_messages_move_with_their_attachments(session_factory: Factory, cfg: Config) -> None:
    number, (first, second, third) = conversation(session_factory, cfg)
    new_number = split(session_factory, cfg, number, [third, second])
    assert new_number == "SUP-2"
    with session_factory() as s:
        old, new = ticket(s, number), ticket(s, new_number)
        assert (new.status, new.priority, new.subject, new.desk.name) == (
            "open",
            "normal",
            "problem",
            "support",
        )
        assert (new.customer.email, new.linked_ticket_id, new.merged_into_id) == (ALICE, old.id, None)
        assert [(p.contact.email, p.role) for p in new.participants] == [(ALICE, "customer")]
        assert [m.id for m in new.messages][:2] == [second, third]
        [note] = new.messages[2:]
        assert (note.kind, note.text) == ("system", f"Split off {number}: #{second}, #{third} (by tester).")
        [scan] = new.messages[0].attachments
        assert (scan.filename, scan.size, scan.refused_reason) == ("scan.pdf", len(PDF), None)
        assert [m.id for m in old.messages][:1] == [first]
        assert [(m.kind, m.text) for m in old.messages[1:]] == [
            ("system", f"Split #{second}, #{third} off into {new_number} (by tester).")
        ]
        assert (old.status, old.subject) == ("open", "problem")
        # the raw mails' spool rows follow their messages
        spool = {r.header_message_id: r.ticket_id for r in s.scalars(select(SpoolEntry))}
        assert spool == {
            "<t1@customer.example>": old.id,
            "<r2@customer.example>": new.id,
            "<r3@other.example>": new.id,
        }
        entries = list(s.scalars(select(AuditLog).where(AuditLog.action.in_(["split", "split_from"]))))
        assert [(e.action, e.ticket_id, e.actor) for e in entries] == [
            ("split", old.id, "tester"),
            ("split_from", new.id, "tester"),
        ]
        assert entries[0].detail == {
            "into": new_number,
            "messages": [second, third],
            "before": {"messages": 3},
            "after": {"messages": 1},
        }
        assert entries[1].detail["source"] == number
        assert entries[1].detail["after"] == {
            "desk": "support",
            "priority": "normal",
            "subject": "problem",
            "customer": ALICE,
            "status": "open",
        }


def test_the_customer_is_the_sender_of_the_earliest_moved_customer_mail(
    session_factory: Factory, cfg: Config
) -> None:
    number, (_, _, third) = conversation(session_factory, cfg)
    new_number = split(session_factory, cfg, number, [third])
    with session_factory() as s:
        new = ticket(s, new_number)
        assert new.customer.email == DAVE
        assert [(p.contact.email, p.role) for p in new.participants] == [(DAVE, "customer")]
        assert ticket(s, number).customer.email == ALICE


def test_the_new_ticket_takes_its_own_desk_priority_and_subject(
    session_factory: Factory, cfg: Config
) -> None:
    number, (_, second, _) = conversation(session_factory, cfg)
    new_number = split(
        session_factory, cfg, number, [second], desk="sales", priority="urgent", subject="Wrong invoice"
    )
    assert new_number == "SALES-1"  # the target desk's pattern
    with session_factory() as s:
        new = ticket(s, new_number)
        assert (new.desk.name, new.priority, new.subject) == ("sales", "urgent", "Wrong invoice")
        assert new.messages[0].attachments[0].filename == "scan.pdf"


@pytest.mark.parametrize(
    ("choose", "problem"),
    [
        (lambda ids, other: [ids[1], 999999], "no message 999999: see 'maildctl ticket show SUP-1'"),
        (lambda ids, other: [other], "is on SUP-2, not on SUP-1"),
        (lambda ids, other: ids, "that is every message of SUP-1: nothing would be left"),
        (lambda ids, other: [], "no message chosen"),
    ],
)
def test_bad_choices_are_refused_and_change_nothing(
    choose: object, problem: str, session_factory: Factory, cfg: Config
) -> None:
    number, ids = conversation(session_factory, cfg)
    other = deliver(session_factory, cfg, mail(sender=DAVE, message_id="<o@x>", subject="other"), SUPPORT)
    with session_factory() as s:
        [other_id] = [m.id for m in ticket(s, "SUP-2").messages]
    assert callable(choose)
    with pytest.raises(SplitRefused, match=problem.replace("(", r"\(")), transaction(session_factory) as s:
        split_ticket(s, cfg, ticket(s, number), choose(ids, other_id), actor="tester", now=SPLIT_AT)
    with session_factory() as s:
        assert [t.number for t in tickets(s)] == [number, other.ticket_number]
        assert [m.id for m in ticket(s, number).messages] == ids


def test_a_merged_ticket_and_a_bad_priority_are_refused(session_factory: Factory, cfg: Config) -> None:
    number, ids = conversation(session_factory, cfg)
    deliver(session_factory, cfg, mail(sender=DAVE, message_id="<o@x>", subject="other"), SUPPORT)
    with transaction(session_factory) as s:
        merge_tickets(s, [ticket(s, number), ticket(s, "SUP-2")], actor="tester", now=SPLIT_AT)
    with session_factory() as s:
        [moved_in] = [m.id for m in ticket(s, number).messages if m.message_id == "<o@x>"]
    merged = "SUP-2 is merged into SUP-1: split SUP-1 instead"
    with pytest.raises(SplitRefused, match=merged), transaction(session_factory) as s:
        split_ticket(s, cfg, ticket(s, "SUP-2"), [moved_in], actor="tester", now=SPLIT_AT)
    with pytest.raises(SplitRefused, match="unknown priority 'huge'"), transaction(session_factory) as s:
        split_ticket(s, cfg, ticket(s, number), ids[:1], priority="huge", actor="tester", now=SPLIT_AT)


@pytest.mark.parametrize("header", ["In-Reply-To", "References"])
def test_a_reply_to_a_moved_mail_threads_to_the_new_ticket(
    header: str, session_factory: Factory, cfg: Config
) -> None:
    number, (_, second, third) = conversation(session_factory, cfg)
    new_number = split(session_factory, cfg, number, [second, third])
    late = mail(
        subject="Re: problem", message_id="<late@customer.example>", extra=[(header, "<r2@customer.example>")]
    )
    result = deliver(session_factory, cfg, late, SUPPORT, now=SPLIT_AT + HOUR)
    assert (result.outcome, result.ticket_number) == ("replied", new_number), result.reason
    # and one to the mail that stayed, to the original
    stay = mail(
        subject="Re: problem", message_id="<stay@customer.example>", extra=[(header, "<t1@customer.example>")]
    )
    result = deliver(session_factory, cfg, stay, SUPPORT, now=SPLIT_AT + 2 * HOUR)
    assert (result.outcome, result.ticket_number) == ("replied", number), result.reason
    with session_factory() as s:
        assert ticket(s, new_number).messages[-1].message_id == "<late@customer.example>"


# --- maildctl ticket split ------------------------------------------------------------------------


def test_maildctl_ticket_split(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    number, _ = conversation(session_factory, cfg)
    shown = json.loads(ok(ctl(config_file, "ticket", "show", number, "--json")))
    first, second, third = (m["id"] for m in shown["messages"])
    assert shown["messages"][1]["attachments"][0]["name"] == "scan.pdf"
    data = json.loads(
        ok(
            ctl(
                config_file,
                *("ticket", "split", number, "--messages", f"{third}, {second}"),
                *("--desk", "sales", "--priority", "HIGH", "--subject", "Invoice", "--notify", "--json"),
            )
        )
    )
    assert data == {
        "number": "SALES-1",
        "from": number,
        "desk": "sales",
        "subject": "Invoice",
        "priority": "high",
        "customer": ALICE,
        "messages": [second, third],
        "notified": True,
    }
    new = json.loads(ok(ctl(config_file, "ticket", "show", "SALES-1", "--json")))
    assert [m["id"] for m in new["messages"]][:2] == [second, third]
    assert new["linked_ticket"] == number
    with session_factory() as s:
        new_id = ticket(s, "SALES-1").id
        [created] = s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.ticket_id == new_id, OutboxMessage.template == "ticket_created"
            )
        )
        assert created.rcpt_to == [ALICE] and b"[SALES-1]" in created.raw
        assert b"Auto-Submitted: auto-replied" in created.raw
        [entry] = s.scalars(select(AuditLog).where(AuditLog.action == "split"))
        assert entry.actor  # the admin's OS user
    # without --notify, nothing is sent; the text output
    out = ok(ctl(config_file, "ticket", "split", "SALES-1", "--messages", str(third)))
    assert out == "split 1 message(s) of SALES-1 into SALES-2 (desk sales)\n"
    with session_factory() as s:
        ids = [t.id for t in s.scalars(select(Ticket).where(Ticket.number == "SALES-2"))]
        assert list(s.scalars(select(OutboxMessage).where(OutboxMessage.ticket_id.in_(ids)))) == []
    log = json.loads(ok(ctl(config_file, "ticket", "log", "SALES-1", "--json")))
    assert [e["action"] for e in log] == ["split_from", "split"]
    assert first in [
        m["id"] for m in json.loads(ok(ctl(config_file, "ticket", "show", number, "--json")))["messages"]
    ]


def test_maildctl_ticket_split_errors(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    number, (first, second, third) = conversation(session_factory, cfg)

    def error(*args: str) -> str:
        return one_line_error(ctl(config_file, "ticket", "split", *args))

    assert (
        error("SUP-99", "--messages", str(second))
        == "maildctl: no ticket 'SUP-99': see 'maildctl ticket list'"
    )
    assert error(number, "--messages", str(second), "--desk", "nope") == (
        "maildctl: no desk named 'nope': see 'maildctl desk list'"
    )
    assert error(number, "--messages", "999999") == (
        f"maildctl: cannot split {number}: no message 999999: see 'maildctl ticket show {number}'"
    )
    assert "nothing would be left" in error(number, "--messages", f"{first},{second},{third}")
    assert "give message ids like 12,15" in error(number, "--messages", "two")
    assert "unknown priority 'huge'" in error(number, "--messages", str(second), "--priority", "huge")
    with session_factory() as s:
        assert [t.number for t in tickets(s)] == [number]
    assert "--messages" in ok(ctl(config_file, "ticket", "split", "--help"))
