"""Issue 17, bounces: delivery reports as ~40 MTAs and providers write them (tests/corpus/bounces/real/,
3NN-name.eml with NNN-name.json), and mail that only looks like one.

The JSON says what a file is:
  {"class": "bounce", "permanent": …, "recipients": [...]}   a delivery report ("success": true when it
                                                             reports delivery only); "original_message_id"
                                                             when the returned mail is in it
  {"class": "normal", "lookalike": true}                     a person's mail: a ticket, answered
  {"class": "auto-reply", "kind": …}                         automatic mail (tests/test_automatic_real.py);
                                                             with "lookalike": a challenge or an MDN
Optional: "mail_from" (the envelope sender as the spool records it; "<>" by default for a bounce, ""
means the ingress did not say, as IMAP).

Each file goes through the real pipeline (spool row, `process`) in a database of its own, with one mail
maild "sent" whose Message-ID the report returns (so a permanent failure really marks its recipients),
and `read_bounce` is asked the same question the bounce stage asks for the exact recipients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.dsn import read_bounce
from maild.pipeline.runner import Result, process
from maild.storage.db import transaction
from maild.storage.models import Contact, Desk, OutboxMessage
from maild.storage.spool import record_received, write_raw
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, make_desk, messages, tickets

CORPUS = Path(__file__).parent / "corpus" / "bounces" / "real"
Factory = sessionmaker[Session]


def spec(eml: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(eml.with_suffix(".json").read_text(encoding="utf-8"))
    return loaded


ALL = sorted(CORPUS.glob("3[0-9][0-9]-*.eml"))
BOUNCES = [p for p in ALL if spec(p)["class"] == "bounce"]
FAILURES = [p for p in BOUNCES if not spec(p).get("success")]
LOOKALIKES = [p for p in ALL if spec(p).get("lookalike")]


def envelope(eml: Path) -> str:
    return str(spec(eml).get("mail_from", "<>" if spec(eml)["class"] == "bounce" else ""))


def to_address(raw: bytes) -> str:
    for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if line.lower().startswith(b"to:"):
            return line[3:].decode().strip().strip("<>")
        if not line:
            break
    return SUPPORT


def deliver_lmtp(factory: Factory, cfg: Config, raw: bytes, mail_from: str) -> Result:
    """As the LMTP listener does: bytes on disk, a `received` row with the envelope, then the pipeline."""
    recipient = to_address(raw)
    recipient = recipient if recipient.startswith("bounces+") else SUPPORT
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(factory) as session:
        spool_id = record_received(session, digest, len(raw), recipient, "lmtp", mail_from).id
    return process(factory, cfg, spool_id, NOW)


def sent_mail(factory: Factory, message_id: str, recipients: list[str]) -> None:
    """The mail of ours a report returns: sent to `recipients` (and the customer who asked)."""
    with transaction(factory) as session:
        desk = session.scalars(select(Desk)).one()
        session.add(
            OutboxMessage(
                desk_id=desk.id,
                ticket_id=None,
                template="agent_reply",
                message_id=message_id,
                mail_from=SUPPORT,
                rcpt_to=[],
                delivered_to=[*recipients, "alice@customer.example"],
                subject="[SUP-26-03-7] Your request: invoice 2026-0113",
                raw=b"x",
                status="sent",
            )
        )


def bouncing(session: Session) -> set[str]:
    return set(session.scalars(select(Contact.email).where(Contact.status == "bouncing")))


def recognised(result: Result) -> bool:
    """A delivery report: matched (`bounce`), unmatched, or a success report archived."""
    return result.outcome == "bounce" or (
        result.outcome == "archived"
        and result.reason.startswith(("bounce-unmatched", "delivery report without a failure"))
    )


@pytest.fixture
def desk(session_factory: Factory) -> Factory:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    return session_factory


def test_the_corpus_is_wide() -> None:
    assert len(FAILURES) >= 40 and len(LOOKALIKES) >= 10
    for eml in ALL:
        assert eml.with_suffix(".json").exists(), eml.name
    raw = [p.read_bytes() for p in BOUNCES]
    assert any(b"\r\n" in r for r in raw) and any(b"\r" in r and b"\n" not in r for r in raw)
    assert any(b"\n" in r and b"\r" not in r for r in raw)
    assert any(len(spec(p)["recipients"]) == 4 for p in BOUNCES)
    assert {spec(p)["permanent"] for p in FAILURES} == {True, False}


# --- delivery reports -----------------------------------------------------------------------------


@pytest.mark.parametrize("eml", BOUNCES, ids=lambda p: p.stem)
def test_a_delivery_report_is_no_ticket_and_marks_exactly_its_failures(
    eml: Path, desk: Factory, cfg: Config
) -> None:
    want = spec(eml)
    if want.get("original_message_id"):
        sent_mail(desk, want["original_message_id"], want["recipients"])
    result = deliver_lmtp(desk, cfg, eml.read_bytes(), envelope(eml))
    assert recognised(result), f"{eml.stem}: {result.outcome}: {result.reason}"
    with desk() as s:
        assert tickets(s) == [] and [m for m in messages(s) if m.kind == "customer"] == []
        marked = bouncing(s)
    if want.get("original_message_id") and want["permanent"]:
        assert marked == set(want["recipients"])
    else:
        assert marked == set()  # a delay, a success or a temporary failure marks nobody


@pytest.mark.parametrize("eml", FAILURES, ids=lambda p: p.stem)
def test_read_bounce_names_exactly_the_failed_recipients(eml: Path) -> None:
    want = spec(eml)
    report = read_bounce(eml.read_bytes(), null_sender=envelope(eml) == "<>")
    assert report is not None
    assert sorted(report.recipients) == sorted(want["recipients"])
    assert report.permanent is want["permanent"]


@pytest.mark.parametrize("eml", [p for p in BOUNCES if spec(p).get("success")], ids=lambda p: p.stem)
def test_a_success_report_is_no_failure(eml: Path) -> None:
    report = read_bounce(eml.read_bytes(), null_sender=True)
    assert report is not None and report.delivered_only and report.failures == ()


def test_line_ends_do_not_change_the_answer() -> None:
    answers = []
    for name in ("302-postfix-cr-only", "346-postfix-crlf-twin-of-302", "347-postfix-lf-twin-of-302"):
        report = read_bounce((CORPUS / f"{name}.eml").read_bytes(), null_sender=True)
        assert report is not None
        first = report.failures[0]
        answers.append((report.recipients, report.permanent, first.status, first.diagnostic))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][:3] == (("zoe@cr.example",), True, "5.1.1")


# --- mail that only looks like one ----------------------------------------------------------------


@pytest.mark.parametrize("eml", LOOKALIKES, ids=lambda p: p.stem)
def test_a_lookalike_is_never_a_permanent_bounce(eml: Path, desk: Factory, cfg: Config) -> None:
    want = spec(eml)
    raw = eml.read_bytes()
    report = read_bounce(raw, null_sender=envelope(eml) == "<>")
    assert report is None or not report.permanent
    # Tempt it: a mail of ours the notice refers to, sent to the notice's own sender.
    sent_mail(desk, want.get("original_message_id", f"<tempt-{eml.stem}@example.com>"), [])
    deliver_lmtp(desk, cfg, raw, envelope(eml))
    with desk() as s:
        assert bouncing(s) == set()


@pytest.mark.parametrize("eml", LOOKALIKES, ids=lambda p: p.stem)
def test_a_lookalike_keeps_its_class(eml: Path, desk: Factory, cfg: Config) -> None:
    want = spec(eml)
    result = deliver_lmtp(desk, cfg, eml.read_bytes(), envelope(eml))
    assert result.outcome == "created", f"{eml.stem}: {result.outcome}: {result.reason}"
    with desk() as s:
        [message] = [m for m in messages(s) if m.kind == "customer"]
        if want["class"] == "normal":
            assert message.automatic is None and len(result.outbox_ids) == 1  # a ticket, answered
        else:
            assert message.automatic == want["kind"] and result.outbox_ids == ()


# --- the examples, one by one ---------------------------------------------------------------


def _postfix_text(sender: str, subject: str, body: str) -> bytes:
    head = f"{sender}To: support@example.com\nSubject: {subject}\nMessage-ID: <x1@mx.example>\n\n"
    return (head + body).replace("\n", "\r\n").encode()


QMAIL_BODY = (
    "Hi. This is the qmail-send program at mx.example.\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
    "<gone@customer.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
    "--- Below this line is a copy of the message.\n\n"
    "From: support@example.com\nMessage-ID: <ours@example.com>\n\nHello\n"
)


@pytest.mark.parametrize(
    "sender",
    [
        "From: MAILER-DAEMON <>\n",
        "From: <MAILER-DAEMON>\n",
        "From: <>\n",
        "",
        "From: Mail System <mx@isp.example>\n",
    ],
)
def test_a_senderless_or_unnamed_report_is_read(sender: str) -> None:
    report = read_bounce(_postfix_text(sender, "failure notice", QMAIL_BODY))
    assert report is not None and report.recipients == ("gone@customer.example",) and report.permanent


@pytest.mark.parametrize(
    "subject",
    [
        "Undeliverable: Your request",
        "Delivery Status Notification (Failure)",
        "Mail delivery failed: returning message to sender",
        "Returned mail: see transcript for details",
        "failure notice",
        "Unzustellbar: Ihre Anfrage",
        "Non remis : votre demande",
        "Mail System Error - Returned Mail",
    ],
)
def test_a_failure_subject_from_any_sender_is_examined(subject: str) -> None:
    raw = _postfix_text("From: Mail Gateway <gateway@isp.example>\n", subject, QMAIL_BODY)
    report = read_bounce(raw)
    assert report is not None and report.recipients == ("gone@customer.example",)


def test_a_challenge_or_a_delay_is_not_permanent() -> None:
    delay = _postfix_text(
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n",
        "Delivery Status Notification (Delay)",
        "This is an automatically generated Delivery Status Notification\n\n"
        "THIS IS A WARNING MESSAGE ONLY.\n",
    )
    report = read_bounce(delay, null_sender=True)
    assert report is None or not report.permanent
    challenge = _postfix_text(
        "From: postmaster@isp.example\n",
        "Returned mail: please confirm your address",
        "Your message was held. To be added to the whitelist, confirm that you are a person:\n"
        "https://isp.example/confirm/1\n",
    )
    report = read_bounce(challenge, null_sender=True)
    assert report is None or not report.permanent


def test_a_senderless_mail_that_is_no_report_is_quarantined(desk: Factory, cfg: Config) -> None:
    person = (
        "To: support@example.com\nSubject: Question\nMessage-ID: <nosender@customer.example>\n\n"
        "Hello, which of these addresses should I use?\n\n  a@customer.example\n  b@customer.example\n"
    )
    result = deliver_lmtp(desk, cfg, person.replace("\n", "\r\n").encode(), "")
    assert result.outcome == "quarantined" and "no sender address" in result.reason
    senderless_bounce = _postfix_text("From: MAILER-DAEMON <>\n", "failure notice", QMAIL_BODY)
    result = deliver_lmtp(desk, cfg, senderless_bounce, "")
    assert recognised(result), result
