"""The spool's retention period (maild/tickets/retention.py, `maildctl spool purge`, the `spool_retention`
job of
`maild serve`): old raw mail leaves the disk, the rows, tickets, messages and attachments stay, and no byte
that a newer, unprocessed or held mail still needs is deleted.

Mail is delivered through the real spool and pipeline; "old" is made by moving the rows' received_at and
the files' mtime back, as time would."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, ConfigError, parse_config
from maild.storage.db import transaction
from maild.storage.files import content_path, discard_stale, store_bytes
from maild.storage.models import AuditLog, SpoolEntry, utcnow
from maild.tickets.retention import purge_raw_mail
from tests.cli import ctl, ok, one_line_error
from tests.daemon import free_port, start_fixture, wait_until, write_config  # noqa: F401 (fixture `start`)
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_desk, spool, ticket

Factory = sessionmaker[Session]
DAY = dt.timedelta(days=1)
RETENTION = 90 * DAY


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def raw_path(cfg: Config, entry: SpoolEntry) -> Path:
    return content_path(cfg.spool_dir, entry.sha256, ".eml")


def age(factory: Factory, cfg: Config, days: int, *, files: bool = True) -> None:
    """Every spool row that still has its raw mail received `days` ago, and (with `files`) its raw file
    last written then."""
    then = utcnow() - days * DAY
    with transaction(factory) as s:
        s.execute(update(SpoolEntry).where(SpoolEntry.raw_purged_at.is_(None)).values(received_at=then))
        entries = [e for e in spool(s) if e.raw_purged_at is None]
    if files:
        stamp = then.replace(tzinfo=dt.UTC).timestamp()
        for entry in entries:
            os.utime(raw_path(cfg, entry), (stamp, stamp))


def all_purged(factory: Factory) -> bool:
    with factory() as s:
        return all(e.raw_purged_at is not None for e in spool(s))


def customer_mail(n: int, body: str = "the printer is on fire\n") -> bytes:
    return mail(message_id=f"<keep-{n}@customer.example>", subject=f"case {n}", body=body)


def test_old_raw_mail_is_deleted_and_everything_else_stays(session_factory: Factory, cfg: Config) -> None:
    results = [deliver(session_factory, cfg, customer_mail(n), SUPPORT) for n in (1, 2)]
    age(session_factory, cfg, 100)
    fresh = deliver(session_factory, cfg, customer_mail(3), SUPPORT)
    with session_factory() as s:
        before = {e.id: (e.outcome, e.ticket_id, e.header_message_id) for e in spool(s)}
        sizes = sum(e.size for e in spool(s)[:2])

    purged = purge_raw_mail(session_factory, cfg, RETENTION)

    assert (purged.rows, purged.files, purged.bytes, purged.kept) == (2, 2, sizes, 0)
    with session_factory() as s:
        entries = spool(s)
        assert {e.id: (e.outcome, e.ticket_id, e.header_message_id) for e in entries} == before
        old, new = entries[:2], entries[2]
        assert all(e.raw_purged_at is not None and not raw_path(cfg, e).exists() for e in old)
        assert new.raw_purged_at is None and raw_path(cfg, new).exists()
        # The tickets keep their messages: the text was stored apart from the raw mail.
        for result in results:
            [message] = ticket(s, result.ticket_number or "").messages
            assert message.visible_text.startswith("the printer is on fire")
    assert fresh.outcome == "created"
    # Running again finds nothing more; a re-delivery of purged mail is still a duplicate (by Message-ID).
    assert purge_raw_mail(session_factory, cfg, RETENTION).rows == 0
    again = deliver(session_factory, cfg, customer_mail(1), SUPPORT)
    assert (again.outcome, again.ticket_number) == ("duplicate", results[0].ticket_number)


def test_bytes_a_newer_delivery_needs_are_kept(session_factory: Factory, cfg: Config) -> None:
    """The same bytes to the same desk again (a retrying MTA, months later): one file for both rows."""
    raw = customer_mail(1)
    deliver(session_factory, cfg, raw, SUPPORT)
    age(session_factory, cfg, 100)
    deliver(session_factory, cfg, raw, SUPPORT)  # a duplicate: a new row, the same file

    purged = purge_raw_mail(session_factory, cfg, RETENTION)

    assert (purged.rows, purged.files, purged.kept) == (0, 0, 1)
    with session_factory() as s:
        old, new = spool(s)
        assert old.sha256 == new.sha256 and raw_path(cfg, old).exists()
        assert old.raw_purged_at is None  # looked at again next time, when the newer row is old too


def test_a_file_written_again_after_the_cutoff_is_kept(session_factory: Factory, cfg: Config) -> None:
    """The row is old, but the same bytes were stored again since (a delivery whose row is not committed
    yet): store_bytes touched the file, and the purge leaves it and the row alone."""
    raw = customer_mail(1)
    deliver(session_factory, cfg, raw, SUPPORT)
    age(session_factory, cfg, 100)
    store_bytes(cfg.spool_dir, raw, ".eml")  # what the next delivery's write_raw does first

    purged = purge_raw_mail(session_factory, cfg, RETENTION)

    assert (purged.rows, purged.files, purged.kept) == (0, 0, 1)
    with session_factory() as s:
        [entry] = spool(s)
        assert raw_path(cfg, entry).read_bytes() == raw and entry.raw_purged_at is None


def test_quarantined_mail_keeps_its_raw_bytes(session_factory: Factory, cfg: Config) -> None:
    """Quarantined (and held) mail waits for an admin, and `spool release` processes its raw bytes."""
    deliver(session_factory, cfg, customer_mail(1), SUPPORT)
    deliver(session_factory, cfg, customer_mail(2), SUPPORT)
    with transaction(session_factory) as s:
        s.execute(update(SpoolEntry).where(SpoolEntry.id == spool(s)[1].id).values(outcome="quarantined"))
    age(session_factory, cfg, 400)

    purged = purge_raw_mail(session_factory, cfg, RETENTION)

    assert (purged.rows, purged.files, purged.kept) == (1, 1, 0)
    with session_factory() as s:
        done, quarantined = spool(s)
        assert not raw_path(cfg, done).exists()
        assert raw_path(cfg, quarantined).exists() and quarantined.raw_purged_at is None


def test_a_dry_run_counts_and_changes_nothing(session_factory: Factory, cfg: Config) -> None:
    for n in (1, 2, 3):
        deliver(session_factory, cfg, customer_mail(n), SUPPORT)
    age(session_factory, cfg, 100)
    dry = purge_raw_mail(session_factory, cfg, RETENTION, dry_run=True)
    with session_factory() as s:
        assert all(raw_path(cfg, e).exists() and e.raw_purged_at is None for e in spool(s))
    real = purge_raw_mail(session_factory, cfg, RETENTION)
    assert (dry.rows, dry.files, dry.bytes) == (real.rows, real.files, real.bytes) == (3, 3, real.bytes)
    assert real.bytes > 0


def test_the_purge_goes_in_batches(
    session_factory: Factory, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("maild.tickets.retention.BATCH", 2)
    for n in range(5):
        deliver(session_factory, cfg, customer_mail(n), SUPPORT)
    age(session_factory, cfg, 100)
    assert purge_raw_mail(session_factory, cfg, RETENTION).rows == 5
    assert all_purged(session_factory)


# --- storage.files.discard_stale against a store of the same bytes -----------------------------------


def test_discard_stale_deletes_only_what_was_not_touched_since_the_cutoff(tmp_path: Path) -> None:
    _, path = store_bytes(tmp_path, b"old mail", ".eml")
    cutoff = path.stat().st_mtime + 1
    assert discard_stale(path, cutoff) == len(b"old mail") and not path.exists()
    assert discard_stale(path, cutoff) == 0  # gone already
    _, path = store_bytes(tmp_path, b"fresh mail", ".eml")
    assert discard_stale(path, path.stat().st_mtime) is None and path.read_bytes() == b"fresh mail"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".purge-")]


def test_discard_stale_puts_a_touched_file_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store of the same bytes that touches the file just before the purge renames it away."""
    _, path = store_bytes(tmp_path, b"mail", ".eml")
    old = path.stat().st_mtime - 1000
    os.utime(path, (old, old))
    real_rename = os.rename
    calls: list[Path] = []

    def rename_after_a_store(src: Any, dst: Any) -> None:
        if not calls:
            store_bytes(tmp_path, b"mail", ".eml")  # touches the file: mtime now
        calls.append(Path(dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_a_store)
    assert discard_stale(path, old + 1) is None
    assert path.read_bytes() == b"mail" and len(calls) == 2  # renamed aside, then back


def test_a_store_while_the_file_is_aside_writes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that comes while the purge has the file renamed away finds none and writes it anew; the
    purge then deletes only its own aside copy."""
    _, path = store_bytes(tmp_path, b"mail", ".eml")
    old = path.stat().st_mtime - 1000
    os.utime(path, (old, old))
    real_stat = Path.stat
    stored: list[bool] = []

    def stat_after_a_store(self: Path, **kwargs: Any) -> os.stat_result:
        if self.name.startswith(".purge-") and not stored:
            stored.append(True)
            store_bytes(tmp_path, b"mail", ".eml")
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat_after_a_store)
    assert discard_stale(path, old + 1) == len(b"mail")
    assert stored and path.read_bytes() == b"mail"


# --- maildctl spool purge, spool list ------------------------------------------------------------------


def test_maildctl_spool_purge(session_factory: Factory, cfg: Config, config_file: Path) -> None:
    first = deliver(session_factory, cfg, customer_mail(1), SUPPORT)
    deliver(session_factory, cfg, customer_mail(2), SUPPORT)
    age(session_factory, cfg, 40)
    assert one_line_error(ctl(config_file, "spool", "purge")) == (
        "maildctl: no retention period: give --older-than DAYS, or set [spool] retention_days"
    )
    assert one_line_error(ctl(config_file, "spool", "purge", "--older-than", "0")) == (
        "maildctl: --older-than must be more than 0 days, got 0"
    )
    dry = json.loads(ok(ctl(config_file, "spool", "purge", "--older-than", "30", "--dry-run", "--json")))
    assert (dry["dry_run"], dry["rows"], dry["files"], dry["older_than_days"]) == (True, 2, 2, 30)
    assert ok(ctl(config_file, "spool", "purge", "--older-than", "60")).startswith(
        "deleted the raw mail of 0 spool row(s) older than 60 days: 0 file(s)"
    )
    done = ok(ctl(config_file, "spool", "purge", "--older-than", "30"))
    assert done.startswith("deleted the raw mail of 2 spool row(s) older than 30 days: 2 file(s), ")
    listed = json.loads(ok(ctl(config_file, "spool", "list", "--json")))
    assert all(row["raw_purged_at"] for row in listed) and {row["outcome"] for row in listed} == {"created"}
    with session_factory() as s:
        [entry] = s.scalars(select(AuditLog).where(AuditLog.action == "spool_purge"))
        assert (entry.detail["rows"], entry.detail["dry_run"]) == (2, False)
    # The conversation is still there to export, generated from the stored text.
    exported = ok(ctl(config_file, "ticket", "export", first.ticket_number or ""))
    assert "the printer is on fire" in exported and "From: Alice Example" in exported


def test_the_config_key_and_its_check(tmp_path: Path) -> None:
    base = {"data_dir": str(tmp_path)}
    assert parse_config(base).spool_retention_days == 0
    assert parse_config({**base, "spool": {"retention_days": 90}}).spool_retention_days == 90
    with pytest.raises(ConfigError, match=r"spool\.retention_days: must be >= 0 days"):
        parse_config({**base, "spool": {"retention_days": -1}})
    with pytest.raises(ConfigError, match=r"spool\.keep: unknown key"):
        parse_config({**base, "spool": {"keep": 1}})


# --- the job in maild serve ---------------------------------------------------------------------------


def test_maild_serve_purges_at_start_and_on_its_schedule(
    tmp_path: Path, data_dir: Path, database_url: str, cfg: Config, session_factory: Factory, start: Any
) -> None:
    deliver(session_factory, cfg, customer_mail(1), SUPPORT)
    age(session_factory, cfg, 100)
    extra = "[spool]\nretention_days = 90\n[scheduler]\nretention_seconds = 0.2\n"
    listen = {"smtp": f"127.0.0.1:{free_port()}"}
    serve = start(write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen, extra=extra))
    serve.wait_for("raw_mail_purged", rows=1, files=1)
    # Mail that grows old while it runs goes on the next run.
    deliver(session_factory, cfg, customer_mail(2), SUPPORT)
    age(session_factory, cfg, 100)
    wait_until(lambda: all_purged(session_factory), what="the second mail's raw bytes purged by the job")
    with session_factory() as s:
        assert not any(raw_path(cfg, e).exists() for e in spool(s))
    assert serve.stop() == 0
