"""Agents answering from their mail client: the reply relayed to the customer without commands and quotes,
every command, the note address, the refusal of spoofed or unauthenticated agent mail, and the collision
guard with `#send`. Through the real spool and pipeline (tests/pipeline/helpers.deliver)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Agents, Config
from maild.mail.tokens import load_secret, token_of, verify_token
from maild.outbound.outgoing import sent_bytes
from maild.pipeline.runner import Result
from maild.storage.db import transaction
from maild.storage.models import (
    Agent,
    AuditLog,
    CannedReply,
    Message,
    OutboxMessage,
    SpoolEntry,
    TicketTag,
    TimeEntry,
)
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    crlf,
    deliver,
    mail,
    make_agent,
    make_desk,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
ANNA, BOB = "anna@example.com", "bob@example.com"
ALICE = "alice@customer.example"
NUMBER = "SUP-26-03-1"
QUOTE = (
    "On Sat, 7 Mar 2026 at 09:30, Support <support@example.com> wrote:\n"
    "> Alice Example <alice@customer.example> wrote on SUP-26-03-1:\n"
    ">\n"
    "> the printer on floor 2 is on fire.\n"
)


def later(minutes: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


@pytest.fixture
def desk(session_factory: Factory, cfg: Config) -> None:
    """A support desk with agents Anna ("Anna from Support") and Bob, and ticket SUP-26-03-1 from Alice."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    make_agent(session_factory, BOB, "Bob", ["support"])
    with transaction(session_factory) as s:
        s.scalars(select(Agent).where(Agent.email == ANNA)).one().display_name = "Anna from Support"
    assert deliver(session_factory, cfg, mail(), SUPPORT).ticket_number == NUMBER


def notice_id(factory: Factory, agent: str, template: str = "new_ticket_notice") -> str:
    """The Message-ID of the newest `template` mail to `agent`: what their reply answers."""
    with factory() as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.template == template).order_by(OutboxMessage.id.desc())
        ).all()
        return next(r.message_id for r in rows if agent in r.rcpt_to)


def agent_mail(
    body: str,
    *,
    sender: str = f"Anna <{ANNA}>",
    message_id: str = "<reply-1@example.com>",
    in_reply_to: str = "",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    headers = [*extra]
    if in_reply_to:
        headers += [("In-Reply-To", in_reply_to), ("References", in_reply_to)]
    return mail(
        sender=sender,
        subject=f"Re: [{NUMBER}] Printer on fire",
        body=body,
        message_id=message_id,
        extra=headers,
    )


def reply(
    factory: Factory,
    cfg: Config,
    body: str,
    *,
    agent: str = ANNA,
    at: int = 10,
    note: bool = False,
    **kwargs: str,
) -> Result:
    """`agent` answers their newest notice on the ticket, to their own reply (or note) address."""
    kwargs.setdefault("in_reply_to", notice_id(factory, agent))
    kwargs.setdefault("sender", f"{agent.split('@')[0].title()} <{agent}>")
    raw = agent_mail(body, **kwargs)  # type: ignore[arg-type]
    return deliver(factory, cfg, raw, agent_address(factory, cfg, NUMBER, agent, note=note), now=later(at))


def queued(factory: Factory, result: Result, template: str) -> list[OutboxMessage]:
    with factory() as s:
        rows = [s.get(OutboxMessage, i) for i in result.outbox_ids]
        return [r for r in rows if r is not None and r.template == template]


def parsed(row: OutboxMessage) -> EmailMessage:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(row: OutboxMessage) -> str:
    part = parsed(row).get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def state(factory: Factory, number: str = NUMBER) -> tuple[str, str, str | None]:
    with factory() as s:
        t = ticket(s, number)
        assignee = s.get(Agent, t.assigned_agent_id) if t.assigned_agent_id else None
        return t.status, t.priority, assignee.email if assignee else None


# --- the relay ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("desk")
def test_a_reply_goes_to_the_customer_without_its_commands_and_the_quoted_notice(
    session_factory: Factory, cfg: Config
) -> None:
    body = f"#priority high\n\nWe have ordered a new fuser unit.\n\nBest regards\nAnna\n\n{QUOTE}"
    result = reply(session_factory, cfg, body)

    assert (result.outcome, result.ticket_number) == ("replied", NUMBER)
    [relay] = queued(session_factory, result, "agent_reply")
    msg = parsed(relay)
    assert relay.rcpt_to == [ALICE]
    assert msg["From"].addresses[0].display_name == "Anna from Support"
    assert msg["From"].addresses[0].addr_spec == SUPPORT
    assert f"[{NUMBER}]" in msg["Subject"]
    assert "Auto-Submitted" not in msg  # a person's answer, not automatic mail
    text = text_of(relay)
    assert "We have ordered a new fuser unit." in text
    assert "#priority" not in text and "on fire" not in text and "wrote:" not in text
    # the customer's Reply-To names the ticket, not the agent
    target = verify_token(load_secret(cfg.data_dir), token_of(msg["Reply-To"].addresses[0].addr_spec) or "")
    assert target is not None and target.agent_id is None
    assert msg["In-Reply-To"] == "<first@customer.example>"
    assert state(session_factory) == ("waiting", "high", None)
    with session_factory() as s:
        stored = s.scalars(select(Message).where(Message.kind == "agent")).one()
        assert stored.visible_text == "We have ordered a new fuser unit."
        assert stored.from_address == ANNA
        [change] = s.scalars(select(AuditLog).where(AuditLog.action == "priority")).all()
        assert (change.actor, change.detail) == (ANNA, {"before": "normal", "after": "high"})
    # Bob is told, Anna is not told of her own reply
    [notice] = queued(session_factory, result, "agent_reply_notice")
    assert notice.rcpt_to == [BOB]
    assert "We have ordered a new fuser unit." in text_of(notice)


@pytest.mark.usefixtures("desk")
def test_the_relay_goes_to_the_sub_customers_and_carries_the_agents_attachments(
    session_factory: Factory, cfg: Config
) -> None:
    with transaction(session_factory) as s:
        from maild.tickets.participants import add_cc

        add_cc(s, ticket(s, NUMBER), "carol@customer.example", "Carol")
    raw = crlf(
        "\n".join(
            [
                f"From: Anna <{ANNA}>",
                f"To: {SUPPORT}",
                f"Subject: Re: [{NUMBER}] Printer on fire",
                "Message-ID: <att-reply@example.com>",
                f"In-Reply-To: {notice_id(session_factory, ANNA)}",
                "MIME-Version: 1.0",
                'Content-Type: multipart/mixed; boundary="b"',
                "",
                "--b",
                "Content-Type: text/plain; charset=utf-8",
                "",
                "The manual is attached.",
                "--b",
                "Content-Type: application/pdf",
                'Content-Disposition: attachment; filename="manual.pdf"',
                "Content-Transfer-Encoding: base64",
                "",
                "JVBERi0xLjQKbWFudWFs",
                "--b--",
                "",
            ]
        )
    )
    result = deliver(
        session_factory, cfg, raw, agent_address(session_factory, cfg, NUMBER, ANNA), now=later(5)
    )
    [relay] = queued(session_factory, result, "agent_reply")
    # the row refers to the stored file; the mail as sent carries it
    msg = message_from_bytes(sent_bytes(relay.raw, cfg.attachment_dir), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert relay.rcpt_to == [ALICE, "carol@customer.example"]
    assert msg["Cc"].addresses[0].addr_spec == "carol@customer.example"
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "manual.pdf"
    assert attachment.get_content() == b"%PDF-1.4\nmanual"


@pytest.mark.usefixtures("desk")
def test_redelivery_of_an_agent_reply_changes_and_sends_nothing_twice(
    session_factory: Factory, cfg: Config
) -> None:
    first = reply(session_factory, cfg, "#time 20m\n\nDone.\n")
    again = reply(session_factory, cfg, "#time 20m\n\nDone.\n", at=20)
    assert (first.outcome, again.outcome) == ("replied", "duplicate")
    with session_factory() as s:
        assert len(s.scalars(select(OutboxMessage).where(OutboxMessage.template == "agent_reply")).all()) == 1
        assert [e.minutes for e in s.scalars(select(TimeEntry))] == [20]


# --- commands -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("desk")
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("#status on_hold", ("on_hold", "normal", None)),  # a #status wins over `waiting`
        ("#status On Hold", ("on_hold", "normal", None)),
        ("#close", ("closed", "normal", None)),
        ("#priority urgent", ("waiting", "urgent", None)),
        ("#assign Bob", ("waiting", "normal", BOB)),
        ("#assign bob@EXAMPLE.com", ("waiting", "normal", BOB)),
        ("#assign anna", ("waiting", "normal", ANNA)),
    ],
)
def test_status_priority_and_assign(
    session_factory: Factory, cfg: Config, command: str, expected: tuple[str, str, str | None]
) -> None:
    result = reply(session_factory, cfg, f"{command}\n\nOn it.\n")
    assert result.outcome == "replied"
    assert state(session_factory) == expected
    assigned = queued(session_factory, result, "assigned_notice")
    # the assignee is told, unless they assigned themselves
    assert [r.rcpt_to for r in assigned] == ([[BOB]] if expected[2] == BOB else [])


@pytest.mark.usefixtures("desk")
def test_tag_and_untag(session_factory: Factory, cfg: Config) -> None:
    reply(session_factory, cfg, "#tag VIP\n#tag hardware\n\nTagged.\n")
    with session_factory() as s:
        assert sorted(s.scalars(select(TicketTag.tag))) == ["hardware", "vip"]
    reply(session_factory, cfg, "#untag vip\n", message_id="<reply-2@example.com>", at=20)
    with session_factory() as s:
        assert list(s.scalars(select(TicketTag.tag))) == ["hardware"]
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
        assert actions.count("tag") == 2 and actions.count("untag") == 1


@pytest.mark.usefixtures("desk")
def test_cc_add_makes_a_sub_customer_who_gets_this_reply_and_cc_remove_takes_them_off(
    session_factory: Factory, cfg: Config
) -> None:
    result = reply(session_factory, cfg, "#cc add Carol@Customer.example\n\nCarol will follow up.\n")
    [relay] = queued(session_factory, result, "agent_reply")
    assert relay.rcpt_to == [ALICE, "carol@customer.example"]
    result = reply(
        session_factory,
        cfg,
        "#cc remove carol@customer.example\n\nThanks Carol.\n",
        message_id="<r2@example.com>",
        at=20,
    )
    [relay] = queued(session_factory, result, "agent_reply")
    assert relay.rcpt_to == [ALICE]
    with session_factory() as s:
        assert [p.contact.email for p in ticket(s, NUMBER).participants] == [ALICE]


@pytest.mark.usefixtures("desk")
def test_time_is_logged_for_the_agent(session_factory: Factory, cfg: Config) -> None:
    reply(session_factory, cfg, "#time 1h30m\n\nFixed remotely.\n")
    with session_factory() as s:
        [entry] = s.scalars(select(TimeEntry)).all()
        anna = s.scalars(select(Agent).where(Agent.email == ANNA)).one()
        assert (entry.minutes, entry.agent_id) == (90, anna.id)


@pytest.mark.usefixtures("desk")
def test_canned_reply_is_filled_in_and_comes_first(session_factory: Factory, cfg: Config) -> None:
    with transaction(session_factory) as s:
        s.add(
            CannedReply(
                desk_id=None, name="thanks", body="Hello [FIRSTNAME],\nthanks for {{ ticket_number }}."
            )
        )
    result = reply(session_factory, cfg, "#canned thanks\n\nA technician comes today.\n")
    [relay] = queued(session_factory, result, "agent_reply")
    text = text_of(relay)
    assert text.startswith(f"Hello Alice,\nthanks for {NUMBER}.\n\nA technician comes today.")


@pytest.mark.usefixtures("desk")
def test_note_command_keeps_the_mail_inside(session_factory: Factory, cfg: Config) -> None:
    result = reply(session_factory, cfg, "#note\n\nCustomer is a reseller, check the contract.\n")
    assert result.outcome == "noted"
    assert queued(session_factory, result, "agent_reply") == []
    assert state(session_factory) == ("open", "normal", None)  # a note answers nobody
    [notice] = queued(session_factory, result, "agent_reply_notice")
    assert notice.rcpt_to == [BOB] and "internal note" in text_of(notice)
    with session_factory() as s:
        note = s.scalars(select(Message).where(Message.kind == "note")).one()
        assert note.visible_text == "Customer is a reseller, check the contract."


@pytest.mark.usefixtures("desk")
def test_mail_to_the_note_address_is_a_note(session_factory: Factory, cfg: Config) -> None:
    result = reply(session_factory, cfg, "Called the customer, waiting for the part.\n", note=True)
    assert result.outcome == "noted"
    assert queued(session_factory, result, "agent_reply") == []
    with session_factory() as s:
        assert s.scalars(select(Message.kind).where(Message.from_address == ANNA)).all() == ["note"]


@pytest.mark.usefixtures("desk")
def test_a_reply_of_commands_only_changes_the_ticket_and_sends_nothing(
    session_factory: Factory, cfg: Config
) -> None:
    result = reply(session_factory, cfg, f"#priority high\n#tag printer\n\n{QUOTE}")
    assert result.outcome == "noted"
    assert queued(session_factory, result, "agent_reply") == []
    assert state(session_factory) == ("open", "high", None)
    with session_factory() as s:
        note = s.scalars(select(Message).where(Message.kind == "note")).one()
        assert note.visible_text == "commands: #priority high; #tag printer"


@pytest.mark.usefixtures("desk")
def test_merge_moves_this_ticket_into_the_older_one_and_answers_there(
    session_factory: Factory, cfg: Config
) -> None:
    second = deliver(
        session_factory,
        cfg,
        mail(
            sender="Dan <dan@customer.example>",
            subject="Also on fire",
            message_id="<second@customer.example>",
        ),
        SUPPORT,
        now=later(1),
    )
    assert second.ticket_number == "SUP-26-03-2"
    raw = agent_mail(
        "#merge SUP-26-03-1\n\nBoth printers are the same case.\n",
        in_reply_to=notice_id(session_factory, ANNA),
    )
    result = deliver(
        session_factory, cfg, raw, agent_address(session_factory, cfg, "SUP-26-03-2", ANNA), now=later(5)
    )
    assert (result.outcome, result.ticket_number) == ("replied", NUMBER)
    with session_factory() as s:
        old, new = tickets(s)
        assert new.merged_into_id == old.id
        assert {p.contact.email for p in old.participants} == {ALICE, "dan@customer.example"}
    [relay] = queued(session_factory, result, "agent_reply")
    assert relay.rcpt_to == [ALICE, "dan@customer.example"]


@pytest.mark.usefixtures("desk")
def test_an_agents_out_of_office_answer_to_a_notice_is_kept_as_a_note_and_not_relayed(
    session_factory: Factory, cfg: Config
) -> None:
    result = reply(
        session_factory,
        cfg,
        "#close\n\nI am out of the office until Monday.\n",
        extra=(("Auto-Submitted", "auto-replied"),),  # type: ignore[arg-type]
    )
    assert result.outcome == "noted"
    assert queued(session_factory, result, "agent_reply") == []
    assert (
        queued(session_factory, result, "agent_reply_notice") == []
    )  # Bob's responder gets nothing to answer
    assert state(session_factory) == ("open", "normal", None)  # not closed by a robot
    with session_factory() as s:
        note = s.scalars(select(Message).where(Message.kind == "note")).one()
        assert note.visible_text.startswith("[automatic mail: out-of-office]")


# --- command errors: nothing done, nothing sent, the agent told --------------------------------------


@pytest.mark.usefixtures("desk")
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("#stauts waiting\n#priority high\n\nText.\n", ["line 1: #stauts waiting", "did you mean #status?"]),
        ("#priority high\n#assign nobody\n\nText.\n", ["line 2: #assign nobody", "no active agent 'nobody'"]),
        ("#priority high\n#canned nope\n\nText.\n", ["line 2: #canned nope", "no canned reply 'nope'"]),
        ("#priority high\n#untag vip\n\nText.\n", ["line 2: #untag vip", "is not tagged 'vip'"]),
        ("#cc add bob@example.com\n\nText.\n", ["line 1: #cc add bob@example.com", "is an agent"]),
        ("#merge SUP-99\n\nText.\n", ["line 1: #merge SUP-99", "no ticket SUP-99"]),
        ("#send\n", ["line 1: #send", "no reply of yours is held"]),
    ],
)
def test_a_bad_command_line_stops_the_whole_reply_and_the_agent_is_told(
    session_factory: Factory, cfg: Config, body: str, named: list[str]
) -> None:
    result = reply(session_factory, cfg, body)
    assert result.outcome == "refused"
    assert queued(session_factory, result, "agent_reply") == []
    assert state(session_factory) == ("open", "normal", None)  # #priority high of the same reply not applied
    [answer] = queued(session_factory, result, "command_errors")
    assert answer.rcpt_to == [ANNA]
    text = text_of(answer)
    for words in named:
        assert words in text
    with session_factory() as s:
        assert s.scalars(select(Message).where(Message.from_address == ANNA)).all() == []


# --- spoofing ---------------------------------------------------------------------------------------


def held_state(factory: Factory, result: Result) -> None:
    """Held: not relayed, nothing executed, the spool row says why, the ticket has a system note."""
    assert result.outcome == "held"
    assert queued(factory, result, "agent_reply") == []
    assert state(factory) == ("open", "normal", None)
    with factory() as s:
        [row] = s.scalars(select(SpoolEntry).where(SpoolEntry.outcome == "held")).all()
        assert row.ticket_id == ticket(s, NUMBER).id
        notes = s.scalars(select(Message.text).where(Message.kind == "system")).all()
        assert any("held for review" in n for n in notes)
        assert s.scalars(select(Message).where(Message.kind.in_(("agent", "note")))).all() == []


@pytest.mark.usefixtures("desk")
def test_a_stolen_token_with_a_forged_from_is_held(session_factory: Factory, cfg: Config) -> None:
    result = reply(
        session_factory, cfg, "#priority urgent\n\nPay to IBAN XX00.\n", sender="Mallory <mallory@evil.test>"
    )
    held_state(session_factory, result)
    assert "anna@example.com's reply address was used by mallory@evil.test" in result.reason


@pytest.mark.usefixtures("desk")
def test_a_valid_token_from_another_agents_address_is_held(session_factory: Factory, cfg: Config) -> None:
    raw = agent_mail(
        "#close\n\nClosing.\n", sender=f"Bob <{BOB}>", in_reply_to=notice_id(session_factory, ANNA)
    )
    result = deliver(
        session_factory, cfg, raw, agent_address(session_factory, cfg, NUMBER, ANNA), now=later(5)
    )
    held_state(session_factory, result)


@pytest.mark.usefixtures("desk")
def test_an_agents_from_without_an_agent_token_is_held(session_factory: Factory, cfg: Config) -> None:
    result = deliver(session_factory, cfg, agent_mail("#close\n\nClosing.\n"), SUPPORT, now=later(5))
    held_state(session_factory, result)  # no token: the ticket its subject names gets the note
    assert "did not come to an agent's reply address" in result.reason


@pytest.mark.usefixtures("desk")
def test_an_inactive_agent_is_held(session_factory: Factory, cfg: Config) -> None:
    with transaction(session_factory) as s:
        s.scalars(select(Agent).where(Agent.email == ANNA)).one().active = False
    held_state(session_factory, reply(session_factory, cfg, "Closing.\n"))


@pytest.mark.usefixtures("desk")
@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("mx.example.com; dkim=fail (signature did not verify) header.d=example.com", False),
        ("mx.example.com; spf=fail smtp.mailfrom=example.com", False),
        ("MX.Example.com; dkim=pass header.d=example.com; dmarc=fail header.from=example.com", False),
        ("mx.example.com; dkim=pass header.d=example.com; spf=pass; dmarc=pass", True),
        ("relay.evil.test; dkim=fail header.d=example.com", True),  # not a trusted host: not read
    ],
)
def test_authentication_results_from_the_trusted_host(
    session_factory: Factory, cfg: Config, header: str, accepted: bool
) -> None:
    trusting = dataclasses.replace(cfg, agents=Agents(("mx.example.com",)))
    result = reply(
        session_factory, trusting, "#priority high\n\nOK.\n", extra=(("Authentication-Results", header),)
    )  # type: ignore[arg-type]
    if accepted:
        assert result.outcome == "replied"
        assert state(session_factory)[1] == "high"
    else:
        held_state(session_factory, result)
        assert "authentication failed" in result.reason


# --- collisions -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("desk")
def test_a_reply_to_a_notice_older_than_the_customers_new_mail_is_held_until_send(
    session_factory: Factory, cfg: Config
) -> None:
    first_notice = notice_id(session_factory, ANNA)
    followup = mail(
        subject=f"Re: [{NUMBER}] Printer on fire",
        body="Update: the fire is out, but it smells.\n",
        message_id="<second@customer.example>",
    )
    assert deliver(session_factory, cfg, followup, SUPPORT, now=later(5)).outcome == "replied"

    held = reply(
        session_factory, cfg, "#priority high\n\nPlease leave the building.\n", in_reply_to=first_notice
    )

    assert held.outcome == "held" and "collision" in held.reason
    assert queued(session_factory, held, "agent_reply") == []
    assert state(session_factory) == ("open", "normal", None)  # the held reply's commands wait too
    [notice] = queued(session_factory, held, "collision_notice")
    assert notice.rcpt_to == [ANNA]
    notice_text = text_of(notice)
    assert "the fire is out, but it smells" in notice_text and "Please leave the building." in notice_text

    # `#send` in a reply to the collision notice lets the held reply go, commands and all
    released = reply(
        session_factory,
        cfg,
        f"#send\n\n{QUOTE}",
        message_id="<send@example.com>",
        in_reply_to=notice.message_id,
        at=20,
    )
    assert released.outcome == "replied"
    [relay] = queued(session_factory, released, "agent_reply")
    assert relay.rcpt_to == [ALICE]
    assert "Please leave the building." in text_of(relay) and "#send" not in text_of(relay)
    assert state(session_factory) == ("waiting", "high", None)
    with session_factory() as s:
        kinds = [(m.kind, m.from_address) for m in ticket(s, NUMBER).messages if m.kind != "system"]
        assert kinds == [("customer", ALICE), ("customer", ALICE), ("agent", ANNA), ("note", ANNA)]


@pytest.mark.usefixtures("desk")
def test_another_agents_answer_in_between_is_a_collision_but_ones_own_is_not(
    session_factory: Factory, cfg: Config
) -> None:
    anna_notice = notice_id(session_factory, ANNA)
    assert (
        reply(
            session_factory, cfg, "Bob here: on my way.\n", agent=BOB, message_id="<bob@example.com>", at=5
        ).outcome
        == "replied"
    )
    held = reply(session_factory, cfg, "Anna here: on my way.\n", in_reply_to=anna_notice, at=6)
    assert held.outcome == "held"
    [notice] = queued(session_factory, held, "collision_notice")
    assert "Bob here: on my way." in text_of(notice)
    # Anna's own earlier reply is no collision for her next one to the same notice
    with transaction(session_factory) as s:
        s.query(Message).filter(Message.kind == "held").delete()
    second_notice = notice_id(session_factory, ANNA, "agent_reply_notice")
    first = reply(
        session_factory, cfg, "Part one.\n", message_id="<p1@example.com>", in_reply_to=second_notice, at=7
    )
    second = reply(
        session_factory, cfg, "Part two.\n", message_id="<p2@example.com>", in_reply_to=second_notice, at=8
    )
    assert (first.outcome, second.outcome) == ("replied", "replied")


@pytest.mark.usefixtures("desk")
def test_a_reply_to_the_newest_notice_is_no_collision(session_factory: Factory, cfg: Config) -> None:
    followup = mail(
        subject=f"Re: [{NUMBER}] Printer on fire", body="More smoke.\n", message_id="<2@customer.example>"
    )
    deliver(session_factory, cfg, followup, SUPPORT, now=later(5))
    newest = notice_id(session_factory, ANNA, "customer_reply_notice")
    assert reply(session_factory, cfg, "Leave now.\n", in_reply_to=newest).outcome == "replied"
