"""Agent presence through the pipeline (tests/pipeline/helpers.deliver): notices go to the present agents
only (the assigned one, else the category's, else the desk's), a desk with nobody present tells every
active agent anyway or sends the customer desk_unavailable once per ticket, an away with an end expires,
and an agent's own out-of-office reply to a notice marks them away until the date it states."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import bounce_address, load_secret
from maild.storage.db import transaction
from maild.storage.models import Agent, AuditLog, Category, OutboxMessage
from maild.tickets import presence
from tests.cli import ctl, ok
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
)

Factory = sessionmaker[Session]
ANNA, BOB, CARL = "anna@example.com", "bob@example.com", "carl@example.com"
ALICE = "alice@customer.example"
NUMBER = "SUP-26-03-1"
_ids = iter(range(1, 10_000))


def at(minutes: int) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


@pytest.fixture
def desk(session_factory: Factory, cfg: Config) -> None:
    """Desk support with Anna and Bob in category printers, Carl outside it; ticket SUP-26-03-1 from
    Alice in that category (every agent present when it was opened)."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    for email, name in ((ANNA, "Anna"), (BOB, "Bob"), (CARL, "Carl")):
        make_agent(session_factory, email, name, ["support"])
    assert deliver(session_factory, cfg, mail(), SUPPORT).ticket_number == NUMBER
    with transaction(session_factory) as s:
        t = ticket(s, NUMBER)
        printers = Category(desk_id=t.desk_id, name="printers")
        printers.agents = [_agent(s, ANNA), _agent(s, BOB)]
        t.category = printers


def _agent(s: Session, email: str) -> Agent:
    return s.scalars(select(Agent).where(Agent.email == email)).one()


def away(factory: Factory, *emails: str, until: dt.datetime | None = None) -> None:
    with transaction(factory) as s:
        for email in emails:
            presence.mark_away(s, _agent(s, email), until, actor="test", now=NOW)


def customer_writes(factory: Factory, cfg: Config, minutes: int) -> list[str]:
    """Alice writes on the ticket again at NOW + `minutes`: who gets the customer_reply_notice."""
    n = next(_ids)
    raw = mail(
        subject=f"Re: [{NUMBER}] Printer on fire", body=f"Still burning ({n}).\n", message_id=f"<r{n}@c>"
    )
    result = deliver(factory, cfg, raw, SUPPORT, now=at(minutes))
    assert result.ticket_number == NUMBER
    with factory() as s:
        rows = [s.get(OutboxMessage, i) for i in result.outbox_ids]
        return sorted(r.rcpt_to[0] for r in rows if r is not None and r.template == "customer_reply_notice")


def set_desk(factory: Factory, when_nobody_present: str) -> None:
    with transaction(factory) as s:
        ticket(s, NUMBER).desk.when_nobody_present = when_nobody_present


@pytest.mark.usefixtures("desk")
def test_category_fallback(session_factory: Factory, cfg: Config) -> None:
    assert customer_writes(session_factory, cfg, 1) == [ANNA, BOB]
    away(session_factory, ANNA)
    assert customer_writes(session_factory, cfg, 2) == [BOB]  # the category's other present agent
    away(session_factory, BOB)
    assert customer_writes(session_factory, cfg, 3) == [CARL]  # the desk's present agents
    with transaction(session_factory) as s:
        presence.mark_back(s, _agent(s, ANNA), actor="test")
    assert customer_writes(session_factory, cfg, 4) == [ANNA]


@pytest.mark.usefixtures("desk")
def test_an_assigned_agent_away_leaves_the_notice_to_the_present_ones(
    session_factory: Factory, cfg: Config
) -> None:
    with transaction(session_factory) as s:
        ticket(s, NUMBER).assigned_agent_id = _agent(s, ANNA).id
    assert customer_writes(session_factory, cfg, 1) == [ANNA]
    away(session_factory, ANNA)
    assert customer_writes(session_factory, cfg, 2) == [BOB]


@pytest.mark.usefixtures("desk")
def test_nobody_present_notify_all_tells_the_active_agents_anyway(
    session_factory: Factory, cfg: Config
) -> None:
    away(session_factory, ANNA, BOB, CARL)
    assert customer_writes(session_factory, cfg, 1) == [ANNA, BOB]  # as if nobody were away
    with session_factory() as s:
        assert ticket(s, NUMBER).desk_unavailable_sent_at is None


@pytest.mark.usefixtures("desk")
def test_nobody_present_desk_unavailable_tells_the_customer_once_per_ticket(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    set_desk(session_factory, "desk-unavailable")
    away(session_factory, ANNA, BOB, CARL)
    assert customer_writes(session_factory, cfg, 1) == []
    assert customer_writes(session_factory, cfg, 2) == []
    with session_factory() as s:
        sent = [r for r in outbox(s) if r.template == "desk_unavailable"]
        assert [r.rcpt_to for r in sent] == [[ALICE]]  # once, not on the second mail
        assert f"[{NUMBER}]" in sent[0].subject
        body = message_from_bytes(sent[0].raw, policy=policy.default).get_body(preferencelist=("plain",))
        assert body is not None and "Nobody at support is available at the moment" in body.get_content()
        assert ticket(s, NUMBER).desk_unavailable_sent_at == at(1).replace(tzinfo=None)
    log = ok(ctl(config_file, "ticket", "log", NUMBER))
    assert "maild  desk_unavailable" in log and f"to={ALICE}" in log
    # A new ticket of the same customer gets its own one, besides ticket_created; no agent is told.
    result = deliver(session_factory, cfg, mail(subject="Toner", message_id="<toner@c>"), SUPPORT, now=at(3))
    with session_factory() as s:
        rows = [s.get(OutboxMessage, i) for i in result.outbox_ids]
        assert sorted(r.template for r in rows if r is not None) == ["desk_unavailable", "ticket_created"]
    with transaction(session_factory) as s:
        presence.mark_back(s, _agent(s, CARL), actor="test")
    assert customer_writes(session_factory, cfg, 4) == [CARL]  # someone is present again


@pytest.mark.usefixtures("desk")
def test_away_until_expires(session_factory: Factory, cfg: Config) -> None:
    away(session_factory, ANNA, until=at(60))
    assert customer_writes(session_factory, cfg, 30) == [BOB]
    assert customer_writes(session_factory, cfg, 60) == [ANNA, BOB]  # present again at away_until
    with session_factory() as s:
        anna = _agent(s, ANNA)
        assert presence.is_present(anna, at(61))
        assert presence.away_window(anna, at(61)) == (None, None)  # shown present, columns left as they are
        assert presence.away_window(anna, at(59)) == (NOW.replace(tzinfo=None), at(60).replace(tzinfo=None))


def out_of_office(
    factory: Factory,
    cfg: Config,
    agent: str,
    subject: str,
    body: str,
    minutes: int,
    *,
    to_return_path: bool = False,
) -> str:
    """`agent`'s vacation responder answers their newest notice, to its Reply-To or (as Sieve and
    Exchange do) to its return path; the spool row's reason."""
    with factory() as s:
        notices = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).all()
        notice = next(r for r in notices if agent in r.rcpt_to and r.template.endswith("_notice"))
    raw = mail(
        sender=f"{agent.split('@')[0].title()} <{agent}>",
        subject=subject,
        body=body,
        message_id=f"<ooo{next(_ids)}@example.com>",
        extra=(
            ("Auto-Submitted", "auto-replied"),
            ("In-Reply-To", notice.message_id),
            ("References", notice.message_id),
        ),
    )
    if to_return_path:
        to = bounce_address(load_secret(cfg.data_dir), notice.mail_from, notice.id, agent)
        result = deliver(factory, cfg, raw, to, now=at(minutes))
        assert result.outcome == "archived" and result.reason.startswith("bounce-address: ")
        return result.reason
    result = deliver(factory, cfg, raw, agent_address(factory, cfg, NUMBER, agent), now=at(minutes))
    assert (result.outcome, result.ticket_number) == ("noted", NUMBER)
    assert not result.outbox_ids  # nobody is told of a robot's mail
    return result.reason


@pytest.mark.usefixtures("desk")
def test_an_agents_out_of_office_reply_marks_them_away_until_the_stated_date(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    reason = out_of_office(
        session_factory,
        cfg,
        ANNA,
        f"Automatic reply: [{NUMBER}] Printer on fire",
        "Hello,\n\nI am out of the office until 12 March with no access to email.\n\nAnna\n",
        5,
    )
    assert "anna@example.com marked away by their out-of-office reply, until 2026-03-13T00:00:00Z" in reason
    with session_factory() as s:
        anna = _agent(s, ANNA)
        assert (anna.away_since, anna.away_until) == (at(5).replace(tzinfo=None), dt.datetime(2026, 3, 13))
        t = ticket(s, NUMBER)
        [row] = s.scalars(select(AuditLog).where(AuditLog.action == "agent_away")).all()
        assert (row.actor, row.ticket_id, row.detail["why"]) == ("out-of-office", t.id, "out-of-office reply")
        assert t.status == "open"  # no activity
    assert "out-of-office  agent_away" in ok(ctl(config_file, "ticket", "log", NUMBER))
    assert customer_writes(session_factory, cfg, 10) == [BOB]
    # The responder answering the next notice changes nothing: no second audit row.
    out_of_office(session_factory, cfg, ANNA, "Out of Office", "I am out of the office until 12 March.", 12)
    with session_factory() as s:
        assert len(s.scalars(select(AuditLog).where(AuditLog.action == "agent_away")).all()) == 1


@pytest.mark.usefixtures("desk")
def test_an_out_of_office_reply_to_a_notices_return_path_marks_the_agent_away(
    session_factory: Factory, cfg: Config
) -> None:
    body = "Obrigado pela sua mensagem. Estarei ausente até 14/03/2026."
    reason = out_of_office(session_factory, cfg, BOB, "Resposta automática", body, 5, to_return_path=True)
    assert "the out-of-office reply of agent bob@example.com" in reason
    assert "marked away by their out-of-office reply, until 2026-03-15T00:00:00Z" in reason
    with session_factory() as s:
        assert _agent(s, BOB).away_until == dt.datetime(2026, 3, 15)
        [row] = s.scalars(select(AuditLog).where(AuditLog.action == "agent_away")).all()
        assert row.ticket_id == ticket(s, NUMBER).id
    # A person's mail to a return path, or a robot's from someone else, marks nobody away.
    raw = mail(sender=f"Anna <{ANNA}>", subject="Re: your mail", body="Hi, I am back until 20 March.")
    with session_factory() as s:
        notices = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "new_ticket_notice")).all()
        notice = next(r for r in notices if r.rcpt_to == [ANNA])
        to = bounce_address(load_secret(cfg.data_dir), notice.mail_from, notice.id, ANNA)
    assert deliver(session_factory, cfg, raw, to, now=at(6)).outcome == "archived"
    with session_factory() as s:
        assert _agent(s, ANNA).away_since is None


@pytest.mark.usefixtures("desk")
@pytest.mark.parametrize(
    "body",
    ["Ich bin derzeit nicht im Büro und lese keine E-Mails.", "Ich bin bis zum 02.03.2026 nicht im Büro."],
    ids=["no date", "a past date"],
)
def test_an_out_of_office_reply_without_a_usable_date_marks_them_away_until_back(
    session_factory: Factory, cfg: Config, body: str
) -> None:
    out_of_office(session_factory, cfg, BOB, "Abwesenheitsnotiz: Printer on fire", body, 5)
    with session_factory() as s:
        bob = _agent(s, BOB)
        assert (bob.away_since, bob.away_until) == (at(5).replace(tzinfo=None), None)
        assert not presence.is_present(bob, at(60 * 24 * 365))


@pytest.mark.usefixtures("desk")
def test_the_return_date_is_read_in_the_time_zone_of_the_agents_desk(
    session_factory: Factory, cfg: Config
) -> None:
    with transaction(session_factory) as s:
        ticket(s, NUMBER).desk.timezone = "Europe/Berlin"
    out_of_office(session_factory, cfg, ANNA, "Out of Office", "I will be back on 2026-03-16.", 5)
    with session_factory() as s:
        assert _agent(s, ANNA).away_until == dt.datetime(2026, 3, 15, 23, 0)  # midnight in Berlin
