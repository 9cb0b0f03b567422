"""The runner around the stages: one transaction per message (a failing stage leaves nothing behind), a
retry count on the spool row, quarantine after MAX_ATTEMPTS, and the per-stage trace."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild import pipeline
from maild.config import Config
from maild.pipeline import runner
from maild.pipeline.context import Context, Stop
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    deliver,
    mail,
    make_desk,
    messages,
    outbox,
    spool,
    tickets,
)

Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


@pytest.fixture
def broken_notify(monkeypatch: pytest.MonkeyPatch) -> None:
    """notify raises after apply has changed the ticket, as a bug there would."""

    def explode(ctx: Context) -> Stop | None:
        raise RuntimeError("boom in notify")

    stages = tuple((name, explode if name == "notify" else stage) for name, stage in pipeline.STAGES)
    monkeypatch.setattr(runner, "STAGES", stages)


def test_stage_order_is_the_documented_one() -> None:
    # hygiene first (a bounce has no desk address); route before dedupe: identity is per desk, so a
    # cross-posted mail is new for each desk.
    assert [name for name, _ in pipeline.STAGES] == [
        "parse",
        "loop",
        "bounce",
        "spam",
        "blocked",
        "autoreply",
        "route",
        "dedupe",
        "agent_mail",
        "identify",
        "thread",
        "policy",
        "commands",
        "apply",
        "automation",
        "notify",
    ]


def test_a_failing_stage_rolls_back_and_is_retried_then_quarantined(
    broken_notify: None, session_factory: Factory, cfg: Config
) -> None:
    raw = mail()
    first = deliver(session_factory, cfg, raw, SUPPORT)
    assert first.outcome == "failed"
    assert "RuntimeError: boom in notify" in first.reason
    with session_factory() as s:
        # Nothing of the failed attempt is kept: no ticket, no message, no number used.
        assert tickets(s) == [] and messages(s) == [] and outbox(s) == []
        [entry] = spool(s)
        assert (entry.state, entry.attempts) == ("received", 1)

    # The MTA retries the same bytes: the pending row is reused, not duplicated.
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "failed"
    third = deliver(session_factory, cfg, raw, SUPPORT)
    assert third.outcome == "quarantined"
    assert "boom in notify" in third.reason
    with session_factory() as s:
        [entry] = spool(s)
        assert (entry.state, entry.outcome, entry.attempts) == ("done", "quarantined", runner.MAX_ATTEMPTS)
        assert entry.processed_at == NOW.replace(tzinfo=None)
        assert tickets(s) == []


def test_after_the_bug_is_fixed_a_retry_goes_through(
    monkeypatch: pytest.MonkeyPatch, broken_notify: None, session_factory: Factory, cfg: Config
) -> None:
    raw = mail()
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "failed"
    monkeypatch.setattr(runner, "STAGES", pipeline.STAGES)
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("created", "SUP-26-03-1")
    with session_factory() as s:
        [entry] = spool(s)
        assert (entry.state, entry.outcome, entry.attempts) == ("done", "created", 2)


def test_trace_records_every_stage_and_where_it_stopped(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as s:
        created, duplicate = spool(s)
        assert [e["stage"] for e in created.trace] == [name for name, _ in pipeline.STAGES]
        assert not any("stop" in e for e in created.trace)
        assert duplicate.trace[-1] == {
            "stage": "dedupe",
            "ms": duplicate.trace[-1]["ms"],
            "stop": "duplicate",
        }
        assert all(isinstance(e["ms"], float | int) and e["ms"] >= 0 for e in created.trace)
