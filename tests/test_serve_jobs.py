"""The scheduler inside `maild serve`: the outbox job sends what is due (left over at start, or made due
while it runs) and the auto-close job closes inactive tickets, in a real daemon subprocess."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from maild.config import Config
from maild.ingress.serve_jobs import _sweep_web_pending, job_intervals
from maild.storage.db import transaction
from maild.storage.models import Desk, OutboxMessage, Ticket, utcnow
from maild.tickets.web_pending import PENDING_DIR
from tests.daemon import (
    Factory,
    free_port,
    send,
    sent_mails,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_desk


def config(tmp_path: Path, data_dir: Path, database_url: str, extra: str) -> Path:
    listen = {"smtp": f"127.0.0.1:{free_port()}"}
    return write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen, extra=extra)


def statuses(factory: Factory) -> dict[int, str]:
    with factory() as session:
        return dict(session.execute(select(OutboxMessage.id, OutboxMessage.status)).all())


def test_the_outbox_job_sends_leftovers_at_start_and_retries_that_come_due(
    tmp_path: Path, data_dir: Path, database_url: str, cfg: Config, session_factory: Factory, start: Any
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    # Two tickets whose auto-replies are queued but not sent (as if maild pipe could not send them):
    # one due now, one deferred for an hour.
    for n in range(2):
        result = deliver(
            session_factory, cfg, mail(message_id=f"<m{n}@customer.example>", subject=f"Case {n}"), SUPPORT
        )
        assert result.outcome == "created"
    with transaction(session_factory) as session:
        first, second = session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id))
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == first).values(next_attempt_at=utcnow())
        )
        later = utcnow() + dt.timedelta(hours=1)
        session.execute(update(OutboxMessage).where(OutboxMessage.id == second).values(next_attempt_at=later))

    serve = start(
        config(
            tmp_path, data_dir, database_url, "[scheduler]\noutbox_seconds = 0.2\nauto_close_seconds = 3600"
        )
    )

    wait_until(lambda: statuses(session_factory)[first] == "sent", what="the leftover mail sent at start")
    serve.wait_for("outbox_sent", sent=1)
    assert statuses(session_factory)[second] == "queued"  # not due: not sent
    # an admin (or the backoff running out) makes it due: the next run of the job sends it
    with transaction(session_factory) as session:
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == second).values(next_attempt_at=utcnow())
        )
    wait_until(lambda: statuses(session_factory)[second] == "sent", what="the retried mail sent by the job")
    assert sorted(m["Subject"] for m in sent_mails(data_dir)) == [
        "[SUP-26-03-1] Case 0",
        "[SUP-26-03-2] Case 1",
    ]
    assert serve.stop() == 0


def test_the_auto_close_job_closes_inactive_tickets_and_sends_the_notice(
    tmp_path: Path, data_dir: Path, database_url: str, cfg: Config, session_factory: Factory, start: Any
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    result = deliver(session_factory, cfg, mail(), SUPPORT)
    assert result.outcome == "created"
    with transaction(session_factory) as session:
        session.execute(update(Desk).values(auto_close_hours=24))
        session.execute(update(Ticket).values(status="waiting", updated_at=utcnow() - dt.timedelta(hours=25)))

    serve = start(config(tmp_path, data_dir, database_url, "[scheduler]\nauto_close_seconds = 0.5"))

    event = serve.wait_for("auto_closed")
    assert event["tickets"] == [result.ticket_number]
    wait_until(
        lambda: any(
            m["Subject"].startswith(f"[{result.ticket_number}] Closed:") for m in sent_mails(data_dir)
        ),
        what="the auto_close notice in the outgoing Maildir",
    )
    with session_factory() as session:
        assert session.scalars(select(Ticket.status)).one() == "closed"
    assert serve.stop() == 0


def test_sighup_picks_up_a_desk_template_added_while_running(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    port = free_port()
    listen = {"smtp": f"127.0.0.1:{port}"}
    serve = start(write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen))
    send(port, mail(message_id="<before@customer.example>", subject="First"), [SUPPORT])
    wait_until(lambda: len(sent_mails(data_dir)) == 1, what="the first auto-reply")

    override = data_dir / "templates" / "support"
    override.mkdir(parents=True)
    (override / "ticket_created.subject.j2").write_text("We got it: {{ ticket_title }}\n")
    serve.proc.send_signal(signal.SIGHUP)
    serve.wait_for("desk_addresses_loaded", reason="SIGHUP")
    send(port, mail(message_id="<after@customer.example>", subject="Second"), [SUPPORT])
    wait_until(lambda: len(sent_mails(data_dir)) == 2, what="the second auto-reply")

    # the number tag depends on today's date: compare what follows it
    subjects = sorted(str(m["Subject"]).split("] ", 1)[1] for m in sent_mails(data_dir))
    assert subjects == ["First", "We got it: Second"]
    assert serve.stop() == 0


def test_expired_web_requests_are_swept_by_a_job_of_their_own(cfg: Config) -> None:
    """/new's unconfirmed requests are gone after a day even when nobody posts a new form."""
    assert "web_pending" not in job_intervals(cfg)  # no [web] listener: nothing to sweep
    with_web = dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, listen="127.0.0.1:8025"))
    assert job_intervals(with_web)["web_pending"] == 3600
    folder = cfg.data_dir / PENDING_DIR
    folder.mkdir()
    old, fresh = folder / "old", folder / "fresh"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    assert _sweep_web_pending(None, cfg) == 1  # type: ignore[arg-type]
    assert sorted(p.name for p in folder.iterdir()) == ["fresh"]
