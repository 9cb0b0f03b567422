"""`maildctl spool show|release|delete`: what came in and why it was stopped, a release that says what
became of the mail (processed now, or by the running daemon; created, or quarantined again; failed and
left for maild serve), and the audited removal of mail that waits for a person (quarantined, held)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.admin_cli.main import main as maildctl
from maild.config import Config
from maild.pipeline import runner
from maild.storage.db import transaction
from maild.storage.files import content_path
from maild.storage.models import AuditLog, Message, SpoolEntry
from tests.cli import ctl, ok, one_line_error
from tests.conftest import run_cli
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, crlf, deliver, mail, make_desk, spool, tickets

Factory = sessionmaker[Session]
ADMIN = {"LOGNAME": "carol-admin"}  # who() of the maildctl subprocess: the audit's actor


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def spam(message_id: str = "<spam@customer.example>") -> bytes:
    """A customer's mail an upstream filter called spam; its subject an RFC 2047 encoded word."""
    return mail(
        subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        message_id=message_id,
        extra=[("Received", "from mx.example.com by mx.example.com"), ("X-Spam-Flag", "YES")],
    )


def quarantined(factory: Factory, cfg: Config, raw: bytes) -> SpoolEntry:
    assert deliver(factory, cfg, raw, SUPPORT).outcome == "quarantined"
    with factory() as s:
        entry = spool(s)[-1]
        s.expunge(entry)
    return entry


def raw_path(cfg: Config, entry: SpoolEntry) -> Path:
    return content_path(cfg.spool_dir, entry.sha256, ".eml")


def in_process(config_file: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """maildctl in this process, for what a subprocess cannot be made to meet (a failure, a race)."""
    code = maildctl(["--config", str(config_file), *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- spool show -------------------------------------------------------------------------------------


def test_show_gives_state_reason_trace_and_the_headers(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    entry = quarantined(session_factory, cfg, spam())

    out = ok(ctl(config_file, "spool", "show", str(entry.id)))

    lines = out.splitlines()
    assert lines[0] == f"spool entry {entry.id}: done, outcome quarantined"
    assert "reason: spam: X-Spam-Flag: YES" in lines
    assert "ticket: -" in lines
    assert f"recipient: {SUPPORT}, envelope sender: -" in lines
    assert "message-id: <spam@customer.example>" in lines
    assert "trace: parse → loop → bounce → spam (stop: quarantined)" in lines
    assert f"raw mail: {raw_path(cfg, entry)}" in lines
    # The headers as they arrived, in their order, encoded words decoded.
    assert lines[lines.index("") + 1 :][:3] == [
        "Received: from mx.example.com by mx.example.com",
        "X-Spam-Flag: YES",
        "From: Alice Example <alice@customer.example>",
    ]
    assert "Subject: Grüße" in lines

    data = json.loads(ok(ctl(config_file, "spool", "show", str(entry.id), "--json")))
    assert (data["state"], data["outcome"], data["reason"], data["ticket"]) == (
        "done",
        "quarantined",
        "spam: X-Spam-Flag: YES",
        None,
    )
    assert [name for name, _ in data["headers"]][:3] == ["Received", "X-Spam-Flag", "From"]
    assert data["trace"][-1]["stop"] == "quarantined" and data["size"] == len(spam())

    assert ok(ctl(config_file, "spool", "show", str(entry.id), "--raw")) == spam().decode()


def test_show_of_no_row_or_of_a_missing_raw_mail(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    assert one_line_error(ctl(config_file, "spool", "show", "999")) == (
        "maildctl: no spool entry with id 999: see 'maildctl spool list'"
    )
    entry = quarantined(session_factory, cfg, spam())
    raw_path(cfg, entry).unlink()
    assert "raw mail: its raw mail is missing from the spool" in ok(
        ctl(config_file, "spool", "show", str(entry.id))
    )
    assert one_line_error(ctl(config_file, "spool", "show", str(entry.id), "--raw")) == (
        f"maildctl: spool entry {entry.id}: its raw mail is missing from the spool"
    )


# --- spool release ----------------------------------------------------------------------------------


def test_release_says_it_processed_the_mail_now_and_what_became_of_it(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    entry = quarantined(session_factory, cfg, spam())

    out = ok(
        run_cli("maildctl", "spool", "release", str(entry.id), config=config_file, env=ADMIN, subprocess=True)
    )

    with session_factory() as s:
        [ticket] = tickets(s)
        [audit] = s.scalars(select(AuditLog).where(AuditLog.action == "spool_release"))
    assert out == (
        f"released {entry.id} and processed now: created {ticket.number}; "
        "its mail: 1 sent, 0 deferred, 0 failed\n"
    )
    assert audit.actor == "carol-admin"


def test_release_of_mail_that_is_quarantined_again_does_not_say_released(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    # No sender at all: the bounce stage quarantines it, and a release does not change that.
    raw = crlf("To: support@example.com\nSubject: ?\nMessage-ID: <nobody@example.net>\n\nhello\n")
    entry = quarantined(session_factory, cfg, raw)

    line = one_line_error(ctl(config_file, "spool", "release", str(entry.id)))

    assert line == (
        f"maildctl: released {entry.id} and processed now, but it is quarantined again: "
        "no sender address in From or Sender"
    )
    with session_factory() as s:
        [row] = spool(s)
        assert (row.state, row.outcome, row.released) == ("done", "quarantined", True)


def test_a_release_whose_processing_fails_says_it_stays_queued(
    session_factory: Factory,
    cfg: Config,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = quarantined(session_factory, cfg, spam())

    def failing(
        factory: Factory, cfg: Config, spool_id: int, now: dt.datetime | None = None
    ) -> runner.Result:
        return runner._record_failure(factory, spool_id, RuntimeError("boom"), now or dt.datetime.now(dt.UTC))

    monkeypatch.setattr(runner, "process", failing)
    code, out, err = in_process(config_file, capsys, "spool", "release", str(entry.id))

    assert (code, out) == (1, "")
    assert err == (
        f"maildctl: released {entry.id}, but processing it failed (attempt 1 of 3: processing failed: "
        "RuntimeError: boom); it stays queued for reprocessing: no maild serve is running; it processes "
        "the row when it starts\n"
    )
    with session_factory() as s:
        [row] = spool(s)
        assert (row.state, row.attempts, row.released) == ("received", 1, True)


def test_a_release_the_daemon_processed_first_says_so(
    session_factory: Factory,
    cfg: Config,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = quarantined(session_factory, cfg, spam())
    real = runner.process

    def daemon_first(factory: Factory, cfg: Config, spool_id: int, now: dt.datetime | None = None) -> Any:
        # The running daemon's recovery sweep takes the 'received' row a moment before maildctl does.
        real(factory, cfg, spool_id, (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=1))
        return real(factory, cfg, spool_id, now)

    monkeypatch.setattr(runner, "process", daemon_first)
    code, out, _ = in_process(config_file, capsys, "spool", "release", str(entry.id))

    assert code == 0
    assert out.startswith(f"released {entry.id} and processed by the running maild serve: created SUP-")


def test_release_of_a_row_whose_raw_mail_is_gone_is_refused(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    entry = quarantined(session_factory, cfg, spam())
    raw_path(cfg, entry).unlink()
    assert one_line_error(ctl(config_file, "spool", "release", str(entry.id))) == (
        f"maildctl: spool entry {entry.id} cannot be released: its raw mail is missing from the spool"
    )
    with session_factory() as s:
        [row] = spool(s)
        assert (row.state, row.outcome, row.released) == ("done", "quarantined", False)


# --- spool delete -----------------------------------------------------------------------------------


def test_delete_removes_a_quarantined_row_and_its_raw_mail_audited(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    entry = quarantined(session_factory, cfg, spam())
    size = raw_path(cfg, entry).stat().st_size

    out = ok(run_cli("maildctl", "spool", "delete", str(entry.id), config=config_file, env=ADMIN))

    assert out == f"deleted spool entry {entry.id} (quarantined) and its raw mail ({size} bytes)\n"
    assert not raw_path(cfg, entry).exists()
    with session_factory() as s:
        assert spool(s) == []
        [audit] = s.scalars(select(AuditLog).where(AuditLog.action == "spool_delete"))
    assert audit.actor == "carol-admin"
    assert (audit.detail["id"], audit.detail["outcome"], audit.detail["reason"]) == (
        entry.id,
        "quarantined",
        "spam: X-Spam-Flag: YES",
    )
    assert audit.detail["message_id"] == "<spam@customer.example>"


def test_delete_refuses_mail_that_waits_for_nobody(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    assert deliver(session_factory, cfg, mail(), SUPPORT).outcome == "created"
    with session_factory() as s:
        [entry] = spool(s)
    assert one_line_error(ctl(config_file, "spool", "delete", str(entry.id))) == (
        f"maildctl: spool entry {entry.id} is created: only quarantined or held mail is deleted "
        "(quarantined or held)"
    )
    assert "no spool entry with id 999" in one_line_error(ctl(config_file, "spool", "delete", "999"))
    with session_factory() as s:
        assert len(spool(s)) == 1
        assert s.scalars(select(AuditLog).where(AuditLog.action == "spool_delete")).all() == []
    assert raw_path(cfg, entry).exists()


def test_delete_keeps_raw_mail_another_row_still_names(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    first = quarantined(session_factory, cfg, spam())
    second = quarantined(session_factory, cfg, spam())  # delivered again: a second row, the same bytes
    assert first.sha256 == second.sha256 and first.id != second.id

    out = ok(ctl(config_file, "spool", "delete", str(first.id)))

    assert out == (
        f"deleted spool entry {first.id} (quarantined); "
        f"its raw mail stays: spool {second.id} has the same bytes\n"
    )
    assert raw_path(cfg, second).exists()
    assert "raw mail: /" in ok(ctl(config_file, "spool", "show", str(second.id)))


def test_delete_of_a_held_mail_keeps_its_message_on_the_ticket(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    # A held reply (`#send` collision) is a message on its ticket too: it stays, only the raw mail goes.
    result = deliver(session_factory, cfg, mail(), SUPPORT)
    with transaction(session_factory) as s:
        [entry] = spool(s)
        s.execute(update(SpoolEntry).where(SpoolEntry.id == entry.id).values(outcome="held"))
        [message] = s.scalars(select(Message).where(Message.spool_id == entry.id))
        message_id = message.id

    out = ok(ctl(config_file, "spool", "delete", str(entry.id)))

    assert out.startswith(f"deleted spool entry {entry.id} (held) and its raw mail (")
    assert out.endswith(f"; message {message_id} on {result.ticket_number} stays\n")
    with session_factory() as s:
        assert spool(s) == []
        kept = s.get(Message, message_id)
        assert kept is not None and kept.spool_id is None
