"""The loop stage (issue 5 item 1): our own outgoing mail coming back stops as `looped` — by X-Loop with a
desk address, by a Message-ID we sent, by a desk address as the sender — and nothing else does."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from tests.pipeline.helpers import (
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    deliver,
    mail,
    make_desk,
    outbox,
    spool,
    tickets,
)

Factory = sessionmaker[Session]


def desks(factory: Factory) -> None:
    make_desk(factory, "support", [SUPPORT, "help@example.com"], SUP_PATTERN)
    make_desk(factory, "sales", [SALES], SALES_PATTERN)


def assert_looped(factory: Factory, cfg: Config, raw: bytes, reason: str) -> None:
    result = deliver(factory, cfg, raw, SUPPORT)
    assert (result.outcome, result.ticket_number, result.outbox_ids) == ("looped", None, ())
    assert reason in result.reason
    with factory() as s:
        assert tickets(s) == [] and outbox(s) == []
        assert [(r.outcome, r.state) for r in spool(s)] == [("looped", "done")]


def test_x_loop_with_a_desk_address(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    raw = mail(extra=[("X-Loop", "support@example.com")])
    assert_looped(session_factory, cfg, raw, "X-Loop: support@example.com is our own")


def test_x_loop_with_another_desks_address_in_any_form(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    raw = mail(extra=[("X-Loop", "procmail@customer.example"), ("X-Loop", "Sales <SALES+ab12@Example.com>")])
    assert_looped(session_factory, cfg, raw, "X-Loop: SALES+ab12@Example.com is our own")


def test_x_loop_naming_someone_else_is_no_loop(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    for n, value in enumerate(["yes", "procmail@customer.example", "support@example.org"]):
        raw = mail(message_id=f"<m{n}@customer.example>", subject=f"Case {n}", extra=[("X-Loop", value)])
        assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created", value


def test_a_message_id_we_sent(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as s:
        [ours] = outbox(s)
        ours_raw, ours_id = ours.raw, ours.message_id

    # Our auto-reply itself delivered back to the desk (a customer's forwarding rule pointing at us).
    result = deliver(session_factory, cfg, ours_raw, SUPPORT)

    assert (result.outcome, result.outbox_ids) == ("looped", ())
    # X-Loop is the first rule that sees it; a mail with our Message-ID and no X-Loop stops all the same.
    rewritten = mail(sender="Alice <alice@customer.example>", subject="Fwd", message_id=ours_id)
    again = deliver(session_factory, cfg, rewritten, SUPPORT)
    assert again.outcome == "looped" and f"Message-ID {ours_id} is one we sent" in again.reason
    with session_factory() as s:
        assert len(tickets(s)) == 1 and len(outbox(s)) == 1


def test_a_reply_to_our_message_id_is_no_loop(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    first = deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as s:
        [ours] = outbox(s)
    reply = mail(
        subject="Re: Printer on fire",
        message_id="<reply@customer.example>",
        extra=[("In-Reply-To", ours.message_id)],
    )

    result = deliver(session_factory, cfg, reply, SUPPORT)

    assert (result.outcome, result.ticket_number) == ("replied", first.ticket_number)


def test_a_desk_address_as_the_sender(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    raw = mail(sender="Support <Help@Example.com>")
    assert_looped(session_factory, cfg, raw, "sender help@example.com is a desk address")


def test_a_desk_address_with_a_token_as_the_sender(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    assert_looped(session_factory, cfg, mail(sender="sales+1-0-abc@example.com"), "is a desk address")


def test_a_colleague_from_the_desks_domain_is_no_loop(session_factory: Factory, cfg: Config) -> None:
    desks(session_factory)
    result = deliver(session_factory, cfg, mail(sender="Bob <bob@example.com>"), SUPPORT)
    assert result.outcome == "created" and len(result.outbox_ids) == 1
