"""`maildctl ticket bulk` (issue 19): the filters of `ticket list` select the tickets, one action changes
each through the one-ticket services (one audit entry per ticket changed), `--dry-run` changes nothing,
and a wrong option is a one-line error that changes nothing. `ticket list` takes the new filters too."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.models import AuditLog, OutboxMessage, Ticket
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import SUPPORT, deliver, mail, make_agent, make_desk

Factory = sessionmaker[Session]
BOB = "bob@example.com"
ALICE, CAROL = "alice@customer.example", "carol@partner.example"


@pytest.fixture
def numbers(session_factory: Factory, cfg: Config) -> list[str]:
    """Three tickets: Alice's two (the first one waiting, untouched for 20 days, tagged vip), Carol's one."""
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, BOB, "Bob", ["support"])
    senders = [f"Alice <{ALICE}>", f"Alice <{ALICE}>", f"Carol <{CAROL}>"]
    for n, sender in enumerate(senders):
        deliver(
            session_factory, cfg, mail(sender=sender, subject=f"Problem {n}", message_id=f"<p{n}@x.example>")
        )
    with session_factory() as s, s.begin():
        tickets = s.query(Ticket).order_by(Ticket.id).all()
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for ticket in tickets:
            ticket.updated_at = now
        tickets[0].status = "waiting"
        tickets[0].updated_at = now - dt.timedelta(days=20)
        return [t.number for t in tickets]


def listed(config_file: Path, *filters: str) -> list[str]:
    return [t["number"] for t in json.loads(ok(ctl(config_file, "ticket", "list", *filters, "--json")))]


def bulk(config_file: Path, *args: str, stdin: bytes | None = None) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ok(ctl(config_file, "ticket", "bulk", *args, "--json", stdin=stdin)))
    return result


def audit_actions(factory: Factory) -> list[str]:
    with factory() as s:
        return [entry.action for entry in s.query(AuditLog).order_by(AuditLog.id)]


def test_list_takes_the_new_filters(config_file: Path, numbers: list[str]) -> None:
    ok(ctl(config_file, "ticket", "tag", numbers[0], "vip"))

    assert listed(config_file, "--customer", ALICE) == [numbers[1], numbers[0]]  # newest first
    assert listed(config_file, "--tag", "VIP") == [numbers[0]]
    assert listed(config_file, "--older-than", "14d") == [numbers[0]]
    assert listed(config_file, "--older-than", "3w") == []
    assert listed(config_file, "--priority", "normal", "--status", "open") == [numbers[2], numbers[1]]


def test_dry_run_lists_and_changes_nothing(
    config_file: Path, numbers: list[str], session_factory: Factory
) -> None:
    before = audit_actions(session_factory)

    shown = bulk(config_file, "--customer", ALICE, "--set-priority", "high", "--dry-run")

    assert shown["dry_run"] is True
    assert [(t["ticket"], t["before"], t["after"], t["changed"]) for t in shown["tickets"]] == [
        (numbers[0], "normal", "high", True),
        (numbers[1], "normal", "high", True),
    ]
    assert audit_actions(session_factory) == before
    assert listed(config_file, "--priority", "high") == []


def test_each_ticket_changed_once_and_audited(
    config_file: Path, numbers: list[str], session_factory: Factory
) -> None:
    before = len(audit_actions(session_factory))

    done = bulk(config_file, "--status", "open", "--set-priority", "urgent")

    assert [t["ticket"] for t in done["tickets"] if t["changed"]] == [numbers[1], numbers[2]]
    assert listed(config_file, "--priority", "urgent") == [numbers[2], numbers[1]]
    assert audit_actions(session_factory)[before:] == ["priority", "priority"]  # one entry per ticket
    again = bulk(config_file, "--status", "open", "--set-priority", "urgent")
    assert [t["changed"] for t in again["tickets"]] == [False, False]  # nothing left to change
    assert len(audit_actions(session_factory)) == before + 2


def test_close_the_stale_waiting_ones(config_file: Path, numbers: list[str]) -> None:
    done = bulk(config_file, "--status", "waiting", "--older-than", "14d", "--close")

    assert [(t["ticket"], t["before"], t["after"]) for t in done["tickets"]] == [
        (numbers[0], "waiting", "closed")
    ]
    assert listed(config_file, "--status", "closed") == [numbers[0]]


def test_assign_tag_and_reply_to_each(
    config_file: Path, numbers: list[str], session_factory: Factory, tmp_path: Path
) -> None:
    bulk(config_file, "--customer", CAROL, "--assign", "Bob")
    bulk(config_file, "--customer", ALICE, "--add-tag", "printer")
    reply = tmp_path / "reply.txt"
    reply.write_text("We are on it: the printer is being replaced today.\n", encoding="utf-8")
    with session_factory() as s:
        queued = s.query(OutboxMessage).count()

    sent = bulk(config_file, "--tag", "printer", "--reply-file", str(reply), "--as", BOB)

    assert [t["ticket"] for t in sent["tickets"]] == numbers[:2]
    assert listed(config_file, "--tag", "printer") == [numbers[1], numbers[0]]
    shown = json.loads(ok(ctl(config_file, "ticket", "show", numbers[2], "--json")))
    assert shown["assigned_agent"] == BOB
    with session_factory() as s:
        replies = s.query(OutboxMessage).filter(OutboxMessage.template == "agent_reply").all()
        assert s.query(OutboxMessage).count() > queued
        assert sorted(r.rcpt_to[0] for r in replies) == [ALICE, ALICE]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--set-priority", "bogus"), "--set-priority"),
        (("--older-than", "soon", "--close"), "--older-than"),
        (("--status", "nope", "--close"), "--status"),
        (("--set-status", "nope"), "status"),
        (("--assign", "nobody@example.com"), "nobody"),
        (("--add-tag", "no tags with spaces"), "tag"),
        (("--reply-file", "/nonexistent/reply.txt"), "cannot read"),
    ],
)
def test_a_wrong_option_is_one_line_and_changes_nothing(
    config_file: Path, numbers: list[str], session_factory: Factory, args: tuple[str, ...], says: str
) -> None:
    before = audit_actions(session_factory)

    line = one_line_error(ctl(config_file, "ticket", "bulk", *args))

    assert says in line
    assert audit_actions(session_factory) == before


def test_an_action_is_required_and_only_one(config_file: Path, numbers: list[str]) -> None:
    line = one_line_error(ctl(config_file, "ticket", "bulk", "--status", "open"))
    assert "give one action" in line and "--reply-file" in line

    two = ctl(config_file, "ticket", "bulk", "--close", "--add-tag", "x")
    assert two.returncode == 2 and "not allowed with" in two.stderr and "Traceback" not in two.stderr
