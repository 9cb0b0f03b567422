"""A mail that takes longer than `[hygiene] max_processing_seconds` is quarantined with the reason, at
once and for good: it holds no worker and no write lock again (issue 14, point 1)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from maild import pipeline
from maild.config import Config, ConfigError, load_config
from maild.pipeline import runner
from maild.pipeline.context import Context, Stop
from tests.daemon import Factory
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_desk, outbox, spool, tickets


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def _with_budget(cfg: Config, seconds: float) -> Config:
    return dataclasses.replace(cfg, hygiene=dataclasses.replace(cfg.hygiene, max_processing_seconds=seconds))


class _Clock:
    """perf_counter for the runner: real time plus whatever a slow stage adds."""

    def __init__(self) -> None:
        self.extra = 0.0

    def perf_counter(self) -> float:
        return time.perf_counter() + self.extra


@pytest.fixture
def slow_thread_stage(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread stage takes 40 s of (simulated) time, as a pathological case would; the list counts
    its runs."""
    runs = [0]
    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    real = dict(pipeline.STAGES)["thread"]

    def slow(ctx: Context) -> Stop | None:
        runs[0] += 1
        clock.extra += 40.0
        return real(ctx)

    monkeypatch.setattr(
        runner, "STAGES", tuple((n, slow if n == "thread" else s) for n, s in pipeline.STAGES)
    )
    return runs


def test_default_budget_is_thirty_seconds(cfg: Config) -> None:
    assert cfg.hygiene.max_processing_seconds == 30.0


def test_a_mail_over_budget_in_parsing_is_quarantined_with_the_reason(
    session_factory: Factory, cfg: Config
) -> None:
    tight = _with_budget(cfg, 1e-9)  # any parse takes longer than a nanosecond
    result = deliver(session_factory, tight, mail(subject="Printer on fire"), SUPPORT)
    assert result.outcome == "quarantined"
    assert result.reason.startswith("processing budget exceeded:")
    assert "by the end of parsing" in result.reason
    assert "max_processing_seconds" in result.reason
    with session_factory() as s:
        assert tickets(s) == []
        [row] = spool(s)
        assert (row.state, row.outcome, row.attempts) == ("done", "quarantined", 1)


def test_a_stage_over_budget_rolls_back_and_is_not_retried(
    session_factory: Factory, cfg: Config, slow_thread_stage: list[int]
) -> None:
    raw = mail(subject="Printer on fire")
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "quarantined"
    assert "by the end of stage thread" in result.reason
    assert "limit [hygiene] max_processing_seconds = 30 s" in result.reason
    with session_factory() as s:  # rolled back: no ticket, no auto-reply queued
        assert tickets(s) == [] and outbox(s, agents=True) == []
    # The same bytes again (the sender resends the heavy mail): quarantined without being processed.
    again = deliver(session_factory, cfg, raw, SUPPORT)
    assert again.outcome == "quarantined"
    assert again.reason.startswith(result.reason)
    assert "not processed again" in again.reason
    assert slow_thread_stage == [1]  # the slow stage ran once, for the first delivery only
    with session_factory() as s:
        assert [(row.outcome, row.attempts) for row in spool(s)] == [("quarantined", 1)] * 2
        assert tickets(s) == []


def test_within_budget_the_mail_becomes_a_ticket(session_factory: Factory, cfg: Config) -> None:
    result = deliver(session_factory, _with_budget(cfg, 60), mail(subject="Printer on fire"), SUPPORT)
    assert result.outcome == "created"
    with session_factory() as s:
        assert len(tickets(s)) == 1


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_budget_that_is_not_positive_is_refused(config_file: Path, value: str) -> None:
    config_file.write_text(config_file.read_text() + f"\n[hygiene]\nmax_processing_seconds = {value}\n")
    with pytest.raises(ConfigError, match="max_processing_seconds"):
        load_config(str(config_file))


def test_a_released_copy_is_processed_though_an_earlier_copy_was_over_budget(
    session_factory: Factory, cfg: Config
) -> None:
    raw = mail(subject="Printer on fire")
    tight = _with_budget(cfg, 1e-9)
    assert deliver(session_factory, tight, raw, SUPPORT).outcome == "quarantined"
    again = deliver(session_factory, tight, raw, SUPPORT)
    assert "not processed again" in again.reason
    # The admin raises the budget and releases the second copy (as `maildctl spool release` does).
    with session_factory.begin() as s:
        second = spool(s)[-1]
        second.state, second.outcome, second.released = "received", None, True
        second_id = second.id
    assert runner.process(session_factory, cfg, second_id).outcome == "created"
    with session_factory() as s:
        assert len(tickets(s)) == 1
