"""Auto-close (scheduler job): which tickets it closes, what it sends, and that two instances running it at
once close each ticket once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, Hygiene
from maild.storage.db import transaction
from maild.storage.models import AuditLog, Desk, Message, OutboxMessage, Ticket
from maild.tickets.autoclose import auto_close, describe_hours
from tests.conftest import run_cli
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_desk

Factory = sessionmaker[Session]
CREATED = NOW.replace(tzinfo=None)


def open_tickets(factory: Factory, cfg: Config, count: int, cc: str = "") -> list[str]:
    numbers = []
    for n in range(count):
        extra = [("Cc", cc)] if cc else []
        result = deliver(
            factory,
            cfg,
            mail(message_id=f"<t{n}@customer.example>", subject=f"Case {n}", extra=extra),
            SUPPORT,
        )
        assert result.outcome == "created"
        numbers.append(result.ticket_number)
    return numbers


def agent_answered(factory: Factory, number: str, at: dt.datetime) -> None:
    """An agent's reply on the ticket: from then on its sub-customers get automatic mail too (issue 14)."""
    with transaction(factory) as session:
        t = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        session.add(
            Message(
                ticket=t, desk_id=t.desk_id, kind="agent", message_id=f"<answer-{number}@x>", created_at=at
            )
        )


def set_tickets(factory: Factory, numbers: list[str], **values: object) -> None:
    with transaction(factory) as session:
        session.execute(update(Ticket).where(Ticket.number.in_(numbers)).values(**values))


def set_desk(factory: Factory, **values: object) -> None:
    with transaction(factory) as session:
        session.execute(update(Desk).values(**values))


def state(factory: Factory, number: str) -> str:
    with factory() as session:
        return session.scalars(select(Ticket.status).where(Ticket.number == number)).one()


def closing_mails(factory: Factory) -> list[OutboxMessage]:
    with factory() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.template == "auto_close")))


def closing_mails_and_others(factory: Factory) -> list[OutboxMessage]:
    with factory() as session:
        return list(session.scalars(select(OutboxMessage)))


def test_an_inactive_waiting_ticket_is_closed_with_a_note_an_audit_entry_and_a_mail(
    session_factory: Factory, cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    [number] = open_tickets(session_factory, cfg, 1, cc="Bob <bob@customer.example>")
    agent_answered(session_factory, number, CREATED)
    set_desk(session_factory, auto_close_hours=72)
    set_tickets(session_factory, [number], status="waiting", updated_at=CREATED)

    # 71 hours: not yet
    assert auto_close(session_factory, cfg, CREATED + dt.timedelta(hours=71)).closed == []
    assert state(session_factory, number) == "waiting"

    later = CREATED + dt.timedelta(hours=72)
    result = auto_close(session_factory, cfg, later)

    assert result.closed == [number]
    assert state(session_factory, number) == "closed"
    [row] = closing_mails(session_factory)
    assert result.outbox_ids == [row.id]
    assert sorted(row.rcpt_to) == ["alice@customer.example", "bob@customer.example"]
    sent = message_from_bytes(row.raw, policy=policy.default)
    assert sent["Subject"] == f"[{number}] Closed: Case 0"
    assert sent["To"] == "Alice Example <alice@customer.example>" and "bob@customer.example" in sent["Cc"]
    assert sent["Auto-Submitted"] == "auto-replied"
    # threads in the customer's mail client: on the ticket's chain, answering the newest mail (our auto-reply)
    assert "<t0@customer.example>" in sent["References"]
    [created] = [m for m in closing_mails_and_others(session_factory) if m.template == "ticket_created"]
    assert sent["In-Reply-To"] == created.message_id
    text = sent.get_body(("plain",)).get_content()
    assert "for 3 days,\nso we have closed it" in text and "within\n14 days" in text
    with session_factory() as session:
        ticket = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        assert ticket.updated_at == later
        [note] = session.scalars(
            select(Message).where(Message.ticket_id == ticket.id, Message.kind == "system")
        )
        assert note.text == "Closed automatically after 3 days without activity (status was waiting)."
        [audit] = session.scalars(select(AuditLog).where(AuditLog.action == "auto_close"))
        assert (audit.actor, audit.ticket_id) == ("scheduler", ticket.id)
        assert audit.detail == {"before": {"status": "waiting"}, "after": {"status": "closed"}, "hours": 72}

    # closed is closed: the next runs send nothing more
    assert auto_close(session_factory, cfg, later + dt.timedelta(days=30)).closed == []
    assert len(closing_mails(session_factory)) == 1


def test_only_listed_statuses_of_desks_with_auto_close_are_closed(
    session_factory: Factory, cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    waiting, resolved, opened, on_hold, merged = open_tickets(session_factory, cfg, 5)
    set_tickets(session_factory, [waiting], status="waiting", updated_at=CREATED)
    set_tickets(session_factory, [resolved], status="resolved", updated_at=CREATED)
    set_tickets(session_factory, [opened], status="open", updated_at=CREATED)
    set_tickets(session_factory, [on_hold], status="on_hold", updated_at=CREATED)
    with session_factory() as session:
        survivor = session.scalars(select(Ticket.id).where(Ticket.number == waiting)).one()
    set_tickets(session_factory, [merged], status="waiting", updated_at=CREATED, merged_into_id=survivor)
    much_later = CREATED + dt.timedelta(days=365)

    # auto-close off (the default): nothing
    assert auto_close(session_factory, cfg, much_later).closed == []

    set_desk(session_factory, auto_close_hours=24)
    assert sorted(auto_close(session_factory, cfg, much_later).closed) == sorted([waiting, resolved])
    assert [state(session_factory, n) for n in (opened, on_hold, merged)] == ["open", "on_hold", "waiting"]

    set_desk(session_factory, auto_close_statuses="on_hold")
    assert auto_close(session_factory, cfg, much_later).closed == [on_hold]


def test_a_desk_without_auto_replies_closes_silently(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN, auto_reply=False)
    [number] = open_tickets(session_factory, cfg, 1)
    set_desk(session_factory, auto_close_hours=1)
    set_tickets(session_factory, [number], status="waiting", updated_at=CREATED)

    result = auto_close(session_factory, cfg, CREATED + dt.timedelta(hours=2))

    assert (result.closed, result.outbox_ids) == ([number], [])
    assert closing_mails(session_factory) == []


def test_a_customer_reply_after_auto_close_reopens_the_ticket(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    [number] = open_tickets(session_factory, cfg, 1)
    set_desk(session_factory, auto_close_hours=48)
    set_tickets(session_factory, [number], status="waiting", updated_at=CREATED)
    closed_at = CREATED + dt.timedelta(hours=49)
    auto_close(session_factory, cfg, closed_at)
    [row] = closing_mails(session_factory)

    reply = mail(
        message_id="<reply@customer.example>",
        subject=f"Re: [{number}] Closed: Case 0",
        extra=[("In-Reply-To", row.message_id)],
    )
    result = deliver(
        session_factory, cfg, reply, SUPPORT, now=(closed_at + dt.timedelta(days=1)).replace(tzinfo=dt.UTC)
    )

    assert (result.outcome, result.ticket_number) == ("replied", number)
    assert state(session_factory, number) == "open"


def test_two_instances_running_at_once_close_each_ticket_once(session_factory: Factory, cfg: Config) -> None:
    # Twelve closing notices to one customer at once: above the default auto-reply rate limit (5).
    cfg = dataclasses.replace(cfg, hygiene=Hygiene(autoreply_per_hour=100, autoreply_per_day=100))
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    numbers = open_tickets(session_factory, cfg, 12)
    set_desk(session_factory, auto_close_hours=1)
    set_tickets(session_factory, numbers, status="waiting", updated_at=CREATED)
    later = CREATED + dt.timedelta(hours=2)
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def instance() -> None:
        try:
            start.wait()
            results.append(auto_close(session_factory, cfg, later).closed)
        except BaseException as exc:  # reported below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=instance) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(results[0] + results[1]) == sorted(numbers)  # every ticket by exactly one of them
    assert len(closing_mails(session_factory)) == 12
    with session_factory() as session:
        assert len(list(session.scalars(select(AuditLog).where(AuditLog.action == "auto_close")))) == 12


def test_describe_hours() -> None:
    assert [describe_hours(h) for h in (1, 5, 24, 48, 36)] == [
        "1 hour",
        "5 hours",
        "1 day",
        "2 days",
        "36 hours",
    ]


def test_desk_set_auto_close_options(config_file: Path) -> None:
    add = run_cli(
        "maildctl",
        "desk",
        "add",
        "support",
        "--address",
        SUPPORT,
        "--pattern",
        SUP_PATTERN,
        config=config_file,
    )
    assert add.returncode == 0, add.stderr
    ok = run_cli(
        "maildctl",
        "desk",
        "set",
        "support",
        "--auto-close-hours",
        "72",
        "--auto-close-statuses",
        "waiting, on_hold",
        config=config_file,
    )
    assert ok.returncode == 0, ok.stderr
    shown = run_cli("maildctl", "desk", "show", "support", "--json", config=config_file)
    fields = json.loads(shown.stdout)
    assert (fields["auto_close_hours"], fields["auto_close_statuses"]) == (72, ["waiting", "on_hold"])
    for args, complaint in (
        (["--auto-close-hours", "-1"], "--auto-close-hours must be between 0"),
        (["--auto-close-statuses", "waiting,asleep"], "invalid --auto-close-statuses 'waiting,asleep'"),
        (["--auto-close-statuses", "closed"], "invalid --auto-close-statuses 'closed'"),
    ):
        bad = run_cli("maildctl", "desk", "set", "support", *args, config=config_file)
        assert bad.returncode == 1 and complaint in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
