"""route: the envelope recipient picks the desk; without one, Delivered-To, X-Original-To, To, Cc in that
order. No desk → `unknown_recipient` (the pipe exits 67, LMTP answers 550) and nothing is stored."""

from __future__ import annotations

import email

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.models import Contact
from tests.pipeline.helpers import (
    CLIENTS,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    client_mail,
    deliver,
    mail,
    make_desk,
    outbox,
    spool,
    tickets,
)

Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT, "help@example.com"], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)


def desk_of_only_ticket(factory: Factory) -> str:
    with factory() as s:
        [t] = tickets(s)
        return t.desk.name


@pytest.mark.parametrize(
    ("recipient", "desk"),
    [
        (SUPPORT, "support"),
        ("help@example.com", "support"),  # a desk's second address
        ("Support@Example.COM", "support"),  # addresses are case-insensitive
        ("support+urgent@example.com", "support"),  # subaddress
        ("<sales@example.com>", "sales"),  # as some MTAs pass it, with brackets
    ],
)
def test_envelope_recipient_picks_the_desk(
    recipient: str, desk: str, session_factory: Factory, cfg: Config
) -> None:
    assert deliver(session_factory, cfg, mail(), recipient).outcome == "created"
    assert desk_of_only_ticket(session_factory) == desk


def test_envelope_recipient_wins_over_the_headers(session_factory: Factory, cfg: Config) -> None:
    raw = mail(to=SUPPORT, extra=[("Delivered-To", SUPPORT)])
    result = deliver(session_factory, cfg, raw, SALES)
    assert (result.outcome, result.ticket_number) == ("created", "SALES-1")


@pytest.mark.parametrize(
    ("headers", "desk"),
    [
        ({"Delivered-To": SALES, "X-Original-To": SUPPORT, "To": SUPPORT}, "sales"),
        ({"X-Original-To": SALES, "To": SUPPORT}, "sales"),
        ({"To": "Bob <bob@customer.example>, sales@example.com", "Cc": SUPPORT}, "sales"),
        ({"To": "bob@customer.example", "Cc": "Sales Team <SALES@example.com>"}, "sales"),
        # A Delivered-To from the customer's own mail system names no desk: the next header decides.
        ({"Delivered-To": "alice@customer.example", "To": SUPPORT}, "support"),
    ],
    ids=["delivered-to", "x-original-to", "to", "cc", "foreign-delivered-to"],
)
def test_without_envelope_the_headers_pick_the_desk(
    headers: dict[str, str], desk: str, session_factory: Factory, cfg: Config
) -> None:
    extra = [(name, value) for name, value in headers.items() if name != "To"]
    raw = mail(to=headers["To"], extra=extra)
    assert deliver(session_factory, cfg, raw).outcome == "created"
    assert desk_of_only_ticket(session_factory) == desk


@pytest.mark.parametrize("client", CLIENTS)
def test_desk_among_several_named_recipients(client: str, session_factory: Factory, cfg: Config) -> None:
    raw = client_mail(
        client, to='"Kovács, Béla" <bela@customer.example>, "IT Support" <Support@Example.com>', cc=None
    )
    assert deliver(session_factory, cfg, raw).outcome == "created"
    assert desk_of_only_ticket(session_factory) == "support"


@pytest.mark.parametrize("client", CLIENTS)
def test_desk_in_cc_only(client: str, session_factory: Factory, cfg: Config) -> None:
    raw = client_mail(client, to="bela@customer.example", cc="Sales <sales@example.com>")
    assert deliver(session_factory, cfg, raw).outcome == "created"
    assert desk_of_only_ticket(session_factory) == "sales"


def test_unknown_envelope_recipient_stores_nothing(session_factory: Factory, cfg: Config) -> None:
    # The To header names a desk, but the MTA delivered for another address: the envelope decides.
    result = deliver(session_factory, cfg, mail(to=SUPPORT), "nobody@example.com")
    assert result.outcome == "unknown_recipient"
    assert "nobody@example.com" in result.reason
    assert result.ticket_number is None
    with session_factory() as s:
        assert tickets(s) == [] and outbox(s) == []
        assert s.scalars(select(Contact)).all() == []
        [entry] = spool(s)
        assert (entry.state, entry.outcome, entry.recipient) == (
            "done",
            "unknown_recipient",
            "nobody@example.com",
        )


def test_no_desk_address_in_any_header(session_factory: Factory, cfg: Config) -> None:
    raw = mail(to="someone@elsewhere.example", extra=[("Delivered-To", "someone@elsewhere.example")])
    result = deliver(session_factory, cfg, raw)
    assert result.outcome == "unknown_recipient"
    assert "Delivered-To" in result.reason
    with session_factory() as s:
        assert tickets(s) == []


def test_cross_posted_mail_makes_a_ticket_on_each_desk(session_factory: Factory, cfg: Config) -> None:
    """The MTA delivers one copy per envelope recipient: each desk gets its own ticket and auto-reply."""
    raw = mail(to=f"Support <{SUPPORT}>", extra=[("Cc", SALES)])
    first = deliver(session_factory, cfg, raw, SUPPORT)
    second = deliver(session_factory, cfg, raw, SALES)
    assert (first.outcome, first.ticket_number) == ("created", "SUP-26-03-1")
    assert (second.outcome, second.ticket_number) == ("created", "SALES-1")
    with session_factory() as s:
        assert [(t.number, t.desk.name) for t in tickets(s)] == [
            ("SUP-26-03-1", "support"),
            ("SALES-1", "sales"),
        ]
        replies = [email.message_from_bytes(row.raw) for row in outbox(s)]
    assert sorted(r["From"] for r in replies) == [
        "sales <sales@example.com>",
        "support <support@example.com>",
    ]
    assert {r["In-Reply-To"] for r in replies} == {"<first@customer.example>"}
