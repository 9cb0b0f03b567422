"""Threading on the customer's side: every mail of a ticket carries one References chain built from the
ticket's history (root first, capped), In-Reply-To the mail it answers, and the same Thread-Topic and
Thread-Index, so Outlook, Gmail and Apple Mail show a ticket as one conversation. And mail from a desk
that belongs to no ticket (`queue_desk_mail`)."""

from __future__ import annotations

import base64
import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound.outgoing import MAX_REFERENCES, MAX_REFERENCES_CHARS, queue_desk_mail, queue_mail
from maild.storage.db import transaction
from maild.storage.models import Contact, Desk, Message, OutboxMessage, Ticket
from tests.pipeline.helpers import (
    CUSTOMER,
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
    outbox,
    ticket,
)

Factory = sessionmaker[Session]
AGENT = "bob.agent@example.com"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN, auto_reply=False)
    make_agent(session_factory, AGENT, "Bob Agent", ["support"])


def at(minutes: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


def parsed(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def references(msg: EmailMessage) -> list[str]:
    return str(msg["References"] or "").split()


def queue(factory: Factory, cfg: Config, number: str, now: dt.datetime, **kwargs: Any) -> EmailMessage:
    """An agent's answer on ticket `number`, queued the way the agent UI will."""
    options: dict[str, Any] = {"automatic": False, **kwargs}
    with transaction(factory) as s:
        row = queue_mail(s, cfg, ticket(s, number), "ticket_created", [CUSTOMER], now=now, **options)
        raw = row.raw
    return parsed(raw)


def thread_indexes(factory: Factory) -> dict[int | None, set[str]]:
    found: dict[int | None, set[str]] = {}
    with factory() as s:
        for row in outbox(s):
            found.setdefault(row.ticket_id, set()).add(str(parsed(row.raw)["Thread-Index"]))
    return found


def add_messages(factory: Factory, number: str, ids: list[str], start: int) -> None:
    """Stored mail on a ticket without going through the pipeline (fast, and ids of any shape)."""
    with transaction(factory) as s:
        t = ticket(s, number)
        for i, mid in enumerate(ids):
            s.add(
                Message(
                    ticket=t,
                    desk_id=t.desk_id,
                    kind="customer",
                    message_id=mid,
                    created_at=at(start + i).replace(tzinfo=None),
                )
            )


# --- the References chain ---------------------------------------------------------------------------


def test_the_auto_reply_answers_the_customers_mail(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(message_id="<first@customer.example>"), SUPPORT)
    with session_factory() as s:
        [row] = outbox(s)
    msg = parsed(row.raw)
    assert msg["In-Reply-To"] == "<first@customer.example>"
    assert references(msg) == ["<first@customer.example>"]


def test_a_conversation_is_one_chain_root_first(session_factory: Factory, cfg: Config) -> None:
    first = client_mail("gmail", message_id="<a@mail.gmail.com>")
    number = deliver(session_factory, cfg, first, SUPPORT).ticket_number
    assert number is not None
    with session_factory() as s:
        [auto_reply] = outbox(s)
    answer = queue(session_factory, cfg, number, at(10))
    answer_id = answer["Message-ID"]
    reply = client_mail(
        "gmail",
        subject=f"Re: [{number}] Printer on fire",
        message_id="<b@mail.gmail.com>",
        in_reply_to=answer_id,
        references=["<a@mail.gmail.com>", answer_id],
    )
    assert deliver(session_factory, cfg, reply, SUPPORT, now=at(20)).outcome == "replied"
    # an agent answering from their own mail client: the relay (our id) is in the conversation, the
    # agent's own mail (an id no customer saw) is not
    agent_mail = client_mail(
        "thunderbird",
        sender=("Bob Agent", AGENT),
        subject=f"Re: [{number}] Printer on fire",
        message_id="<c@example.com>",
        body="The fire brigade is on its way.\n",
    )
    to = agent_address(session_factory, cfg, number, AGENT)
    relayed = deliver(session_factory, cfg, agent_mail, to, now=at(30))
    assert relayed.outcome == "replied"
    with session_factory() as s:
        [relay_id] = [i for i in relayed.outbox_ids if s.get(OutboxMessage, i).template == "agent_reply"]
        relay = parsed(s.get(OutboxMessage, relay_id).raw)
    relay_mid = relay["Message-ID"]
    assert relay["In-Reply-To"] == "<b@mail.gmail.com>"
    last = client_mail(
        "gmail",
        subject=f"Re: [{number}] Printer on fire",
        message_id="<d@mail.gmail.com>",
        in_reply_to=relay_mid,
        references=["<a@mail.gmail.com>", answer_id, "<b@mail.gmail.com>", relay_mid],
    )
    assert deliver(session_factory, cfg, last, SUPPORT, now=at(40)).outcome == "replied"
    with transaction(session_factory) as s:  # an internal note: no client ever saw its id
        t = ticket(s, number)
        s.add(
            Message(
                ticket=t,
                desk_id=t.desk_id,
                kind="note",
                message_id="<note@example.com>",
                created_at=at(45).replace(tzinfo=None),
            )
        )

    newest = queue(session_factory, cfg, number, at(50))

    expected = [
        "<a@mail.gmail.com>",
        auto_reply.message_id,
        answer_id,
        "<b@mail.gmail.com>",
        relay_mid,
        "<d@mail.gmail.com>",
    ]
    assert references(newest) == expected
    assert newest["In-Reply-To"] == "<d@mail.gmail.com>"  # the customer's last mail
    # An answer to a given mail (here the customer's second one) ends the chain with that mail;
    # the caller's references add nothing twice.
    explicit = queue(
        session_factory,
        cfg,
        number,
        at(60),
        in_reply_to="<b@mail.gmail.com>",
        references=["<a@mail.gmail.com>", answer_id],
    )
    assert explicit["In-Reply-To"] == "<b@mail.gmail.com>"
    chain = references(explicit)
    assert chain[0] == "<a@mail.gmail.com>" and chain[-1] == "<b@mail.gmail.com>"
    assert len(chain) == len(set(chain)) == len(expected) + 1  # and `newest` itself
    assert newest["Message-ID"] in chain


def test_ids_no_client_knows_are_left_out(session_factory: Factory, cfg: Config) -> None:
    # no Message-ID: maild stores a stand-in; a hijack guard's system note has an @maild.invalid id
    number = deliver(session_factory, cfg, mail(message_id=None), SUPPORT).ticket_number
    assert number is not None
    add_messages(session_factory, number, ["<note.x@maild.invalid>"], start=1)
    msg = queue(session_factory, cfg, number, at(5))
    with session_factory() as s:
        [auto_reply, _] = outbox(s)
    assert references(msg) == [auto_reply.message_id]
    assert msg["In-Reply-To"] == auto_reply.message_id


def test_a_reply_to_an_outside_thread_keeps_that_threads_root(session_factory: Factory, cfg: Config) -> None:
    forwarded = client_mail(
        "outlook",
        subject="AW: Printer on fire",
        message_id="<x2@customer.example>",
        in_reply_to="<x1@customer.example>",
        references=["<x0@customer.example>", "<x1@customer.example>"],
    )
    deliver(session_factory, cfg, forwarded, SUPPORT)
    with session_factory() as s:
        [row] = outbox(s)
    msg = parsed(row.raw)
    assert references(msg) == ["<x0@customer.example>", "<x1@customer.example>", "<x2@customer.example>"]
    assert msg["In-Reply-To"] == "<x2@customer.example>"


@pytest.mark.parametrize("id_length", [40, 300])
def test_the_chain_is_capped_keeping_root_and_newest(
    session_factory: Factory, cfg: Config, id_length: int
) -> None:
    number = deliver(session_factory, cfg, mail(message_id="<root@customer.example>"), SUPPORT).ticket_number
    assert number is not None
    ids = [f"<{i:04d}.{'x' * (id_length - 20)}@customer.example>" for i in range(59)]
    add_messages(session_factory, number, ids, start=1)
    with session_factory() as s:
        assert s.scalar(select(Message.id).where(Message.message_id == ids[-1])) is not None

    msg = queue(session_factory, cfg, number, at(100))

    chain = references(msg)
    assert chain[0] == "<root@customer.example>"
    # (compat32 folds a long id onto its own line; the parsed value keeps that whitespace)
    assert chain[-1] == ids[-1] == str(msg["In-Reply-To"]).strip()
    assert 2 <= len(chain) <= MAX_REFERENCES
    assert len(" ".join(chain)) <= MAX_REFERENCES_CHARS
    # what is kept after the root is the newest run, in order, without gaps
    assert chain[1:] == ids[-(len(chain) - 1) :]
    if id_length == 40:
        assert len(chain) == MAX_REFERENCES  # the count binds
    assert all(len(line) <= 998 for line in msg.as_bytes().split(b"\n"))


# --- Thread-Topic and Thread-Index ------------------------------------------------------------------


def test_thread_index_is_one_per_ticket(session_factory: Factory, cfg: Config) -> None:
    one = deliver(session_factory, cfg, mail(message_id="<one@customer.example>"), SUPPORT).ticket_number
    two = deliver(
        session_factory, cfg, mail(subject="Other", message_id="<two@customer.example>"), SUPPORT
    ).ticket_number
    assert one is not None and two is not None
    for minute in (10, 20):
        queue(session_factory, cfg, one, at(minute))
    queue(session_factory, cfg, two, at(30))

    indexes = thread_indexes(session_factory)
    assert len(indexes) == 2
    [[first], [second]] = indexes.values()  # one value per ticket, whichever mail
    assert first != second
    for value in (first, second):
        raw = base64.b64decode(value, validate=True)
        assert len(raw) == 22
        assert raw[0] == 0x01  # the top byte of a FILETIME of our era, as Outlook writes it


def test_thread_index_is_derived_from_the_ticket_not_the_mail(session_factory: Factory, cfg: Config) -> None:
    number = deliver(session_factory, cfg, mail(), SUPPORT).ticket_number
    assert number is not None
    before = thread_indexes(session_factory)
    with transaction(session_factory) as s:  # the rows are gone, the ticket stays: same Thread-Index
        for row in outbox(s):
            s.delete(row)
    queue(session_factory, cfg, number, at(60))
    assert thread_indexes(session_factory) == before


def test_thread_topic_is_the_subject_without_the_tag(session_factory: Factory, cfg: Config) -> None:
    number = deliver(session_factory, cfg, mail(subject="Printer on fire"), SUPPORT).ticket_number
    assert number is not None
    msg = queue(session_factory, cfg, number, at(10))
    assert msg["Subject"] == f"[{number}] Printer on fire"
    assert msg["Thread-Topic"] == "Printer on fire"


def test_thread_topic_drops_reply_prefixes_and_is_ascii_on_the_wire(
    session_factory: Factory, cfg: Config
) -> None:
    subject = "AW: Drucker brennt – bitte schnell"
    number = deliver(session_factory, cfg, client_mail("outlook", subject=subject), SUPPORT).ticket_number
    assert number is not None
    with transaction(session_factory) as s:  # a subject that carries its own number (e.g. edited by an agent)
        t = ticket(s, number)
        t.subject = f"[{number}] {t.subject}"
    with transaction(session_factory) as s:
        row = queue_mail(s, cfg, ticket(s, number), "ticket_created", [CUSTOMER], automatic=False, now=at(5))
        raw = row.raw
    assert raw.isascii()
    msg = parsed(raw)
    assert msg["Thread-Topic"] == "Drucker brennt – bitte schnell"
    assert number not in msg["Thread-Topic"]


def test_a_ticket_not_yet_flushed_gets_its_headers(session_factory: Factory, cfg: Config) -> None:
    with transaction(session_factory) as s:
        desk = s.scalars(select(Desk).where(Desk.name == "support")).one()
        fresh = Ticket(number="SUP-99", desk=desk, subject="New", customer=Contact(email="new@customer.test"))
        s.add(fresh)
        assert fresh.id is None
        row = queue_mail(
            s,
            cfg,
            fresh,
            "ticket_created",
            [("", "new@customer.test")],
            in_reply_to="<new@customer.test>",
            automatic=True,
            now=NOW,
        )
        ticket_id, raw = fresh.id, row.raw
    assert ticket_id is not None
    msg = parsed(raw)
    assert msg["In-Reply-To"] == "<new@customer.test>"
    assert references(msg) == ["<new@customer.test>"]
    assert len(base64.b64decode(str(msg["Thread-Index"]))) == 22
    assert msg["Thread-Topic"] == "New"
    with session_factory() as s:
        assert s.scalars(select(OutboxMessage.ticket_id)).all() == [ticket_id]


# --- mail without a ticket --------------------------------------------------------------------------


def write_template(template_root: Path, desk: str, name: str, text: str) -> None:
    directory = template_root / desk
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


@pytest.mark.parametrize("automatic", [True, False])
def test_desk_mail_has_no_ticket(session_factory: Factory, cfg: Config, automatic: bool) -> None:
    root = cfg.template_dir
    write_template(root, "support", "replies_only_refusal.subject.j2", "Re: {{ original_subject }}")
    write_template(
        root,
        "support",
        "replies_only_refusal.txt.j2",
        "{{ desk_name }} answers replies only; {{ original_subject }} was not opened as a ticket.\n",
    )
    with transaction(session_factory) as s:
        desk = s.scalars(select(Desk).where(Desk.name == "support")).one()
        row = queue_desk_mail(
            s,
            cfg,
            desk,
            "replies_only_refusal",
            [CUSTOMER],
            in_reply_to="<new@customer.example>",
            references=["<older@customer.example>"],
            automatic=automatic,
            now=NOW,
            variables={"original_subject": "Printer on fire"},
        )
        s.flush()
        row_id = row.id

    with session_factory() as s:
        stored = s.get(OutboxMessage, row_id)
        assert stored is not None
        assert stored.ticket_id is None
        assert (stored.template, stored.subject, stored.rcpt_to) == (
            "replies_only_refusal",
            "Re: Printer on fire",
            [CUSTOMER[1]],
        )
        msg = parsed(stored.raw)
    assert msg["Subject"] == "Re: Printer on fire"  # no [NUMBER]: there is no ticket
    assert msg["From"] == f"support <{SUPPORT}>"
    assert msg["Reply-To"] == f"support <{SUPPORT}>"  # the plain desk address, no ticket token
    assert msg["X-Loop"] == SUPPORT
    assert msg["Auto-Submitted"] == ("auto-replied" if automatic else None)
    assert msg["In-Reply-To"] == "<new@customer.example>"
    assert references(msg) == ["<older@customer.example>", "<new@customer.example>"]
    for ticket_header in ("X-Maild-Ticket", "Thread-Index", "Thread-Topic"):
        assert msg[ticket_header] is None
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content() == "support answers replies only; Printer on fire was not opened as a ticket.\n"
    assert stored.message_id == msg["Message-ID"] and stored.message_id.endswith("@example.com>")
