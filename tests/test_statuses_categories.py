"""Custom statuses and categories per desk (issue 7): `maildctl status …` and `maildctl category …` as a
real subprocess, and what they change end to end through the pipeline (tests/pipeline/helpers.deliver):
who gets a categorised ticket's notices, `#status CUSTOM` from an agent's reply, and auto-close from a
custom status."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.pipeline.runner import Result
from maild.storage.db import transaction
from maild.storage.models import Agent, AuditLog, Category, DeskStatus, OutboxMessage, Ticket
from maild.tickets import ticket_ops
from maild.tickets.autoclose import auto_close
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import (
    NOW,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    deliver,
    mail,
    make_agent,
    make_desk,
    ticket,
)

Factory = sessionmaker[Session]
ANNA, BOB, CAROL, DAVE = "anna@example.com", "bob@example.com", "carol@example.com", "dave@example.com"
T1, T2 = "SUP-26-03-1", "SUP-26-03-2"
SALES_1 = "SALES-1"
HOUR = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    """Desk support (agents Anna, Bob, Carol) and desk sales (agent Dave)."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    for email, name in ((ANNA, "Anna"), (BOB, "Bob"), (CAROL, "Carol")):
        make_agent(session_factory, email, name, ["support"])
    make_agent(session_factory, DAVE, "Dave", ["sales"])


def open_ticket(factory: Factory, cfg: Config, n: int, to: str = SUPPORT) -> str:
    raw = mail(to=to, subject=f"problem {n}", message_id=f"<t{n}@customer.example>")
    result = deliver(factory, cfg, raw, to)
    assert result.outcome == "created", result.reason
    assert result.ticket_number is not None
    return result.ticket_number


def customer_reply(factory: Factory, cfg: Config, number: str, n: int) -> Result:
    raw = mail(subject=f"Re: [{number}] problem", message_id=f"<r{n}@customer.example>", body=f"Reply {n}.\n")
    result = deliver(factory, cfg, raw, SUPPORT, now=NOW + n * HOUR)
    assert (result.outcome, result.ticket_number) == ("replied", number), result.reason
    return result


def agent_reply(factory: Factory, cfg: Config, number: str, agent: str, body: str, n: int) -> Result:
    """`agent` answers the ticket's new_ticket_notice from their mail client, to their own reply address."""
    with factory() as s:
        notice = s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.template == "new_ticket_notice")
            .order_by(OutboxMessage.id)
        ).all()
        in_reply_to = next(r.message_id for r in notice if agent in r.rcpt_to and f"[{number}]" in subject(r))
    raw = mail(
        sender=f"Agent <{agent}>",
        subject=f"Re: [{number}] problem",
        body=body,
        message_id=f"<agent{n}@example.com>",
        extra=[("In-Reply-To", in_reply_to), ("References", in_reply_to)],
    )
    return deliver(factory, cfg, raw, agent_address(factory, cfg, number, agent), now=NOW + n * HOUR)


def subject(row: OutboxMessage) -> str:
    return str(message_from_bytes(row.raw, policy=policy.default)["Subject"])


def sent(factory: Factory, result: Result, template: str) -> list[list[str]]:
    """The recipients of each `template` mail this delivery queued."""
    with factory() as s:
        rows = [s.get(OutboxMessage, i) for i in result.outbox_ids]
        return [r.rcpt_to for r in rows if r is not None and r.template == template]


def status_of(factory: Factory, number: str) -> str:
    with factory() as s:
        return ticket(s, number).status


def audits(factory: Factory, action: str) -> list[AuditLog]:
    with factory() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc))


# --- maildctl status --------------------------------------------------------------------------------


def test_status_add_normalises_the_name_and_list_shows_builtins_then_each_desks_own(
    session_factory: Factory, config_file: Path
) -> None:
    out = ok(ctl(config_file, "status", "add", "support", "On Vacation", "--description", "customer away"))
    assert out == "status on_vacation added to desk support\n"
    ok(ctl(config_file, "status", "add", "sales", "quote-sent", subprocess=True))
    ok(ctl(config_file, "status", "add", "support", "waiting_on_vendor"))

    every = as_json(ctl(config_file, "status", "list", "--json"))
    assert [(e["name"], e["desk"], e["builtin"]) for e in every] == [
        ("open", None, True),
        ("in_progress", None, True),
        ("waiting", None, True),
        ("on_hold", None, True),
        ("resolved", None, True),
        ("closed", None, True),
        ("quote_sent", "sales", False),  # desks by name, each desk's in the order added
        ("on_vacation", "support", False),
        ("waiting_on_vendor", "support", False),
    ]
    assert every[7]["description"] == "customer away"
    only_sales = as_json(ctl(config_file, "status", "list", "--desk", "sales", "--json"))
    assert [e["name"] for e in only_sales if not e["builtin"]] == ["quote_sent"]
    table = ok(ctl(config_file, "status", "list")).splitlines()
    assert table[0].split() == ["STATUS", "DESK", "TICKETS", "DESCRIPTION"]
    assert table[1].split()[:3] == ["open", "(built-in)", "0"]
    assert table[-1].split()[:3] == ["waiting_on_vendor", "support", "0"]

    [first, *_] = audits(session_factory, "status_add")
    assert (first.ticket_id, first.detail) == (
        None,
        {"desk": "support", "name": "on_vacation", "description": "customer away"},
    )
    assert first.actor  # the admin's OS user


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["support", "Waiting"], "'waiting' is a built-in status already"),
        (["support", "on hold"], "'on_hold' is a built-in status already"),
        (["support", "vacation!"], "invalid status name 'vacation!': use 1-30 lower-case letters"),
        (["support", "x" * 31], "use 1-30 lower-case letters, digits and '_'"),
        (["support", "  "], "invalid status name"),
        (["nosuch", "vacation"], "no desk named 'nosuch': see 'maildctl desk list'"),
    ],
    ids=["builtin", "builtin-spaced", "character", "too-long", "empty", "unknown-desk"],
)
def test_status_add_refusals(
    args: list[str], complaint: str, session_factory: Factory, config_file: Path
) -> None:
    assert complaint in one_line_error(ctl(config_file, "status", "add", *args))
    with session_factory() as s:
        assert s.scalars(select(DeskStatus)).all() == []


def test_a_status_is_per_desk_and_added_once(session_factory: Factory, config_file: Path) -> None:
    ok(ctl(config_file, "status", "add", "support", "vacation"))
    line = one_line_error(ctl(config_file, "status", "add", "support", "Vacation"))
    assert "desk support has a status 'vacation' already" in line
    ok(ctl(config_file, "status", "add", "sales", "vacation"))  # another desk may have its own
    with session_factory() as s:
        assert len(s.scalars(select(DeskStatus)).all()) == 2
    assert "x" * 30 in ok(ctl(config_file, "status", "add", "sales", "x" * 30))


def test_status_remove_is_refused_while_tickets_have_it(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    ok(ctl(config_file, "status", "add", "support", "vacation"))
    ok(ctl(config_file, "status", "add", "sales", "vacation"))
    numbers = [open_ticket(session_factory, cfg, n) for n in (1, 2)]
    with transaction(session_factory) as s:
        s.execute(update(Ticket).values(status="vacation"))

    line = one_line_error(ctl(config_file, "status", "remove", "support", "vacation"))
    assert "2 tickets have status vacation on desk support" in line
    assert "'maildctl ticket status NUMBER open'" in line
    assert "'maildctl ticket list --desk support --status vacation'" in line
    # sales' vacation is used by no ticket (the two are support's)
    assert (
        ok(ctl(config_file, "status", "remove", "sales", "vacation"))
        == "status vacation removed from desk sales\n"
    )

    with transaction(session_factory) as s:
        ticket_ops.set_status(s, ticket(s, numbers[0]), "open", actor="test", now=NOW)
    assert "1 ticket has status vacation" in one_line_error(
        ctl(config_file, "status", "remove", "support", "vacation")
    )
    with transaction(session_factory) as s:
        ticket_ops.set_status(s, ticket(s, numbers[1]), "waiting", actor="test", now=NOW)
    ok(ctl(config_file, "status", "remove", "support", "Vacation"))
    with session_factory() as s:
        assert s.scalars(select(DeskStatus)).all() == []
    assert [a.detail["desk"] for a in audits(session_factory, "status_remove")] == ["sales", "support"]


def test_status_remove_refusals(config_file: Path) -> None:
    assert "'open' is a built-in status and cannot be removed" in one_line_error(
        ctl(config_file, "status", "remove", "support", "open")
    )
    assert "desk support has no custom status 'nope'" in one_line_error(
        ctl(config_file, "status", "remove", "support", "nope")
    )
    ok(ctl(config_file, "status", "add", "support", "vacation"))
    ok(ctl(config_file, "desk", "set", "support", "--auto-close-statuses", "waiting, Vacation"))
    line = one_line_error(ctl(config_file, "status", "remove", "support", "vacation"))
    assert "one of desk support's auto-close statuses" in line
    assert "'maildctl desk set support --auto-close-statuses waiting'" in line
    ok(ctl(config_file, "desk", "set", "support", "--auto-close-statuses", "waiting"))
    ok(ctl(config_file, "status", "remove", "support", "vacation"))


def test_auto_close_statuses_accept_the_desks_own_statuses_only(config_file: Path) -> None:
    ok(ctl(config_file, "status", "add", "support", "on vacation"))
    ok(ctl(config_file, "desk", "set", "support", "--auto-close-statuses", "resolved,On-Vacation"))
    shown = as_json(ctl(config_file, "desk", "show", "support", "--json"))
    assert shown["auto_close_statuses"] == ["resolved", "on_vacation"]
    line = one_line_error(ctl(config_file, "desk", "set", "sales", "--auto-close-statuses", "on_vacation"))
    assert "invalid --auto-close-statuses 'on_vacation'" in line and "maildctl status add" in line
    assert "invalid --auto-close-statuses" in one_line_error(
        ctl(config_file, "desk", "set", "support", "--auto-close-statuses", "on_vacation,closed")
    )
    shown = as_json(ctl(config_file, "desk", "show", "support", "--json"))
    assert shown["auto_close_statuses"] == ["resolved", "on_vacation"]


# --- maildctl category --------------------------------------------------------------------------------


def test_category_add_list_and_agents(session_factory: Factory, config_file: Path) -> None:
    out = ok(ctl(config_file, "category", "add", "support", "Billing", "--agent", "Carol@Example.com", ANNA))
    assert out == f"category Billing added to desk support (notices go to {ANNA}, {CAROL})\n"
    ok(ctl(config_file, "category", "add", "support", "Hardware", subprocess=True))
    ok(ctl(config_file, "category", "add", "sales", "Billing", "--agent", DAVE))

    listed = as_json(ctl(config_file, "category", "list", "--json"))
    assert [(c["desk"], c["name"], c["agents"]) for c in listed] == [
        ("sales", "Billing", [DAVE]),
        ("support", "Billing", [ANNA, CAROL]),
        ("support", "Hardware", []),
    ]
    assert [
        c["name"] for c in as_json(ctl(config_file, "category", "list", "--desk", "sales", "--json"))
    ] == ["Billing"]
    table = ok(ctl(config_file, "category", "list", "--desk", "support"))
    assert "(all desk agents)" in table and f"{ANNA}, {CAROL}" in table

    out = ok(ctl(config_file, "category", "agents", "support", "billing", "--add", BOB, "--remove", ANNA))
    assert out == f"category Billing of desk support: agents {BOB}, {CAROL}\n"
    with session_factory() as s:
        billing = s.scalars(select(Category).where(Category.desk_id == 1, Category.name == "Billing")).one()
        assert [a.email for a in billing.agents] == [BOB, CAROL]
    [change] = audits(session_factory, "category_agents")
    assert change.detail == {
        "desk": "support",
        "name": "Billing",
        "before": [ANNA, CAROL],
        "after": [BOB, CAROL],
    }
    assert [a.detail["name"] for a in audits(session_factory, "category_add")] == [
        "Billing",
        "Hardware",
        "Billing",
    ]


def test_category_refusals(session_factory: Factory, config_file: Path) -> None:
    ok(ctl(config_file, "category", "add", "support", "Billing", "--agent", ANNA))
    for args, complaint in (
        (["add", "support", "billing"], "desk support has a category 'Billing' already"),
        (["add", "support", "Sales", "--agent", DAVE], f"{DAVE} is not an agent of desk support"),
        (["add", "support", "Sales", "--agent", "eve@example.com"], "no agent eve@example.com"),
        (["add", "nosuch", "Sales"], "no desk named 'nosuch'"),
        (["add", "support", " "], "invalid category name"),
        (["agents", "support", "Billing", "--add", DAVE], f"{DAVE} is not an agent of desk support"),
        (["agents", "support", "Billing", "--remove", BOB], f"{BOB} is not an agent of category Billing"),
        (["agents", "support", "Billing"], "nothing to change"),
        (["agents", "sales", "Billing", "--add", DAVE], "desk sales has no category 'Billing'"),
        (["remove", "support", "Nope"], "desk support has no category 'Nope'"),
    ):
        assert complaint in one_line_error(ctl(config_file, "category", *args)), args
    with session_factory() as s:
        [billing] = s.scalars(select(Category)).all()
        assert [a.email for a in billing.agents] == [ANNA]


def test_category_assign_and_remove(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    t1, t2 = open_ticket(session_factory, cfg, 1), open_ticket(session_factory, cfg, 2)
    sales_ticket = open_ticket(session_factory, cfg, 3, to=SALES)
    ok(ctl(config_file, "category", "add", "support", "Billing"))
    ok(ctl(config_file, "category", "add", "support", "Hardware"))
    ok(ctl(config_file, "category", "add", "sales", "Quotes"))

    assert ok(ctl(config_file, "category", "assign", t1.lower(), "billing")) == f"{t1}: category Billing\n"
    ok(ctl(config_file, "category", "assign", t1, "Hardware"))
    ok(ctl(config_file, "category", "assign", t2, "Billing"))
    for args, complaint in (
        ([t1, "Quotes"], f"desk support of {t1} has no category 'Quotes' (desk sales has one)"),
        ([sales_ticket, "Billing"], f"desk sales of {sales_ticket} has no category 'Billing'"),
        (["SUP-99", "Billing"], "no ticket 'SUP-99'"),
        ([t1], "give either a category NAME or --none"),
        ([t1, "Billing", "--none"], "give either a category NAME or --none"),
    ):
        assert complaint in one_line_error(ctl(config_file, "category", "assign", *args)), args
    with session_factory() as s:
        assert (ticket(s, t1).category.name, ticket(s, t2).category.name) == ("Hardware", "Billing")
    assert [a.detail for a in audits(session_factory, "category")] == [
        {"before": None, "after": "Billing"},
        {"before": "Billing", "after": "Hardware"},
        {"before": None, "after": "Billing"},
    ]
    listed = as_json(ctl(config_file, "category", "list", "--desk", "support", "--json"))
    assert [(c["name"], c["tickets"]) for c in listed] == [("Billing", 1), ("Hardware", 1)]

    out = ok(ctl(config_file, "category", "remove", "support", "Billing"))
    assert out == "category Billing removed from desk support; 1 ticket(s) left without a category\n"
    assert ok(ctl(config_file, "category", "assign", t1, "--none")) == f"{t1}: category (none)\n"
    with session_factory() as s:
        assert (ticket(s, t1).category_id, ticket(s, t2).category_id) == (None, None)
        assert [c.name for c in s.scalars(select(Category).order_by(Category.id))] == ["Hardware", "Quotes"]
        t2_id = ticket(s, t2).id
    entries = audits(session_factory, "category")[3:]
    assert [(a.ticket_id, a.detail) for a in entries] == [
        (t2_id, {"before": "Billing", "after": None}),  # left without one by the removal
        (entries[1].ticket_id, {"before": "Hardware", "after": None}),
    ]
    [removal] = audits(session_factory, "category_remove")
    assert removal.detail == {"desk": "support", "name": "Billing", "agents": [], "tickets": [t2]}


def test_help_of_every_command(config_file: Path) -> None:
    for command in (
        ["status", "add"],
        ["status", "list"],
        ["status", "remove"],
        ["category", "add"],
        ["category", "list"],
        ["category", "remove"],
        ["category", "agents"],
        ["category", "assign"],
    ):
        assert "usage: maildctl" in ok(ctl(config_file, *command, "--help"))


# --- end to end through the pipeline -----------------------------------------------------------------


def test_a_categorised_tickets_notices_go_to_its_active_agents_else_to_the_desk(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    ok(ctl(config_file, "category", "add", "support", "Billing", "--agent", CAROL))
    created = deliver(session_factory, cfg, mail(), SUPPORT)
    # a new ticket has no category yet: every desk agent hears of it
    assert sent(session_factory, created, "new_ticket_notice") == [[ANNA], [BOB], [CAROL]]
    number = created.ticket_number
    assert number == T1
    ok(ctl(config_file, "category", "assign", number, "Billing"))

    # an agent's reply is told to the category's agents (never to its writer), not to the whole desk
    answered = agent_reply(session_factory, cfg, number, ANNA, "We are on it.\n", 1)
    assert answered.outcome == "replied", answered.reason
    assert sent(session_factory, answered, "agent_reply_notice") == [[CAROL]]
    reply = customer_reply(session_factory, cfg, number, 2)
    assert sent(session_factory, reply, "customer_reply_notice") == [[CAROL]]

    # the category's only agent inactive: all active desk agents again
    with transaction(session_factory) as s:
        s.execute(update(Agent).where(Agent.email == CAROL).values(active=False))
    reply = customer_reply(session_factory, cfg, number, 3)
    assert sent(session_factory, reply, "customer_reply_notice") == [[ANNA], [BOB]]

    # an assigned agent wins over the category
    with transaction(session_factory) as s:
        s.execute(update(Agent).where(Agent.email == CAROL).values(active=True))
        t = ticket(s, number)
        ticket_ops.assign(
            s, t, s.scalars(select(Agent).where(Agent.email == BOB)).one(), actor="test", now=NOW
        )
    reply = customer_reply(session_factory, cfg, number, 4)
    assert sent(session_factory, reply, "customer_reply_notice") == [[BOB]]

    # category without agents, assignment taken away: the whole desk
    ok(ctl(config_file, "category", "agents", "support", "Billing", "--remove", CAROL))
    with transaction(session_factory) as s:
        ticket_ops.assign(s, ticket(s, number), None, actor="test", now=NOW)
    reply = customer_reply(session_factory, cfg, number, 5)
    assert sent(session_factory, reply, "customer_reply_notice") == [[ANNA], [BOB], [CAROL]]


def test_an_agent_sets_a_custom_status_by_mail_and_an_unknown_one_is_refused(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    ok(ctl(config_file, "status", "add", "support", "vacation"))
    ok(ctl(config_file, "status", "add", "sales", "quote_sent"))
    number = open_ticket(session_factory, cfg, 1)

    refused = agent_reply(session_factory, cfg, number, ANNA, "#status asleep\n\nText.\n", 1)
    assert refused.outcome == "refused"
    [errors] = sent(session_factory, refused, "command_errors")
    assert errors == [ANNA]
    # another desk's custom status is no status of this one
    refused = agent_reply(session_factory, cfg, number, ANNA, "#status quote_sent\n\nText.\n", 2)
    assert refused.outcome == "refused"
    assert status_of(session_factory, number) == "open"
    with session_factory() as s:
        [row] = s.scalars(select(OutboxMessage).where(OutboxMessage.id == refused.outbox_ids[0])).all()
        text = message_from_bytes(row.raw, policy=policy.default).get_body(("plain",)).get_content()
        assert "'quote_sent' is not one of" in text and "vacation" in text

    done = agent_reply(session_factory, cfg, number, ANNA, "#status Vacation\n\nBack in May.\n", 3)
    assert done.outcome == "replied"
    assert status_of(session_factory, number) == "vacation"  # wins over `waiting`, as a built-in does
    [change] = audits(session_factory, "status")
    assert (change.actor, change.detail) == (ANNA, {"before": "open", "after": "vacation"})
    # and removing it is now refused
    assert "1 ticket has status vacation" in one_line_error(
        ctl(config_file, "status", "remove", "support", "vacation")
    )


def test_auto_close_from_a_custom_status(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    ok(ctl(config_file, "status", "add", "support", "vacation"))
    ok(ctl(config_file, "status", "add", "support", "parked"))
    ok(
        ctl(
            config_file,
            "desk",
            "set",
            "support",
            "--auto-close-hours",
            "72",
            "--auto-close-statuses",
            "waiting,vacation",
        )
    )
    on_vacation, parked = open_ticket(session_factory, cfg, 1), open_ticket(session_factory, cfg, 2)
    assert (
        agent_reply(session_factory, cfg, on_vacation, ANNA, "#status vacation\n\nOK.\n", 1).outcome
        == "replied"
    )
    assert agent_reply(session_factory, cfg, parked, ANNA, "#status parked\n\nOK.\n", 2).outcome == "replied"
    set_at = (NOW + HOUR).replace(tzinfo=None)

    assert auto_close(session_factory, cfg, set_at + 71 * HOUR).closed == []
    result = auto_close(session_factory, cfg, set_at + 80 * HOUR)

    assert result.closed == [on_vacation]  # parked is no auto-close status
    assert (status_of(session_factory, on_vacation), status_of(session_factory, parked)) == (
        "closed",
        "parked",
    )
    [closing] = audits(session_factory, "auto_close")
    assert closing.detail["before"] == {"status": "vacation"}
    with session_factory() as s:
        [row] = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "auto_close")).all()
        assert row.rcpt_to == ["alice@customer.example"]
