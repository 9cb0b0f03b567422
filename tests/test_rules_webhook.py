"""Fluent Support's example workflow end to end (issue 19, Done when): a new ticket by a customer with a
recent order → priority high, assigned round-robin among the Sales Support category's present agents,
tagged post-purchase, an auto-reply (the desk sends none of its own), and the team's webhook called,
signed, on a real HTTP server. A customer whose last order is old gets none of it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import load_config
from maild.outbound import webhook_sender
from maild.storage.db import make_engine, make_sessionmaker
from maild.storage.models import Agent, OutboxMessage, Ticket
from tests.cli import ctl, ok
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk
from tests.webhook_receiver import Receiver, receiver

__all__ = ["receiver"]  # the fixture: a real HTTP server on loopback

SECRET = "team-channel-secret"


@pytest.fixture
def hooked(config_file: Path) -> Path:
    with config_file.open("a") as fh:
        fh.write("\n[webhooks]\ntimeout = 2\nmax_attempts = 3\npoll_seconds = 0.2\n")
    return config_file


def test_fluent_support_example_workflow(hooked: Path, receiver: Receiver) -> None:
    cfg = load_config(str(hooked))
    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
    factory: sessionmaker[Session] = make_sessionmaker(engine)
    make_desk(factory, "webshop", [SUPPORT], SUP_PATTERN, auto_reply=False)
    make_agent(factory, "anna@example.com", "Anna", ["webshop"])
    make_agent(factory, "ben@example.com", "Ben", ["webshop"])
    make_agent(factory, "cleo@example.com", "Cleo", ["webshop"])
    ok(ctl(hooked, "category", "add", "webshop", "sales-support", "--agent", "ben@example.com"))
    ok(ctl(hooked, "category", "agents", "webshop", "sales-support", "--add", "cleo@example.com"))
    ok(ctl(hooked, "agent", "away", "cleo@example.com"))  # round-robin among the present: Ben
    # Subscribed to an event that does not happen here: only the rule's call is delivered.
    ok(
        ctl(
            hooked,
            "webhook",
            "add",
            "team-channel",
            receiver.url,
            "--secret",
            SECRET,
            "--events",
            "rating.received",
        )
    )
    ok(ctl(hooked, "contact", "add", "alice@customer.example"))
    ordered = (NOW - dt.timedelta(days=5)).date().isoformat()
    ok(ctl(hooked, "contact", "attr", "alice@customer.example", f"last_order={ordered}"))
    ok(ctl(hooked, "contact", "add", "olga@customer.example"))
    ok(ctl(hooked, "contact", "attr", "olga@customer.example", "last_order=2025-01-02"))
    ok(
        ctl(
            hooked, "rule", "add", "webshop", "post-purchase", "--on", "ticket created",
            "--if", "desk is webshop", "--if", "contact last_order within 30 days",
            "--then", "priority high", "category sales-support", "assign round-robin", "tag post-purchase",
            "send ticket_created",
            "webhook team-channel",
        )
    )  # fmt: skip
    result = deliver(factory, cfg, mail(), SUPPORT)
    assert result.outcome == "created"
    assert webhook_sender.send_due_now(factory, cfg).delivered == 1
    [request] = receiver.wait_for(1)
    assert request.signed_with(SECRET) and request.json["event"] == "ticket.created"
    sent = request.json["ticket"]
    assert (sent["number"], sent["priority"], sent["tags"]) == (
        result.ticket_number,
        "high",
        ["post-purchase"],
    )
    assert sent["assigned_agent"] == "ben@example.com"
    with factory() as session:
        ticket = session.scalars(select(Ticket)).one()
        agent = session.get(Agent, ticket.assigned_agent_id)
        assert agent is not None and agent.email == "ben@example.com"
        assert ticket.category is not None and ticket.category.name == "sales-support"
        templates = list(session.scalars(select(OutboxMessage.template)))
        assert templates.count("ticket_created") == 1  # the rule's: the desk sends no auto-reply
    old = mail(sender="Olga <olga@customer.example>", message_id="<olga@customer.example>", subject="Hi")
    other = deliver(factory, cfg, old, SUPPORT)
    assert other.outcome == "created"
    assert webhook_sender.send_due_now(factory, cfg).delivered == 0
    with factory() as session:
        plain = session.scalars(select(Ticket).where(Ticket.number == other.ticket_number)).one()
        assert (plain.priority, plain.assigned_agent_id, plain.category_id) == ("normal", None, None)
    log = ok(ctl(hooked, "ticket", "log", str(result.ticket_number)))
    for action in ("priority", "assign", "tag", "rule_send", "rule_webhook", "rule"):
        assert f"rule:post-purchase  {action}" in log
    engine.dispose()
