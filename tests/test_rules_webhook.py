"""Fluent Support's example workflow end to end (issue 19, Done when), as docs/automation.md writes it:
its block of maildctl commands is run as written (only the webhook's URL becomes a real HTTP server on
loopback), then customers mail the desk through the pipeline. A customer with a recent order → priority
high, the sales-support category, assigned round-robin to its present agent, tagged post-purchase, the
rule's auto-reply (the desk sends none of its own) and the team's webhook called, signed. A customer whose
last order is old gets none of it."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import load_config
from maild.outbound import webhook_sender
from maild.storage.db import make_engine, make_sessionmaker
from maild.storage.models import Agent, OutboxMessage, Ticket
from tests.cli import ctl, ok
from tests.conftest import ROOT
from tests.pipeline.helpers import deliver, mail
from tests.webhook_receiver import Receiver, receiver

__all__ = ["receiver"]  # the fixture: a real HTTP server on loopback

GUIDE = ROOT / "docs" / "automation.md"
DOC_URL = "https://chat.example.com/hooks/maild"
DOC_SECRET = "change-me"
SHOP = "shop@example.com"
# A day after the last_order the guide sets (2026-12-01), within its rule's 30 days; in the past, so
# the webhook delivery it queues is due for the sender (which goes by the wall clock).
NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


def guide_commands() -> list[list[str]]:
    """The maildctl commands of the guide's block marked as run by this test."""
    text = GUIDE.read_text()
    found = re.search(r"<!-- run by tests/test_rules_webhook.py -->\n```sh\n(.*?)```", text, re.S)
    assert found, "docs/automation.md lost its example block"
    commands = [shlex.split(line) for line in found.group(1).splitlines() if line.strip()]
    assert all(words[0] == "maildctl" for words in commands)
    return [words[1:] for words in commands]


@pytest.fixture
def hooked(config_file: Path) -> Path:
    with config_file.open("a") as fh:
        fh.write("\n[webhooks]\ntimeout = 2\nmax_attempts = 3\npoll_seconds = 0.2\n")
    return config_file


def test_fluent_support_example_workflow(hooked: Path, receiver: Receiver) -> None:
    for words in guide_commands():
        ok(ctl(hooked, *[receiver.url if word == DOC_URL else word for word in words]))
    cfg = load_config(str(hooked))
    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
    factory: sessionmaker[Session] = make_sessionmaker(engine)
    result = deliver(factory, cfg, mail(to=SHOP), SHOP, now=NOW)
    assert result.outcome == "created"
    assert webhook_sender.send_due_now(factory, cfg).delivered == 1
    [request] = receiver.wait_for(1)
    assert request.signed_with(DOC_SECRET) and request.json["event"] == "ticket.created"
    sent = request.json["ticket"]
    assert (sent["number"], sent["priority"], sent["tags"]) == (
        result.ticket_number,
        "high",
        ["post-purchase"],
    )
    assert sent["assigned_agent"] == "ben@example.com"  # Cleo, the category's other agent, is away
    with factory() as session:
        ticket = session.scalars(select(Ticket)).one()
        agent = session.get(Agent, ticket.assigned_agent_id)
        assert agent is not None and agent.email == "ben@example.com"
        assert ticket.category is not None and ticket.category.name == "sales-support"
        templates = list(session.scalars(select(OutboxMessage.template)))
        assert templates.count("ticket_created") == 1  # the rule's: the desk sends no auto-reply
    log = ok(ctl(hooked, "ticket", "log", str(result.ticket_number)))
    for action in ("priority", "assign", "tag", "rule_send", "rule_webhook", "rule"):
        assert f"rule:post-purchase  {action}" in log

    ok(ctl(hooked, "contact", "add", "olga@customer.example"))
    ok(ctl(hooked, "contact", "attr", "olga@customer.example", "last_order=2026-09-01"))
    old = mail(sender="Olga <olga@customer.example>", to=SHOP, message_id="<olga@customer.example>")
    other = deliver(factory, cfg, old, SHOP, now=NOW)
    assert other.outcome == "created"
    assert webhook_sender.send_due_now(factory, cfg).delivered == 0
    with factory() as session:
        plain = session.scalars(select(Ticket).where(Ticket.number == other.ticket_number)).one()
        assert (plain.priority, plain.assigned_agent_id, plain.category_id) == ("normal", None, None)
    engine.dispose()
