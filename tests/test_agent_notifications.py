"""Agent notifications: one mail per agent on each customer mail, with its own Reply-To token, the visible
text, the status line and the attachments; exempt from the automatic-mail rate limit."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import load_secret, token_of, verify_token
from maild.outbound.outgoing import sent_bytes
from maild.storage.db import transaction
from maild.storage.models import Agent, OutboxMessage
from maild.tickets.replies import queue_assigned_notice
from tests.pipeline.helpers import (
    NOW,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    crlf,
    deliver,
    mail,
    make_agent,
    make_desk,
    outbox,
    ticket,
)

Factory = sessionmaker[Session]
ANNA, BOB = "anna@example.com", "bob@example.com"


def setup(factory: Factory) -> None:
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(factory, "sales", [SALES], SALES_PATTERN)
    make_agent(factory, ANNA, "Anna", ["support"])
    make_agent(factory, BOB, "Bob", ["support"])
    make_agent(factory, "carl@example.com", "Carl", ["support"])
    make_agent(factory, "sam@example.com", "Sam", ["sales"])
    with transaction(factory) as s:
        s.scalars(select(Agent).where(Agent.email == "carl@example.com")).one().active = False


def notices(factory: Factory) -> list[OutboxMessage]:
    with transaction(factory) as s:
        return [r for r in outbox(s, agents=True) if r.template.endswith("_notice")]


def parsed(row: OutboxMessage) -> EmailMessage:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def with_attachment() -> bytes:
    return crlf(
        "\n".join(
            [
                "From: Alice Example <alice@customer.example>",
                f"To: {SUPPORT}",
                "Subject: Printer on fire",
                "Message-ID: <att@customer.example>",
                "MIME-Version: 1.0",
                'Content-Type: multipart/mixed; boundary="b"',
                "",
                "--b",
                "Content-Type: text/plain; charset=utf-8",
                "",
                "See the photo.",
                "",
                "--b",
                "Content-Type: application/pdf",
                'Content-Disposition: attachment; filename="report.pdf"',
                "Content-Transfer-Encoding: base64",
                "",
                "JVBERi0xLjQKcmVwb3J0",
                "--b",
                "Content-Type: application/x-msdownload",
                'Content-Disposition: attachment; filename="evil.exe"',
                "Content-Transfer-Encoding: base64",
                "",
                "TVqQAAMAAAAEAAAA",
                "--b--",
                "",
            ]
        )
    )


def test_a_new_ticket_notifies_each_active_desk_agent(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    deliver(session_factory, cfg, mail(), SUPPORT)
    rows = notices(session_factory)
    assert sorted(r.rcpt_to[0] for r in rows) == [ANNA, BOB]  # not Carl (inactive), not Sam (sales)
    with transaction(session_factory) as s:
        t = ticket(s, "SUP-26-03-1")
        agents = {a.email: a.id for a in s.scalars(select(Agent))}
        ticket_id = t.id
        # the customer's ticket_created is unchanged: one, to the customer only
        (created,) = outbox(s)
        assert created.template == "ticket_created" and created.rcpt_to == ["alice@customer.example"]
    for row in rows:
        msg = parsed(row)
        assert row.template == "new_ticket_notice"
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["From"].addresses[0].addr_spec == SUPPORT
        assert "[SUP-26-03-1]" in msg["Subject"]
        assert msg["In-Reply-To"] == "<first@customer.example>"
        token = token_of(msg["Reply-To"].addresses[0].addr_spec)
        assert token is not None
        target = verify_token(load_secret(cfg.data_dir), token)
        assert target is not None
        assert (target.ticket_id, target.agent_id) == (ticket_id, agents[row.rcpt_to[0]])
        body = text_of(msg)
        assert "the printer on floor 2 is on fire." in body
        assert "Status: open | Priority: normal | Assigned: nobody" in body
        assert "Customer: Alice Example <alice@customer.example>" in body


def test_attachments_are_attached_and_refused_ones_listed(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    with transaction(session_factory) as s:
        from maild.storage.models import Desk

        s.scalars(select(Desk).where(Desk.name == "support")).one().allowed_extensions = "pdf"
    deliver(session_factory, cfg, with_attachment(), SUPPORT)
    row = notices(session_factory)[0]
    # the row refers to the stored file; the mail as sent carries it
    msg = message_from_bytes(sent_bytes(row.raw, cfg.attachment_dir), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    files = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    assert files == {"report.pdf": b"%PDF-1.4\nreport"}
    body = text_of(msg)
    assert "report.pdf" in body and "evil.exe" in body and "not attached" in body


def test_an_assigned_ticket_notifies_only_the_assignee(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    deliver(session_factory, cfg, mail(), SUPPORT)
    with transaction(session_factory) as s:
        anna = s.scalars(select(Agent).where(Agent.email == ANNA)).one()
        anna.display_name = "Anna from Support"
        ticket(s, "SUP-26-03-1").assigned_agent_id = anna.id
    reply = mail(subject="Re: [SUP-26-03-1] Printer on fire", message_id="<second@customer.example>")
    deliver(session_factory, cfg, reply, SUPPORT, now=NOW + dt.timedelta(minutes=5))
    rows = [r for r in notices(session_factory) if r.template == "customer_reply_notice"]
    assert [r.rcpt_to for r in rows] == [[ANNA]]
    body = text_of(parsed(rows[0]))
    assert "Assigned: Anna from Support" in body
    assert parsed(rows[0])["To"].addresses[0].display_name == "Anna from Support"


def test_an_automatic_new_ticket_is_announced_but_an_automatic_follow_up_is_not(
    session_factory: Factory, cfg: Config
) -> None:
    setup(session_factory)
    ooo = [("Auto-Submitted", "auto-replied")]
    deliver(session_factory, cfg, mail(subject="Out of office", extra=ooo), SUPPORT)
    rows = notices(session_factory)
    assert len(rows) == 2 and "automatic mail" in text_of(parsed(rows[0]))
    with transaction(session_factory) as s:
        assert outbox(s) == []  # nobody answered the robot
    follow = mail(
        subject="Re: [SUP-26-03-1] Out of office", message_id="<second@customer.example>", extra=ooo
    )
    deliver(session_factory, cfg, follow, SUPPORT, now=NOW + dt.timedelta(minutes=5))
    assert len(notices(session_factory)) == 2


def test_a_desk_without_agents_sends_only_the_auto_reply(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    deliver(session_factory, cfg, mail(), SUPPORT)
    with transaction(session_factory) as s:
        assert [r.template for r in outbox(s, agents=True)] == ["ticket_created"]


def test_notices_are_not_rate_limited_but_auto_replies_are(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    for i in range(10):
        raw = mail(subject=f"Problem {i}", message_id=f"<m{i}@customer.example>")
        # 3 minutes apart: over the per-address limit, not a burst that pauses notices (test_amplification)
        deliver(session_factory, cfg, raw, SUPPORT, now=NOW + dt.timedelta(minutes=3 * i))
    to_anna = [r for r in notices(session_factory) if r.rcpt_to == [ANNA]]
    assert len(to_anna) == 10
    with transaction(session_factory) as s:
        assert (
            len(outbox(s)) == cfg.hygiene.autoreply_per_hour
        )  # the customer's auto-replies stop at the limit


def test_assigned_notice(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    deliver(session_factory, cfg, mail(), SUPPORT)
    with transaction(session_factory) as s:
        bob = s.scalars(select(Agent).where(Agent.email == BOB)).one()
        row = queue_assigned_notice(s, cfg, ticket(s, "SUP-26-03-1"), bob, assigned_by="Anna", now=NOW)
        assert row is not None and row.rcpt_to == [BOB]
        body = text_of(parsed(row))
    assert "Anna assigned SUP-26-03-1" in body and "on fire" in body
