"""Issue 17: "quarantine only what is not mail at all, and tell the desk's agents (one digest, rate limited)
when something is quarantined so that no customer waits on a silent queue" (maild.tickets.quarantine_digest,
the `quarantine_digest` job of maild serve)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.ingress.serve_jobs import job_intervals
from maild.pipeline.runner import process
from maild.storage.db import make_engine, make_sessionmaker, transaction
from maild.storage.models import Agent, OutboxMessage, QuarantineReport, SpoolEntry, utcnow
from maild.storage.spool import record_received, write_raw
from maild.tickets import quarantine_digest
from maild.tickets.quarantine_digest import TEMPLATE, send_quarantine_digests
from tests.conftest import run_cli
from tests.daemon import (
    free_port,
    sent_mails,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import (
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    crlf,
    deliver,
    mail,
    make_agent,
    make_desk,
)

Factory = sessionmaker[Session]
ANNA, BOB, CARL = "anna@example.com", "bob@example.com", "carl@example.com"
NOT_A_MAIL = b"this is not a mail, just a line of text\r\nand another\r\n"
SPAM = mail(subject="Cheap watches", extra=[("X-Spam-Flag", "YES")], message_id="<spam@spammer.example>")
OVER_BUDGET = "processing budget of 30 s exceeded after the stage thread (31.2 s)"
INTERVAL = dt.timedelta(seconds=900)  # the default [scheduler] quarantine_digest_seconds


def clock() -> dt.datetime:
    """The job's clock in these tests: now (the spool rows are received now, naive UTC)."""
    return utcnow() + dt.timedelta(seconds=1)


def two_desks(factory: Factory) -> None:
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(factory, "sales", [SALES], SALES_PATTERN)
    make_agent(factory, ANNA, "Anna", ["support"])
    make_agent(factory, BOB, "Bob", ["support", "sales"])
    make_agent(factory, CARL, "Carl", ["sales"])


def quarantined_row(
    factory: Factory,
    cfg: Config,
    raw: bytes,
    recipient: str,
    reason: str,
    *,
    received_at: dt.datetime | None = None,
    mail_from: str = "",
) -> int:
    """A row as the runner leaves a mail it quarantined without the stages (over budget, failed 3 times)."""
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(factory) as session:
        entry = record_received(session, digest, len(raw), recipient, "lmtp", mail_from)
        entry.state, entry.outcome, entry.reason, entry.attempts = "done", "quarantined", reason, 1
        entry.processed_at = utcnow()
        if received_at is not None:
            entry.received_at = received_at
        return entry.id


def quarantine(factory: Factory, cfg: Config, raw: bytes, recipient: str = SUPPORT) -> int:
    """`raw` through the real spool and pipeline: its spool id, quarantined."""
    result = deliver(factory, cfg, raw, recipient)
    assert result.outcome == "quarantined", result
    with factory() as session:
        return max(session.scalars(select(SpoolEntry.id)))


def reason_of(factory: Factory, spool_id: int) -> str:
    """What the pipeline says of the row (its words are the parse stage's, not this module's)."""
    with factory() as session:
        entry = session.get(SpoolEntry, spool_id)
        assert entry is not None and entry.outcome == "quarantined"
        return entry.reason


def digests(factory: Factory) -> list[OutboxMessage]:
    with factory() as session:
        query = select(OutboxMessage).where(OutboxMessage.template == TEMPLATE).order_by(OutboxMessage.id)
        return list(session.scalars(query))


def parsed(row: OutboxMessage) -> EmailMessage:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(row: OutboxMessage) -> str:
    body = parsed(row).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def listed(row: OutboxMessage) -> list[int]:
    """The spool ids a digest lists ("#17  2026-12-07 20:31 UTC  58 bytes  to support@example.com")."""
    return [int(m) for m in re.findall(r"^#(\d+)  ", text_of(row), re.MULTILINE)]


def by_recipient(rows: list[OutboxMessage]) -> dict[tuple[str, str], list[int]]:
    """(recipient, desk address) → the spool ids its digest lists."""
    return {(row.rcpt_to[0], row.mail_from): listed(row) for row in rows}


def reports(factory: Factory) -> dict[int, tuple[int | None, int]]:
    with factory() as session:
        rows = session.scalars(select(QuarantineReport))
        return {r.spool_id: (r.desk_id, r.agents) for r in rows}


# --- one digest per agent per desk, each row once -------------------------------------------------------


def test_each_agent_of_each_desk_gets_one_digest_of_that_desks_quarantine(
    session_factory: Factory, cfg: Config
) -> None:
    two_desks(session_factory)
    junk = quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    spam = quarantine(session_factory, cfg, SPAM, SALES)
    heavy = quarantined_row(session_factory, cfg, mail(subject="Huge report"), SUPPORT, OVER_BUDGET)

    result = send_quarantine_digests(session_factory, cfg, clock())

    rows = digests(session_factory)
    assert by_recipient(rows) == {
        (ANNA, SUPPORT): [junk, heavy],
        (BOB, SUPPORT): [junk, heavy],
        (BOB, SALES): [spam],
        (CARL, SALES): [spam],
    }
    assert sorted(result.outbox_ids) == [r.id for r in rows]
    assert sorted((n, q) for _, n, q in result.digests) == [(1, 2), (2, 2)]
    assert all(r.ticket_id is None and r.status == "queued" for r in rows)
    support = next(r for r in rows if r.rcpt_to == [ANNA])
    assert support.subject == "2 mails to support quarantined: no ticket made"
    text = text_of(support)
    # What the agent needs to get the mail looked at: why, and the admin's real commands.
    assert f"Why:      {reason_of(session_factory, junk)}" in text
    assert f"Why:      {OVER_BUDGET}" in text
    assert (
        f"maildctl spool show {junk} | maildctl spool release {junk} | maildctl spool delete {junk}" in text
    )
    assert 'From:     "Alice Example" <alice@customer.example>' in text  # the over-budget mail's From
    assert "Subject:  Huge report" in text
    assert "From:     (no header fields)" in text  # the input that is not a mail
    sales = text_of(next(r for r in rows if r.rcpt_to == [CARL]))
    assert "Held as spam by the upstream filter (1):" in sales
    assert f"Why:      {reason_of(session_factory, spam)}" in sales
    assert reports(session_factory) == {junk: (1, 2), heavy: (1, 2), spam: (2, 2)}


def test_the_digest_is_an_auto_generated_plain_text_notice_from_the_desk(
    session_factory: Factory, cfg: Config
) -> None:
    two_desks(session_factory)
    quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    send_quarantine_digests(session_factory, cfg, clock())

    msg = parsed(digests(session_factory)[0])
    assert msg["Auto-Submitted"] == "auto-generated"  # RFC 3834: no vacation responder answers it
    assert msg["X-Loop"] == SUPPORT  # coming back, the loop stage drops it
    assert msg["From"].addresses[0].addr_spec == SUPPORT
    assert msg["Reply-To"].addresses[0].addr_spec == SUPPORT
    assert msg["To"].addresses[0].addr_spec == ANNA
    assert msg.get_content_type() == "text/plain"  # no HTML part, no attachment
    assert not msg.is_multipart()


def test_a_second_run_sends_nothing_and_a_new_quarantine_waits_for_the_next_interval(
    session_factory: Factory, cfg: Config
) -> None:
    two_desks(session_factory)
    first = quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    t0 = clock()
    send_quarantine_digests(session_factory, cfg, t0)
    assert len(digests(session_factory)) == 2
    assert send_quarantine_digests(session_factory, cfg, t0 + dt.timedelta(seconds=60)).digests == []

    # a new quarantine 5 minutes after the digest waits until the desk's interval is over
    second = quarantine(session_factory, cfg, b"\r\n\r\n   \r\n", SUPPORT)  # empty input
    assert send_quarantine_digests(session_factory, cfg, t0 + dt.timedelta(minutes=5)).digests == []
    assert (
        send_quarantine_digests(session_factory, cfg, t0 + INTERVAL - dt.timedelta(seconds=1)).digests == []
    )
    assert len(digests(session_factory)) == 2
    result = send_quarantine_digests(session_factory, cfg, t0 + INTERVAL)
    assert [(desk, mails) for desk, mails, _ in result.digests] == [(1, 1)]
    new = digests(session_factory)[2:]
    assert by_recipient(new) == {(ANNA, SUPPORT): [second], (BOB, SUPPORT): [second]}
    assert first not in listed(new[0])
    assert f"since the last digest ({t0:%Y-%m-%d %H:%M} UTC)" in text_of(new[0])  # the previous digest

    # nothing new: nothing sent, however long it is quiet
    assert send_quarantine_digests(session_factory, cfg, t0 + 3 * INTERVAL).digests == []
    assert len(digests(session_factory)) == 4


def test_the_marks_are_in_the_database_so_a_restart_neither_repeats_nor_loses_a_report(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    two_desks(session_factory)
    reported = quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    t0 = clock()
    send_quarantine_digests(session_factory, cfg, t0)
    later = quarantine(session_factory, cfg, SPAM, SUPPORT)  # after the run: not reported yet

    # "restart": a new process's config and engine, nothing kept in memory
    fresh_cfg = load_config(str(config_file))
    engine = make_engine(fresh_cfg.database_url, fresh_cfg.busy_timeout_ms)
    try:
        fresh = make_sessionmaker(engine)
        assert send_quarantine_digests(fresh, fresh_cfg, t0 + dt.timedelta(seconds=61)).digests == []
        result = send_quarantine_digests(fresh, fresh_cfg, t0 + INTERVAL)
    finally:
        engine.dispose()
    assert [(d, n) for d, n, _ in result.digests] == [(1, 1)]
    rows = digests(session_factory)
    assert [listed(r) for r in rows] == [[reported], [reported], [later], [later]]


def test_two_runs_at_once_report_each_row_once(session_factory: Factory, cfg: Config) -> None:
    """Two instances on one database (or two runs of one): one digest per agent, whoever wins."""
    two_desks(session_factory)
    quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    quarantine(session_factory, cfg, SPAM, SALES)
    now = clock()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            send_quarantine_digests(session_factory, cfg, now)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(by_recipient(digests(session_factory))) == [
        (ANNA, SUPPORT),
        (BOB, SALES),
        (BOB, SUPPORT),
        (CARL, SALES),
    ]
    assert len(digests(session_factory)) == 4


# --- which desk -----------------------------------------------------------------------------------------


def test_a_desk_without_agents_is_logged_and_marked(
    session_factory: Factory, cfg: Config, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    make_agent(session_factory, BOB, "Bob (gone)", ["sales"])
    with transaction(session_factory) as session:
        session.scalars(select(Agent).where(Agent.email == BOB)).one().active = False
    monkeypatch.setattr(quarantine_digest, "MAX_LISTED", 1)  # one read, one only counted
    row = quarantine(session_factory, cfg, NOT_A_MAIL, SALES)
    other = quarantined_row(session_factory, cfg, SPAM, SALES, OVER_BUDGET)

    with caplog.at_level(logging.WARNING, logger="maild.quarantine_digest"):
        result = send_quarantine_digests(session_factory, cfg, clock())

    assert digests(session_factory) == []
    assert result.digests == [(2, 2, 0)]
    assert reports(session_factory) == {row: (2, 0), other: (2, 0)}
    assert "quarantine_not_told" in caplog.text and "desk sales has no active agent" in caplog.text
    assert send_quarantine_digests(session_factory, cfg, clock() + 2 * INTERVAL).digests == []


def test_without_a_recipient_the_headers_name_the_desk_and_else_nobody_is_told(
    session_factory: Factory, cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """`maild pipe` without --recipient: the desk route would pick from the headers; with no desk named and
    two desks, no desk's agents may see it."""
    two_desks(session_factory)
    to_sales = quarantine(session_factory, cfg, mail(to=SALES, extra=[("X-Spam", "Yes")]), "")
    nowhere = quarantine(session_factory, cfg, mail(to="x@elsewhere.example", extra=[("X-Spam", "Yes")]), "")

    with caplog.at_level(logging.WARNING, logger="maild.quarantine_digest"):
        send_quarantine_digests(session_factory, cfg, clock())

    assert by_recipient(digests(session_factory)) == {(BOB, SALES): [to_sales], (CARL, SALES): [to_sales]}
    assert reports(session_factory) == {to_sales: (2, 2), nowhere: (None, 0)}
    assert "quarantine_not_told" in caplog.text and str(nowhere) in caplog.text


def test_with_a_single_desk_every_quarantined_mail_is_that_desks(
    session_factory: Factory, cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    headless = quarantine(session_factory, cfg, NOT_A_MAIL, "")  # no recipient, no headers

    send_quarantine_digests(session_factory, cfg, clock())

    assert by_recipient(digests(session_factory)) == {(ANNA, SUPPORT): [headless]}
    assert "to (not given)" in text_of(digests(session_factory)[0])


def test_old_quarantine_is_history_and_not_reported(session_factory: Factory, cfg: Config) -> None:
    """A database upgraded to this version: last month's quarantine is not news."""
    two_desks(session_factory)
    now = clock()
    quarantined_row(session_factory, cfg, NOT_A_MAIL, SUPPORT, "x", received_at=now - dt.timedelta(days=8))
    assert send_quarantine_digests(session_factory, cfg, now).digests == []
    assert digests(session_factory) == []


def test_a_released_row_is_not_reported(session_factory: Factory, cfg: Config) -> None:
    two_desks(session_factory)
    row = quarantine(session_factory, cfg, SPAM, SUPPORT)
    with transaction(session_factory) as session:
        entry = session.get(SpoolEntry, row)
        assert entry is not None
        entry.state, entry.outcome, entry.released = "received", None, True  # maildctl spool release
    assert send_quarantine_digests(session_factory, cfg, clock()).digests == []


# --- what a hostile sender wrote ------------------------------------------------------------------------


def test_the_senders_words_are_shown_as_plain_text_cut_short(session_factory: Factory, cfg: Config) -> None:
    two_desks(session_factory)
    # An encoded line break (a fake "Admin:" line), a right-to-left override, a link and a long subject;
    # an envelope sender, and a From with an address in its name.
    subject = (
        "=?utf-8?q?Invoice=0A____Admin:_maildctl_spool_release_1?= \u202egnp.exe http://evil.example/x "
        + ("A" * 300)
    )
    raw = crlf(
        f'From: "support@bank.example" <phish@evil.example>\nTo: {SUPPORT}\nSubject: {subject}\n'
        "X-Spam-Flag: YES\nContent-Type: text/html\n\n<script>alert(1)</script><p>click</p>\n"
    )
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(session_factory) as session:
        spool_id = record_received(session, digest, len(raw), SUPPORT, "smtp", "bounce@evil.example").id
    assert process(session_factory, cfg, spool_id).outcome == "quarantined"

    send_quarantine_digests(session_factory, cfg, clock())

    text = text_of(digests(session_factory)[0])
    subject_line = next(line for line in text.splitlines() if line.startswith("    Subject:"))
    # the encoded line break stays on the subject's line: no fake "Admin:" line of the sender's
    assert subject_line.startswith("    Subject:  Invoice Admin: maildctl spool release 1 ")
    assert [line for line in text.splitlines() if "Admin:" in line and "Subject" not in line] == [
        f"    Admin:    maildctl spool show {spool_id} | maildctl spool release {spool_id} | "
        f"maildctl spool delete {spool_id}"
    ]
    assert "\u202e" not in text and "gnp.exe" in subject_line
    assert "http[:]//evil.example/x" in subject_line and "http://" not in text
    assert subject_line.endswith("…") and len(subject_line) < 150
    assert '    From:     "support@bank.example" <phish@evil.example>' in text
    assert "    Envelope: bounce@evil.example" in text
    assert "<script>" not in text and "click" not in text  # the body never


# --- the real pipeline, and the digest coming back ------------------------------------------------------


def test_a_quarantined_delivery_gets_a_digest_that_coming_back_is_never_answered(
    session_factory: Factory, cfg: Config
) -> None:
    two_desks(session_factory)
    row = quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    send_quarantine_digests(session_factory, cfg, clock())
    digest = next(r for r in digests(session_factory) if r.rcpt_to == [ANNA])
    assert listed(digest) == [row]
    with session_factory() as session:
        before = len(list(session.scalars(select(OutboxMessage.id))))

    # the digest itself comes back (a forwarding loop): ours, dropped
    assert deliver(session_factory, cfg, digest.raw, SUPPORT).outcome == "looped"
    # Anna's vacation responder, and Anna answering it by hand: to the desk's address, not a ticket's
    reply_headers = [("In-Reply-To", digest.message_id), ("Auto-Submitted", "auto-replied")]
    auto = mail(
        sender=f"Anna <{ANNA}>", subject="Out of office", message_id="<ooo@example.com>", extra=reply_headers
    )
    assert deliver(session_factory, cfg, auto, SUPPORT).outcome in ("held", "looped")
    by_hand = mail(sender=f"Anna <{ANNA}>", subject="Re: quarantined", message_id="<re@example.com>")
    assert deliver(session_factory, cfg, by_hand, SUPPORT).outcome == "held"
    with session_factory() as session:
        assert len(list(session.scalars(select(OutboxMessage.id)))) == before  # nothing answered


# --- config and maild serve -----------------------------------------------------------------------------


def test_the_interval_is_configurable(tmp_path: Path, data_dir: Path, database_url: str) -> None:
    path = tmp_path / "m.toml"
    scheduler = "[scheduler]\nquarantine_digest_seconds = 3600\n"
    path.write_text(f'data_dir = "{data_dir}"\n[database]\nurl = "{database_url}"\n{scheduler}')
    cfg = load_config(str(path))
    assert cfg.schedule.quarantine_digest_seconds == 3600
    assert job_intervals(cfg)["quarantine_digest"] == 60  # the job looks every minute


def test_maild_serve_tells_the_agents_of_a_mail_it_quarantined(
    tmp_path: Path, data_dir: Path, database_url: str, cfg: Config, session_factory: Factory, start: Any
) -> None:
    """The job runs at start (then every minute): a mail quarantined before, its digests sent."""
    two_desks(session_factory)
    quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    port = free_port()
    config = write_config(
        tmp_path / "serve.toml", data_dir, database_url, listen={"smtp": f"127.0.0.1:{port}"}
    )
    serve = start(config)

    event = serve.wait_for("quarantine_digests_queued")
    assert event["digests"] == [{"desk_id": 1, "mails": 1, "digests": 2}]
    wait_until(lambda: len(sent_mails(data_dir)) == 2, what="the two agents' digests sent")
    assert sorted(m["To"].addresses[0].addr_spec for m in sent_mails(data_dir)) == [ANNA, BOB]
    assert {m["Subject"] for m in sent_mails(data_dir)} == {"1 mail to support quarantined: no ticket made"}
    assert serve.stop() == 0


def test_a_long_quarantine_is_listed_up_to_the_limit_and_counted(
    session_factory: Factory, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quarantine_digest, "MAX_LISTED", 3)
    two_desks(session_factory)
    junk = [quarantined_row(session_factory, cfg, NOT_A_MAIL + bytes([n]), SUPPORT, "x") for n in range(4)]
    quarantined_row(session_factory, cfg, SPAM, SUPPORT, "spam: X-Spam-Flag: YES")

    send_quarantine_digests(session_factory, cfg, clock())

    row = digests(session_factory)[0]
    assert row.subject == "5 mails to support quarantined: no ticket made"
    assert listed(row) == junk[:3]  # the others first: likelier a customer's than spam
    text = text_of(row)
    assert "... and 1 more: maildctl spool list --quarantined" in text
    assert "Held as spam by the upstream filter (1):" in text
    assert len(reports(session_factory)) == 5  # every row reported, listed or counted


def test_the_commands_the_digest_names_work_on_a_reported_row(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    """`maildctl spool show|release|delete ID` as the digest writes them; deleting a reported row takes
    its report with it (the foreign key cascades)."""
    two_desks(session_factory)
    spam = quarantine(session_factory, cfg, SPAM, SUPPORT)
    junk = quarantine(session_factory, cfg, NOT_A_MAIL, SUPPORT)
    send_quarantine_digests(session_factory, cfg, clock())
    commands = [
        line.split("Admin:")[1]
        for line in text_of(digests(session_factory)[0]).splitlines()
        if "Admin:" in line
    ]
    assert len(commands) == 2

    show = run_cli("maildctl", *commands[0].split("|")[0].split()[1:], config=config_file)
    assert show.returncode == 0 and f"reason: {reason_of(session_factory, junk)}" in show.stdout
    release = run_cli("maildctl", "spool", "release", str(spam), config=config_file)
    assert release.returncode == 0, release.stderr  # released: a ticket now (the verdict no longer holds it)
    delete = run_cli("maildctl", "spool", "delete", str(junk), config=config_file)
    assert delete.returncode == 0, delete.stderr
    assert reports(session_factory) == {spam: (1, 2)}
