"""Ticket merge (DESIGN §3, issue 7): maild.tickets.merge.merge_tickets and `maildctl ticket merge`.

Tickets are made by delivering mail through the real pipeline; the merge runs in one transaction as the
CLI runs it; mail to a merged ticket afterwards goes through the pipeline again."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import AuditLog, Message, OutboxMessage, TicketTag, TimeEntry
from maild.tickets.merge import MergeRefused, merge_tickets
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import (
    NOW,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    crlf,
    deliver,
    mail,
    make_agent,
    make_desk,
    messages,
    outbox,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
AGENT = "bob.agent@example.com"
T1, T2, T3 = "SUP-26-03-1", "SUP-26-03-2", "SUP-26-03-3"
HOUR = dt.timedelta(hours=1)
MERGE_AT = NOW + 10 * HOUR  # after every mail of the tests
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    make_agent(session_factory, AGENT, "Bob Agent", ["support", "sales"])


def open_ticket(
    factory: Factory,
    cfg: Config,
    n: int,
    *,
    at: dt.datetime = NOW,
    sender: str = "Alice Example <alice@customer.example>",
    to: str = SUPPORT,
    extra: Sequence[tuple[str, str]] = (),
) -> str:
    raw = mail(
        sender=sender, to=to, subject=f"problem {n}", message_id=f"<t{n}@customer.example>", extra=extra
    )
    result = deliver(factory, cfg, raw, to, now=at)
    assert result.outcome == "created", result.reason
    assert result.ticket_number is not None
    return result.ticket_number


def reply_to_of(raw: bytes) -> str:
    return str(message_from_bytes(raw, policy=policy.default)["Reply-To"].addresses[0].addr_spec)


def reply(
    factory: Factory,
    cfg: Config,
    number: str,
    n: int,
    *,
    at: dt.datetime,
    sender: str = "alice@customer.example",
) -> None:
    """A reply on `number`: the customer's to the desk, an agent's to the signed address of their
    notifications (the only way an agent's mail counts as an agent reply)."""
    to = agent_address(factory, cfg, number, AGENT) if sender == AGENT else SUPPORT
    raw = mail(
        sender=sender,
        to=to,
        subject=f"Re: [{number}] problem",
        message_id=f"<r{n}@x.example>",
        body=f"reply {n}\n",
    )
    result = deliver(factory, cfg, raw, to, now=at)
    assert (result.outcome, result.ticket_number) == ("replied", number), result.reason


def merge(factory: Factory, *numbers: str, force: bool = False, at: dt.datetime = MERGE_AT) -> str:
    """merge_tickets in one transaction, the way maildctl calls it; the survivor's number."""
    with transaction(factory) as s:
        survivor = merge_tickets(s, [ticket(s, n) for n in numbers], actor="tester", now=at, force=force)
        return survivor.number


def with_attachment(n: int) -> bytes:
    pdf = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
    return (
        crlf(
            "From: Alice Example <alice@customer.example>\nTo: support@example.com\n"
            f"Subject: problem {n}\nMessage-ID: <t{n}@customer.example>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b0"\n\n'
            "--b0\nContent-Type: text/plain; charset=utf-8\n\nthe scan\n\n--b0\n"
            "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
            'Content-Disposition: attachment; filename="scan.pdf"\n\n'
        )
        + pdf
        + b"\r\n--b0--\r\n"
    )


# --- who survives, subject, status ----------------------------------------------------------------


@pytest.mark.parametrize("order", [(T1, T2, T3), (T3, T1, T2), (T2, T3, T1)])
def test_the_lowest_id_survives_whatever_the_order(
    order: tuple[str, ...], session_factory: Factory, cfg: Config
) -> None:
    for n in (1, 2, 3):
        open_ticket(session_factory, cfg, n, at=NOW + n * HOUR)
    assert merge(session_factory, *order) == T1
    with session_factory() as s:
        survivor, second, third = tickets(s)
        assert survivor.merged_into_id is None
        assert (second.merged_into_id, third.merged_into_id) == (survivor.id, survivor.id)
        assert (second.status, third.status) == ("closed", "closed")
        assert second.updated_at == third.updated_at == survivor.updated_at == MERGE_AT.replace(tzinfo=None)
        assert survivor.subject == "problem 1 [MERGED]"
        assert (second.subject, third.subject) == ("problem 2", "problem 3")  # only the survivor's changes
        assert survivor.customer.email == "alice@customer.example"


def test_merged_is_added_to_the_subject_once(session_factory: Factory, cfg: Config) -> None:
    for n in (1, 2, 3):
        open_ticket(session_factory, cfg, n)
    merge(session_factory, T1, T2)
    merge(session_factory, T1, T3)  # a second merge into the survivor
    with session_factory() as s:
        assert ticket(s, T1).subject == "problem 1 [MERGED]"
    with transaction(session_factory) as s:
        ticket(s, T1).subject = "[MERGED] already marked by hand"
    open_ticket(session_factory, cfg, 4)
    merge(session_factory, T1, "SUP-26-03-4")
    with session_factory() as s:
        assert ticket(s, T1).subject == "[MERGED] already marked by hand"


@pytest.mark.parametrize(
    ("latest", "expected"),
    [
        ("customer-on-newer", "open"),  # the newer ticket's customer wrote last: its status (open)
        ("agent-on-older", "waiting"),  # the survivor's agent answered last: its status (waiting)
        ("agent-on-newer", "waiting"),
        ("customer-on-older", "on_hold"),  # the survivor's customer wrote last: the survivor keeps on_hold
    ],
)
def test_the_status_is_that_of_the_ticket_with_the_latest_reply(
    latest: str, expected: str, session_factory: Factory, cfg: Config
) -> None:
    open_ticket(session_factory, cfg, 1, at=NOW)
    open_ticket(session_factory, cfg, 2, at=NOW + HOUR)
    who, on = latest.split("-on-")
    target = T1 if on == "older" else T2
    sender = AGENT if who == "agent" else "alice@customer.example"
    reply(session_factory, cfg, target, 1, at=NOW + 2 * HOUR, sender=sender)
    with transaction(session_factory) as s:
        if latest == "customer-on-older":
            ticket(s, T1).status = "on_hold"  # an agent's choice the customer's mail did not change here
            ticket(s, T2).status = "resolved"
        elif target == T1:
            ticket(s, T2).status = "in_progress"
        else:
            ticket(s, T1).status = "resolved"
        # A system note later than every reply is no reply: it does not decide.
        other = ticket(s, T2 if target == T1 else T1)
        s.add(
            Message(
                ticket=other,
                desk_id=other.desk_id,
                kind="system",
                message_id="<note.x@maild.invalid>",
                text="a note",
                created_at=(NOW + 5 * HOUR).replace(tzinfo=None),
            )
        )
    merge(session_factory, T2, T1)
    with session_factory() as s:
        assert ticket(s, T1).status == expected


def test_a_tie_keeps_the_survivors_status(session_factory: Factory, cfg: Config) -> None:
    open_ticket(session_factory, cfg, 1, at=NOW)
    open_ticket(session_factory, cfg, 2, at=NOW)  # same second: a tie
    with transaction(session_factory) as s:
        ticket(s, T1).status, ticket(s, T2).status = "in_progress", "open"
    merge(session_factory, T1, T2)
    with session_factory() as s:
        assert ticket(s, T1).status == "in_progress"


# --- what moves -----------------------------------------------------------------------------------


def test_messages_move_in_chronological_order_with_their_attachments(
    session_factory: Factory, cfg: Config
) -> None:
    open_ticket(session_factory, cfg, 1, at=NOW)
    result = deliver(session_factory, cfg, with_attachment(2), SUPPORT, now=NOW + HOUR)
    assert (result.outcome, result.ticket_number) == ("created", T2)
    reply(session_factory, cfg, T1, 3, at=NOW + 2 * HOUR)
    reply(session_factory, cfg, T2, 4, at=NOW + 3 * HOUR)
    merge(session_factory, T1, T2)
    with session_factory() as s:
        survivor, old = ticket(s, T1), ticket(s, T2)
        assert [(m.message_id, m.kind) for m in survivor.messages] == [
            ("<t1@customer.example>", "customer"),
            ("<t2@customer.example>", "customer"),
            ("<r3@x.example>", "customer"),
            ("<r4@x.example>", "customer"),
            (survivor.messages[-1].message_id, "system"),
        ]
        assert old.messages == []
        note = survivor.messages[-1]
        assert note.threaded_by == "merge" and note.message_id.endswith("@maild.invalid>")
        assert T2 in note.text and note.created_at == MERGE_AT.replace(tzinfo=None)
        [scan] = survivor.messages[1].attachments
        assert (scan.filename, scan.size, scan.refused_reason) == ("scan.pdf", len(PDF), None)
        assert all(m.ticket_id == survivor.id for m in messages(s))


def test_participants_join_as_sub_customers_without_doubles_or_cap(
    session_factory: Factory, cfg: Config
) -> None:
    # T1: alice with ten sub-customers (the most mail may add), one of them carol.
    ccs = ["carol@customer.example", *(f"cc{i}@customer.example" for i in range(9))]
    open_ticket(session_factory, cfg, 1, extra=[("Cc", ", ".join(ccs))])
    # T2: dave, with alice (T1's customer), carol (T1's sub-customer) and erin as sub-customers.
    open_ticket(
        session_factory,
        cfg,
        2,
        sender="Dave <dave@other.example>",
        extra=[("Cc", "alice@customer.example, carol@customer.example, erin@other.example")],
    )
    with session_factory() as s:
        assert len(ticket(s, T1).participants) == 11
    merge(session_factory, T2, T1)
    with session_factory() as s:
        survivor = ticket(s, T1)
        roles = [(p.contact.email, p.role) for p in survivor.participants]
        assert survivor.customer.email == "alice@customer.example"
        assert roles[:11] == [("alice@customer.example", "customer"), *((c, "cc") for c in ccs)]
        # dave and erin join as sub-customers, past the cap of ten; alice and carol are not doubled
        assert sorted(roles[11:]) == [("dave@other.example", "cc"), ("erin@other.example", "cc")]
        assert len({email for email, _ in roles}) == len(roles) == 13
        assert ticket(s, T2).participants == []


def test_tags_time_entries_and_outbox_rows_move(session_factory: Factory, cfg: Config) -> None:
    open_ticket(session_factory, cfg, 1)
    open_ticket(session_factory, cfg, 2)
    open_ticket(session_factory, cfg, 3)
    with transaction(session_factory) as s:
        t1, t2, t3 = ticket(s, T1), ticket(s, T2), ticket(s, T3)
        s.add_all(
            TicketTag(ticket_id=t.id, tag=tag) for t, tag in [(t1, "printer"), (t2, "printer"), (t2, "fire")]
        )
        s.add_all([TicketTag(ticket_id=t3.id, tag="fire"), TicketTag(ticket_id=t3.id, tag="floor-2")])
        s.add_all([TimeEntry(ticket_id=t1.id, minutes=10), TimeEntry(ticket_id=t2.id, minutes=25)])
        s.add(TimeEntry(ticket_id=t3.id, minutes=5))
        auto_replies = {row.ticket_id: row.id for row in outbox(s)}
        assert len(auto_replies) == 3
    merge(session_factory, T1, T2, T3)
    with session_factory() as s:
        survivor = ticket(s, T1)
        tags = s.scalars(
            select(TicketTag.tag).where(TicketTag.ticket_id == survivor.id).order_by(TicketTag.tag)
        )
        assert list(tags) == ["fire", "floor-2", "printer"]
        assert len(s.scalars(select(TicketTag)).all()) == 3  # none left on the merged tickets
        assert sorted((e.ticket_id, e.minutes) for e in s.scalars(select(TimeEntry))) == [
            (survivor.id, 5),
            (survivor.id, 10),
            (survivor.id, 25),
        ]
        assert {row.ticket_id for row in s.scalars(select(OutboxMessage))} == {survivor.id}


def test_one_audit_entry_per_merge(session_factory: Factory, cfg: Config) -> None:
    for n in (1, 2, 3):
        open_ticket(session_factory, cfg, n)
    with transaction(session_factory) as s:
        ticket(s, T1).status = "waiting"
    merge(session_factory, T3, T1, T2)
    with session_factory() as s:
        [entry] = s.scalars(select(AuditLog).where(AuditLog.action == "merge"))
        assert (entry.ticket_id, entry.actor, entry.at) == (
            ticket(s, T1).id,
            "tester",
            MERGE_AT.replace(tzinfo=None),
        )
        detail: dict[str, Any] = entry.detail
        assert (detail["survivor"], detail["merged"]) == (T1, [T2, T3])
        assert detail["before"] == {"subject": "problem 1", "status": "waiting"}
        assert detail["after"] == {"subject": "problem 1 [MERGED]", "status": "waiting"}  # all at NOW: a tie


# --- refusals -------------------------------------------------------------------------------------


def test_tickets_of_different_desks_need_force(session_factory: Factory, cfg: Config) -> None:
    open_ticket(session_factory, cfg, 1)
    sales = open_ticket(session_factory, cfg, 2, to=SALES)
    assert sales == "SALES-1"
    with pytest.raises(MergeRefused, match=r"different desks: SUP-26-03-1 \(support\), SALES-1 \(sales\)"):
        merge(session_factory, sales, T1)
    with session_factory() as s:  # refused: nothing changed
        assert ticket(s, sales).merged_into_id is None and len(ticket(s, T1).messages) == 1
        assert s.scalars(select(AuditLog).where(AuditLog.action == "merge")).all() == []
    assert merge(session_factory, sales, T1, force=True) == T1
    with session_factory() as s:
        survivor = ticket(s, T1)
        assert ticket(s, sales).merged_into_id == survivor.id
        # the moved mail keeps the desk it came in on (Message-IDs are unique per desk)
        assert [(m.message_id, m.desk_id) for m in survivor.messages[:2]] == [
            ("<t1@customer.example>", survivor.desk_id),
            ("<t2@customer.example>", ticket(s, sales).desk_id),
        ]


def test_a_merged_ticket_or_a_ticket_with_itself_is_refused(session_factory: Factory, cfg: Config) -> None:
    for n in (1, 2, 3):
        open_ticket(session_factory, cfg, n)
    with pytest.raises(MergeRefused, match=f"two different tickets, not {T1} alone"):
        merge(session_factory, T1, T1)
    with pytest.raises(MergeRefused, match="two different tickets"):
        merge(session_factory, T2)
    with pytest.raises(MergeRefused, match="no ticket"):
        merge(session_factory)
    merge(session_factory, T1, T2)
    with pytest.raises(MergeRefused, match=f"{T2} is merged into {T1} already"):
        merge(session_factory, T2, T3)
    with pytest.raises(MergeRefused, match=f"{T2} is merged into {T1} already"):
        merge(session_factory, T1, T2)
    with session_factory() as s:
        assert ticket(s, T3).merged_into_id is None
        assert len(s.scalars(select(AuditLog).where(AuditLog.action == "merge")).all()) == 1


def test_now_must_be_aware(session_factory: Factory, cfg: Config) -> None:
    open_ticket(session_factory, cfg, 1)
    open_ticket(session_factory, cfg, 2)
    with pytest.raises(ValueError, match="timezone-aware"):
        merge(session_factory, T1, T2, at=MERGE_AT.replace(tzinfo=None))


# --- mail to the old ticket -----------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["token", "references", "subject"])
def test_a_reply_to_the_old_ticket_lands_in_the_survivor(
    rule: str, session_factory: Factory, cfg: Config
) -> None:
    open_ticket(session_factory, cfg, 1)
    # The old ticket is dave's: after the merge he is a sub-customer of the survivor, so even his
    # subject-only reply passes the hijack guard.
    open_ticket(session_factory, cfg, 2, sender="Dave <dave@other.example>", at=NOW + HOUR)
    with session_factory() as s:
        [auto_reply] = [row for row in outbox(s) if row.ticket_id == ticket(s, T2).id]
        signed = reply_to_of(auto_reply.raw)
        old_auto_reply_id = auto_reply.message_id
    merge(session_factory, T1, T2)
    recipient, extra, subject = SUPPORT, [], "Re: problem 2"
    if rule == "token":
        recipient = signed
    elif rule == "references":
        extra = [
            ("In-Reply-To", old_auto_reply_id),
            ("References", f"<t2@customer.example> {old_auto_reply_id}"),
        ]
    else:
        subject = f"Re: [{T2}] problem 2"
    late = mail(
        sender="dave@other.example", to=recipient, subject=subject, message_id="<late@x.example>", extra=extra
    )
    result = deliver(session_factory, cfg, late, recipient, now=MERGE_AT + HOUR)
    assert (result.outcome, result.ticket_number) == ("replied", T1), result.reason
    with session_factory() as s:
        survivor = ticket(s, T1)
        assert (survivor.messages[-1].message_id, survivor.messages[-1].threaded_by) == (
            "<late@x.example>",
            rule,
        )
        assert survivor.status == "open"
        assert ticket(s, T2).messages == [] and len(tickets(s)) == 2


# --- maildctl ticket merge / show ------------------------------------------------------------------


def test_maildctl_ticket_merge(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    for n in (1, 2, 3, 4):
        open_ticket(session_factory, cfg, n, at=NOW + n * HOUR)
    out = ok(ctl(config_file, "ticket", "merge", T3, T1, "sup-26-03-2"))
    assert out == f"merged {T2}, {T3} into {T1} (status open)\n"
    # --json, and a second merge into the survivor
    assert json.loads(ok(ctl(config_file, "ticket", "merge", "SUP-26-03-4", T1, "--json"))) == {
        "survivor": T1,
        "merged": ["SUP-26-03-4"],
        "status": "open",
        "subject": "problem 1 [MERGED]",
        "notified": 0,
    }
    with session_factory() as s:
        assert not [m for m in outbox(s) if m.template == "ticket_merged"]  # only with --notify
        [first, second] = s.scalars(select(AuditLog).where(AuditLog.action == "merge").order_by(AuditLog.id))
        assert (first.detail["merged"], second.detail["merged"]) == ([T2, T3], ["SUP-26-03-4"])
        assert first.actor  # the admin's OS user
    assert "merge" in ok(ctl(config_file, "ticket", "merge", "--help"))


def test_maildctl_ticket_merge_notify_tells_each_merged_tickets_customer(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    open_ticket(session_factory, cfg, 1, sender="Carol Client <carol@customer.example>")
    for n in (2, 3):
        open_ticket(session_factory, cfg, n, at=NOW + n * HOUR)  # both Alice's
    out = ok(ctl(config_file, "ticket", "merge", T1, T2, T3, "--notify"))
    assert out == f"merged {T2}, {T3} into {T1} (status open); 1 customer(s) told\n"
    with session_factory() as s:
        [notice] = [m for m in outbox(s) if m.template == "ticket_merged"]
        survivor_id = ticket(s, T1).id
    assert (notice.rcpt_to, notice.ticket_id) == (["alice@customer.example"], survivor_id)
    sent = message_from_bytes(notice.raw, policy=policy.default)
    assert sent["Subject"] == f"[{T1}] problem 1 [MERGED]"
    text = sent.get_body(("plain",)).get_content()
    assert text.startswith("Hello Alice Example,\n")  # the recipient, not the survivor's customer Carol
    assert f"your requests {T2}, {T3} are now handled together as ticket {T1}" in text
    # Alice answers the notice: her mail lands on the survivor, by its signed Reply-To.
    answer = mail(
        sender="alice@customer.example",
        to=reply_to_of(notice.raw),
        subject="Re: your requests",
        message_id="<after-merge@customer.example>",
    )
    result = deliver(session_factory, cfg, answer, reply_to_of(notice.raw), now=MERGE_AT + HOUR)
    assert (result.outcome, result.ticket_number) == ("replied", T1), result.reason
    # --json says how many were told
    open_ticket(session_factory, cfg, 4, at=NOW + 4 * HOUR)
    data = json.loads(ok(ctl(config_file, "ticket", "merge", T1, "SUP-26-03-4", "--notify", "--json")))
    assert (data["merged"], data["notified"]) == (["SUP-26-03-4"], 1)
    with session_factory() as s:
        second = [m for m in outbox(s) if m.template == "ticket_merged"][-1]
    second_mail = message_from_bytes(second.raw, policy=policy.default)
    one = f'your request SUP-26-03-4 is now handled together with ticket {T1} ("problem 1 [MERGED]")'
    assert one in second_mail.get_body(("plain",)).get_content()
    html = second_mail.get_body(("html",)).get_content()
    assert "your request SUP-26-03-4 is now handled together with ticket <strong>" in html


def test_maildctl_ticket_merge_errors(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    open_ticket(session_factory, cfg, 1)
    open_ticket(session_factory, cfg, 2)
    open_ticket(session_factory, cfg, 3, to=SALES)
    assert "no ticket 'SUP-99'" in one_line_error(ctl(config_file, "ticket", "merge", T1, "SUP-99"))
    line = one_line_error(ctl(config_file, "ticket", "merge", T1, "SALES-1"))
    assert line == (
        "maildctl: cannot merge: the tickets are on different desks: "
        f"{T1} (support), SALES-1 (sales); force it to merge anyway"
    )
    assert "alone" in one_line_error(ctl(config_file, "ticket", "merge", T1, "sup-26-03-1"))
    assert ok(ctl(config_file, "ticket", "merge", T1, "SALES-1", "--force")).startswith("merged SALES-1 into")
    assert "merged into" in one_line_error(ctl(config_file, "ticket", "merge", "SALES-1", T2))
    with session_factory() as s:
        assert ticket(s, T2).merged_into_id is None


def test_maildctl_ticket_show_of_a_merged_number_shows_the_survivor(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    open_ticket(session_factory, cfg, 1)
    open_ticket(session_factory, cfg, 2, at=NOW + HOUR)
    before = json.loads(ok(ctl(config_file, "ticket", "show", T1, "--json")))
    assert (before["merged_from"], before["merged_tickets"]) == (None, [])
    merge(session_factory, T1, T2)
    old = json.loads(ok(ctl(config_file, "ticket", "show", T2, "--json")))
    survivor = json.loads(ok(ctl(config_file, "ticket", "show", T1, "--json")))
    assert (old["number"], old["merged_from"], old["merged_tickets"]) == (T1, T2, [T2])
    assert (survivor["merged_from"], survivor["merged_tickets"]) == (None, [T2])
    assert {k: v for k, v in old.items() if k != "merged_from"} == {
        k: v for k, v in survivor.items() if k != "merged_from"
    }
    # the fields show had before merges existed are all still there
    assert set(before) - {"merged_from", "merged_tickets"} <= set(old)
    assert [m["threaded_by"] for m in old["messages"]] == ["new", "new", "merge"]
    text = ok(ctl(config_file, "ticket", "show", T2)).splitlines()
    assert text[:3] == [
        f"({T2} is merged into {T1}: showing {T1})",
        f"{T1}  problem 1 [MERGED]",
        f"merged: {T2}",
    ]
