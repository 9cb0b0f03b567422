"""maildctl's everyday ticket operations (issue 7): status, priority, assign, tag, untag, close, reopen,
note, reply, delete, flag, unflag, log — each through the real `maildctl` subprocess, with its effect,
its audit entry, its --json output and its one-line errors.

Tickets are made by delivering mail through the real pipeline (tests/pipeline/helpers.py)."""

from __future__ import annotations

import getpass
import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import load_secret, reply_address
from maild.storage.db import transaction
from maild.storage.models import (
    Agent,
    Attachment,
    AuditLog,
    DeskStatus,
    Message,
    OutboxMessage,
    SpoolEntry,
    TicketFlag,
)
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import (
    NOW,
    SALES,
    SUPPORT,
    deliver,
    mail,
    make_agent,
    make_desk,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
BOB, CAROL = "bob.agent@example.com", "carol.agent@example.com"
ALICE = "alice@customer.example"


def actor() -> str:
    try:
        return getpass.getuser() or "maildctl"
    except Exception:
        return "maildctl"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_desk(session_factory, "sales", [SALES], "SALES-{{nr}}")
    make_agent(session_factory, BOB, "Bob Agent", ["support"])
    make_agent(session_factory, CAROL, "Carol Agent", ["support"])
    with transaction(session_factory) as s:
        s.scalars(select(Agent).where(Agent.email == BOB)).one().display_name = "Bob from Support"


def open_ticket(factory: Factory, cfg: Config, n: int = 1, *, to: str = SUPPORT, cc: str = "") -> str:
    extra = [("Cc", cc)] if cc else []
    raw = mail(to=to, subject=f"problem {n}", message_id=f"<t{n}@customer.example>", extra=extra)
    result = deliver(factory, cfg, raw, to)
    assert result.outcome == "created" and result.ticket_number is not None, result.reason
    return result.ticket_number


def audits(factory: Factory, action: str) -> list[AuditLog]:
    with factory() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def parsed(row: OutboxMessage) -> EmailMessage:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(row: OutboxMessage) -> str:
    part = parsed(row).get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def to_agents(factory: Factory, template: str) -> list[OutboxMessage]:
    with factory() as s:
        return list(
            s.scalars(
                select(OutboxMessage).where(OutboxMessage.template == template).order_by(OutboxMessage.id)
            )
        )


# --- help and errors shared by every command -------------------------------------------------------

COMMANDS: dict[str, list[str]] = {
    "status": ["open"],
    "priority": ["high"],
    "assign": [BOB],
    "tag": ["vip"],
    "untag": ["vip"],
    "close": [],
    "reopen": [],
    "note": [],
    "reply": [],
    "delete": [],
    "flag": [BOB],
    "unflag": [BOB],
    "log": [],
    "split": ["--messages", "1"],
}


def test_every_command_has_help(config_file: Path) -> None:
    for command in COMMANDS:
        out = ok(ctl(config_file, "ticket", command, "--help"))
        assert out.startswith("usage: maildctl ticket " + command), command


def test_a_wrong_number_is_one_line_for_every_command(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    open_ticket(session_factory, cfg)
    for command, rest in COMMANDS.items():
        line = one_line_error(ctl(config_file, "ticket", command, "SUP-99", *rest, stdin=b"text"))
        assert line == "maildctl: no ticket 'SUP-99': see 'maildctl ticket list'", command
    with session_factory() as s:
        assert [(t.status, t.priority) for t in tickets(s)] == [("open", "normal")]


# --- status, close, reopen ------------------------------------------------------------------------


def test_status_builtin_and_custom_with_audit(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    number = open_ticket(session_factory, cfg)
    other = open_ticket(session_factory, cfg, 2, to=SALES)
    with transaction(session_factory) as s:
        s.add(DeskStatus(desk_id=ticket(s, number).desk_id, name="awaiting_parts"))
    assert ok(ctl(config_file, "ticket", "status", number.lower(), "In Progress")) == (
        f"{number}: status open -> in_progress\n"
    )
    assert ok(ctl(config_file, "ticket", "status", number, "Awaiting_Parts")) == (
        f"{number}: status in_progress -> awaiting_parts\n"
    )
    assert ok(ctl(config_file, "ticket", "status", number, "awaiting_parts")) == (
        f"{number} is awaiting_parts already\n"
    )
    with session_factory() as s:
        t = ticket(s, number)
        assert t.status == "awaiting_parts"
        assert t.status_changed_at == t.updated_at and t.status_changed_at > NOW.replace(tzinfo=None)
    entries = audits(session_factory, "status")
    assert [(e.detail["before"], e.detail["after"]) for e in entries] == [
        ("open", "in_progress"),
        ("in_progress", "awaiting_parts"),
    ]
    assert {e.actor for e in entries} == {actor()} and all(e.ticket_id is not None for e in entries)
    # the custom status is the support desk's only
    line = one_line_error(ctl(config_file, "ticket", "status", other, "awaiting_parts"))
    assert line.startswith("maildctl: unknown status 'awaiting_parts' for desk sales: use one of open,")
    assert "'maildctl status add'" in line
    # ticket list --status takes it
    listed = json.loads(ok(ctl(config_file, "ticket", "list", "--status", "awaiting_parts", "--json")))
    assert [t["number"] for t in listed] == [number]
    line = one_line_error(ctl(config_file, "ticket", "list", "--status", "awaiting_parts", "--desk", "sales"))
    assert line.startswith("maildctl: unknown --status 'awaiting_parts' for desk sales: use one of open,")
    assert "awaiting_parts" in one_line_error(ctl(config_file, "ticket", "list", "--status", "nope"))


def test_close_and_reopen(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    number = open_ticket(session_factory, cfg)
    assert ok(ctl(config_file, "ticket", "close", number)) == f"{number}: status open -> closed\n"
    assert ok(ctl(config_file, "ticket", "close", number)) == f"{number} is closed already\n"
    with session_factory() as s:
        assert ticket(s, number).status == "closed"
    assert ok(ctl(config_file, "ticket", "reopen", number)) == f"{number}: status closed -> open\n"
    with session_factory() as s:
        assert ticket(s, number).status == "open"
    assert [(e.detail["before"], e.detail["after"]) for e in audits(session_factory, "status")] == [
        ("open", "closed"),
        ("closed", "open"),
    ]


def test_a_merged_number_changes_the_survivor(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    first, second = open_ticket(session_factory, cfg, 1), open_ticket(session_factory, cfg, 2)
    ok(ctl(config_file, "ticket", "merge", first, second))
    out = ok(ctl(config_file, "ticket", "priority", second, "urgent"))
    assert out == f"({second} is merged into {first}: changing {first})\n{first}: priority normal -> urgent\n"
    with session_factory() as s:
        assert (ticket(s, first).priority, ticket(s, second).priority) == ("urgent", "normal")


# --- priority ------------------------------------------------------------------------------------


def test_priority(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    number = open_ticket(session_factory, cfg)
    assert (
        ok(ctl(config_file, "ticket", "priority", number, "HIGH")) == f"{number}: priority normal -> high\n"
    )
    with session_factory() as s:
        assert ticket(s, number).priority == "high"
    [entry] = audits(session_factory, "priority")
    assert (entry.actor, entry.detail) == (actor(), {"before": "normal", "after": "high"})
    line = one_line_error(ctl(config_file, "ticket", "priority", number, "huge"))
    assert line == "maildctl: unknown priority 'huge': use one of low, normal, high, urgent"


# --- assign --------------------------------------------------------------------------------------


def test_assign_by_name_mails_the_assignee_and_none_unassigns(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    number = open_ticket(session_factory, cfg)
    before = len(to_agents(session_factory, "assigned_notice"))
    assert ok(ctl(config_file, "ticket", "assign", number, "bob agent")) == f"{number}: assigned to {BOB}\n"
    [notice] = to_agents(session_factory, "assigned_notice")[before:]
    assert notice.rcpt_to == [BOB]
    with session_factory() as s:
        t = ticket(s, number)
        bob = s.scalars(select(Agent).where(Agent.email == BOB)).one()
        assert t.assigned_agent_id == bob.id
        signed = reply_address(load_secret(cfg.data_dir), SUPPORT, t.id, bob.id)
    assert parsed(notice)["Reply-To"].addresses[0].addr_spec == signed
    assert f"{actor()} assigned {number}" in text_of(notice)
    assert "the printer on floor 2 is on fire" in text_of(notice)
    shown = json.loads(ok(ctl(config_file, "ticket", "show", number, "--json")))
    assert shown["assigned_agent"] == BOB
    assert (
        ok(ctl(config_file, "ticket", "assign", number, BOB.upper()))
        == f"{number} is assigned to {BOB} already\n"
    )
    assert ok(ctl(config_file, "ticket", "assign", number, "--none")) == f"{number}: unassigned\n"
    with session_factory() as s:
        assert ticket(s, number).assigned_agent_id is None
    assert [(e.detail["before"], e.detail["after"]) for e in audits(session_factory, "assign")] == [
        (None, BOB),
        (BOB, None),
    ]
    assert len(to_agents(session_factory, "assigned_notice")) == before + 1  # unassigning mails nobody


def test_assign_errors(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    number = open_ticket(session_factory, cfg)
    assert one_line_error(ctl(config_file, "ticket", "assign", number, "zed")) == (
        "maildctl: no agent 'zed': give an agent's address or name (see 'maildctl agent list')"
    )
    assert "either an agent" in one_line_error(ctl(config_file, "ticket", "assign", number))
    assert "either an agent" in one_line_error(ctl(config_file, "ticket", "assign", number, BOB, "--none"))
    with transaction(session_factory) as s:
        s.scalars(select(Agent).where(Agent.email == CAROL)).one().active = False
    assert "inactive" in one_line_error(ctl(config_file, "ticket", "assign", number, CAROL))
    assert audits(session_factory, "assign") == []


# --- tags ----------------------------------------------------------------------------------------


def test_tag_and_untag(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    number = open_ticket(session_factory, cfg)
    assert ok(ctl(config_file, "ticket", "tag", number, "VIP")) == f"{number}: tagged vip\n"
    assert ok(ctl(config_file, "ticket", "tag", number, "vip")) == f"{number} is tagged vip already\n"
    ok(ctl(config_file, "ticket", "tag", number, "printer"))
    assert json.loads(ok(ctl(config_file, "ticket", "show", number, "--json")))["tags"] == ["printer", "vip"]
    assert ok(ctl(config_file, "ticket", "untag", number, "vip")) == f"{number}: untagged vip\n"
    assert json.loads(ok(ctl(config_file, "ticket", "show", number, "--json")))["tags"] == ["printer"]
    assert one_line_error(ctl(config_file, "ticket", "untag", number, "vip")) == (
        f"maildctl: {number} is not tagged 'vip': see 'maildctl ticket show {number}'"
    )
    assert "is not a tag" in one_line_error(ctl(config_file, "ticket", "tag", number, "two words"))
    assert [e.detail for e in audits(session_factory, "tag")] == [{"after": "vip"}, {"after": "printer"}]
    assert [e.detail for e in audits(session_factory, "untag")] == [{"before": "vip"}]


# --- note and reply ------------------------------------------------------------------------------


def test_note_from_stdin_or_file_stays_inside(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    number = open_ticket(session_factory, cfg)
    with session_factory() as s:
        queued_before = len(list(s.scalars(select(OutboxMessage))))
    out = ok(
        ctl(config_file, "ticket", "note", number, stdin=b"Called her, the fire is out.\n", subprocess=True)
    )
    assert out.startswith(f"{number}: note #") and out.endswith(" added\n")
    path = tmp_path / "note.txt"
    path.write_text("Second thought: ünïcode.\n", encoding="utf-8")
    ok(ctl(config_file, "ticket", "note", number, "--file", str(path)))
    with session_factory() as s:
        t = ticket(s, number)
        notes = [(m.kind, m.visible_text, m.from_name) for m in t.messages if m.kind == "note"]
        assert notes == [
            ("note", "Called her, the fire is out.", actor()),
            ("note", "Second thought: ünïcode.", actor()),
        ]
        assert len(list(s.scalars(select(OutboxMessage)))) == queued_before  # nobody gets mail
        assert t.status == "open"
    assert [e.actor for e in audits(session_factory, "note")] == [actor(), actor()]
    assert "the note is empty" in one_line_error(ctl(config_file, "ticket", "note", number, stdin=b"  \n"))
    assert "cannot read" in one_line_error(
        ctl(config_file, "ticket", "note", number, "--file", "/nonexistent")
    )


def test_reply_as_an_agent_goes_like_a_reply_by_mail(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    number = open_ticket(session_factory, cfg, cc="Dan <dan@customer.example>")
    path = tmp_path / "reply.txt"
    path.write_text("Hello Alice,\n\nthe fire brigade is on its way.\n", encoding="utf-8")
    out = ok(ctl(config_file, "ticket", "reply", number, "--file", str(path), "--as", "Bob from Support"))
    assert out == f"{number}: reply sent to {ALICE}, dan@customer.example\n"
    [relay] = to_agents(session_factory, "agent_reply")
    msg = parsed(relay)
    assert (relay.rcpt_to, msg["To"].addresses[0].addr_spec) == ([ALICE, "dan@customer.example"], ALICE)
    assert msg["Cc"].addresses[0].addr_spec == "dan@customer.example"
    assert (msg["From"].addresses[0].display_name, msg["From"].addresses[0].addr_spec) == (
        "Bob from Support",
        SUPPORT,
    )
    assert msg["In-Reply-To"] == "<t1@customer.example>" and msg["Auto-Submitted"] is None
    assert "the fire brigade is on its way." in text_of(relay)
    # the other agent hears of it, the writer does not
    [notice] = to_agents(session_factory, "agent_reply_notice")
    assert notice.rcpt_to == [CAROL]
    assert "Bob from Support <bob.agent@example.com> answered the customer" in text_of(notice)
    with session_factory() as s:
        t = ticket(s, number)
        [reply] = [m for m in t.messages if m.kind == "agent"]
        assert (reply.from_address, reply.from_name, reply.visible_text) == (
            BOB,
            "Bob from Support",
            "Hello Alice,\n\nthe fire brigade is on its way.",
        )
        assert t.status == "waiting"
    [entry] = audits(session_factory, "reply")
    assert (entry.actor, entry.detail["as_agent"], entry.detail["to"]) == (
        actor(),
        BOB,
        [ALICE, "dan@customer.example"],
    )
    assert [(e.detail["before"], e.detail["after"]) for e in audits(session_factory, "status")] == [
        ("open", "waiting")
    ]
    # the customer's answer to the relay threads back
    answer = mail(
        subject=f"Re: [{number}] problem 1",
        message_id="<answer@customer.example>",
        extra=[("In-Reply-To", relay.message_id)],
    )
    result = deliver(session_factory, cfg, answer, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("replied", number)


def test_reply_without_as_comes_from_the_desk_and_tells_every_agent(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    number = open_ticket(session_factory, cfg)
    ok(ctl(config_file, "ticket", "reply", number, stdin=b"We are on it.\n"))
    [relay] = to_agents(session_factory, "agent_reply")
    assert parsed(relay)["From"].addresses[0].display_name == "support"
    assert text_of(relay).startswith("We are on it.\n\n-- \nsupport\n")
    assert sorted(r for n in to_agents(session_factory, "agent_reply_notice") for r in n.rcpt_to) == [
        BOB,
        CAROL,
    ]
    [entry] = audits(session_factory, "reply")
    assert entry.detail["as_agent"] is None
    assert "the reply is empty" in one_line_error(ctl(config_file, "ticket", "reply", number, stdin=b""))
    assert "no agent 'zed'" in one_line_error(ctl(config_file, "ticket", "reply", number, "--as", "zed",
                                                   stdin=b"x"))  # fmt: skip
    assert len(to_agents(session_factory, "agent_reply")) == 1


def test_a_reply_to_a_blocked_customer_is_noted(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    number = open_ticket(session_factory, cfg)
    ok(ctl(config_file, "block", "add", ALICE))
    out = ok(ctl(config_file, "ticket", "reply", number, stdin=b"Hello?\n"))
    assert out == f"{number}: reply stored, sent to nobody\nnot sent to {ALICE} (blocked ({ALICE}))\n"
    with session_factory() as s:
        [note] = [m for m in ticket(s, number).messages if m.kind == "system"]
        assert note.text == f"{actor()}'s reply was not sent to {ALICE} (blocked ({ALICE}))"


# --- delete --------------------------------------------------------------------------------------


def test_delete_keeps_the_raw_mail_and_cancels_queued_mail(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    pdf = "JVBERi0xLjQKJSVFT0YK"
    raw = (
        "From: Alice Example <alice@customer.example>\r\nTo: support@example.com\r\nSubject: scan\r\n"
        "Message-ID: <scan@customer.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nthe scan\r\n"
        "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n--b--\r\n"
    ).encode()
    number = deliver(session_factory, cfg, raw, SUPPORT).ticket_number
    assert number is not None
    kept = open_ticket(session_factory, cfg, 2, to=SALES)
    ok(ctl(config_file, "ticket", "flag", number, BOB))
    with session_factory() as s:
        doomed_id = ticket(s, number).id
        queued = [r.id for r in s.scalars(select(OutboxMessage).where(OutboxMessage.ticket_id == doomed_id))]
        assert queued
    out = ok(ctl(config_file, "ticket", "delete", number))
    assert out == (
        f"{number} deleted, 1 message(s), {len(queued)} queued mail(s) cancelled; "
        "the raw mail stays in the spool\n"
    )
    with session_factory() as s:
        assert [t.number for t in tickets(s)] == [kept]
        assert [m.ticket.number for m in s.scalars(select(Message))] == [kept]
        assert list(s.scalars(select(Attachment))) == []
        assert list(s.scalars(select(TicketFlag))) == []
        spool = list(s.scalars(select(SpoolEntry).order_by(SpoolEntry.id)))
        assert [(r.outcome, r.ticket_id is None) for r in spool] == [("created", True), ("created", False)]
        assert (cfg.spool_dir).exists() and any(cfg.spool_dir.rglob("*"))
        rows = {r.id: r for r in s.scalars(select(OutboxMessage))}
        assert {rows[i].status for i in queued} == {"failed"}
        assert all(
            rows[i].last_error == f"cancelled: ticket {number} deleted (maildctl ticket delete)"
            for i in queued
        )
        assert [r.status for i, r in rows.items() if i not in queued] == ["queued"]  # the other ticket's
    [entry] = audits(session_factory, "ticket_delete")
    assert (entry.actor, entry.ticket_id) == (actor(), None)
    assert (entry.detail["number"], entry.detail["customer"], entry.detail["messages"]) == (number, ALICE, 1)
    assert entry.detail["outbox_cancelled"] == queued
    assert "no ticket" in one_line_error(ctl(config_file, "ticket", "delete", number))


# --- flags ---------------------------------------------------------------------------------------


def test_flag_mails_the_agent_and_list_flagged_for(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    number = open_ticket(session_factory, cfg)
    other = open_ticket(session_factory, cfg, 2)
    out = ok(ctl(config_file, "ticket", "flag", number, "Carol Agent", "--note", "Please call her back"))
    assert out == f"{number}: flagged for {CAROL}\n"
    [notice] = to_agents(session_factory, "flag_notice")
    assert notice.rcpt_to == [CAROL]
    msg = parsed(notice)
    with session_factory() as s:
        t = ticket(s, number)
        carol = s.scalars(select(Agent).where(Agent.email == CAROL)).one()
        signed = reply_address(load_secret(cfg.data_dir), SUPPORT, t.id, carol.id)
        [row] = s.scalars(select(TicketFlag))
        assert (row.ticket_id, row.agent_id, row.note, row.flagged_by, row.cleared_at) == (
            t.id,
            carol.id,
            "Please call her back",
            actor(),
            None,
        )
    assert msg["Reply-To"].addresses[0].addr_spec == signed
    assert msg["Subject"] == f"[{number}] Flagged for you: problem 1"
    body = text_of(notice)
    assert f"{actor()} flagged {number}" in body and "Please call her back" in body
    assert "the printer on floor 2 is on fire" in body
    assert "Status: open | Priority: normal | Assigned: nobody" in body
    listed = json.loads(ok(ctl(config_file, "ticket", "list", "--flagged-for", CAROL, "--json")))
    assert [t["number"] for t in listed] == [number]
    assert json.loads(ok(ctl(config_file, "ticket", "list", "--flagged-for", BOB, "--json"))) == []
    shown = json.loads(ok(ctl(config_file, "ticket", "show", number, "--json")))
    assert [(f["agent"], f["note"]) for f in shown["flags"]] == [(CAROL, "Please call her back")]
    assert "flagged for" in one_line_error(ctl(config_file, "ticket", "flag", number, CAROL))
    assert "no agent" in one_line_error(ctl(config_file, "ticket", "flag", number, "nobody@example.com"))
    assert "no agent" in one_line_error(ctl(config_file, "ticket", "list", "--flagged-for", "zed"))
    # unflag
    assert ok(ctl(config_file, "ticket", "unflag", number, CAROL)) == f"{number}: flag for {CAROL} cleared\n"
    assert json.loads(ok(ctl(config_file, "ticket", "list", "--flagged-for", CAROL, "--json"))) == []
    assert one_line_error(ctl(config_file, "ticket", "unflag", other, CAROL)) == (
        f"maildctl: {other} is not flagged for {CAROL}: see 'maildctl ticket list --flagged-for {CAROL}'"
    )
    [flagged] = audits(session_factory, "flag")
    [unflagged] = audits(session_factory, "unflag")
    assert (flagged.actor, flagged.detail) == (actor(), {"after": CAROL, "note": "Please call her back"})
    assert unflagged.detail == {"before": CAROL}
    # flagged again after clearing: a new flag and a new mail
    ok(ctl(config_file, "ticket", "flag", number, CAROL))
    assert len(to_agents(session_factory, "flag_notice")) == 2


# --- log -----------------------------------------------------------------------------------------


def test_log_lists_every_change_oldest_first_with_merged_tickets(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    first, second = open_ticket(session_factory, cfg, 1), open_ticket(session_factory, cfg, 2)
    ok(ctl(config_file, "ticket", "priority", second, "high"))
    ok(ctl(config_file, "ticket", "status", first, "on_hold"))
    ok(ctl(config_file, "ticket", "merge", first, second))
    entries = json.loads(ok(ctl(config_file, "ticket", "log", first, "--json")))
    assert [(e["action"], e["ticket"]) for e in entries] == [
        ("ticket_created", first),
        ("ticket_created", second),
        ("priority", second),
        ("status", first),
        ("merge", first),
    ]
    assert entries[2]["before"] == "normal" and entries[2]["after"] == "high" and entries[2]["detail"] == {}
    assert entries[2]["actor"] == actor() and entries[0]["actor"] == ALICE
    assert entries[0]["at"] == "2026-03-07T09:30:00Z"
    assert entries == sorted(entries, key=lambda e: e["at"])
    assert json.loads(ok(ctl(config_file, "ticket", "log", second, "--json"))) == entries  # the survivor's
    text = ok(ctl(config_file, "ticket", "log", first)).splitlines()
    assert len(text) == 5
    assert text[2].split("  ")[1:4] == [actor(), f"priority [{second}]", "normal -> high"]
    assert text[3].split("  ")[1:4] == [actor(), "status", "open -> on_hold"]
