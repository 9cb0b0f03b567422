"""Desk commands in an agent's NEW mail to a desk (issue 19): `#to` opens a ticket for a customer,
`#customer` one on behalf of a forwarded mail's sender (attached, or inline as Gmail, Outlook, Thunderbird
and German Outlook write it), `#away until` / `#back` set the agent's presence; errors are answered to the
agent, and mail that does not prove to be the agent's is held as before. Through the real spool and
pipeline (tests/pipeline/helpers.deliver)."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.pipeline import runner
from maild.storage.db import transaction
from maild.storage.models import Agent, AuditLog, Desk, Message, OutboxMessage, Ticket
from tests.pipeline.helpers import NOW, SUPPORT, deliver, mail, make_agent, make_desk, ticket
from tests.test_explain import database_state, files_state

Factory = sessionmaker[Session]
ANNA = "anna@example.com"
ALICE, BOB = "alice@customer.example", "bob@customer.example"
PASS = (
    "Authentication-Results",
    "mx.example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com",
)


@pytest.fixture
def config_file(data_dir: Path, database_url: str) -> Path:
    """The MTA mx.example.com is trusted to authenticate the agents' mail."""
    path = data_dir.parent / "maild.toml"
    path.write_text(
        f'data_dir = "{data_dir}"\n\n[database]\nurl = "{database_url}"\n\n'
        '[agents]\ntrusted_authserv_ids = ["mx.example.com"]\n'
    )
    return path


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, ANNA, "Anna", ["support"])


def agent_mail(
    body: str, *, subject: str = "Your order", extra: tuple[tuple[str, str], ...] = (PASS,)
) -> bytes:
    return mail(
        sender=f"Anna <{ANNA}>", subject=subject, body=body, message_id="<a1@example.com>", extra=extra
    )


def outbox(factory: Factory, template: str) -> list[EmailMessage]:
    with factory() as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.template == template).order_by(OutboxMessage.id)
        )
        found = [message_from_bytes(row.raw, policy=policy.default) for row in rows]
    assert all(isinstance(m, EmailMessage) for m in found)
    return found  # type: ignore[return-value]


def body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_to_opens_a_ticket_whose_first_mail_goes_to_the_customer_and_their_answer_threads_in(
    session_factory: Factory, cfg: Config
) -> None:
    text = f"#to {ALICE}\n#cc {BOB}\n\nHello Alice,\n\nyour order shipped today.\n"
    result = deliver(session_factory, cfg, agent_mail(text), SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-1"), result.reason
    with session_factory() as s:
        t = ticket(s, "SUP-1")
        assert (t.status, t.customer.email, t.subject) == ("waiting", ALICE, "Your order")
        assert [p.contact.email for p in t.participants] == [ALICE, BOB]
        [first] = t.messages
        assert first.kind == "agent" and first.text == "Hello Alice,\n\nyour order shipped today."
        opened = s.scalars(select(AuditLog).where(AuditLog.action == "ticket_opened")).one()
        assert opened.actor == ANNA
    [sent] = outbox(session_factory, "agent_reply")
    assert sent["Subject"] == "[SUP-1] Your order" and sent["To"].addresses[0].addr_spec == ALICE
    assert "#to" not in body(sent) and "your order shipped today" in body(sent)
    [answer] = outbox(session_factory, "desk_command_answer")
    assert answer["To"].addresses[0].addr_spec == ANNA and answer["Subject"].startswith("Done:")
    assert "SUP-1 opened for alice@customer.example (cc bob@customer.example)" in body(answer)
    reply_to = sent["Reply-To"].addresses[0].addr_spec
    reply = mail(
        sender=ALICE, to=reply_to, subject="Re: [SUP-1] Your order", body="Thanks!\n", message_id="<r@c>"
    )
    assert deliver(session_factory, cfg, reply, reply_to).ticket_number == "SUP-1"
    # the same mail again (an MTA's retry) opens no second ticket
    assert deliver(session_factory, cfg, agent_mail(text), SUPPORT).outcome == "duplicate"


@pytest.mark.parametrize(
    "extra",
    [
        (),  # no trusted MTA says it is Anna's
        (("Authentication-Results", "mx.example.com; dkim=fail header.d=example.com; dmarc=fail"),),
        (("Authentication-Results", "evil.test; dkim=pass header.d=example.com"),),
    ],
)
def test_a_mail_not_proven_the_agents_is_held_with_no_ticket_and_no_mail(
    session_factory: Factory, cfg: Config, extra: tuple[tuple[str, str], ...]
) -> None:
    result = deliver(session_factory, cfg, agent_mail(f"#to {ALICE}\n\nHello\n", extra=extra), SUPPORT)
    assert result.outcome == "held" and "desk command" in result.reason
    with session_factory() as s:
        assert s.scalars(select(Ticket)).first() is None and s.scalars(select(OutboxMessage)).first() is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("#tto alice@customer.example\n\nHello\n", "unknown command #tto (did you mean #to?)"),
        ("#to alice(at)customer.example\n\nHello\n", "is not an email address"),
        (f"#to {ANNA}\n\nHello\n", "is an agent"),
        (f"#to {ALICE}\n#cc {SUPPORT}\n\nHello\n", "is a desk address"),
        (f"#to {ALICE}\n\n", "the text is empty"),
        ("#away until 2026-03-01\n", "is in the past"),
        ("#away until Friday\n", "is not 'until YYYY-MM-DD'"),
        ("#customer\n\nno forward here\n", "no forwarded mail found"),
    ],
)
def test_errors_are_answered_to_the_agent_and_nothing_is_done(
    session_factory: Factory, cfg: Config, text: str, problem: str
) -> None:
    result = deliver(session_factory, cfg, agent_mail(text), SUPPORT)
    assert result.outcome == "refused" and problem in result.reason
    [answer] = outbox(session_factory, "desk_command_answer")
    assert answer["To"].addresses[0].addr_spec == ANNA and answer["Subject"].startswith("Not carried out:")
    assert problem in body(answer)
    with session_factory() as s:
        assert s.scalars(select(Ticket)).first() is None
        assert s.scalars(select(Agent)).one().away_since is None


def test_away_until_and_back_by_mail(session_factory: Factory, cfg: Config) -> None:
    away = mail(
        sender=ANNA, subject="vacation", body="#away until 2026-03-10\n", message_id="<w1@x>", extra=[PASS]
    )
    assert deliver(session_factory, cfg, away, SUPPORT).outcome == "agent_away"
    with session_factory() as s:
        agent = s.scalars(select(Agent)).one()
        assert agent.away_since == NOW.replace(tzinfo=None) and agent.away_until == dt.datetime(2026, 3, 10)
        assert s.scalars(select(AuditLog.actor).where(AuditLog.action == "agent_away")).one() == ANNA
    [done] = outbox(session_factory, "desk_command_answer")
    assert "You are marked away until 2026-03-10 00:00 (UTC)" in body(done)
    back = mail(sender=ANNA, subject="back", body="#back\n", message_id="<w2@x>", extra=[PASS])
    assert deliver(session_factory, cfg, back, SUPPORT, NOW + dt.timedelta(days=1)).outcome == "agent_back"
    with session_factory() as s:
        assert s.scalars(select(Agent)).one().away_since is None
        assert s.scalars(select(Ticket)).first() is None
    assert "present again" in body(outbox(session_factory, "desk_command_answer")[1])


def test_a_customers_mail_starting_with_to_is_an_ordinary_ticket(
    session_factory: Factory, cfg: Config
) -> None:
    raw = mail(body=f"#to {BOB}\n\nplease forward this\n", extra=[PASS])
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "created"
    with session_factory() as s:
        assert ticket(s, "SUP-1").customer.email == ALICE


# --- #customer -----------------------------------------------------------------------------------------


def _customer_ticket(factory: Factory) -> tuple[Ticket, list[Message]]:
    with factory() as s:
        t = ticket(s, "SUP-1")
        _ = t.customer.email, [m.attachments for m in t.messages]
        s.expunge_all()
        return t, list(t.messages)


def attached_forward(note: str) -> bytes:
    """Anna forwards Carol's mail as an attachment, `note` above it."""
    inner = EmailMessage()
    inner["From"] = "Carol Customer <carol@customer.example>"
    inner["To"] = ANNA
    inner["Subject"] = "Printer on fire"
    inner["Message-ID"] = "<orig@customer.example>"
    inner["Date"] = "Fri, 06 Mar 2026 18:00:00 +0000"
    inner.set_content("Hello Anna,\n\nthe printer is on fire again.\n\nCarol\n")
    inner.add_attachment(b"\x89PNG photo", maintype="image", subtype="png", filename="fire.png")
    outer = EmailMessage()
    outer["From"] = f"Anna <{ANNA}>"
    outer["To"] = SUPPORT
    outer["Subject"] = "Fwd: Printer on fire"
    outer["Message-ID"] = "<fwd1@example.com>"
    outer["Authentication-Results"] = PASS[1]
    outer.set_content(f"#customer\n{note}")
    outer.add_attachment(inner)
    return outer.as_bytes(policy=SMTP)


def test_customer_with_an_attached_forward(session_factory: Factory, cfg: Config) -> None:
    make_agent(session_factory, "bob@example.com", "Bob", ["support"])
    raw = attached_forward("Carol called about this too; she is a key account.\n")
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-1"), result.reason
    t, messages = _customer_ticket(session_factory)
    assert (t.customer.email, t.status, t.subject) == ("carol@customer.example", "open", "Printer on fire")
    first, note = messages
    assert (first.kind, first.from_address, first.message_id) == (
        "customer",
        "carol@customer.example",
        "<orig@customer.example>",
    )
    assert "the printer is on fire again" in first.text and [a.filename for a in first.attachments] == [
        "fire.png"
    ]
    assert note.kind == "note" and note.text == "Carol called about this too; she is a key account."
    [auto] = outbox(session_factory, "ticket_created")
    assert auto["To"].addresses[0].addr_spec == "carol@customer.example"
    assert auto["In-Reply-To"] == "<orig@customer.example>"
    assert "opened on behalf of carol@customer.example" in body(
        outbox(session_factory, "desk_command_answer")[0]
    )
    [notice] = outbox(session_factory, "new_ticket_notice")  # the other agents, not the one who forwarded it
    assert [a.addr_spec for a in notice["To"].addresses] == ["bob@example.com"]
    assert "the printer is on fire again" in body(notice)


def test_an_attached_forward_without_a_note_is_noted_and_a_redelivery_is_a_duplicate(
    session_factory: Factory, cfg: Config
) -> None:
    assert deliver(session_factory, cfg, attached_forward(""), SUPPORT).outcome == "created"
    _, [first, note] = _customer_ticket(session_factory)
    assert first.kind == "customer" and note.kind == "system" and ANNA in note.text
    assert deliver(session_factory, cfg, attached_forward(""), SUPPORT).outcome == "duplicate"


GMAIL = """FYI

---------- Forwarded message ---------
From: Carol Customer <carol@customer.example>
Date: Fri, Mar 6, 2026 at 6:00 PM
Subject: Printer on fire
To: <anna@example.com>


Hello Anna,

the printer is on fire again.
"""
OUTLOOK = """FYI

________________________________
From: Carol Customer <carol@customer.example>
Sent: Friday, March 6, 2026 6:00 PM
To: Anna <anna@example.com>
Subject: Printer on fire

Hello Anna,

the printer is on fire again.
"""
THUNDERBIRD = """FYI


-------- Forwarded Message --------
Subject: \tPrinter on fire
Date: \tFri, 6 Mar 2026 18:00:00 +0000
From: \tCarol Customer <carol@customer.example>
To: \tanna@example.com



Hello Anna,

the printer is on fire again.
"""
OUTLOOK_DE = """FYI

Von: Carol Customer <carol@customer.example>
Gesendet: Freitag, 6. März 2026 18:00
An: Anna <anna@example.com>
Betreff: Printer on fire

Hello Anna,

the printer is on fire again.
"""
OUTLOOK_OLD = """FYI

-----Original Message-----
From: Carol Customer [mailto:carol@customer.example]
Sent: Friday, March 06, 2026 6:00 PM
To: Anna
Subject: Printer on fire

Hello Anna,

the printer is on fire again.
"""


@pytest.mark.parametrize("forward", [GMAIL, OUTLOOK, THUNDERBIRD, OUTLOOK_DE, OUTLOOK_OLD])
def test_customer_with_an_inline_forward(session_factory: Factory, cfg: Config, forward: str) -> None:
    raw = agent_mail("#customer\n" + forward, subject="Fwd: Printer on fire")
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-1"), result.reason
    t, messages = _customer_ticket(session_factory)
    assert (t.customer.email, t.customer.display_name, t.subject) == (
        "carol@customer.example",
        "Carol Customer",
        "Printer on fire",
    )
    first, note = messages
    assert first.kind == "customer" and first.text.startswith("Hello Anna,\n\nthe printer is on fire again.")
    assert "Forwarded" not in first.text and "From:" not in first.text
    assert note.kind == "note" and note.text == "FYI"


def test_explain_of_a_to_mail_says_what_it_would_do_and_changes_nothing(
    session_factory: Factory, cfg: Config
) -> None:
    outer = EmailMessage()
    outer["From"] = f"Anna <{ANNA}>"
    outer["To"] = SUPPORT
    outer["Subject"] = "Your invoice"
    outer["Message-ID"] = "<x1@example.com>"
    outer["Authentication-Results"] = PASS[1]
    outer.set_content(f"#to {ALICE}\n\nHere is your invoice.\n")
    outer.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf")
    db_before, files_before = database_state(session_factory), files_state(cfg)
    result = runner.explain(session_factory, cfg, outer.as_bytes(policy=SMTP), SUPPORT, NOW)
    assert database_state(session_factory) == db_before and files_state(cfg) == files_before
    verdicts = {stage["stage"]: stage["verdict"] for stage in result.stages}
    assert verdicts["agent_mail"] == f"{ANNA}'s #to: a ticket for {ALICE}, their mail its first message"
    assert verdicts["apply"].startswith(f"would create SUP-1 for {ALICE}")
    assert "would queue agent_reply to alice@customer.example" in verdicts["notify"]


def test_away_until_a_date_is_the_start_of_that_day_in_the_agents_time_zone(
    session_factory: Factory, cfg: Config
) -> None:
    with transaction(session_factory) as s:
        s.scalars(select(Desk)).one().timezone = "Europe/Berlin"
    away = mail(
        sender=ANNA, subject="off", body="#away until 2026-03-10\n", message_id="<w3@x>", extra=[PASS]
    )
    assert deliver(session_factory, cfg, away, SUPPORT).outcome == "agent_away"
    with session_factory() as s:
        assert s.scalars(select(Agent)).one().away_until == dt.datetime(2026, 3, 9, 23, 0)  # UTC
    assert "until 2026-03-10 00:00 (Europe/Berlin)" in body(outbox(session_factory, "desk_command_answer")[0])
