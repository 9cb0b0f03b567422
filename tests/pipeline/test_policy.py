"""policy: the hijack guard and the reopen window decide whether a follow-up joins the ticket it names."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import Contact, Desk, OutboxMessage, SpoolEntry, Ticket
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_desk
from tests.pipeline.helpers import ticket as ticket_by_number

Factory = sessionmaker[Session]
FIRST, SECOND = "SUP-26-03-1", "SUP-26-03-2"


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def set_desk(factory: Factory, **options: object) -> None:
    with transaction(factory) as s:
        desk = s.scalars(select(Desk)).one()
        for key, value in options.items():
            setattr(desk, key, value)


def close(factory: Factory, number: str, at: dt.datetime) -> None:
    with transaction(factory) as s:
        ticket = ticket_by_number(s, number)
        ticket.status, ticket.updated_at = "closed", at.replace(tzinfo=None)


def summary(factory: Factory, number: str) -> tuple[str, int, str | None, list[str]]:
    with factory() as s:
        t = ticket_by_number(s, number)
        linked = s.get(Ticket, t.linked_ticket_id).number if t.linked_ticket_id else None
        return t.status, len(t.messages), linked, [m.text for m in t.messages if m.kind == "system"]


def tagged_reply(sender: str, message_id: str) -> bytes:
    return mail(sender=sender, subject=f"Re: [{FIRST}] Printer on fire", message_id=message_id)


def test_a_stranger_quoting_a_number_opens_a_new_linked_ticket(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    result = deliver(session_factory, cfg, tagged_reply("mallory@evil.example", "<m@evil.example>"), SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", SECOND)
    assert summary(session_factory, FIRST)[1] == 1  # nothing joined the customer's ticket
    status, count, linked, notes = summary(session_factory, SECOND)
    assert (status, linked) == ("open", FIRST)
    assert len(notes) == 1 and "mallory@evil.example" in notes[0] and FIRST in notes[0]
    assert count == 2  # the stranger's mail and the note


def test_the_customer_and_a_reply_by_headers_still_join(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    assert (
        deliver(
            session_factory, cfg, tagged_reply("alice@customer.example", "<a2@c.example>"), SUPPORT
        ).ticket_number
        == FIRST
    )
    # the customer answering by In-Reply-To joins; a stranger doing so is guarded like the tag (issue 14:
    # a Message-ID proves nothing), see tests/pipeline/test_hostile_senders.py
    by_headers = mail(
        subject="Re: Printer on fire",
        message_id="<c@c.example>",
        extra=[("In-Reply-To", "<first@customer.example>")],
    )
    assert deliver(session_factory, cfg, by_headers, SUPPORT).ticket_number == FIRST


def test_the_guard_can_be_turned_off_per_desk(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    set_desk(session_factory, hijack_guard=False)
    result = deliver(session_factory, cfg, tagged_reply("mallory@evil.example", "<m@evil.example>"), SUPPORT)
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)


@pytest.mark.parametrize(
    ("reopen_days", "days_later", "joins"), [(14, 13, True), (14, 15, False), (3, 4, False)]
)
def test_a_closed_ticket_reopens_within_the_window_else_a_linked_ticket(
    session_factory: Factory, cfg: Config, reopen_days: int, days_later: int, joins: bool
) -> None:
    set_desk(session_factory, reopen_days=reopen_days)
    deliver(session_factory, cfg, mail(), SUPPORT)
    close(session_factory, FIRST, NOW)
    later = NOW + dt.timedelta(days=days_later)
    result = deliver(
        session_factory, cfg, tagged_reply("alice@customer.example", "<late@c.example>"), SUPPORT, later
    )
    if joins:
        assert (result.outcome, result.ticket_number) == ("replied", FIRST)
        assert summary(session_factory, FIRST)[0] == "open"
    else:
        assert (result.outcome, result.ticket_number[:7]) == ("created", "SUP-26-")
        assert result.ticket_number != FIRST
        status, _, linked, notes = summary(session_factory, result.ticket_number)
        assert (status, linked) == ("open", FIRST)
        assert f"{reopen_days} days" in notes[0]
        assert summary(session_factory, FIRST)[0] == "closed"


def spool_rows(factory: Factory) -> list[tuple[str | None, str]]:
    with factory() as s:
        return [(e.outcome, e.reason) for e in s.scalars(select(SpoolEntry).order_by(SpoolEntry.id))]


def contact_emails(factory: Factory) -> list[str]:
    with factory() as s:
        return sorted(s.scalars(select(Contact.email)))


def test_clients_only_refuses_strangers_silently_and_keeps_no_contact(
    session_factory: Factory, cfg: Config
) -> None:
    set_desk(session_factory, clients_only=True)
    result = deliver(session_factory, cfg, mail(sender="Stranger <s@unknown.example>"), SUPPORT)
    assert (result.outcome, result.ticket_number, result.outbox_ids) == ("refused", None, ())
    assert "clients_only" in result.reason and "s@unknown.example" in result.reason
    assert spool_rows(session_factory)[-1][0] == "refused"
    with session_factory() as s:
        assert s.scalars(select(Ticket)).all() == [] and s.scalars(select(OutboxMessage)).all() == []
    assert contact_emails(session_factory) == []  # refusing did not make them "known" for next time


def test_clients_only_lets_known_contacts_open_tickets_and_everyone_reply(
    session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)  # alice is a contact now
    set_desk(session_factory, clients_only=True)
    again = deliver(
        session_factory, cfg, mail(subject="Scanner too", message_id="<2@customer.example>"), SUPPORT
    )
    assert (again.outcome, again.ticket_number) == ("created", SECOND)
    # A reply passes, from any participant: clients_only is about opening tickets. (A stranger's is a
    # new ticket under the hijack guard, and refused here like any new one.)
    reply = mail(
        sender="Alice Example <alice@customer.example>",
        subject="Re: Printer on fire",
        message_id="<3@customer.example>",
        extra=[("In-Reply-To", "<first@customer.example>")],
    )
    assert deliver(session_factory, cfg, reply, SUPPORT).outcome == "replied"


def test_replies_only_answers_a_new_mail_with_the_refusal_and_opens_nothing(
    session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    set_desk(session_factory, replies_only=True)
    new = mail(sender="Carol <carol@customer.example>", subject="New question", message_id="<c1@x.example>")
    result = deliver(session_factory, cfg, new, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("refused", None)
    assert "replies_only" in result.reason
    with session_factory() as s:
        refusal = s.get(OutboxMessage, result.outbox_ids[0])
        assert refusal is not None
        assert (refusal.template, refusal.rcpt_to, refusal.ticket_id) == (
            "replies_only_refusal",
            ["carol@customer.example"],
            None,
        )
        sent = message_from_bytes(refusal.raw, policy=policy.default)
        assert sent["In-Reply-To"] == "<c1@x.example>" and sent["Auto-Submitted"] == "auto-replied"
        assert "New question" in sent["Subject"] and "[SUP-" not in sent["Subject"]
        body = sent.get_body(preferencelist=("plain",))
        assert body is not None and "only takes replies" in body.get_content()
        assert [t.number for t in s.scalars(select(Ticket))] == [FIRST]
    assert "carol@customer.example" not in contact_emails(session_factory)
    # The customer's reply to her open ticket still threads.
    reply = mail(subject=f"Re: [{FIRST}] Printer on fire", message_id="<r@customer.example>")
    assert deliver(session_factory, cfg, reply, SUPPORT).outcome == "replied"


def test_replies_only_with_auto_reply_off_refuses_without_answering(
    session_factory: Factory, cfg: Config
) -> None:
    set_desk(session_factory, replies_only=True, auto_reply=False)
    result = deliver(session_factory, cfg, mail(), SUPPORT)
    assert (result.outcome, result.outbox_ids) == ("refused", ())


def test_a_stranger_redirected_by_the_hijack_guard_is_refused_on_a_replies_only_desk(
    session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    set_desk(session_factory, replies_only=True)
    result = deliver(session_factory, cfg, tagged_reply("mallory@evil.example", "<m@evil.example>"), SUPPORT)
    assert result.outcome == "refused"
    assert summary(session_factory, FIRST)[1] == 1
