"""maildctl agent away|back, presence in agent list, desk --when-nobody-present: what they change, that
it is audited, and a one-line refusal for each wrong input."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from maild.storage.db import transaction
from maild.storage.models import Agent, AuditLog, Desk
from tests.test_cli import (
    Ctl,
    as_json,
    ctl,  # noqa: F401  (fixture)
    ok,
    one_line_error,
    seed_agent,
    seed_desk,
)

ANNA, BOB = "anna@example.org", "bob@example.org"


def agents(ctl: Ctl) -> dict[str, dict[str, Any]]:  # noqa: F811
    return {a["email"]: a for a in as_json(ctl("agent", "list", "--json"))}


def setup(factory: Any) -> None:
    seed_desk(factory, "support", "SUP-{{nr}}", "support@example.com")
    seed_desk(factory, "berlin", "BER-{{nr}}", "berlin@example.com")
    with transaction(factory) as s:
        s.scalars(select(Desk).where(Desk.name == "berlin")).one().timezone = "Europe/Berlin"
    seed_agent(factory, ANNA, "Anna", "support")
    seed_agent(factory, BOB, "Bob", "berlin")
    seed_agent(factory, "anna2@example.org", "Anna", "berlin")


def test_away_back_and_list(ctl: Ctl, session_factory: Any) -> None:  # noqa: F811
    setup(session_factory)
    assert {k: agents(ctl)[ANNA][k] for k in ("present", "away_since", "away_until")} == {
        "present": True,
        "away_since": None,
        "away_until": None,
    }
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    out = ok(ctl("agent", "away", ANNA, "--until", until)).stdout
    assert out == f"agent {ANNA} is away until {until}T00:00:00Z\n"  # the support desk's zone: UTC
    shown = agents(ctl)[ANNA]
    assert (shown["present"], shown["away_until"]) == (False, f"{until}T00:00:00Z")
    assert shown["away_since"] is not None
    table = ok(ctl("agent", "list")).stdout
    assert "PRESENCE" in table.splitlines()[0]
    assert f"until {until}T00:00:00Z" in table
    # Bob's desk is in Berlin: a date is the start of that day there (23:00 UTC in winter, 22:00 in summer).
    ok(ctl("agent", "away", "Bob", "--until", "2099-01-15"))
    assert agents(ctl)[BOB]["away_until"] == "2099-01-14T23:00:00Z"
    ok(ctl("agent", "away", BOB, "--until", "2099-01-15T09:30+00:00"))
    assert agents(ctl)[BOB]["away_until"] == "2099-01-15T09:30:00Z"
    ok(ctl("agent", "away", BOB))  # open-ended
    assert (agents(ctl)[BOB]["present"], agents(ctl)[BOB]["away_until"]) == (False, None)
    assert "(until back)" in ok(ctl("agent", "list")).stdout
    assert ok(ctl("agent", "back", ANNA)).stdout == f"agent {ANNA} is present again\n"
    assert agents(ctl)[ANNA]["present"] is True
    assert ok(ctl("agent", "back", ANNA)).stdout == f"agent {ANNA} was not away: nothing changed\n"
    with session_factory() as s:
        rows = s.scalars(
            select(AuditLog).where(AuditLog.action.in_(("agent_away", "agent_back"))).order_by(AuditLog.id)
        ).all()
        assert [(r.action, r.detail["agent"]) for r in rows] == [
            ("agent_away", ANNA),
            ("agent_away", BOB),
            ("agent_away", BOB),
            ("agent_away", BOB),
            ("agent_back", ANNA),
            ("agent_back", ANNA),
        ]
        assert rows[0].detail["until"] == f"{until}T00:00:00Z"


def test_an_expired_away_shows_as_present(ctl: Ctl, session_factory: Any) -> None:  # noqa: F811
    setup(session_factory)
    with transaction(session_factory) as s:
        anna = s.scalars(select(Agent).where(Agent.email == ANNA)).one()
        anna.away_since, anna.away_until = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 5)
    shown = agents(ctl)[ANNA]
    assert (shown["present"], shown["away_since"], shown["away_until"]) == (True, None, None)
    assert ok(ctl("agent", "back", ANNA)).stdout == f"agent {ANNA} was not away: nothing changed\n"


def test_refusals(ctl: Ctl, session_factory: Any) -> None:  # noqa: F811
    setup(session_factory)
    assert "no agent 'nobody@example.org'" in one_line_error(ctl("agent", "away", "nobody@example.org"))
    assert "no agent 'Zed'" in one_line_error(ctl("agent", "back", "Zed"))
    assert "'Anna' names 2 agents" in one_line_error(ctl("agent", "away", "Anna"))
    assert "invalid --until 'next week'" in one_line_error(ctl("agent", "away", ANNA, "--until", "next week"))
    assert "invalid --until '2026-13-01'" in one_line_error(
        ctl("agent", "away", ANNA, "--until", "2026-13-01")
    )
    assert "--until '2020-01-01' has passed" in one_line_error(
        ctl("agent", "away", ANNA, "--until", "2020-01-01")
    )
    ok(ctl("agent", "set", BOB, "--inactive"))
    assert "is inactive" in one_line_error(ctl("agent", "away", BOB))
    assert agents(ctl)[ANNA]["present"] is True  # nothing changed by a refusal


def test_desk_when_nobody_present(ctl: Ctl, session_factory: Any) -> None:  # noqa: F811
    setup(session_factory)
    assert as_json(ctl("desk", "show", "support", "--json"))["when_nobody_present"] == "notify-all"
    ok(ctl("desk", "set", "support", "--when-nobody-present", "desk-unavailable"))
    assert as_json(ctl("desk", "show", "support", "--json"))["when_nobody_present"] == "desk-unavailable"
    ok(
        ctl(
            "desk",
            "add",
            "closed",
            "--address",
            "closed@example.com",
            "--pattern",
            "CL-{{nr}}",
            "--when-nobody-present",
            "desk-unavailable",
        )
    )
    assert as_json(ctl("desk", "show", "closed", "--json"))["when_nobody_present"] == "desk-unavailable"
    bad = ctl("desk", "set", "support", "--when-nobody-present", "close")
    assert bad.returncode == 2 and "invalid choice: 'close'" in bad.stderr and "Traceback" not in bad.stderr
    with session_factory() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "desk_set").order_by(AuditLog.id)).first()
        assert row is not None and "when_nobody_present" in str(row.detail)
