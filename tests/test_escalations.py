"""Escalation rules and reminders (issue 7 item 5): maild.tickets.escalations (each action, once per ticket
state,
filters, two instances at once), `maildctl escalation`, and the `escalations` job of `maild serve`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, Hygiene
from maild.storage.db import transaction
from maild.storage.models import (
    AuditLog,
    Category,
    Desk,
    EscalationFired,
    EscalationRule,
    Message,
    OutboxMessage,
    Ticket,
    utcnow,
)
from maild.tickets import ticket_ops
from maild.tickets.escalations import describe_span, escalate, run_escalations
from tests.cli import ctl, ok, one_line_error
from tests.daemon import free_port, sent_mails, start_fixture, wait_until, write_config  # noqa: F401
from tests.pipeline.helpers import (
    NOW,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    deliver,
    mail,
    make_agent,
    make_desk,
    ticket,
)

Factory = sessionmaker[Session]
START = NOW.replace(tzinfo=None)  # the tickets enter their status here
HOUR = dt.timedelta(hours=1)
ANNA, BEN, CARL = "anna@example.com", "ben@example.com", "carl@example.com"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    make_agent(session_factory, BEN, "Ben", ["support"])
    make_agent(session_factory, CARL, "Carl", ["sales"])


def open_tickets(
    factory: Factory, cfg: Config, count: int, *, cc: str = "", status: str = "open"
) -> list[str]:
    """`count` tickets from Alice on support, in `status` since START."""
    numbers = []
    for n in range(count):
        extra = [("Cc", cc)] if cc else []
        raw = mail(message_id=f"<e{n}@customer.example>", subject=f"Case {n}", extra=extra)
        result = deliver(factory, cfg, raw, SUPPORT)
        assert result.outcome == "created"
        numbers.append(result.ticket_number)
    set_tickets(factory, numbers, status=status, updated_at=START, status_changed_at=START)
    return numbers


def set_tickets(factory: Factory, numbers: list[str], **values: object) -> None:
    # Core update: no before_flush hook, so tests set status_changed_at themselves.
    with transaction(factory) as session:
        session.execute(update(Ticket).where(Ticket.number.in_(numbers)).values(**values))


def add_rule(factory: Factory, name: str = "nudge", desk: str = "support", **values: Any) -> None:
    with transaction(factory) as session:
        desks = {d.name: d for d in session.scalars(select(Desk))}
        if "set_desk" in values:
            values["set_desk"] = desks[values["set_desk"]]
        values.setdefault("in_status", "open")
        values.setdefault("after_hours", 24)
        session.add(EscalationRule(desk=desks[desk], name=name, **values))


def mails(factory: Factory, template: str) -> list[OutboxMessage]:
    with factory() as session:
        query = select(OutboxMessage).where(OutboxMessage.template == template).order_by(OutboxMessage.id)
        return list(session.scalars(query))


def parsed(row: OutboxMessage) -> EmailMessage:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(row: OutboxMessage) -> str:
    body = parsed(row).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def notes(factory: Factory, number: str) -> list[str]:
    with factory() as session:
        t = ticket(session, number)
        query = select(Message.text).where(Message.ticket_id == t.id, Message.kind == "system")
        return list(session.scalars(query.order_by(Message.id)))


def audits(factory: Factory, action: str) -> list[AuditLog]:
    with factory() as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def state(factory: Factory, number: str) -> tuple[str, str, str]:
    with factory() as session:
        t = ticket(session, number)
        return t.status, t.priority, t.desk.name


# --- actions --------------------------------------------------------------------------------------


def test_set_status_and_priority_not_before_the_hours_with_audit_and_note(
    session_factory: Factory, cfg: Config
) -> None:
    [number] = open_tickets(session_factory, cfg, 1)
    add_rule(session_factory, "stale", after_hours=24, set_status="waiting", set_priority="high")

    assert run_escalations(session_factory, cfg, START + 23 * HOUR) == 0
    assert state(session_factory, number) == ("open", "normal", "support")

    at = START + 26 * HOUR
    result = escalate(session_factory, cfg, at)

    assert result.fired == [("support", "stale", number)] and result.outbox_ids == []
    assert state(session_factory, number) == ("waiting", "high", "support")
    with session_factory() as session:
        t = ticket(session, number)
        assert (t.updated_at, t.status_changed_at) == (at, at)  # a new state begins
        [fired] = session.scalars(select(EscalationFired))
        assert (fired.ticket_id, fired.state_key) == (t.id, f"open@{START.isoformat()}")
    [status] = audits(session_factory, "status")
    [priority] = audits(session_factory, "priority")
    assert (status.actor, status.at, status.detail) == (
        "scheduler",
        at,
        {"before": "open", "after": "waiting"},
    )
    assert (priority.actor, priority.detail) == ("scheduler", {"before": "normal", "after": "high"})
    [fired_audit] = audits(session_factory, "escalation")
    assert (
        fired_audit.detail["rule"] == "stale" and fired_audit.detail["state"] == f"open@{START.isoformat()}"
    )
    assert notes(session_factory, number) == [
        "Escalation rule 'stale' fired after 1 day 2 hours in status open: "
        "status open → waiting; priority normal → high."
    ]
    # the status changed: the rule waits in `open`, so it does not fire again
    assert run_escalations(session_factory, cfg, at + 100 * HOUR) == 0


def test_move_to_another_desk_clears_the_old_desks_category(session_factory: Factory, cfg: Config) -> None:
    [number] = open_tickets(session_factory, cfg, 1)
    with transaction(session_factory) as session:
        desk = session.scalars(select(Desk).where(Desk.name == "support")).one()
        category = Category(desk_id=desk.id, name="billing")
        session.add(category)
        session.flush()
        ticket(session, number).category_id = category.id
    add_rule(session_factory, "to-sales", set_desk="sales", notify_agents=True)

    assert run_escalations(session_factory, cfg, START + 24 * HOUR) == 1

    assert state(session_factory, number) == ("open", "normal", "sales")
    with session_factory() as session:
        assert ticket(session, number).category_id is None
    [moved] = audits(session_factory, "desk")
    assert (moved.actor, moved.detail) == ("scheduler", {"before": "support", "after": "sales"})
    [cleared] = audits(session_factory, "category")
    assert cleared.detail == {"before": "billing", "after": None}
    # the new desk's agents are told, not the old desk's
    [notice] = mails(session_factory, "escalation_notice")
    assert notice.rcpt_to == [CARL]
    assert "- moved from desk support to sales" in text_of(notice)
    # the ticket left the rule's desk: it does not fire there again
    assert run_escalations(session_factory, cfg, START + 200 * HOUR) == 0


def test_notify_agents_sends_each_desk_agent_a_notice(session_factory: Factory, cfg: Config) -> None:
    [number] = open_tickets(session_factory, cfg, 1)
    add_rule(session_factory, "urgent-look", after_hours=2.5, notify_agents=True)

    result = escalate(session_factory, cfg, START + 3 * HOUR)

    notices = mails(session_factory, "escalation_notice")
    assert sorted(result.outbox_ids) == sorted(n.id for n in notices)
    assert [n.rcpt_to for n in notices] == [[ANNA], [BEN]]
    sent = parsed(notices[0])
    assert sent["Subject"] == f"[{number}] Escalation urgent-look: open for 3 hours: Case 0"
    assert sent["Auto-Submitted"] == "auto-generated"
    text = text_of(notices[0])
    assert f'Ticket {number} ("Case 0") has been in status open for 3 hours' in text
    assert 'the escalation rule "urgent-look" (2.5 hours in open) fired.' in text
    assert "Status: open | Priority: normal | Assigned: nobody" in text
    assert notes(session_factory, number) == [
        f"Escalation rule 'urgent-look' fired after 3 hours in status open: agents notified ({ANNA}, {BEN})."
    ]


def test_a_reminder_goes_to_the_customer_and_sub_customers(session_factory: Factory, cfg: Config) -> None:
    [number] = open_tickets(session_factory, cfg, 1, cc="Bob <bob@customer.example>", status="waiting")
    with transaction(session_factory) as session:  # an agent answered: sub-customers get reminders too
        t = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        session.add(
            Message(ticket=t, desk_id=t.desk_id, kind="agent", message_id="<answer@x>", created_at=START)
        )
    add_rule(session_factory, "remind", in_status="waiting", after_hours=72, remind_template="reminder")

    assert run_escalations(session_factory, cfg, START + 72 * HOUR) == 1

    [row] = mails(session_factory, "reminder")
    assert sorted(row.rcpt_to) == ["alice@customer.example", "bob@customer.example"]
    sent = parsed(row)
    assert sent["Subject"] == f"[{number}] Reminder: Case 0"
    assert sent["To"] == "Alice Example <alice@customer.example>" and "bob@customer.example" in sent["Cc"]
    assert sent["Auto-Submitted"] == "auto-replied"
    assert f'we are waiting for your answer on {number} ("Case 0") for 3 days now.' in text_of(row)
    assert state(session_factory, number) == ("waiting", "normal", "support")  # nothing else changes
    assert notes(session_factory, number) == [
        "Escalation rule 'remind' fired after 3 days in status waiting: "
        "reminder (reminder) sent to the customer."
    ]


def test_a_broken_template_does_not_stop_the_escalation(
    session_factory: Factory, cfg: Config, data_dir: Path
) -> None:
    [number] = open_tickets(session_factory, cfg, 1)
    override = data_dir / "templates" / "support"
    override.mkdir(parents=True)
    (override / "nudge.subject.j2").write_text("Nudge\n")
    (override / "nudge.txt.j2").write_text("{{ no_such_variable }}\n")
    add_rule(session_factory, set_priority="urgent", remind_template="nudge")

    assert run_escalations(session_factory, cfg, START + 24 * HOUR) == 1

    assert state(session_factory, number)[1] == "urgent"
    assert mails(session_factory, "nudge") == []
    [note] = notes(session_factory, number)
    assert "priority normal → urgent; reminder (nudge) not sent: UndefinedError" in note
    assert run_escalations(session_factory, cfg, START + 48 * HOUR) == 0  # fired: not retried every run


# --- when a rule fires ----------------------------------------------------------------------------


def test_fires_once_per_state_and_again_when_the_ticket_reenters_the_status(
    session_factory: Factory, cfg: Config
) -> None:
    [number] = open_tickets(session_factory, cfg, 1, status="waiting")
    add_rule(session_factory, in_status="waiting", after_hours=48, remind_template="reminder")

    assert run_escalations(session_factory, cfg, START + 48 * HOUR) == 1
    assert run_escalations(session_factory, cfg, START + 49 * HOUR) == 0
    assert run_escalations(session_factory, cfg, START + 500 * HOUR) == 0
    assert len(mails(session_factory, "reminder")) == 1

    # the customer answers (open), the agent asks again (waiting): a new state
    back = START + 600 * HOUR
    with transaction(session_factory) as session:
        t = ticket(session, number)
        ticket_ops.set_status(session, t, "open", actor="test", now=back - HOUR)
        session.flush()
        ticket_ops.set_status(session, t, "waiting", actor="test", now=back)
    assert run_escalations(session_factory, cfg, back + 47 * HOUR) == 0
    assert run_escalations(session_factory, cfg, back + 48 * HOUR) == 1
    assert run_escalations(session_factory, cfg, back + 60 * HOUR) == 0
    assert len(mails(session_factory, "reminder")) == 2
    with session_factory() as session:
        keys = sorted(session.scalars(select(EscalationFired.state_key)))
    assert keys == [f"waiting@{START.isoformat()}", f"waiting@{back.isoformat()}"]


def test_two_rules_on_one_status_each_fire_once(session_factory: Factory, cfg: Config) -> None:
    [number] = open_tickets(session_factory, cfg, 1)
    add_rule(session_factory, "first", after_hours=4, notify_agents=True)
    add_rule(session_factory, "then", after_hours=8, set_status="waiting")

    assert run_escalations(session_factory, cfg, START + 5 * HOUR) == 1
    assert run_escalations(session_factory, cfg, START + 9 * HOUR) == 1
    assert state(session_factory, number)[0] == "waiting"
    assert len(mails(session_factory, "escalation_notice")) == 2  # Anna and Ben, once


def test_the_priority_filter(session_factory: Factory, cfg: Config) -> None:
    normal, urgent = open_tickets(session_factory, cfg, 2)
    set_tickets(session_factory, [urgent], priority="urgent")
    add_rule(session_factory, after_hours=1, with_priority="urgent", set_status="in_progress")

    assert escalate(session_factory, cfg, START + 2 * HOUR).fired == [("support", "nudge", urgent)]
    assert [state(session_factory, n)[0] for n in (normal, urgent)] == ["open", "in_progress"]


def test_inactive_rules_merged_tickets_and_other_desks_are_left_alone(
    session_factory: Factory, cfg: Config
) -> None:
    kept, merged = open_tickets(session_factory, cfg, 2)
    with session_factory() as session:
        survivor = ticket(session, kept).id
    set_tickets(session_factory, [merged], merged_into_id=survivor)
    sales = deliver(session_factory, cfg, mail(message_id="<s@customer.example>"), SALES).ticket_number
    set_tickets(session_factory, [sales], updated_at=START, status_changed_at=START)
    add_rule(session_factory, set_priority="high", active=False)
    later = START + 100 * HOUR

    assert run_escalations(session_factory, cfg, later) == 0

    with transaction(session_factory) as session:
        session.execute(update(EscalationRule).values(active=True))
    assert escalate(session_factory, cfg, later).fired == [("support", "nudge", kept)]
    assert state(session_factory, merged)[1] == "normal"
    assert state(session_factory, sales)[1] == "normal"


def test_a_ticket_without_status_changed_at_counts_from_updated_at(
    session_factory: Factory, cfg: Config
) -> None:
    [number] = open_tickets(session_factory, cfg, 1)
    set_tickets(session_factory, [number], status_changed_at=None, updated_at=START + 10 * HOUR)
    add_rule(session_factory, set_priority="low")

    assert run_escalations(session_factory, cfg, START + 33 * HOUR) == 0
    assert run_escalations(session_factory, cfg, START + 34 * HOUR) == 1


def test_two_instances_running_at_once_fire_each_ticket_once(session_factory: Factory, cfg: Config) -> None:
    # Twelve reminders to one customer at once: above the default automatic-mail rate limit (5).
    cfg = dataclasses.replace(cfg, hygiene=Hygiene(autoreply_per_hour=100, autoreply_per_day=100))
    numbers = open_tickets(session_factory, cfg, 12)
    # No status change: the fired row alone keeps the second instance from firing again.
    add_rule(session_factory, remind_template="reminder", notify_agents=True)
    later = START + 30 * HOUR
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def instance() -> None:
        try:
            start.wait()
            results.append([number for *_, number in escalate(session_factory, cfg, later).fired])
        except BaseException as exc:  # reported below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=instance) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(results[0] + results[1]) == sorted(numbers)  # every ticket by exactly one of them
    assert len(mails(session_factory, "reminder")) == 12
    assert len(mails(session_factory, "escalation_notice")) == 24  # Anna and Ben per ticket
    assert len(audits(session_factory, "escalation")) == 12
    with session_factory() as session:
        assert len(list(session.scalars(select(EscalationFired)))) == 12
    assert run_escalations(session_factory, cfg, later + HOUR) == 0


def test_describe_span() -> None:
    spans = [dt.timedelta(minutes=m) for m in (1, 45, 60, 61, 150, 24 * 60, 26 * 60, 49 * 60)]
    assert [describe_span(s) for s in spans] == [
        "1 minute",
        "45 minutes",
        "1 hour",
        "1 hour",
        "2 hours",
        "1 day",
        "1 day 2 hours",
        "2 days 1 hour",
    ]


# --- maildctl escalation --------------------------------------------------------------------------


def test_maildctl_escalation_add_list_set_remove(
    session_factory: Factory, config_file: Path, data_dir: Path
) -> None:
    out = ok(
        ctl(
            config_file,
            *("escalation", "add", "support", "stale", "--after-hours", "48", "--status", "waiting"),
            *("--priority", "high", "--set-status", "on_hold", "--set-priority", "urgent"),
            *("--set-desk", "sales", "--notify-agents", "--remind"),
        )
    )
    assert out == (
        "escalation rule stale added to desk support: after 48h in waiting with priority high → "
        "status on_hold, priority urgent, desk sales, notify agents, remind with reminder\n"
    )
    override = data_dir / "templates" / "sales"
    override.mkdir(parents=True)
    (override / "nudge.subject.j2").write_text("Nudge\n")
    (override / "nudge.html.j2").write_text("<p>Still there?</p>\n")
    ok(
        ctl(
            config_file,
            "escalation",
            "add",
            "sales",
            "ping",
            "--after-hours",
            "0.5",
            "--status",
            "open",
            "--remind",
            "nudge",
        )
    )

    rules = json.loads(ok(ctl(config_file, "escalation", "list", "--json", subprocess=True)))
    assert [(r["desk"], r["name"]) for r in rules] == [("sales", "ping"), ("support", "stale")]
    created = rules[1].pop("created_at")
    assert created.endswith("Z")
    assert rules[1] == {
        "desk": "support",
        "name": "stale",
        "active": True,
        "after_hours": 48.0,
        "status": "waiting",
        "priority": "high",
        "set_status": "on_hold",
        "set_priority": "urgent",
        "set_desk": "sales",
        "notify_agents": True,
        "remind": "reminder",
        "fired": 0,
    }
    assert rules[0]["remind"] == "nudge" and rules[0]["after_hours"] == 0.5
    assert [
        r["name"] for r in json.loads(ok(ctl(config_file, "escalation", "list", "--desk", "sales", "--json")))
    ] == ["ping"]
    table = ok(ctl(config_file, "escalation", "list"))
    assert table.splitlines()[0].split() == ["DESK", "NAME", "ACTIVE", "FIRED", "RULE"]
    assert "after 0.5h in open → remind with nudge" in table

    assert ok(ctl(config_file, "escalation", "set", "support", "stale", "--inactive")) == (
        "escalation rule stale of desk support is now inactive\n"
    )
    [rule] = json.loads(ok(ctl(config_file, "escalation", "list", "--desk", "support", "--json")))
    assert rule["active"] is False
    ok(ctl(config_file, "escalation", "set", "support", "stale", "--active"))
    assert (
        ok(ctl(config_file, "escalation", "remove", "sales", "ping"))
        == "escalation rule ping removed from desk sales\n"
    )
    assert [r["name"] for r in json.loads(ok(ctl(config_file, "escalation", "list", "--json")))] == ["stale"]

    actions = [(a.action, a.detail.get("name")) for a in audits_like(session_factory, "escalation_")]
    assert actions == [
        ("escalation_add", "stale"),
        ("escalation_add", "ping"),
        ("escalation_set", "stale"),
        ("escalation_set", "stale"),
        ("escalation_remove", "ping"),
    ]
    for sub in ("add", "list", "remove", "set"):
        assert "usage: maildctl escalation " + sub in ok(ctl(config_file, "escalation", sub, "--help"))


def audits_like(factory: Factory, prefix: str) -> list[AuditLog]:
    with factory() as session:
        query = select(AuditLog).where(AuditLog.action.startswith(prefix)).order_by(AuditLog.id)
        return list(session.scalars(query))


def test_maildctl_escalation_errors(session_factory: Factory, config_file: Path) -> None:
    base = ("escalation", "add", "support", "r1", "--after-hours", "24", "--status", "open")
    for args, complaint in (
        (
            (
                "escalation",
                "add",
                "nowhere",
                "r1",
                "--after-hours",
                "1",
                "--status",
                "open",
                "--notify-agents",
            ),
            "maildctl: no desk named 'nowhere': see 'maildctl desk list'",
        ),
        ((*base,), "maildctl: the rule does nothing: give at least one of --set-status"),
        (
            (
                "escalation",
                "add",
                "support",
                "r1",
                "--after-hours",
                "24",
                "--status",
                "asleep",
                "--notify-agents",
            ),
            "maildctl: invalid --status 'asleep': desk support has open, in_progress, waiting",
        ),
        ((*base, "--set-status", "asleep"), "maildctl: invalid --set-status 'asleep'"),
        ((*base, "--set-status", "open"), "maildctl: --set-status open is the status the rule waits in"),
        (
            (*base, "--priority", "asap", "--notify-agents"),
            "maildctl: invalid --priority 'asap': use one of low",
        ),
        ((*base, "--set-priority", "asap"), "maildctl: invalid --set-priority 'asap'"),
        ((*base, "--set-desk", "nowhere"), "maildctl: no desk named 'nowhere' (--set-desk)"),
        ((*base, "--set-desk", "support"), "maildctl: --set-desk support is the rule's own desk"),
        (
            (*base, "--remind", "nosuch"),
            "maildctl: no mail template 'nosuch' for desk support: put nosuch.subject.j2",
        ),
        ((*base, "--remind", "../reminder"), "maildctl: no mail template '../reminder'"),
        (
            (
                "escalation",
                "add",
                "support",
                "r1",
                "--after-hours",
                "-3",
                "--status",
                "open",
                "--notify-agents",
            ),
            "maildctl: invalid --after-hours '-3'",
        ),
        (
            (
                "escalation",
                "add",
                "support",
                "r1",
                "--after-hours",
                "soon",
                "--status",
                "open",
                "--notify-agents",
            ),
            "maildctl: invalid --after-hours 'soon'",
        ),
        (
            (
                "escalation",
                "add",
                "support",
                "bad name",
                "--after-hours",
                "1",
                "--status",
                "open",
                "--notify-agents",
            ),
            "maildctl: invalid rule name 'bad name'",
        ),
        (("escalation", "remove", "support", "r9"), "maildctl: no escalation rule 'r9' on desk support"),
        (("escalation", "remove", "nowhere", "r9"), "maildctl: no desk named 'nowhere'"),
        (("escalation", "set", "support", "r9", "--active"), "maildctl: no escalation rule 'r9'"),
        (("escalation", "list", "--desk", "nowhere"), "maildctl: no desk named 'nowhere'"),
    ):
        assert one_line_error(ctl(config_file, *args)).startswith(complaint), args
    ok(ctl(config_file, *base, "--notify-agents"))
    assert "already has an escalation rule 'r1'" in one_line_error(ctl(config_file, *base, "--notify-agents"))
    assert one_line_error(ctl(config_file, "escalation", "set", "support", "r1")) == (
        "maildctl: give either --active or --inactive"
    )
    with session_factory() as session:
        assert len(list(session.scalars(select(EscalationRule)))) == 1


# --- maild serve ------------------------------------------------------------------------------------


def test_the_escalations_job_of_maild_serve(
    tmp_path: Path, data_dir: Path, database_url: str, cfg: Config, session_factory: Factory, start: Any
) -> None:
    [number] = open_tickets(session_factory, cfg, 1, status="waiting")
    set_tickets(session_factory, [number], status_changed_at=utcnow() - 25 * HOUR)
    add_rule(session_factory, in_status="waiting", remind_template="reminder")
    listen = {"smtp": f"127.0.0.1:{free_port()}"}
    extra = "[scheduler]\nescalation_seconds = 0.5\nauto_close_seconds = 3600"

    serve = start(write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen, extra=extra))

    event = serve.wait_for("escalations_fired")
    assert event["firings"] == [{"desk": "support", "rule": "nudge", "ticket": number}]
    wait_until(
        lambda: any(str(m["Subject"]) == f"[{number}] Reminder: Case 0" for m in sent_mails(data_dir)),
        what="the reminder in the outgoing Maildir",
    )
    assert serve.stop() == 0
    assert serve.find("escalations_fired") == [event]  # the later runs found it fired
