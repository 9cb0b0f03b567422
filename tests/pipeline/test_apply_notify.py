"""apply and notify: the ticket change (a numbered new ticket with the sender as customer, or a reply that
sets the status) and, in the same transaction, the `ticket_created` auto-reply threaded to the customer's
mail: desk as sender, `[NUMBER]` in the subject, RFC 3834 `Auto-Submitted`, X-Loop."""

from __future__ import annotations

import dataclasses
import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import load_secret, token_of, verify_token
from maild.pipeline.runner import Result
from maild.storage.db import transaction
from maild.storage.models import AuditLog, Contact, OutboxMessage
from tests.pipeline.helpers import (
    CLIENTS,
    NOW,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    client_mail,
    deliver,
    mail,
    make_agent,
    make_desk,
    messages,
    outbox,
    spool,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
AGENT = "bob.agent@example.com"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN, auto_reply=False)
    make_agent(session_factory, AGENT, "Bob Agent", ["support"])


def to_customers(factory: Factory, result: Result) -> tuple[int, ...]:
    """The outbox ids a delivery queued for customers (the agent notices are tested elsewhere)."""
    with transaction(factory) as s:
        ids = {row.id for row in outbox(s)}
    return tuple(i for i in result.outbox_ids if i in ids)


def parsed(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


# --- apply ------------------------------------------------------------------------------------------


def test_new_ticket(session_factory: Factory, cfg: Config) -> None:
    result = deliver(session_factory, cfg, mail(sender="Alice Example <Alice@Customer.example>"), SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-26-03-1")
    with session_factory() as s:
        [t] = tickets(s)
        assert (t.number, t.subject, t.status, t.priority, t.desk.name) == (
            "SUP-26-03-1",
            "Printer on fire",
            "open",
            "normal",
            "support",
        )
        assert (t.customer.email, t.customer.display_name) == ("alice@customer.example", "Alice Example")
        assert t.created_at == t.updated_at == NOW.replace(tzinfo=None)
        assert [(p.contact.email, p.role) for p in t.participants] == [("alice@customer.example", "customer")]
        [m] = t.messages
        [entry] = spool(s)
        assert (m.kind, m.threaded_by, m.spool_id, m.message_id) == (
            "customer",
            "new",
            entry.id,
            "<first@customer.example>",
        )
        assert entry.ticket_id == t.id
        assert [e["stage"] for e in entry.trace] == [
            "parse",
            "loop",
            "bounce",
            "spam",
            "blocked",
            "autoreply",
            "route",
            "dedupe",
            "agent_mail",
            "identify",
            "thread",
            "policy",
            "commands",
            "apply",
            "automation",
            "notify",
        ]
        [audit] = s.scalars(select(AuditLog)).all()
        assert (audit.action, audit.actor, audit.ticket_id) == (
            "ticket_created",
            "alice@customer.example",
            t.id,
        )
        assert audit.detail == {
            "message_id": "<first@customer.example>",
            "threaded_by": "new",
            "spool_id": entry.id,
        }


def test_mail_without_subject(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(subject=""), SUPPORT)
    with session_factory() as s:
        assert tickets(s)[0].subject == "(no subject)"
        assert outbox(s)[0].subject == "[SUP-26-03-1] (no subject)"


def test_numbers_count_per_desk_and_per_month(session_factory: Factory, cfg: Config) -> None:
    april = dt.datetime(2026, 4, 1, 0, 0, 1, tzinfo=dt.UTC)
    deliveries = [
        (SUPPORT, NOW),
        (SALES, NOW),
        (SUPPORT, NOW),
        (SUPPORT, april),
        (SALES, april),
    ]
    numbers = [
        deliver(session_factory, cfg, mail(message_id=f"<n{i}@customer.example>"), rcpt, now).ticket_number
        for i, (rcpt, now) in enumerate(deliveries)
    ]
    assert numbers == ["SUP-26-03-1", "SALES-1", "SUP-26-03-2", "SUP-26-04-1", "SALES-2"]


def test_one_contact_per_address(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(sender="alice@customer.example", message_id="<a1@c>"), SUPPORT)
    deliver(
        session_factory, cfg, mail(sender="Alice E. <ALICE@customer.EXAMPLE>", message_id="<a2@c>"), SUPPORT
    )
    deliver(
        session_factory, cfg, mail(sender="Someone Else <alice@customer.example>", message_id="<a3@c>"), SALES
    )
    with session_factory() as s:
        [contact] = s.scalars(select(Contact)).all()
        # The first name seen is kept; an address that arrived without one gets the next.
        assert (contact.email, contact.display_name) == ("alice@customer.example", "Alice E.")
        assert {t.customer_id for t in tickets(s)} == {contact.id}


def test_customer_reply_reopens(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    with transaction(session_factory) as s:
        ticket(s, "SUP-26-03-1").status = "waiting"
    later = NOW + dt.timedelta(hours=3)
    reply = mail(subject="Re: [SUP-26-03-1] Printer on fire", message_id="<second@customer.example>")
    result = deliver(session_factory, cfg, reply, SUPPORT, now=later)
    assert (result.outcome, to_customers(session_factory, result)) == ("replied", ())
    with session_factory() as s:
        t = ticket(s, "SUP-26-03-1")
        assert (t.status, t.updated_at, t.created_at) == (
            "open",
            later.replace(tzinfo=None),
            NOW.replace(tzinfo=None),
        )
        assert [m.kind for m in t.messages] == ["customer", "customer"]
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
        assert actions == ["ticket_created", "message_added"]


@pytest.mark.parametrize("client", CLIENTS)
def test_agent_reply_sets_waiting(client: str, session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    to = agent_address(session_factory, cfg, "SUP-26-03-1", AGENT)
    reply = client_mail(
        client,
        sender=("Bob Agent", "Bob.Agent@example.com"),
        subject="RE: [SUP-26-03-1] Printer on fire",
        body="We sent the fire brigade.\n",
        in_reply_to="<first@customer.example>",
        references=["<first@customer.example>"],
    )
    result = deliver(session_factory, cfg, reply, to)
    assert (result.outcome, result.ticket_number) == ("replied", "SUP-26-03-1")
    [relay_id] = to_customers(session_factory, result)  # relayed to the customer
    with session_factory() as s:
        t = ticket(s, "SUP-26-03-1")
        assert t.status == "waiting"
        relay = s.get(OutboxMessage, relay_id)
        assert relay is not None and relay.template == "agent_reply"
        assert relay.rcpt_to == ["alice@customer.example"]
        assert [(m.kind, m.from_address) for m in t.messages] == [
            ("customer", "alice@customer.example"),
            ("agent", AGENT),
        ]
        assert [c.email for c in s.scalars(select(Contact))] == ["alice@customer.example"]


def test_agent_cannot_open_a_ticket_by_new_mail(session_factory: Factory, cfg: Config) -> None:
    result = deliver(session_factory, cfg, mail(sender=f"Bob <{AGENT}>"), SUPPORT)
    assert result.outcome == "held"  # an agent's From without an agent's reply address: held for review
    assert result.ticket_number is None
    with session_factory() as s:
        assert tickets(s) == [] and outbox(s) == [] and messages(s) == []
        assert spool(s)[0].outcome == "held"
    # The held mail took no number: the next ticket is still the first.
    assert deliver(session_factory, cfg, mail(message_id="<x@c>"), SUPPORT).ticket_number == "SUP-26-03-1"


# --- notify -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_auto_reply_to_a_new_ticket(client: str, session_factory: Factory, cfg: Config) -> None:
    raw = client_mail(
        client,
        sender=("Müller, Jürgen", "j.mueller@contoso.de"),
        subject="Drucker brennt",
        message_id="<new@contoso.de>",
        references=["<older@contoso.de>"],  # a new mail written as a reply to something we never saw
    )
    result = deliver(session_factory, cfg, raw, SUPPORT)
    with session_factory() as s:
        [row] = outbox(s)
    assert to_customers(session_factory, result) == (row.id,)
    assert (row.template, row.status, row.attempts, row.mail_from, row.rcpt_to) == (
        "ticket_created",
        "queued",
        0,
        SUPPORT,
        ["j.mueller@contoso.de"],
    )
    assert row.subject == "[SUP-26-03-1] Drucker brennt"
    assert row.next_attempt_at == NOW.replace(tzinfo=None)
    msg = parsed(row.raw)
    assert msg["Message-ID"] == row.message_id
    assert row.message_id.endswith("@example.com>")
    assert msg["Subject"] == "[SUP-26-03-1] Drucker brennt"
    assert (msg["From"].addresses[0].display_name, msg["From"].addresses[0].addr_spec) == ("support", SUPPORT)
    # Reply-To is the desk's signed address for this ticket
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    local, _, domain = reply_to.rpartition("@")
    assert (local.split("+")[0], domain) == ("support", "example.com")
    target = verify_token(load_secret(cfg.data_dir), token_of(reply_to) or "")
    assert target is not None and target.ticket_id == row.ticket_id and target.agent_id is None
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Müller, Jürgen", "j.mueller@contoso.de")
    assert msg["In-Reply-To"] == "<new@contoso.de>"
    assert msg["References"].split() == ["<older@contoso.de>", "<new@contoso.de>"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Loop"] == SUPPORT
    assert msg["X-Maild-Ticket"] == "SUP-26-03-1"
    assert msg["Date"].datetime == NOW
    body = text_of(msg)
    assert "Hello Müller, Jürgen," in body
    assert 'ticket\nSUP-26-03-1: "Drucker brennt"' in body
    assert "keep [SUP-26-03-1] in the subject" in body
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "<strong>SUP-26-03-1</strong>" in html.get_content()


def test_auto_reply_message_ids_are_unique(session_factory: Factory, cfg: Config) -> None:
    for n in range(3):
        deliver(session_factory, cfg, mail(message_id=f"<u{n}@customer.example>"), SUPPORT)
    with session_factory() as s:
        ids = [row.message_id for row in outbox(s)]
    assert len(set(ids)) == 3


def test_customer_without_display_name_is_greeted_by_address(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(sender="alice@customer.example"), SUPPORT)
    with session_factory() as s:
        msg = parsed(outbox(s)[0].raw)
    assert msg["To"] == "alice@customer.example"
    assert text_of(msg).startswith("Hello alice@customer.example,")


def test_html_in_the_subject_is_escaped_in_the_html_part(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(subject="<script>alert(1)</script> & more"), SUPPORT)
    with session_factory() as s:
        msg = parsed(outbox(s)[0].raw)
    html = msg.get_body(preferencelist=("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;" in html.get_content()


def test_desk_without_auto_reply_queues_nothing(session_factory: Factory, cfg: Config) -> None:
    result = deliver(session_factory, cfg, mail(), SALES)
    assert (result.outcome, result.ticket_number, to_customers(session_factory, result)) == (
        "created",
        "SALES-1",
        (),
    )
    with session_factory() as s:
        assert outbox(s) == []


def test_ticket_url_is_in_the_auto_reply(session_factory: Factory, cfg: Config) -> None:
    with_url = dataclasses.replace(cfg, ticket_url="https://help.example.com/t/{number}")
    deliver(session_factory, with_url, mail(), SUPPORT)
    with session_factory() as s:
        msg = parsed(outbox(s)[0].raw)
    assert "You can follow it at https://help.example.com/t/SUP-26-03-1" in text_of(msg)


def test_desk_template_override_keeps_the_number_tag(session_factory: Factory, cfg: Config) -> None:
    override = cfg.template_dir / "support"
    override.mkdir(parents=True)
    (override / "ticket_created.subject.j2").write_text("We got your mail about {{ ticket_title }}\n")
    (override / "ticket_created.txt.j2").write_text("Dear {{ customer_name }}, see {{ ticket_number }}.\n")
    deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as s:
        row = outbox(s)[0]
    msg = parsed(row.raw)
    # A template that leaves the tag out must not break threading by subject.
    assert msg["Subject"] == row.subject == "[SUP-26-03-1] We got your mail about Printer on fire"
    assert text_of(msg) == "Dear Alice Example, see SUP-26-03-1.\n"


@pytest.mark.parametrize(
    "subject_template",
    [
        "[{{ ticket_number }] {{ ticket_title }}\n",  # a syntax error
        "{{ agent_name }}: {{ ticket_title }}\n",  # a variable this mail does not have
        "{{ ticket_title.__class__.__mro__ }}\n",  # refused by the sandbox
    ],
    ids=["syntax-error", "undefined-variable", "sandbox"],
)
def test_a_broken_desk_template_does_not_lose_the_ticket(
    subject_template: str, session_factory: Factory, cfg: Config
) -> None:
    """An admin's typo in a desk template must not turn every new mail into a failure, nor leave the
    customer unanswered: the broken override is refused when the desk's templates are validated, and the
    package default is sent in its place (maild.outbound.templating)."""
    override = cfg.template_dir / "support"
    override.mkdir(parents=True)
    (override / "ticket_created.subject.j2").write_text(subject_template)
    result = deliver(session_factory, cfg, mail(), SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-26-03-1")
    with session_factory() as s:
        assert len(tickets(s)) == 1
        [reply] = outbox(s)
        assert reply.subject == "[SUP-26-03-1] Printer on fire"  # the package default's subject
        [entry] = spool(s)
        assert (entry.state, entry.outcome) == ("done", "created")
