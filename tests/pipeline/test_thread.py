"""thread: a follow-up joins its ticket. In-Reply-To/References against every Message-ID stored or sent
(most specific first), then a `[NUMBER]` tag of any desk's pattern in the subject, else a new ticket. The
rule that matched is kept on the message (`threaded_by`); a customer's reply sets the ticket `open`."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from tests.pipeline.helpers import (
    CLIENTS,
    REPLY_PREFIX,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    client_mail,
    deliver,
    mail,
    make_desk,
    messages,
    outbox,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
FIRST = "SUP-26-03-1"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)


def open_ticket(factory: Factory, cfg: Config, client: str = "thunderbird", **kw: object) -> tuple[str, str]:
    """A new ticket from `client`; returns (the customer's Message-ID, the auto-reply's Message-ID)."""
    message_id = f"<orig-{client}@customer.example>"
    result = deliver(factory, cfg, client_mail(client, message_id=message_id, **kw), SUPPORT)  # type: ignore[arg-type]
    assert result.outcome == "created"
    with factory() as s:
        auto_reply = outbox(s)[-1].message_id
    return message_id, auto_reply


def thread_of(factory: Factory, message_id: str) -> tuple[str, str]:
    with factory() as s:
        [m] = [m for m in messages(s) if m.message_id == message_id]
        return m.ticket.number, m.threaded_by


@pytest.mark.parametrize("client", CLIENTS)
def test_reply_to_the_auto_reply_joins_by_references(
    client: str, session_factory: Factory, cfg: Config
) -> None:
    original, auto_reply = open_ticket(session_factory, cfg, client)
    with transaction(session_factory) as s:
        ticket(s, FIRST).status = "waiting"
    reply = client_mail(
        client,
        subject=f"{REPLY_PREFIX[client]} [{FIRST}] Printer on fire",
        body="It is still burning.\n",
        in_reply_to=auto_reply,
        references=[original, auto_reply],
    )
    result = deliver(session_factory, cfg, reply, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)
    assert result.outbox_ids == ()  # a reply gets no second "ticket created" mail
    with session_factory() as s:
        [t] = tickets(s)
        assert t.status == "open"
        assert [(m.kind, m.threaded_by) for m in t.messages] == [
            ("customer", "new"),
            ("customer", "references"),
        ]
        assert t.messages[1].in_reply_to == auto_reply
        assert len(outbox(s)) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_reply_without_references_joins_by_the_subject_tag(
    client: str, session_factory: Factory, cfg: Config
) -> None:
    """Webmail forwards, a new mail typed with the number, a client that drops the headers."""
    open_ticket(session_factory, cfg)
    reply = client_mail(client, subject=f"{REPLY_PREFIX[client]} [{FIRST}] Printer on fire")
    result = deliver(session_factory, cfg, reply, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)
    with session_factory() as s:
        [t] = tickets(s)
        assert t.messages[-1].threaded_by == "subject"


def test_outlook_reply_with_thread_index_only_uses_the_tag(session_factory: Factory, cfg: Config) -> None:
    """Exchange relayed through some gateways keeps Thread-Index but loses In-Reply-To/References."""
    open_ticket(session_factory, cfg, "outlook")
    reply = client_mail("outlook", subject=f"AW: AW: [{FIRST}] Printer on fire", references=[])
    assert b"Thread-Index:" in reply and b"In-Reply-To" not in reply
    assert deliver(session_factory, cfg, reply, SUPPORT).ticket_number == FIRST


def test_reply_to_the_customers_own_mail_joins(session_factory: Factory, cfg: Config) -> None:
    """A colleague in Cc answers the customer's original mail, not our auto-reply."""
    original, _ = open_ticket(session_factory, cfg, "gmail", cc="Colleague <colleague@customer.example>")
    reply = client_mail(
        "gmail",
        sender=("Colleague", "colleague@customer.example"),
        subject="Re: Printer on fire",
        in_reply_to=original,
        references=[original],
    )
    result = deliver(session_factory, cfg, reply, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)


def test_known_id_deep_in_references_is_found(session_factory: Factory, cfg: Config) -> None:
    _, auto_reply = open_ticket(session_factory, cfg)
    reply = client_mail(
        "thunderbird",
        subject="Re: Printer on fire",
        references=["<unknown-1@elsewhere.example>", auto_reply, "<unknown-2@elsewhere.example>"],
    )
    assert deliver(session_factory, cfg, reply, SUPPORT).ticket_number == FIRST


def test_most_specific_reference_wins(session_factory: Factory, cfg: Config) -> None:
    first, _ = open_ticket(session_factory, cfg, "apple")
    second, _ = open_ticket(session_factory, cfg, "gmail", subject="Scanner jammed")
    # A reply to the second ticket's mail, whose References still carry the first conversation.
    reply = client_mail(
        "thunderbird", subject="Re: Scanner jammed", in_reply_to=second, references=[first, second]
    )
    assert deliver(session_factory, cfg, reply, SUPPORT).ticket_number == "SUP-26-03-2"


def test_references_win_over_the_subject_tag(session_factory: Factory, cfg: Config) -> None:
    first, _ = open_ticket(session_factory, cfg, "apple")
    open_ticket(session_factory, cfg, "gmail", subject="Scanner jammed")
    reply = client_mail(
        "outlook", subject="AW: [SUP-26-03-2] Scanner jammed", in_reply_to=first, references=[first]
    )
    result = deliver(session_factory, cfg, reply, SUPPORT)
    assert result.ticket_number == FIRST
    assert thread_of(session_factory, _message_id(reply)) == (FIRST, "references")


@pytest.mark.parametrize(
    "subject",
    [
        f"Re: [{FIRST}] Printer on fire",
        f"RE: [{FIRST}] Printer on fire",
        f"AW: AW: WG: [{FIRST}] Printer on fire",
        f"Fwd: [{FIRST}] Printer on fire",
        f"[EXTERNAL] RE: [{FIRST}] Printer on fire",
        "Re: [sup-26-03-1] Printer on fire",
        f"Printer on fire (was [{FIRST}])",
        f"SV: [{FIRST}]",
    ],
)
def test_subject_tag_spellings(subject: str, session_factory: Factory, cfg: Config) -> None:
    open_ticket(session_factory, cfg)
    raw = mail(subject=subject, message_id="<tagged@customer.example>")
    assert deliver(session_factory, cfg, raw, SUPPORT).ticket_number == FIRST
    assert thread_of(session_factory, "<tagged@customer.example>") == (FIRST, "subject")


@pytest.mark.parametrize(
    "subject",
    [
        "Re: [SUP-26-03-99] Printer on fire",  # a number of the pattern that was never issued
        "Re: [SUP-26-13-1] Printer on fire",  # month 13: not a number of the pattern at all
        "[EXTERNAL] Printer on fire",
        "Re: Printer on fire",  # the same subject without the tag is not the same ticket
        "Re: SUP-26-03-1 Printer on fire",  # without brackets the number is just text
    ],
)
def test_no_known_tag_and_no_references_opens_a_new_ticket(
    subject: str, session_factory: Factory, cfg: Config
) -> None:
    open_ticket(session_factory, cfg)
    raw = mail(
        subject=subject,
        message_id="<new@customer.example>",
        extra=[("In-Reply-To", "<never-seen@elsewhere.example>")],
    )
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-26-03-2")
    assert thread_of(session_factory, "<new@customer.example>") == ("SUP-26-03-2", "new")


def test_tag_of_another_desks_ticket_joins_that_ticket(session_factory: Factory, cfg: Config) -> None:
    quote = deliver(session_factory, cfg, mail(message_id="<quote@customer.example>"), SALES)
    assert quote.ticket_number == "SALES-1"
    raw = mail(subject="Re: [SALES-1] Printer on fire", message_id="<to-support@customer.example>")
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("replied", "SALES-1")
    with session_factory() as s:
        assert [t.number for t in tickets(s)] == ["SALES-1"]


def test_reply_to_a_cross_posted_mail_lands_on_each_desks_ticket(
    session_factory: Factory, cfg: Config
) -> None:
    """Both desks hold the original Message-ID; a reply-all delivered to each joins that desk's ticket."""
    original = mail(to=f"{SUPPORT}, {SALES}")
    assert deliver(session_factory, cfg, original, SUPPORT).ticket_number == FIRST
    assert deliver(session_factory, cfg, original, SALES).ticket_number == "SALES-1"
    reply = mail(
        to=f"{SUPPORT}, {SALES}",
        subject="Re: Printer on fire",
        message_id="<reply-all@customer.example>",
        extra=[("In-Reply-To", "<first@customer.example>"), ("References", "<first@customer.example>")],
    )
    to_support = deliver(session_factory, cfg, reply, SUPPORT)
    to_sales = deliver(session_factory, cfg, reply, SALES)
    assert (to_support.outcome, to_support.ticket_number) == ("replied", FIRST)
    assert (to_sales.outcome, to_sales.ticket_number) == ("replied", "SALES-1")
    with session_factory() as s:
        assert {t.number: len(t.messages) for t in tickets(s)} == {FIRST: 2, "SALES-1": 2}


def test_reply_to_a_cross_posted_auto_reply_stays_on_that_desk(session_factory: Factory, cfg: Config) -> None:
    original = mail(to=f"{SUPPORT}, {SALES}")
    deliver(session_factory, cfg, original, SUPPORT)
    deliver(session_factory, cfg, original, SALES)
    with session_factory() as s:
        sales_reply = next(row.message_id for row in outbox(s) if row.mail_from == SALES)
    reply = mail(
        to=SALES,
        subject="Re: [SALES-1] Printer on fire",
        message_id="<to-sales@customer.example>",
        extra=[("In-Reply-To", sales_reply), ("References", f"<first@customer.example> {sales_reply}")],
    )
    assert deliver(session_factory, cfg, reply, SALES).ticket_number == "SALES-1"


def _message_id(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no Message-ID")


def test_an_overlong_message_id_is_stored_and_threads(session_factory: Factory, cfg: Config) -> None:
    """Longer than the column: stored as a digest stand-in, which a reply naming the same id finds again."""
    long_id = f"<{'x' * 1500}@customer.example>"
    assert deliver(session_factory, cfg, mail(message_id=long_id), SUPPORT).outcome == "created"
    reply = mail(
        subject="Re: no tag here",
        message_id="<second@customer.example>",
        extra=[("In-Reply-To", long_id)],
    )
    result = deliver(session_factory, cfg, reply, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)
    # and the same overlong mail again is a duplicate, not a second ticket
    assert deliver(session_factory, cfg, mail(message_id=long_id), SUPPORT).outcome == "duplicate"


def _signed_reply_to(session_factory: Factory) -> str:
    with session_factory() as s:
        [row] = outbox(s)
    return str(parsed_reply_to(row.raw))


def parsed_reply_to(raw: bytes) -> str:
    return message_from_bytes(raw, policy=policy.default)["Reply-To"].addresses[0].addr_spec


def test_a_reply_to_the_signed_address_threads_without_headers_or_tag(
    session_factory: Factory, cfg: Config
) -> None:
    """A phone client that drops In-Reply-To/References and the subject tag still lands by the token."""
    deliver(session_factory, cfg, mail(), SUPPORT)
    signed = _signed_reply_to(session_factory)
    reply = mail(to=signed, subject="my phone ate the subject", message_id="<phone@customer.example>")
    result = deliver(session_factory, cfg, reply, signed)
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)
    with session_factory() as s:
        assert messages(s)[-1].threaded_by == "token"


def test_the_token_wins_over_references_and_tag(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    signed = _signed_reply_to(session_factory)
    deliver(session_factory, cfg, mail(subject="second", message_id="<other@customer.example>"), SUPPORT)
    # names ticket 2 by header and tag, but is addressed to ticket 1's signed address
    reply = mail(
        to=signed,
        subject="Re: [SUP-26-03-2] second",
        message_id="<both@customer.example>",
        extra=[("In-Reply-To", "<other@customer.example>")],
    )
    assert deliver(session_factory, cfg, reply, signed).ticket_number == FIRST


def test_a_forged_token_is_treated_as_no_token(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    forged = "support+1-0-" + "a" * 20 + "@example.com"
    result = deliver(session_factory, cfg, mail(to=forged, subject="hi", message_id="<f@x.example>"), forged)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-26-03-2")


def _merge(session_factory: Factory, old: str, survivor: str) -> None:
    """What `maildctl ticket merge` leaves behind (issue 7): the old ticket points at the survivor."""
    with transaction(session_factory) as s:
        ticket(s, old).merged_into = ticket(s, survivor)


@pytest.mark.parametrize("rule", ["token", "references", "subject"])
def test_mail_for_a_merged_ticket_lands_in_the_survivor(
    rule: str, session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(subject="survivor", message_id="<s@customer.example>"), SUPPORT)
    deliver(session_factory, cfg, mail(subject="merged away", message_id="<old@customer.example>"), SUPPORT)
    with session_factory() as s:
        old_reply_to = str(parsed_reply_to(outbox(s)[-1].raw))
    _merge(session_factory, "SUP-26-03-2", FIRST)
    recipient, extra, subject = SUPPORT, [], "Re: merged away"
    if rule == "token":
        recipient = old_reply_to
    elif rule == "references":
        extra = [("In-Reply-To", "<old@customer.example>")]
    else:
        subject = "Re: [SUP-26-03-2] merged away"
    reply = mail(to=recipient, subject=subject, message_id="<late@customer.example>", extra=extra)
    result = deliver(session_factory, cfg, reply, recipient)
    assert (result.outcome, result.ticket_number) == ("replied", FIRST)
    with session_factory() as s:
        assert messages(s)[-1].threaded_by == rule


def test_a_merge_of_a_merge_is_followed_to_the_end(session_factory: Factory, cfg: Config) -> None:
    for n in (1, 2, 3):
        deliver(session_factory, cfg, mail(subject=f"t{n}", message_id=f"<t{n}@customer.example>"), SUPPORT)
    _merge(session_factory, "SUP-26-03-3", "SUP-26-03-2")
    _merge(session_factory, "SUP-26-03-2", FIRST)
    reply = mail(subject="Re: [SUP-26-03-3] t3", message_id="<r3@customer.example>")
    assert deliver(session_factory, cfg, reply, SUPPORT).ticket_number == FIRST
