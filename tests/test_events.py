"""The ticket events the flush hook collects (maild.storage.events) and who hands them to the rules and the
webhooks (maild.tickets.automation.after_changes): the pipeline's automation stage and maildctl's commit.
`run_rules` is replaced by a recorder: what reaches it is what the rules and the webhooks see."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.pipeline.context import IMPORT_INGRESS
from maild.pipeline.runner import process
from maild.storage.db import transaction
from maild.storage.events import TicketEvent, discard_pending, emit, take_pending
from maild.storage.models import Message
from maild.storage.spool import record_received, write_raw
from maild.tickets import rules_engine
from maild.tickets.autoclose import auto_close
from maild.tickets.automation import after_changes
from tests.conftest import run_cli
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_desk, ticket

Seen = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    recorded: Seen = []

    def record(session: Session, cfg: Config, events: Sequence[TicketEvent], now: dt.datetime) -> None:
        recorded.extend((e.kind, dict(e.data)) for e in events)

    monkeypatch.setattr(rules_engine, "run_rules", record)
    return recorded


def test_a_new_mail_gives_ticket_created_and_message_received(
    session_factory: sessionmaker[Session], cfg: Config, seen: Seen
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    deliver(session_factory, cfg, mail())
    with session_factory() as session:
        first = ticket(session, "SUP-26-03-1").messages[0]
    assert seen == [
        ("ticket.created", {}),
        ("message.received", {"message_id": first.id, "kind": "customer"}),
    ]


def test_a_cli_status_change_reaches_the_rules_with_before_and_after(
    session_factory: sessionmaker[Session],
    cfg: Config,
    config_file: Path,
    seen: Seen,
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    deliver(session_factory, cfg, mail())
    seen.clear()
    result = run_cli("maildctl", "ticket", "status", "SUP-26-03-1", "waiting", config=config_file)
    assert result.returncode == 0, result.stderr
    assert seen == [("status.changed", {"before": "open", "after": "waiting"})]
    # a command that fails changes nothing and announces nothing
    result = run_cli("maildctl", "ticket", "status", "SUP-26-03-1", "no-such-status", config=config_file)
    assert result.returncode != 0
    assert seen == [("status.changed", {"before": "open", "after": "waiting"})]


def test_events_are_taken_once_and_rolled_back_ones_are_discarded(
    session_factory: sessionmaker[Session], cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    deliver(session_factory, cfg, mail())
    with transaction(session_factory) as session:
        t = ticket(session, "SUP-26-03-1")
        t.priority = "high"
        emit(session, "message.sent", t.id, t.desk_id, outbox_id=7)
        taken = take_pending(session)
        assert [(e.kind, dict(e.data)) for e in taken] == [
            ("message.sent", {"outbox_id": 7}),
            ("priority.changed", {"before": "normal", "after": "high"}),
        ]
        assert take_pending(session) == []
        with session.begin_nested():  # a released savepoint's events are the transaction's
            t.priority = "urgent"
        assert [e.kind for e in take_pending(session)] == ["priority.changed"]
        with session.begin_nested() as savepoint:
            t.status = "closed"
            session.flush()
            savepoint.rollback()
        discard_pending(session)  # the runner's part, for a mail rolled back
        assert after_changes(session, cfg, dt.datetime.now(dt.UTC)) == []


def test_a_note_and_a_merge_are_events(session_factory: sessionmaker[Session], cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    deliver(session_factory, cfg, mail())
    deliver(session_factory, cfg, mail(message_id="<second@customer.example>", subject="Another"))
    with transaction(session_factory) as session:
        first, second = ticket(session, "SUP-26-03-1"), ticket(session, "SUP-26-03-2")
        session.add(Message(ticket=first, desk_id=first.desk_id, kind="note", message_id="<n@x>", text="hi"))
        second.merged_into_id = first.id
        kinds = [(e.kind, e.ticket_id) for e in take_pending(session)]
    assert ("note.added", first.id) in kinds
    assert ("ticket.merged", second.id) in kinds


def test_the_auto_close_job_hands_its_close_to_the_rules(
    session_factory: sessionmaker[Session], cfg: Config, seen: Seen
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    deliver(session_factory, cfg, mail())
    with transaction(session_factory) as session:
        t = ticket(session, "SUP-26-03-1")
        t.desk.auto_close_hours = 1
        t.status, t.updated_at = "waiting", dt.datetime(2026, 3, 7)
    seen.clear()
    assert auto_close(session_factory, cfg, dt.datetime(2026, 3, 8)).closed == ["SUP-26-03-1"]
    assert ("status.changed", {"before": "waiting", "after": "closed"}) in seen


def test_an_imported_mail_is_history_for_the_rules_and_webhooks(
    session_factory: sessionmaker[Session], cfg: Config, seen: Seen
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    raw = mail()
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(session_factory) as session:
        spool_id = record_received(session, digest, len(raw), SUPPORT, IMPORT_INGRESS).id
    assert process(session_factory, cfg, spool_id, NOW).outcome == "created"
    assert seen == []
