"""The desks' rules (issue 19 item 1): each trigger, condition and action through the pipeline, once per
event, a failing action's note, order and stop, time triggers in the escalation job, linear-time patterns."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import (
    Agent,
    AuditLog,
    Contact,
    Desk,
    Message,
    OutboxMessage,
    Rule,
    RuleFiring,
    Ticket,
    TicketTag,
    WebhookDelivery,
)
from maild.tickets.escalations import escalate
from maild.tickets.rule_grammar import parse_condition
from tests.cli import ctl, ok
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk, ticket

Factory = sessionmaker[Session]
ANNA, BEN = "anna@example.com", "ben@example.com"


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    make_agent(session_factory, BEN, "Ben", ["support"])


def rule(config_file: Path, name: str, on: str, conditions: list[str], actions: list[str]) -> None:
    args = ["rule", "add", "support", name, "--on", on]
    for condition in conditions:
        args += ["--if", condition]
    ok(ctl(config_file, *args, "--then", *actions))


def state(factory: Factory, number: str) -> tuple[Ticket, list[str], list[str]]:
    """The ticket, its tags and its system notes."""
    with factory() as session:
        t = ticket(session, number)
        session.expunge(t)
        tags = list(
            session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == t.id).order_by(TicketTag.tag))
        )
        query = select(Message.text).where(Message.ticket_id == t.id, Message.kind == "system")
        return t, tags, list(session.scalars(query.order_by(Message.id)))


def rule_audits(factory: Factory) -> list[AuditLog]:
    with factory() as session:
        return list(
            session.scalars(select(AuditLog).where(AuditLog.actor.like("rule:%")).order_by(AuditLog.id))
        )


def open_ticket(factory: Factory, cfg: Config, **kwargs: str) -> str:
    result = deliver(factory, cfg, mail(**kwargs), SUPPORT)
    assert result.outcome == "created", result
    assert result.ticket_number is not None
    return result.ticket_number


def test_fluent_support_example_created_conditions_and_actions(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    ok(ctl(config_file, "contact", "add", "alice@customer.example"))
    recent = (NOW - dt.timedelta(days=3)).date().isoformat()
    ok(ctl(config_file, "contact", "attr", "alice@customer.example", f"last_order={recent}", "plan=gold"))
    rule(
        config_file,
        "post-purchase",
        "ticket created",
        [
            "desk is support",
            "contact last_order within 30 days",
            "contact plan is gold",
            "customer is new",
            "sender domain is customer.example",
            "subject contains printer",
            "body matches fi+re",
            "not has attachments",
            "priority is normal",
            "status is open",
            "category is none",
            "not tag is vip",
        ],
        [
            "priority high",
            "assign Anna",
            "tag post-purchase",
            "send ticket_created",
            "cc boss@customer.example",
            "note Check the order first",
            "notify agents",
        ],
    )
    rule(config_file, "never", "ticket created", ["subject contains refund"], ["tag refund"])
    number = open_ticket(session_factory, cfg)
    t, tags, _notes = state(session_factory, number)
    assert t.priority == "high" and tags == ["post-purchase"]
    with session_factory() as session:
        anna = session.scalars(select(Agent.id).where(Agent.email == ANNA)).one()
        assert ticket(session, number).assigned_agent_id == anna
        notes = session.scalars(select(Message.text).where(Message.kind == "note")).all()
        assert notes == ["Check the order first"]
        templates = [r.template for r in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
        # the desk's own auto-reply and the rule's `send ticket_created`
        assert "rule_notice" in templates and templates.count("ticket_created") == 2
    actions = {(a.actor, a.action) for a in rule_audits(session_factory)}
    assert ("rule:post-purchase", "priority") in actions and ("rule:post-purchase", "rule") in actions
    assert ("rule:post-purchase", "cc_add") in actions and all(a != "rule:never" for a, _ in actions)
    # The reply is not the opening message: `ticket created` does not fire again; a customer reply rule does.
    rule(config_file, "replied", "customer replied", ["customer is known"], ["tag replied"])
    rule(config_file, "answered", "customer replied", [], ["tag answered"])
    reply = mail(message_id="<second@customer.example>", subject=f"Re: [{number}] Printer on fire")
    assert deliver(session_factory, cfg, reply, SUPPORT).outcome == "replied"
    _t, tags, _notes = state(session_factory, number)
    assert tags == ["answered", "post-purchase"]  # alice is new: no earlier ticket
    with session_factory() as session:
        assert session.scalar(select(RuleFiring.id).where(RuleFiring.event_key.like("message:%"))) is not None


def test_failing_action_leaves_a_note_and_keeps_the_mail_order_and_stop(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    ok(ctl(config_file, "webhook", "add", "team-channel", "http://127.0.0.1:9/hook"))
    rule(config_file, "first", "ticket created", [], ["webhook team-channel", "tag first", "stop"])
    ok(ctl(config_file, "webhook", "remove", "team-channel"))  # gone since: the action fails when it runs
    rule(config_file, "second", "ticket created", [], ["tag second"])
    ok(ctl(config_file, "rule", "move", "support", "second", "--to", "1"))
    ok(ctl(config_file, "rule", "add", "support", "third", "--on", "created", "--then", "tag third"))
    number = open_ticket(session_factory, cfg)
    _t, tags, notes = state(session_factory, number)
    assert tags == ["first", "second"]  # second ran first, first stopped the rest
    assert any("webhook team-channel" in n and "no webhook 'team-channel'" in n for n in notes), notes
    with session_factory() as session:
        assert session.scalar(select(Message.id).where(Message.kind == "customer")) is not None
    [audit] = [a for a in rule_audits(session_factory) if a.action == "rule" and a.actor == "rule:first"]
    assert audit.detail["failed"] and audit.detail["done"] == ["tagged first"]
    log = ok(ctl(config_file, "ticket", "log", number))
    assert "rule:second  tag" in log and "rule:first  rule" in log and "rule:third" not in log


def test_status_and_agent_triggers_round_robin_once_per_event(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    rule(config_file, "rr", "status changed to waiting", [], ["assign round-robin"])
    rule(config_file, "agent", "agent replied", [], ["tag agent-answered", "status waiting"])
    rule(config_file, "loop", "status changed", [], ["tag changed"])
    first = open_ticket(session_factory, cfg)
    second = open_ticket(session_factory, cfg, message_id="<other@customer.example>", subject="Other")
    for number in (first, second):
        ok(ctl(config_file, "ticket", "status", number, "waiting"))
    with session_factory() as session:
        assigned = [ticket(session, n).assigned_agent_id for n in (first, second)]
    assert len(set(assigned)) == 2 and None not in assigned  # Anna, then Ben
    ok(ctl(config_file, "ticket", "reply", first, "--as", ANNA, stdin=b"We are on it.\n"))
    _t, tags, _ = state(session_factory, first)
    assert "agent-answered" in tags and "changed" in tags
    with session_factory() as session:
        keys = session.execute(select(RuleFiring.rule_id, RuleFiring.ticket_id, RuleFiring.event_key)).all()
    assert len(keys) == len(set(keys)) == 5  # rr twice, loop twice (one per ticket), agent once


def test_time_trigger_runs_in_the_escalation_job_with_escalations(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    rule(
        config_file, "stale", "24 hours in open", ["outside business hours"], ["priority urgent", "tag stale"]
    )
    ok(
        ctl(
            config_file,
            "escalation",
            "add",
            "support",
            "nudge",
            "--after-hours",
            "48",
            "--status",
            "open",
            "--set-priority",
            "high",
        )
    )
    ok(ctl(config_file, "desk", "set", "support", "--business-hours", "mon-fri 09:00-17:00"))
    number = open_ticket(session_factory, cfg)
    start = NOW.replace(tzinfo=None)
    with transaction(session_factory) as session:
        session.execute(update(Ticket).values(status_changed_at=start, updated_at=start))
    saturday = start + dt.timedelta(days=1)  # NOW is a Saturday morning
    assert escalate(session_factory, cfg, saturday - dt.timedelta(hours=1)).fired == []
    result = escalate(session_factory, cfg, saturday)
    assert [r for _, r, _ in result.fired] == ["stale"]
    assert escalate(session_factory, cfg, saturday + dt.timedelta(hours=1)).fired == []  # once per state
    t, tags, _ = state(session_factory, number)
    assert t.priority == "urgent" and tags == ["stale"]
    result = escalate(session_factory, cfg, start + dt.timedelta(hours=49))
    assert [r for _, r, _ in result.fired] == ["nudge"]


def test_catastrophic_pattern_is_linear(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    rule(config_file, "evil", "ticket created", ["body matches (a+)+$"], ["tag evil"])
    started = time.monotonic()
    number = open_ticket(session_factory, cfg, body="a" * 100_000 + "!\n")
    assert time.monotonic() - started < 5
    assert state(session_factory, number)[0].status == "open"  # stored, the rule evaluated
    for pattern, text in (("(a+)+$", "a" * 100_000 + "!"), ("(x+x+)+y", "x" * 50_000)):
        condition = parse_condition(f"subject matches {pattern}")
        started = time.monotonic()
        assert condition.pattern.search(text) is None
    assert time.monotonic() - started < 0.5


def test_explain_shows_the_rules(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    rule(config_file, "vip", "ticket created", ["subject contains printer"], ["priority urgent", "tag vip"])
    path = tmp_path / "mail.eml"
    path.write_bytes(mail())
    out = ok(ctl(config_file, "explain", str(path)))
    assert "rule vip (ticket created): priority normal → urgent; tagged vip" in out
    with session_factory() as session:
        assert session.scalar(select(Ticket.id)) is None and session.scalar(select(RuleFiring.id)) is None
    contact = None
    with session_factory() as session:
        contact = session.scalars(select(Contact)).first()
    assert contact is None
    assert Desk  # the desk is all there is


def test_each_condition_on_a_mail(session_factory: Factory, config_file: Path) -> None:
    from maild.mail.mailparse import parse_mail
    from maild.tickets.business_hours import is_inside
    from maild.tickets.rule_conditions import Facts, holds

    ok(ctl(config_file, "contact", "add", "alice@customer.example"))
    ok(ctl(config_file, "contact", "attr", "alice@customer.example", "ordered=2026-01-01", "plan=gold"))
    ok(ctl(config_file, "desk", "set", "support", "--business-hours", "sat 09:00-10:00"))
    raw = (
        b"From: Alice <Alice@Customer.Example>\r\nTo: support@example.com\r\n"
        b"Subject: [URGENT] Refund please\r\n"
        b"Message-ID: <c@customer.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        b"I want to cancel my subscription, order 123456.\r\n--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="invoice.pdf"\r\n\r\n%PDF-1.4\r\n--b--\r\n'
    )
    with session_factory() as session:
        desk = session.scalars(select(Desk)).one()
        facts = Facts(session, desk, NOW, mail=parse_mail(raw))
        expected = {
            "sender is alice@customer.example": True,
            "sender domain is example": True,  # its subdomains too
            "sender domain is customer": False,
            "sender domain is example.com": False,
            "body contains cancel subscription": True,
            "body contains refund": False,
            "subject contains refund": True,
            "subject matches ^\\[URGENT\\]": True,
            "subject matches ^\\[urgent\\]": False,
            "body matches order \\d{6}": True,
            "has attachments": True,
            "inside business hours": True,  # NOW is Saturday 09:30 UTC
            "outside business hours": False,
            "customer is known": False,
            "customer is new": True,
            "contact plan is gold": True,
            "not contact plan is gold": False,
            "contact plan is": False,
            "contact ordered within 30 days": False,
            "contact ordered within 90 days": True,
            "contact missing within 90 days": False,
            "category is none": True,
            "status is open": True,
            "tag is vip": False,
            "desk is Support": True,
        }
        assert {text: holds(facts, parse_condition(text)) for text in expected} == expected
    assert is_inside(
        "mon-fri 09:00-17:00", "Europe/Budapest", dt.datetime(2026, 3, 9, 8, 30, tzinfo=dt.UTC)
    )  # 9:30 CET
    assert not is_inside(
        "mon-fri 09:00-17:00", "Europe/Budapest", dt.datetime(2026, 3, 9, 16, 30, tzinfo=dt.UTC)
    )
    assert is_inside("sun-mon 22:00-24:00", "UTC", dt.datetime(2026, 3, 8, 23, 0, tzinfo=dt.UTC))
    assert not is_inside("", "UTC", NOW)


def test_category_and_untag_actions(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    ok(ctl(config_file, "category", "add", "support", "Billing"))
    rule(config_file, "tagger", "ticket created", [], ["tag temp", "tag keep"])
    rule(
        config_file,
        "sorter",
        "ticket created",
        ["tag is temp"],
        ["category Billing", "untag temp", "untag never"],
    )
    rule(config_file, "billing", "status changed to closed", ["category is Billing"], ["category none"])
    number = open_ticket(session_factory, cfg)
    _t, tags, notes = state(session_factory, number)
    assert tags == ["keep"] and notes == []
    with session_factory() as session:
        assert ticket(session, number).category.name == "Billing"  # type: ignore[union-attr]
    ok(ctl(config_file, "ticket", "status", number, "closed"))
    with session_factory() as session:
        assert ticket(session, number).category is None
    [audit] = [a for a in rule_audits(session_factory) if a.action == "rule" and a.actor == "rule:sorter"]
    assert audit.detail["done"] == ["category none → Billing", "tag temp removed", "not tagged never"]


def test_send_skips_an_automatic_sender(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    rule(config_file, "ack", "customer replied", [], ["send ticket_created"])
    number = open_ticket(session_factory, cfg)
    robot = mail(
        message_id="<ooo@customer.example>",
        subject=f"Out of office: [{number}] Printer on fire",
        extra=[("Auto-Submitted", "auto-replied")],
    )
    deliver(session_factory, cfg, robot, SUPPORT)
    [audit] = [a for a in rule_audits(session_factory) if a.action == "rule" and a.actor == "rule:ack"]
    [done] = audit.detail["done"]
    assert done.startswith("ticket_created not sent: alice@customer.example (")


def test_an_imported_backlog_sets_off_no_rule(
    session_factory: Factory, config_file: Path, tmp_path: Path
) -> None:
    import mailbox

    rule(config_file, "ack", "ticket created", [], ["send ticket_created", "tag acked"])
    box = mailbox.mbox(str(tmp_path / "old.mbox"))
    box.add(mailbox.mboxMessage(mail(message_id="<old@customer.example>")))
    box.close()
    ok(ctl(config_file, "import", "mbox", str(tmp_path / "old.mbox"), "--desk", "support"))
    with session_factory() as session:
        assert session.scalar(select(Ticket.id)) is not None
        assert (
            session.scalar(select(RuleFiring.id)) is None and session.scalar(select(OutboxMessage.id)) is None
        )


def test_a_time_rule_fired_meanwhile_by_another_instance_is_not_fired_again(
    session_factory: Factory, cfg: Config, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maild.tickets import rule_timer

    rule(config_file, "stale", "1 hour in open", [], ["tag stale", "note stale"])
    number = open_ticket(session_factory, cfg)
    start = NOW.replace(tzinfo=None)
    with transaction(session_factory) as session:
        session.execute(update(Ticket).values(status_changed_at=start, updated_at=start))
        ticket_id = ticket(session, number).id
    later = start + dt.timedelta(hours=2)
    assert len(rule_timer.run_time_rules(session_factory, cfg, later).fired) == 1
    # Another instance read its candidates before the firing was committed: it still finds the ticket.
    found = rule_timer._candidates
    monkeypatch.setattr(
        rule_timer, "_candidates", lambda s, d, r, now, after: [ticket_id] if after == 0 else []
    )
    assert rule_timer.run_time_rules(session_factory, cfg, later).fired == []
    monkeypatch.setattr(rule_timer, "_candidates", found)
    with session_factory() as session:
        assert len(session.scalars(select(RuleFiring.id)).all()) == 1
        assert session.scalars(select(Message.text).where(Message.kind == "note")).all() == ["stale"]


def test_a_rules_change_sets_off_other_rules_and_webhooks_but_rules_cannot_loop(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    ok(ctl(config_file, "webhook", "add", "crm", "http://127.0.0.1:9/hook", "--events", "status.changed"))
    rule(config_file, "wait", "ticket created", [], ["status waiting"])
    rule(config_file, "waited", "status changed to waiting", [], ["tag waited"])
    # a pair that would set the status back and forth for ever
    rule(config_file, "reopen", "status changed to waiting", [], ["status open"])
    rule(config_file, "again", "status changed to open", [], ["status waiting"])
    number = open_ticket(session_factory, cfg)
    t, tags, _notes = state(session_factory, number)
    assert tags == ["waited"] and t.status == "waiting"
    with session_factory() as session:
        fired = [
            name
            for (name,) in session.execute(
                select(Rule.name).join(RuleFiring, RuleFiring.rule_id == Rule.id).order_by(RuleFiring.id)
            )
        ]
        kinds = [d.event for d in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))]
    assert sorted(fired) == ["again", "reopen", "wait", "waited"]  # each once: no loop
    assert kinds == ["status.changed"] * 3  # open→waiting (wait), →open (reopen), →waiting (again)
