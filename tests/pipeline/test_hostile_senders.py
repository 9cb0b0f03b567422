"""Hostile and odd senders through the real spool and pipeline (issue 14, points 5-7).

- From headers as real clients and gateways write them (unquoted specials in the display name, a
  trailing dot, encoded words, comments, `"Name" <>` beside an envelope sender) are read as those clients
  read them, never quarantined as "no sender address".
- Threading by a known Message-ID is guarded like a `[NUMBER]` in the subject: a non-participant opens a
  new ticket linked to the one the headers name, unless the desk turns the hijack guard off.
- An agent's reply names exactly one From address, and a Sender only when it is that one: otherwise it
  is held, its commands not run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import load_secret, reply_address
from maild.pipeline.runner import Result, process
from maild.storage.db import transaction
from maild.storage.models import Desk, Message, OutboxMessage, SpoolEntry, Ticket
from maild.storage.spool import record_received, write_raw
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    deliver,
    mail,
    make_agent,
    make_desk,
    outbox,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
FIRST, SECOND = "SUP-26-03-1", "SUP-26-03-2"
ANNA = "anna@example.com"
ALICE = "alice@customer.example"
FIRST_ID = "<first@customer.example>"  # the Message-ID of Alice's first mail (helpers.mail's default)


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])


def later(minutes: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


def deliver_with_envelope(factory: Factory, cfg: Config, raw: bytes, mail_from: str) -> Result:
    """helpers.deliver, with the envelope sender an SMTP/LMTP ingress (or `maild pipe --sender`) records."""
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(factory) as session:
        spool_id = record_received(session, digest, len(raw), SUPPORT, "lmtp", mail_from).id
    return process(factory, cfg, spool_id, NOW)


# --- 5: From headers as mail clients and gateways write them --------------------------------------

# (what writes it, the From header, headers beside it, the display name and address clients show)
FROM_FORMS: Sequence[tuple[str, str, Sequence[tuple[str, str]], str, str]] = [
    ("outlook-quoted-comma", '"Doe, John" <john.doe@acme.test>', (), "Doe, John", "john.doe@acme.test"),
    ("gateway-tag-unquoted", "John Doe [ACME] <john@acme.test>", (), "John Doe [ACME]", "john@acme.test"),
    (
        "exchange-ext-prefix",
        "[EXT] Jane Roe <jane.roe@partner.test>",
        (),
        "[EXT] Jane Roe",
        "jane.roe@partner.test",
    ),
    (
        "exchange-unquoted-comma-and-tag",
        "Roe, Jim [EXTERNAL] <jim.roe@partner.test>",
        (),
        "Roe, Jim [EXTERNAL]",
        "jim.roe@partner.test",
    ),
    ("gateway-unquoted-comma", "Doe, Jack <jack.doe@acme.test>", (), "Doe, Jack", "jack.doe@acme.test"),
    (
        "lotus-notes-hierarchical",
        "Hans Meier/DE/ACME@ACME <hans.meier@acme.test>",
        (),
        "Hans Meier/DE/ACME@ACME",
        "hans.meier@acme.test",
    ),
    (
        "lotus-notes-canonical",
        "CN=Hans Huber/OU=Sales/O=ACME <hans.huber@acme.test>",
        (),
        "CN=Hans Huber/OU=Sales/O=ACME",
        "hans.huber@acme.test",
    ),
    (
        "mailman-dmarc-rewrite",
        '"John Smith via Users" <users@lists.test>',
        (),
        "John Smith via Users",
        "users@lists.test",
    ),
    (
        "google-groups-rewrite",
        "'Kim Lee' via Support Group <support-group@groups.test>",
        (),
        "'Kim Lee' via Support Group",
        "support-group@groups.test",
    ),
    (
        "encoded-word-with-comma",
        "=?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?= <juergen.mueller@acme.test>",
        (),
        "Müller, Jürgen",
        "juergen.mueller@acme.test",
    ),
    (
        "encoded-word-and-gateway-tag",
        "=?iso-8859-1?q?G=F6tz_M=FCller?= [EXT] <goetz@acme.test>",
        (),
        "Götz Müller [EXT]",
        "goetz@acme.test",
    ),
    (
        "encoded-word-base64",
        "=?UTF-8?B?5bGx55Sw5aSq6YOO?= <yamada@acme.test>",
        (),
        "山田太郎",
        "yamada@acme.test",
    ),
    ("old-style-comment", "paul@acme.test (Paul Smith)", (), "Paul Smith", "paul@acme.test"),
    (
        "comment-after-angle",
        "Sam Hill <sam.hill@acme.test> (ACME Corp)",
        (),
        "Sam Hill",
        "sam.hill@acme.test",
    ),
    ("comment-only-name", "<olga@acme.test> (Olga Orr)", (), "Olga Orr", "olga@acme.test"),
    ("trailing-dot-angle", "Tina Tran <tina@acme.test.>", (), "Tina Tran", "tina@acme.test"),
    ("trailing-dot-bare", "uma@acme.test.", (), "", "uma@acme.test"),
    (
        "colon-and-semicolon-in-name",
        "Support: Team ACME; Level 2 <level2@acme.test>",
        (),
        "Support: Team ACME; Level 2",
        "level2@acme.test",
    ),
    ("dots-in-name", "Dr. Eva K. Braun <eva.braun@acme.test>", (), "Dr. Eva K. Braun", "eva.braun@acme.test"),
    # Outlook shows the address as the name when the contact has none: the angle-addr is the sender.
    ("address-as-name", "sales@acme.test <wendy@acme.test>", (), "sales@acme.test", "wendy@acme.test"),
    ("web-form-mailto", "Web Form <mailto:form@acme.test>", (), "Web Form", "form@acme.test"),
    (
        "source-route",
        "Old Relay <@relay.acme.test:olga.relay@acme.test>",
        (),
        "Old Relay",
        "olga.relay@acme.test",
    ),
    ("escaped-quotes", '"Zoe \\"Z\\" Adams" <zoe@acme.test>', (), 'Zoe "Z" Adams', "zoe@acme.test"),
    ("unclosed-quote", '"Kurt Kane <kurt@acme.test>', (), "Kurt Kane", "kurt@acme.test"),
    ("name-without-angle", "Yann Bell yann@acme.test", (), "Yann Bell", "yann@acme.test"),
    (
        "upper-case-address",
        "Xavier Young <Xavier.Young@ACME.TEST>",
        (),
        "Xavier Young",
        "xavier.young@acme.test",
    ),
    # A gateway that withholds the address: the envelope sender the delivering MTA wrote stands in.
    (
        "empty-angle-with-return-path",
        '"Noreply, Quentin" <>',
        (("Return-Path", "<quentin@acme.test>"),),
        "Noreply, Quentin",
        "quentin@acme.test",
    ),
    (
        "exchange-on-behalf",
        "Boss Person <boss@acme.test>",
        (("Sender", "Assistant <assistant@acme.test>"),),
        "Boss Person",
        "boss@acme.test",
    ),
]


def test_from_headers_as_clients_and_gateways_write_them_open_tickets_for_their_sender(
    session_factory: Factory, cfg: Config
) -> None:
    """Every form opens a ticket whose customer has the name and address a mail client shows. One test
    over the whole table: the mismatches are listed together."""
    wrong: list[str] = []
    for index, (label, sender, extra, name, address) in enumerate(FROM_FORMS):
        raw = mail(
            sender=sender,
            subject=f"Question {index} ({label})",
            message_id=f"<form-{index}@acme.test>",
            extra=extra,
        )
        result = deliver(session_factory, cfg, raw, SUPPORT)
        if result.outcome != "created" or result.ticket_number is None:
            wrong.append(f"{label}: {result.outcome} ({result.reason})")
            continue
        with session_factory() as s:
            customer = ticket(s, result.ticket_number).customer
            if (customer.display_name, customer.email) != (name, address):
                wrong.append(f"{label}: {(customer.display_name, customer.email)} != {(name, address)}")
    assert wrong == []


def test_a_from_with_an_empty_address_is_from_the_envelope_sender(
    session_factory: Factory, cfg: Config
) -> None:
    raw = mail(sender='"Doe, John" <>', message_id="<withheld@acme.test>")
    result = deliver_with_envelope(session_factory, cfg, raw, "john@acme.test")
    assert result.outcome == "created", result.reason
    with session_factory() as s:
        customer = tickets(s)[0].customer
        assert (customer.display_name, customer.email) == ("Doe, John", "john@acme.test")
        # the auto-reply goes to the envelope sender
        [reply] = outbox(s)
        assert reply.rcpt_to == ["john@acme.test"]


# --- 6: threading by a known Message-ID is guarded ------------------------------------------------


def customers_ticket(factory: Factory, cfg: Config, *, cc: str | None = None) -> None:
    """Alice's ticket FIRST (Message-ID FIRST_ID), closed a minute later: who joins it reopens it."""
    extra = [("Cc", cc)] if cc else []
    assert deliver(factory, cfg, mail(extra=extra), SUPPORT).ticket_number == FIRST
    with transaction(factory) as s:
        t = ticket(s, FIRST)
        t.status, t.updated_at = "closed", later(1).replace(tzinfo=None)


def follow_up(sender: str, message_id: str, *, reference: str = FIRST_ID, to: str = SUPPORT) -> bytes:
    """A reply by the headers only: no [NUMBER] in the subject."""
    return mail(
        sender=sender,
        to=to,
        subject="Re: Printer on fire",
        body="I have the same problem, please call me.\n",
        message_id=message_id,
        extra=[("In-Reply-To", reference), ("References", reference)],
    )


def state(factory: Factory, number: str) -> tuple[str, int, str | None, list[str]]:
    """(status, how many messages, the linked ticket, the system notes) of ticket `number`."""
    with factory() as s:
        t = ticket(s, number)
        linked = s.get(Ticket, t.linked_ticket_id).number if t.linked_ticket_id else None
        return t.status, len(t.messages), linked, [m.text for m in t.messages if m.kind == "system"]


def test_a_stranger_with_a_customers_message_id_opens_a_new_linked_ticket(
    session_factory: Factory, cfg: Config
) -> None:
    customers_ticket(session_factory, cfg)
    result = deliver(
        session_factory, cfg, follow_up("Mallory <mallory@evil.test>", "<m1@evil.test>"), SUPPORT, later(5)
    )
    assert (result.outcome, result.ticket_number) == ("created", SECOND)
    assert state(session_factory, FIRST)[:2] == ("closed", 1)  # not joined, not reopened
    status, count, linked, notes = state(session_factory, SECOND)
    assert (status, linked) == ("open", FIRST)
    assert len(notes) == 1 and "mallory@evil.test" in notes[0] and FIRST in notes[0]
    assert count == 2  # the stranger's mail and the note
    with session_factory() as s:
        [m] = s.scalars(select(Message).where(Message.message_id == "<m1@evil.test>")).all()
        assert (m.ticket.number, m.threaded_by) == (SECOND, "new")
        assert ticket(s, SECOND).customer.email == "mallory@evil.test"


def test_a_stranger_quoting_a_mail_the_desk_sent_opens_a_new_linked_ticket(
    session_factory: Factory, cfg: Config
) -> None:
    customers_ticket(session_factory, cfg)
    with session_factory() as s:
        auto_reply = outbox(s)[0].message_id  # the auto-reply to Alice
    raw = follow_up("mallory@evil.test", "<m2@evil.test>", reference=auto_reply)
    result = deliver(session_factory, cfg, raw, SUPPORT, later(5))
    assert (result.outcome, result.ticket_number) == ("created", SECOND)
    assert state(session_factory, FIRST)[:2] == ("closed", 1)
    assert state(session_factory, SECOND)[2] == FIRST


def test_participants_and_the_signed_reply_address_still_thread_by_headers(
    session_factory: Factory, cfg: Config
) -> None:
    customers_ticket(session_factory, cfg, cc="Bob <bob@customer.example>")
    # a colleague who was not on the mail is a stranger to the ticket
    colleague = follow_up("carol@customer.example", "<c1@customer.example>")
    assert deliver(session_factory, cfg, colleague, SUPPORT, later(3)).ticket_number == SECOND
    # the customer (the address in another case), a sub-customer: they join and reopen
    for minutes, sender, message_id in [
        (5, "Alice Example <Alice@Customer.Example>", "<a2@customer.example>"),
        (6, "Bob <bob@customer.example>", "<b1@customer.example>"),
    ]:
        result = deliver(session_factory, cfg, follow_up(sender, message_id), SUPPORT, later(minutes))
        assert (result.outcome, result.ticket_number) == ("replied", FIRST), sender
    assert state(session_factory, FIRST)[:2] == ("open", 3)
    # whoever writes to the ticket's signed reply address received our mail: it threads by token
    with session_factory() as s:
        t = ticket(s, FIRST)
        reply_to = reply_address(load_secret(cfg.data_dir), t.desk.primary_address, t.id)
    forwarded = follow_up("dave@customer.example", "<d1@customer.example>", to=reply_to)
    assert deliver(session_factory, cfg, forwarded, reply_to, later(7)).ticket_number == FIRST


def test_the_desk_can_turn_the_guard_off_for_header_threading(session_factory: Factory, cfg: Config) -> None:
    customers_ticket(session_factory, cfg)
    guarded = deliver(
        session_factory, cfg, follow_up("mallory@evil.test", "<m3@evil.test>"), SUPPORT, later(2)
    )
    assert guarded.ticket_number == SECOND
    with transaction(session_factory) as s:
        s.scalars(select(Desk)).one().hijack_guard = False
    result = deliver(
        session_factory, cfg, follow_up("mallory@evil.test", "<m4@evil.test>"), SUPPORT, later(4)
    )
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)
    assert state(session_factory, FIRST)[0] == "open"


# --- 7: an agent's reply names one author ---------------------------------------------------------


def agent_reply(
    factory: Factory, cfg: Config, sender: str, message_id: str, extra: Sequence[tuple[str, str]] = ()
) -> Result:
    """A reply with commands to Anna's signed reply address on FIRST."""
    raw = mail(
        sender=sender,
        subject=f"Re: [{FIRST}] Printer on fire",
        body="#close\n#priority urgent\n\nPlease pay the invoice to IBAN XX00 0000.\n",
        message_id=message_id,
        extra=extra,
    )
    return deliver(factory, cfg, raw, agent_address(factory, cfg, FIRST, ANNA), later(10))


def held(factory: Factory, result: Result) -> None:
    """Held: nothing relayed, no command run, the spool row says why, the ticket has the held note."""
    assert result.outcome == "held", (result.outcome, result.reason)
    with factory() as s:
        t = ticket(s, FIRST)
        assert (t.status, t.priority) == ("open", "normal")
        assert s.scalars(select(OutboxMessage).where(OutboxMessage.template == "agent_reply")).all() == []
        assert s.scalars(select(Message).where(Message.kind.in_(("agent", "note")))).all() == []
        assert any("held for review" in m.text for m in t.messages if m.kind == "system")
        [row] = s.scalars(select(SpoolEntry).where(SpoolEntry.outcome == "held")).all()
        assert row.ticket_id == t.id


@pytest.mark.parametrize(
    ("sender", "extra"),
    [
        (f"{ANNA}, attacker@evil.test", ()),
        (f'"Anna" <{ANNA}>, "Anna (2)" <attacker@evil.test>', ()),
        (f"Anna <{ANNA}> attacker@evil.test", ()),
        # a second From line after the agent's (helpers.mail writes the sender into one From line)
        (f"Anna <{ANNA}>\nFrom: attacker@evil.test", ()),
    ],
    ids=["two-bare", "two-named", "address-after-angle", "two-from-lines"],
)
def test_a_from_of_two_addresses_with_a_valid_agent_token_is_held(
    session_factory: Factory, cfg: Config, sender: str, extra: Sequence[tuple[str, str]]
) -> None:
    assert deliver(session_factory, cfg, mail(), SUPPORT).ticket_number == FIRST
    result = agent_reply(session_factory, cfg, sender, "<two@evil.test>", extra)
    held(session_factory, result)
    assert "attacker@evil.test" in result.reason


def test_an_agent_reply_with_another_sender_is_held_and_with_the_same_accepted(
    session_factory: Factory, cfg: Config
) -> None:
    assert deliver(session_factory, cfg, mail(), SUPPORT).ticket_number == FIRST
    result = agent_reply(
        session_factory, cfg, f"Anna <{ANNA}>", "<s1@example.com>", [("Sender", "attacker@evil.test")]
    )
    held(session_factory, result)
    assert "Sender (attacker@evil.test)" in result.reason
    # a Sender that is the From address (in another case) is the agent's own
    same = agent_reply(
        session_factory, cfg, f"Anna <{ANNA}>", "<s2@example.com>", [("Sender", "Anna <Anna@Example.com>")]
    )
    assert same.outcome == "replied", same.reason
    with session_factory() as s:
        assert (ticket(s, FIRST).status, ticket(s, FIRST).priority) == ("closed", "urgent")
