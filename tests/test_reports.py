"""maildctl report: opened/closed, first-response and resolution times per desk and agent, backlog, time
spent — over tickets made through the real pipeline at known times."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.models import Desk
from maild.tickets.reports import build_report, percentile
from tests.conftest import run_cli
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
)

Factory = sessionmaker[Session]
ANNA, BOB = "anna@example.com", "bob@example.com"


def at(minutes: float) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


def naive(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=None)


def answer(factory: Factory, cfg: Config, number: str, agent: str, body: str, minutes: float) -> None:
    raw = mail(
        sender=f"Agent <{agent}>",
        subject=f"Re: [{number}] question",
        body=body,
        message_id=f"<{agent}-{number}-{minutes}@example.com>",
    )
    result = deliver(factory, cfg, raw, agent_address(factory, cfg, number, agent), now=at(minutes))
    assert result.outcome == "replied", result.reason


@pytest.fixture
def helpdesk(session_factory: Factory, cfg: Config) -> None:
    """support: SUP-26-03-1 answered and closed by Anna after 30 min; SUP-26-03-2 answered by Bob after
    120 min with 45 min logged; SUP-26-03-3 unanswered. sales: SALES-1 unanswered."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    make_agent(session_factory, BOB, "Bob", ["support"])
    for i, (to, when) in enumerate([(SUPPORT, 0), (SUPPORT, 1), (SUPPORT, 2), (SALES, 3)]):
        raw = mail(message_id=f"<c{i}@customer.example>", subject="question", to=to)
        assert deliver(session_factory, cfg, raw, to, now=at(when)).outcome == "created"
    answer(session_factory, cfg, "SUP-26-03-1", ANNA, "#assign anna\n#close\n\nDone.\n", 30)
    answer(session_factory, cfg, "SUP-26-03-2", BOB, "#time 45m\n\nLooking into it.\n", 121)


def desk_row(report: dict, name: str) -> dict:
    [row] = [d for d in report["desks"] if d["desk"] == name]
    return row


def agent_row(report: dict, email: str) -> dict:
    [row] = [a for a in report["agents"] if a["agent"] == email]
    return row


@pytest.mark.usefixtures("helpdesk")
def test_all_time_per_desk_and_agent(session_factory: Factory) -> None:
    with session_factory() as s:
        report = build_report(s, desk=None, since=None, now=naive(at(24 * 60)))
    support = desk_row(report, "support")
    assert (support["opened"], support["closed"]) == (3, 1)
    assert support["first_response"] == {"count": 2, "median_minutes": 75.0, "p90_minutes": 120.0}
    assert support["resolution"] == {"count": 1, "median_minutes": 30.0, "p90_minutes": 30.0}
    assert support["backlog"] == {"closed": 1, "open": 1, "waiting": 1}
    assert support["time_spent_minutes"] == 45
    sales = desk_row(report, "sales")
    assert (sales["opened"], sales["closed"], sales["backlog"]) == (1, 0, {"open": 1})
    assert sales["first_response"] == {"count": 0, "median_minutes": None, "p90_minutes": None}
    anna, bob = agent_row(report, ANNA), agent_row(report, BOB)
    assert anna["first_responses"]["median_minutes"] == 30.0 and anna["resolutions"]["count"] == 1
    assert bob["first_responses"]["median_minutes"] == 120.0 and bob["resolutions"]["count"] == 0
    assert (anna["time_spent_minutes"], bob["time_spent_minutes"]) == (0, 45)


@pytest.mark.usefixtures("helpdesk")
def test_the_window_and_the_desk_filter(session_factory: Factory) -> None:
    with session_factory() as s:
        support_desk = s.scalars(select(Desk).where(Desk.name == "support")).one()
        report = build_report(s, desk=support_desk, since=naive(at(1.5)), now=naive(at(24 * 60)))
    assert [d["desk"] for d in report["desks"]] == ["support"]
    support = report["desks"][0]
    # only SUP-26-03-3 was opened in the window; SUP-26-03-1's close (at +30 min) was in it
    assert (support["opened"], support["closed"]) == (1, 1)
    assert support["first_response"]["count"] == 0
    assert support["backlog"] == {"closed": 1, "open": 1, "waiting": 1}  # the backlog ignores the window
    assert support["time_spent_minutes"] == 45  # logged at +121 min
    with session_factory() as s:
        before = build_report(s, desk=None, since=None, now=naive(at(60)))
    assert desk_row(before, "support")["time_spent_minutes"] == 0  # not yet logged at +60 min


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5, 1, 3, 2, 4], 0.9) == 5
    assert percentile(range(1, 11), 0.9) == 9
    assert percentile([7], 0.9) == 7


@pytest.mark.usefixtures("helpdesk")
def test_the_command(config_file: Path) -> None:
    proc = run_cli("maildctl", "report", "--json", config=config_file, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert desk_row(report, "support")["opened"] == 3
    text = run_cli("maildctl", "report", "--desk", "support", config=config_file)
    assert text.returncode == 0, text.stderr
    assert "1.2h / 2.0h (n=2)" in text.stdout  # first response median 75 min, p90 120 min
    assert "closed 1, open 1, waiting 1" in text.stdout
    assert "sales" not in text.stdout
    for args, words in (
        (["--desk", "nope"], "no desk 'nope' (desks: sales, support)"),
        (["--since", "last week"], "--since 'last week' is not a date"),
    ):
        bad = run_cli("maildctl", "report", *args, config=config_file)
        assert bad.returncode == 1 and bad.stdout == ""
        [line] = bad.stderr.strip().splitlines()
        assert line.startswith(f"maildctl: {words}")
    assert run_cli("maildctl", "report", "--help", config=config_file).returncode == 0
