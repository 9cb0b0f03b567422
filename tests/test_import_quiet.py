"""Issue 13, point 1: an imported backlog mails nobody. Tickets `maildctl import` creates keep their old
dates but are left alone by auto-close, escalations and reminders (maild.tickets.quiet) until something live
happens on them, or the admin asks for it with `--automate`; the summary says how the tickets arrived.

The backlog is from 2023 and the desk closes `waiting` tickets after a day (its default auto-close
statuses): on the code before the fix every imported ticket the desk had answered was closed at once,
with a `Closed:` mail to its old customer."""

from __future__ import annotations

import datetime as dt
import json
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import Desk, EscalationFired, EscalationRule, Message, OutboxMessage, Ticket, utcnow
from maild.tickets.autoclose import auto_close
from maild.tickets.escalations import escalate
from tests.conftest import run_cli
from tests.daemon import free_port, sent_mails, start_fixture, wait_until, write_config  # noqa: F401
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, agent_address, crlf, deliver, make_agent, make_desk
from tests.test_import_export import write_mbox

Factory = sessionmaker[Session]
ANNA = "anna@example.com"
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2023, 3, 1, 9, 0, tzinfo=dt.UTC)
DESK = "Support <support@example.com>"
CUSTOMERS = {
    "alice": "Alice Example <alice@customer.example>",
    "carol": "Carol Client <carol@client.example>",
    "dave": "Dave Doe <dave@doe.example>",
}


def old_mail(
    sender: str, subject: str, mid: str, date: dt.datetime, body: str, *, to: str = SUPPORT, re: str = ""
) -> bytes:
    head = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: <{mid}>"]
    head.append(f"Date: {format_datetime(date)}")
    if re:
        head += [f"In-Reply-To: <{re}>", f"References: <{re}>"]
    return crlf("\n".join([*head, "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body]))


def backlog(tag: str = "", start: dt.datetime = T0) -> list[bytes]:
    """Three 2023 conversations: Alice's and Dave's the desk answered last (`waiting`), Carol wrote again
    after the desk's answer (`open`). File order is not date order."""
    mails = []
    for n, (who, sender) in enumerate(CUSTOMERS.items()):
        at = start + n * 7 * DAY
        first = f"{who}1{tag}@old.example"
        answer = f"{who}-desk{tag}@example.com"
        address = sender.split("<")[1].rstrip(">")
        mails.append(old_mail(sender, f"Case of {who}{tag}", first, at, "it is broken\n"))
        mails.append(
            old_mail(DESK, f"Re: Case of {who}{tag}", answer, at + DAY, "try this\n", to=address, re=first)
        )
        if who == "carol":
            mails.append(
                old_mail(
                    sender,
                    f"Re: Case of {who}{tag}",
                    f"{who}2{tag}@old.example",
                    at + 2 * DAY,
                    "no luck\n",
                    re=answer,
                )
            )
    return mails[::-1]


@pytest.fixture
def desk(session_factory: Factory) -> None:
    """The support desk with auto-close on after a day from its default statuses (waiting, resolved), a
    reminder after a day in `waiting` and an agent notice after a day in `open`."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    with transaction(session_factory) as s:
        s.execute(update(Desk).values(auto_close_hours=24))
        support = s.scalars(select(Desk)).one()
        assert support.auto_close_statuses == "waiting,resolved"  # the default
        s.add(
            EscalationRule(
                desk=support, name="nudge", in_status="waiting", after_hours=24, remind_template="reminder"
            )
        )
        s.add(
            EscalationRule(desk=support, name="stale", in_status="open", after_hours=24, notify_agents=True)
        )


def import_backlog(config_file: Path, path: Path, *extra: str) -> dict[str, Any]:
    proc = run_cli(
        "maildctl", "import", "mbox", str(path), "--desk", "support", "--json", *extra, config=config_file
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def statuses(factory: Factory) -> dict[str, str]:
    with factory() as s:
        return dict(s.execute(select(Ticket.number, Ticket.status).order_by(Ticket.id)).all())


def outbox_templates(factory: Factory) -> list[tuple[str, list[str]]]:
    with factory() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [(row.template, list(row.rcpt_to)) for row in rows]


def now() -> dt.datetime:
    """The scheduler's clock: naive UTC, today (the imported mail is years older)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


EXPECTED = {"SUP-23-03-1": "waiting", "SUP-23-03-2": "open", "SUP-23-03-3": "waiting"}


@pytest.mark.usefixtures("desk")
def test_imported_tickets_are_left_alone_by_auto_close_and_escalations(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    summary = import_backlog(config_file, write_mbox(tmp_path / "old.mbox", backlog()))
    assert (summary["created"], summary["desk_replies"]) == (3, 3)
    assert summary["tickets_closed"] == 0
    assert summary["tickets_open"] == 3
    assert summary["tickets_by_status"] == {"open": 1, "waiting": 2}
    assert summary["automated"] is False
    assert statuses(session_factory) == EXPECTED
    with session_factory() as s:
        for t in s.scalars(select(Ticket)):
            assert t.updated_at.year == 2023  # the old dates are kept
            assert t.imported_at is not None and t.imported_at > t.updated_at

    # today, a week later, a year later: years past every threshold, and nothing happens
    for at in (now(), now() + 7 * DAY, now() + 365 * DAY):
        assert auto_close(session_factory, cfg, at).closed == []
        assert escalate(session_factory, cfg, at).fired == []
    assert statuses(session_factory) == EXPECTED
    assert outbox_templates(session_factory) == []


@pytest.mark.usefixtures("desk")
def test_the_text_summary_says_how_the_tickets_arrived(config_file: Path, tmp_path: Path) -> None:
    path = write_mbox(tmp_path / "old.mbox", backlog())
    proc = run_cli(
        "maildctl", "import", "mbox", str(path), "--desk", "support", config=config_file, subprocess=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "created tickets now  0 closed, 3 open (1 open, 2 waiting)" in proc.stdout
    assert "automation           off for them until something new happens on them" in proc.stdout


@pytest.mark.usefixtures("desk")
def test_automate_lets_auto_close_treat_them_as_live(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    summary = import_backlog(config_file, write_mbox(tmp_path / "old.mbox", backlog()), "--automate")
    assert summary["automated"] is True
    assert summary["tickets_by_status"] == {"open": 1, "waiting": 2}
    with session_factory() as s:
        assert set(s.scalars(select(Ticket.imported_at))) == {None}

    result = auto_close(session_factory, cfg, now())
    assert sorted(result.closed) == ["SUP-23-03-1", "SUP-23-03-3"]
    assert statuses(session_factory) == {**EXPECTED, "SUP-23-03-1": "closed", "SUP-23-03-3": "closed"}
    assert sorted(outbox_templates(session_factory)) == [
        ("auto_close", ["alice@customer.example"]),
        ("auto_close", ["dave@doe.example"]),
    ]


@pytest.mark.usefixtures("desk")
def test_new_mail_on_an_imported_ticket_makes_it_live_again(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    import_backlog(config_file, write_mbox(tmp_path / "old.mbox", backlog()))
    today = now()
    aware = today.replace(tzinfo=dt.UTC)

    # Alice writes today on her waiting ticket: open, live; the rule on `open` counts from today
    again = old_mail(
        CUSTOMERS["alice"],
        "Re: Case of alice",
        "alice-today@customer.example",
        aware,
        "still broken\n",
        re="alice-desk@example.com",
    )
    result = deliver(session_factory, cfg, again, SUPPORT, now=aware)
    assert (result.outcome, result.ticket_number) == ("replied", "SUP-23-03-1")
    assert statuses(session_factory)["SUP-23-03-1"] == "open"
    assert escalate(session_factory, cfg, today + 23 * HOUR).fired == []
    assert escalate(session_factory, cfg, today + 25 * HOUR).fired == [("support", "stale", "SUP-23-03-1")]

    # Anna answers it: waiting, and closed a day later with the closing mail to Alice
    answer = old_mail(
        f"Anna <{ANNA}>",
        "Re: Case of alice",
        "anna-1@example.com",
        aware,
        "fixed now\n",
        to=agent_address(session_factory, cfg, "SUP-23-03-1", ANNA),
    )
    answer_at = aware + 26 * HOUR
    assert (
        deliver(
            session_factory,
            cfg,
            answer,
            agent_address(session_factory, cfg, "SUP-23-03-1", ANNA),
            now=answer_at,
        ).outcome
        == "replied"
    )
    assert statuses(session_factory)["SUP-23-03-1"] == "waiting"
    closed = auto_close(session_factory, cfg, today + 51 * HOUR)
    assert closed.closed == ["SUP-23-03-1"]
    with session_factory() as s:
        [closing] = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "auto_close")).all()
        assert closing.rcpt_to == ["alice@customer.example"]
        assert closing.subject.startswith("[SUP-23-03-1] Closed:")

    # the others are still quiet: Dave's waiting ticket is neither closed nor reminded
    assert statuses(session_factory)["SUP-23-03-3"] == "waiting"
    assert statuses(session_factory)["SUP-23-03-2"] == "open"
    assert escalate(session_factory, cfg, today + 60 * DAY).fired == []
    assert auto_close(session_factory, cfg, today + 60 * DAY).closed == []


@pytest.mark.usefixtures("desk")
def test_an_automatic_mail_on_an_imported_ticket_leaves_it_quiet(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    import_backlog(config_file, write_mbox(tmp_path / "old.mbox", backlog()))
    aware = now().replace(tzinfo=dt.UTC)
    ooo = old_mail(
        CUSTOMERS["dave"],
        "Automatic reply: Case of dave",
        "dave-ooo@doe.example",
        aware,
        "I am away.\n",
        re="dave-desk@example.com",
    ).replace(b"MIME-Version", b"Auto-Submitted: auto-replied\r\nMIME-Version")
    result = deliver(session_factory, cfg, ooo, SUPPORT, now=aware)
    assert result.ticket_number == "SUP-23-03-3"
    with session_factory() as s:
        stored = s.scalars(select(Message).where(Message.message_id == "<dave-ooo@doe.example>")).one()
        assert stored.automatic is not None
    assert statuses(session_factory) == EXPECTED
    later = now() + 30 * DAY
    assert auto_close(session_factory, cfg, later).closed == []
    assert escalate(session_factory, cfg, later).fired == []
    assert outbox_templates(session_factory) == []


# --- end to end: maild serve running while the backlog is imported ---------------------------------------

INTERNAL = "internal@example.com"


def sentinels(factory: Factory, cfg: Config) -> tuple[str, str]:
    """Two live tickets on a desk that sends no mail: one auto-close closes, one an escalation rule marks
    `high`. The same job runs that would find the imported tickets (every desk, every rule) handle them,
    so seeing them handled proves a run of each job happened (on the code before the fix the first run
    already closed the imported tickets and mailed their customers)."""
    make_desk(factory, "internal", [INTERNAL], "INT-{{nr}}", auto_reply=False)
    numbers = []
    for n in range(2):
        raw = crlf(
            f"From: ops@example.com\nTo: {INTERNAL}\nSubject: Sentinel {n}\nMessage-ID: <s{n}@x>\n\nhi\n"
        )
        result = deliver(factory, cfg, raw, INTERNAL, now=dt.datetime.now(dt.UTC))
        assert result.outcome == "created"
        numbers.append(result.ticket_number)
    with transaction(factory) as s:
        internal = s.scalars(select(Desk).where(Desk.name == "internal")).one()
        internal.auto_close_hours = 24
        s.add(
            EscalationRule(desk=internal, name="mark", in_status="open", after_hours=24, set_priority="high")
        )
    return numbers[0], numbers[1]


def arm(factory: Factory, closing: str, marking: str) -> None:
    """Both sentinels due again, as of now."""
    long_ago = utcnow() - 25 * HOUR
    with transaction(factory) as s:
        s.execute(
            update(Ticket)
            .where(Ticket.number == closing)
            .values(status="waiting", updated_at=long_ago, status_changed_at=long_ago)
        )
        marked = s.scalars(select(Ticket).where(Ticket.number == marking)).one()
        s.execute(delete(EscalationFired).where(EscalationFired.ticket_id == marked.id))
        s.execute(
            update(Ticket)
            .where(Ticket.id == marked.id)
            .values(status="open", priority="normal", updated_at=long_ago, status_changed_at=long_ago)
        )


def handled(factory: Factory, closing: str, marking: str) -> bool:
    with factory() as s:
        found = dict(
            s.execute(
                select(Ticket.number, Ticket.status + "/" + Ticket.priority).where(
                    Ticket.number.in_([closing, marking])
                )
            ).all()
        )
    return found[closing].startswith("closed/") and found[marking] == "open/high"


@pytest.mark.usefixtures("desk")
def test_maild_serve_sends_nothing_for_an_imported_backlog(
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    cfg: Config,
    config_file: Path,
    session_factory: Factory,
    start: Any,
) -> None:
    closing, marking = sentinels(session_factory, cfg)
    extra = "[scheduler]\noutbox_seconds = 0.2\nauto_close_seconds = 0.2\nescalation_seconds = 0.2"
    listen = {"smtp": f"127.0.0.1:{free_port()}"}
    serve = start(write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen, extra=extra))

    summary = import_backlog(config_file, write_mbox(tmp_path / "old.mbox", backlog()))
    # Three rounds: the run that handles the sentinels of the first may have begun during the import;
    # those of the second and third began after it.
    for _ in range(3):
        arm(session_factory, closing, marking)
        wait_until(lambda: handled(session_factory, closing, marking), what="a run of each job")
    assert sent_mails(data_dir) == []  # the outgoing Maildir: no `Closed:` mail, no reminder
    assert outbox_templates(session_factory) == []
    assert {k: v for k, v in statuses(session_factory).items() if k.startswith("SUP-")} == EXPECTED
    assert summary["tickets_by_status"] == {"open": 1, "waiting": 2}

    # The same daemon does close what the admin hands to automation.
    import_backlog(
        config_file, write_mbox(tmp_path / "more.mbox", backlog("-b", T0 + 60 * DAY)), "--automate"
    )

    def closing_mails() -> list[str]:
        return sorted(str(m["To"]) for m in sent_mails(data_dir) if "] Closed:" in str(m["Subject"]))

    wait_until(lambda: len(closing_mails()) == 2, what="the closing mails of the --automate import")
    assert closing_mails() == ["Alice Example <alice@customer.example>", "Dave Doe <dave@doe.example>"]
    assert all(statuses(session_factory)[number] == status for number, status in EXPECTED.items())
    assert serve.stop() == 0
