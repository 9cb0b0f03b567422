"""Fluent Support's example workflow end to end (issue 19, Done when): a new ticket by a customer with a
recent order → priority high, assigned round-robin, tagged post-purchase, an auto-reply, and the team's
webhook called, signed, on a real HTTP server. Needs the webhooks (maild.outbound.webhook_sender and
tests/webhook_receiver.py): skipped on a branch without them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import load_config
from maild.storage.db import make_engine, make_sessionmaker
from maild.storage.models import Agent, OutboxMessage, Ticket
from tests.cli import ctl, ok
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk

webhook_receiver = pytest.importorskip("tests.webhook_receiver")
webhook_sender = pytest.importorskip("maild.outbound.webhook_sender")
receiver = webhook_receiver.receiver  # the fixture: a real HTTP server on loopback

SECRET = "team-channel-secret"


@pytest.fixture
def hooked(config_file: Path) -> Path:
    with config_file.open("a") as fh:
        fh.write("\n[webhooks]\ntimeout = 2\nmax_attempts = 3\npoll_seconds = 0.2\n")
    return config_file


def test_fluent_support_example_workflow(hooked: Path, receiver: Any) -> None:
    cfg = load_config(str(hooked))
    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
    factory: sessionmaker[Session] = make_sessionmaker(engine)
    make_desk(factory, "webshop", [SUPPORT], SUP_PATTERN)
    make_agent(factory, "anna@example.com", "Anna", ["webshop"])
    make_agent(factory, "ben@example.com", "Ben", ["webshop"])
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
    ok(
        ctl(
            hooked, "rule", "add", "webshop", "post-purchase", "--on", "ticket created",
            "--if", "desk is webshop", "--if", "contact last_order within 30 days",
            "--then", "priority high", "assign round-robin", "tag post-purchase", "send ticket_created",
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
    assert sent["assigned_agent"] in ("anna@example.com", "ben@example.com")
    with factory() as session:
        ticket = session.scalars(select(Ticket)).one()
        agent = session.get(Agent, ticket.assigned_agent_id)
        assert agent is not None and agent.email == sent["assigned_agent"]
        templates = list(session.scalars(select(OutboxMessage.template)))
        assert templates.count("ticket_created") >= 1
    log = ok(ctl(hooked, "ticket", "log", str(result.ticket_number)))
    for action in ("priority", "assign", "tag", "rule_send", "rule_webhook", "rule"):
        assert f"rule:post-purchase  {action}" in log
    engine.dispose()
