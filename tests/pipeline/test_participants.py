"""Sub-customers: Cc of a participant's mail joins the ticket (never desks, agents, the sender; capped),
customer-visible mail goes to them too, and `maildctl ticket cc` adds and removes them."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.tickets.participants import MAX_CC
from tests.conftest import run_cli
from tests.pipeline.helpers import (
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    deliver,
    mail,
    make_agent,
    make_desk,
)
from tests.pipeline.helpers import outbox as outbox_rows
from tests.pipeline.helpers import ticket as ticket_by_number

Factory = sessionmaker[Session]
FIRST = "SUP-26-03-1"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    make_agent(session_factory, "agent@example.com", "Agent", ["support"])


def roles(factory: Factory, number: str = FIRST) -> dict[str, str]:
    with factory() as s:
        return {p.contact.email: p.role for p in ticket_by_number(s, number).participants}


def test_cc_of_the_first_mail_become_sub_customers_but_get_no_auto_reply(
    session_factory: Factory, cfg: Config
) -> None:
    cc = (
        "Bob <Bob@Customer.Example>, support+x@example.com, sales@example.com, agent@example.com, "
        "Alice <alice@customer.example>"
    )
    deliver(session_factory, cfg, mail(extra=[("Cc", cc)]), SUPPORT)
    # desk addresses (also +detail ones), agents and the sender are never sub-customers; case folded
    assert roles(session_factory) == {"alice@customer.example": "customer", "bob@customer.example": "cc"}
    with session_factory() as s:
        [row] = outbox_rows(s)
    # automatic mail goes to the sender only until an agent answers (issue 14: no mail to third parties)
    assert row.rcpt_to == ["alice@customer.example"]
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert [a.addr_spec for a in msg["To"].addresses] == ["alice@customer.example"]
    assert msg["Cc"] is None


def test_a_sub_customer_can_add_more_but_a_stranger_cannot(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(extra=[("Cc", "bob@customer.example")]), SUPPORT)
    bob_reply = mail(
        sender="bob@customer.example",
        subject=f"Re: [{FIRST}] Printer on fire",
        message_id="<bob@customer.example>",
        extra=[("Cc", "carol@customer.example")],
    )
    assert deliver(session_factory, cfg, bob_reply, SUPPORT).outcome == "replied"
    stranger = mail(
        sender="mallory@evil.example",
        subject=f"Re: [{FIRST}] Printer on fire",
        message_id="<m@evil.example>",
        extra=[("Cc", "eve@evil.example")],
    )
    deliver(session_factory, cfg, stranger, SUPPORT)
    assert roles(session_factory) == {
        "alice@customer.example": "customer",
        "bob@customer.example": "cc",
        "carol@customer.example": "cc",
    }


def test_sub_customers_are_capped(session_factory: Factory, cfg: Config) -> None:
    cc = ", ".join(f"cc{i}@customer.example" for i in range(MAX_CC + 5))
    deliver(session_factory, cfg, mail(extra=[("Cc", cc)]), SUPPORT)
    assert sum(1 for role in roles(session_factory).values() if role == "cc") == MAX_CC


def test_maildctl_ticket_cc_adds_and_removes(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    added = run_cli("maildctl", "ticket", "cc", FIRST, "add", "Dan@Customer.Example", config=config_file)
    assert added.returncode == 0, added.stderr
    assert roles(session_factory)["dan@customer.example"] == "cc"

    for args, complaint in [
        (("add", "dan@customer.example"), "already"),
        (("add", "support@example.com"), "desk address"),
        (("add", "agent@example.com"), "agent"),
        (("add", "not-an-address"), "invalid address"),
        (("remove", "alice@customer.example"), "customer"),
        (("remove", "nobody@customer.example"), "not on"),
    ]:
        result = run_cli("maildctl", "ticket", "cc", FIRST, *args, config=config_file)
        assert result.returncode == 1 and complaint in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

    removed = run_cli("maildctl", "ticket", "cc", FIRST, "remove", "dan@customer.example", config=config_file)
    assert removed.returncode == 0, removed.stderr
    assert "dan@customer.example" not in roles(session_factory)
    missing = run_cli("maildctl", "ticket", "cc", "SUP-99", "add", "x@y.example", config=config_file)
    assert missing.returncode == 1 and "no ticket" in missing.stderr
