"""dedupe: a mail the desk has already stored (MTA retry, IMAP re-fetch, a second path) is a `duplicate`:
no second message, no second auto-reply, no status change. Identity is the Message-ID, or a hash of the
raw bytes for mail without one; it is per desk, so a cross-posted mail is new for each desk."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.pipeline import STAGES
from maild.pipeline.runner import process
from maild.storage.db import transaction
from maild.storage.spool import record_received, write_raw
from tests.pipeline.helpers import (
    CLIENTS,
    NOW,
    REPLY_PREFIX,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    client_mail,
    deliver,
    mail,
    make_desk,
    messages,
    outbox,
    spool,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)


def counts(factory: Factory) -> tuple[int, int, int]:
    with factory() as s:
        return len(tickets(s)), len(messages(s)), len(outbox(s))


def test_same_bytes_twice_is_a_duplicate(session_factory: Factory, cfg: Config) -> None:
    raw = mail()
    first = deliver(session_factory, cfg, raw, SUPPORT)
    second = deliver(session_factory, cfg, raw, SUPPORT)
    assert (first.outcome, second.outcome) == ("created", "duplicate")
    assert second.ticket_number == first.ticket_number == "SUP-26-03-1"
    assert "<first@customer.example>" in second.reason and "SUP-26-03-1" in second.reason
    assert second.outbox_ids == ()
    assert counts(session_factory) == (1, 1, 1)
    with session_factory() as s:
        [t] = tickets(s)
        assert [(e.outcome, e.ticket_id) for e in spool(s)] == [("created", t.id), ("duplicate", t.id)]
        names = [name for name, _ in STAGES]
        assert [e["stage"] for e in spool(s)[1].trace] == names[: names.index("dedupe") + 1]


def test_same_message_id_with_other_bytes_is_a_duplicate(session_factory: Factory, cfg: Config) -> None:
    """A second path (backup MX, a forward) adds trace headers: the bytes differ, the mail does not."""
    raw = mail()
    relayed = mail(extra=[("Received", "from backup-mx.example.com by mx.example.com; Sat, 7 Mar 2026")])
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    assert deliver(session_factory, cfg, relayed, SUPPORT).outcome == "duplicate"
    assert counts(session_factory) == (1, 1, 1)


def test_a_reused_message_id_with_new_content_is_a_new_mail(session_factory: Factory, cfg: Config) -> None:
    """Scanners and some ticket systems send every mail with the same Message-ID: new words, new mail."""
    scan = mail(sender="scanner@office.example", subject="Scan", body="Pages: 1\n", message_id="<1@mfp>")
    again = mail(sender="scanner@office.example", subject="Scan", body="Pages: 2\n", message_id="<1@mfp>")
    assert deliver(session_factory, cfg, scan, SUPPORT).outcome == "created"
    second = deliver(session_factory, cfg, again, SUPPORT)
    assert (second.outcome, second.ticket_number) == ("created", "SUP-26-03-2")
    # and that second mail delivered once more is a duplicate of itself, not a third ticket
    assert deliver(session_factory, cfg, again, SUPPORT).outcome == "duplicate"
    with session_factory() as s:
        ids = [m.message_id for m in messages(s)]
        assert ids[0] == "<1@mfp>" and ids[1].endswith("@reused-message-id.maild>")
        assert spool(s)[1].header_message_id == "<1@mfp>"
    assert counts(session_factory) == (2, 2, 2)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_reply_delivered_twice_is_stored_once(client: str, session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    reply = client_mail(
        client,
        subject=f"{REPLY_PREFIX[client]} [SUP-26-03-1] Printer on fire",
        in_reply_to="<first@customer.example>",
        references=["<first@customer.example>"],
    )
    first = deliver(session_factory, cfg, reply, SUPPORT)
    second = deliver(session_factory, cfg, reply, SUPPORT)
    assert (first.outcome, second.outcome) == ("replied", "duplicate")
    assert second.ticket_number == "SUP-26-03-1"
    assert counts(session_factory) == (1, 2, 1)


def test_duplicate_does_not_touch_the_ticket(session_factory: Factory, cfg: Config) -> None:
    raw = mail()
    deliver(session_factory, cfg, raw, SUPPORT)
    with transaction(session_factory) as s:
        t = ticket(s, "SUP-26-03-1")
        t.status = "waiting"  # an agent answered meanwhile
        before = t.updated_at
    later = NOW.replace(hour=18)
    assert deliver(session_factory, cfg, raw, SUPPORT, now=later).outcome == "duplicate"
    with session_factory() as s:
        t = ticket(s, "SUP-26-03-1")
        assert (t.status, t.updated_at) == ("waiting", before)


def test_mail_without_message_id_is_identified_by_its_bytes(session_factory: Factory, cfg: Config) -> None:
    one = mail(message_id=None)
    other = mail(message_id=None, body="A different mail without a Message-ID.\n")
    assert deliver(session_factory, cfg, one, SUPPORT).outcome == "created"
    assert deliver(session_factory, cfg, one, SUPPORT).outcome == "duplicate"
    assert deliver(session_factory, cfg, other, SUPPORT).outcome == "created"
    assert counts(session_factory) == (2, 2, 2)


def test_identity_is_per_desk(session_factory: Factory, cfg: Config) -> None:
    raw = mail(to=f"{SUPPORT}, {SALES}")
    outcomes = [deliver(session_factory, cfg, raw, rcpt).outcome for rcpt in (SUPPORT, SALES, SUPPORT, SALES)]
    assert outcomes == ["created", "created", "duplicate", "duplicate"]
    assert counts(session_factory) == (2, 2, 2)


def test_processing_a_done_spool_row_again_changes_nothing(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as s:
        [entry] = spool(s)
    again = process(session_factory, cfg, entry.id, NOW)
    assert (again.outcome, again.ticket_number, again.outbox_ids) == ("created", "SUP-26-03-1", ())
    assert counts(session_factory) == (1, 1, 1)
    with session_factory() as s:
        assert spool(s)[0].attempts == 1


def test_redelivery_after_a_crash_resumes_the_pending_spool_row(
    session_factory: Factory, cfg: Config
) -> None:
    """A crash after the 'received' row but before the pipeline: the MTA retries with the same bytes."""
    raw = mail()
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(session_factory) as s:
        record_received(s, digest, len(raw), SUPPORT, "pipe")
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "created"
    with session_factory() as s:
        assert [(e.state, e.outcome) for e in spool(s)] == [("done", "created")]
    assert counts(session_factory) == (1, 1, 1)
