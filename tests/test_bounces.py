"""Bounces (issue 5 item 2): maild.mail.dsn reads the delivery reports of tests/corpus/bounces/1NN-*.eml
exactly
as their json says; the bounce stage matches a report to the outbox row and recipient (VERP, else the
original Message-ID) and marks the contact, notes the ticket and tells the agents; `maildctl contact
unbounce` undoes the mark."""

from __future__ import annotations

import hashlib
import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.dsn import read_bounce
from maild.mail.tokens import bounce_address, load_secret
from maild.pipeline import bounce, parse, runner
from maild.pipeline.context import BounceInfo, Context, Stop
from maild.storage.db import transaction
from maild.storage.models import AuditLog, Contact, Message, OutboxMessage, SpoolEntry
from tests.conftest import run_cli
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    crlf,
    deliver,
    mail,
    make_agent,
    make_desk,
    messages,
    outbox,
    spool,
    tickets,
)

CORPUS = Path(__file__).parent / "corpus" / "bounces"
FILES = sorted(p for p in CORPUS.glob("1[0-9][0-9]-*.eml"))
ALICE = "alice@customer.example"


def expected(eml: Path) -> dict:
    return json.loads(eml.with_suffix(".json").read_text())


# --- the corpus, read by maild.mail.dsn ----------------------------------------------------------------


def test_the_corpus_has_every_mta_family() -> None:
    names = " ".join(p.name for p in FILES)
    for family in (
        "postfix",
        "exim-dsn",
        "exim-classic",
        "sendmail",
        "office365",
        "gmail",
        "qmail",
        "courier",
    ):
        assert family in names
    assert "verp-only" in names and len(FILES) >= 12
    assert {expected(p)["class"] for p in FILES} == {"bounce"}


@pytest.mark.parametrize("eml", FILES, ids=lambda p: p.stem)
def test_dsn_reads_each_corpus_bounce_exactly(eml: Path) -> None:
    want = expected(eml)
    report = read_bounce(eml.read_bytes())
    assert report is not None
    first = report.failures[0] if report.failures else None
    assert report.permanent is want["permanent"]
    assert list(report.recipients) == want["recipients"]
    assert (first.status if first else "") == want["status"]
    if want["recipients"]:
        assert first is not None and first.diagnostic  # the remote server's words, or the report's
    if eml.name.startswith("111-"):
        assert report.original_message_id == ""  # nothing but VERP can match this one
    else:
        # Every other report carries the returned mail, its headers, or a reference to it.
        assert report.original_message_id.endswith("@example.com>")


def test_dsn_fields_in_detail() -> None:
    gmail = read_bounce((CORPUS / "108-gmail.eml").read_bytes())
    assert gmail is not None and gmail.kind == "dsn"
    [failure] = gmail.failures
    assert (failure.recipient, failure.action, failure.status) == ("ivan.nobody@gmail.com", "failed", "5.1.1")
    # Gmail's folded, code-repeating reply reads as one sentence.
    assert failure.diagnostic.startswith(
        "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking"
    )
    assert "550-5.1.1" not in failure.diagnostic
    assert gmail.original_message_id == "<b1c2d3e4f5a60718293a4b5c6d7e8f90@example.com>"

    # Exim and Courier write Status 5.0.0; the remote server's 5.1.1 says more.
    exim = read_bounce((CORPUS / "103-exim-dsn.eml").read_bytes())
    assert exim is not None and exim.failures[0].status == "5.1.1"

    # Original-Recipient (as we sent it) is what the report's recipient is; Final-Recipient is kept.
    two = read_bounce((CORPUS / "113-postfix-two-recipients-quota.eml").read_bytes())
    assert two is not None
    assert [(f.original_recipient, f.recipient, f.status) for f in two.failures] == [
        ("info@family.example", "mia@family.example", "5.2.2"),
        ("noah@family.example", "noah@family.example", "5.1.1"),
    ]
    delayed = read_bounce((CORPUS / "102-postfix-delayed.eml").read_bytes())
    assert delayed is not None
    assert (delayed.failures[0].action, delayed.permanent) == ("delayed", False)
    assert delayed.failures[0].diagnostic == "connect to mx.slow.example[192.0.2.77]:25: Connection timed out"
    qmail = read_bounce((CORPUS / "114-qmail-no-mailbox.eml").read_bytes())
    assert qmail is not None and qmail.kind == "text"
    assert qmail.failures[0].diagnostic == "Sorry, no mailbox here by that name. (#5.1.1)"


def test_a_failed_action_with_a_temporary_status_is_not_permanent() -> None:
    # A queue that gave up after days of 4xx: the mail is lost, but the address is not known to be bad.
    raw = postfix_dsn(
        ALICE, status="4.4.1", action="failed", diagnostic="X-Postfix; connect to mx: timed out"
    )
    report = read_bounce(raw)
    assert report is not None
    assert (report.failures[0].action, report.failures[0].status, report.permanent) == (
        "failed",
        "4.4.1",
        False,
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
        b"From: MAILER-DAEMON@x\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: ;;;\r\n",
        b'From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; boundary="b\r\n\r\n'
        b"--b\r\nAction: failed\r\n",
        b"From: postmaster@x\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\n\xff\xfe\xfd",
    ],
)
def test_garbage_is_no_bounce_and_never_raises(raw: bytes) -> None:
    assert read_bounce(raw) is None
    # To our return path from a null sender, a failure notice naming nobody is still one; never an error.
    report = read_bounce(raw, to_verp=True, null_sender=True)
    assert report is None or (report.failures == () and report.kind == "text")


def test_what_is_not_a_bounce() -> None:
    # A person forwarding a bounce, a read receipt, a vacation reply to the return path.
    forwarded = mail(subject="Fwd: Undelivered Mail Returned to Sender", body=postfix_dsn(ALICE).decode())
    assert read_bounce(forwarded) is None
    receipt = crlf(
        "From: Alice <alice@customer.example>\nTo: support@example.com\nSubject: Read: Printer\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"\n\n'
        "--r\nContent-Type: text/plain\n\nYour message was read.\n"
        "--r\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; alice@customer.example\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n"
        "--r--\n"
    )
    assert read_bounce(receipt) is None
    vacation = mail(
        subject="Out of office: Printer on fire",
        body="I am away until Monday.\n",
        extra=[("Auto-Submitted", "auto-replied")],
    )
    assert read_bounce(vacation, to_verp=True) is None
    # A person's mail that merely mentions a status code is not a bounce either.
    assert read_bounce(mail(body="Our server said 550 5.1.1, what does it mean?\n")) is None


# --- reports built for the pipeline tests ---------------------------------------------------------


def postfix_dsn(
    recipient: str,
    *,
    to: str = "bounces@example.com",
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str | None = None,
    original_id: str = "<unknown-original@example.com>",
    report_id: str = "<20260307093101.8A1B2C0D3E@mx1.customer.example>",
    received: str = "mx1.customer.example",
    final_recipient: str | None = None,
) -> bytes:
    """A Postfix bounce, as in tests/corpus/bounces/101 (and 102 for `delayed`)."""
    diagnostic = diagnostic or f"smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown"
    final = final_recipient or recipient
    subject = (
        "Delayed Mail (still being retried)" if action == "delayed" else "Undelivered Mail Returned to Sender"
    )
    return crlf(
        f"""Received: from {received} by mail.example.com (Postfix) id 4F2C1A0431;
\tSat,  7 Mar 2026 09:31:02 +0000
Date: Sat,  7 Mar 2026 09:31:01 +0000 (UTC)
From: MAILER-DAEMON@mx1.customer.example (Mail Delivery System)
Subject: {subject}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B.1/mx1"
Message-Id: {report_id}

This is a MIME-encapsulated message.

--B.1/mx1
Content-Description: Notification
Content-Type: text/plain; charset=utf-8

This is the mail system at host mx1.customer.example.

<{final}>: host mailstore.customer.example[10.0.4.12] said: 550 {status}
    <{final}>: Recipient address rejected: User unknown (in reply to RCPT TO command)

--B.1/mx1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.customer.example
X-Postfix-Queue-ID: 8A1B2C0D3E

Final-Recipient: rfc822; {final}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--B.1/mx1
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Message-ID: {original_id}
From: support <support@example.com>
To: {recipient}
Subject: [SUP-26-03-1] Printer on fire

--B.1/mx1--
"""
    )


# --- through the pipeline -------------------------------------------------------------------------


@pytest.fixture
def desk(session_factory: sessionmaker[Session]) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, "bob@example.com", "Bob Agent", ["support"])
    make_agent(session_factory, "eve@example.com", "Eve Agent", ["support"])


@pytest.fixture
def reply(desk: None, cfg: Config, session_factory: sessionmaker[Session]) -> OutboxMessage:
    """A ticket from Alice, and its ticket_created auto-reply in the outbox (to Alice)."""
    assert deliver(session_factory, cfg, mail(), SUPPORT).outcome == "created"
    with session_factory() as s:
        [row] = outbox(s)
        s.expunge(row)
    assert row.template == "ticket_created" and row.rcpt_to == [ALICE]
    return row


def verp(cfg: Config, row: OutboxMessage, recipient: str = ALICE) -> str:
    return bounce_address(load_secret(cfg.data_dir), row.mail_from, row.id, recipient)


def contact(s: Session, email: str) -> Contact | None:
    return s.scalars(select(Contact).where(Contact.email == email)).first()


def notes(s: Session) -> list[Message]:
    return [m for m in messages(s) if m.kind == "system"]


def test_a_permanent_bounce_by_verp_marks_notes_and_tells_the_agents(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    address = verp(cfg, reply)
    result = deliver(session_factory, cfg, postfix_dsn(ALICE, to=address), address)

    assert result.outcome == "bounce"
    assert result.reason == (
        f"permanent failure for {ALICE}: 550 5.1.1 <{ALICE}>: Recipient address rejected: User unknown"
    )
    with session_factory() as s:
        [ticket] = tickets(s)  # no new ticket
        alice = contact(s, ALICE)
        assert alice is not None and alice.status == "bouncing"
        assert alice.status_reason == f"550 5.1.1 <{ALICE}>: Recipient address rejected: User unknown"
        [note] = notes(s)
        assert note.ticket_id == ticket.id
        assert note.text.startswith(f"Mail to {ALICE} bounced: 550 5.1.1 <{ALICE}>")
        assert f"maildctl contact unbounce {ALICE}" in note.text and "matched by verp" in note.text
        [_, notice] = outbox(s)
        assert (notice.template, notice.ticket_id) == ("bounce_notice", ticket.id)
        assert notice.rcpt_to == ["bob@example.com", "eve@example.com"]
        assert result.outbox_ids == (notice.id,)
        sent = message_from_bytes(notice.raw, policy=policy.default)
        assert [a.addr_spec for a in sent["To"].addresses] == ["bob@example.com", "eve@example.com"]
        assert str(sent["Subject"]) == f"[{ticket.number}] Mail to {ALICE} bounced"
        assert sent["Auto-Submitted"] == "auto-replied"
        body = sent.get_body(("plain",)).get_content()
        for words in (
            ticket.number,
            ALICE,
            "5.1.1",
            "Recipient address rejected: User unknown",
            ticket.subject,
        ):
            assert words in body
        [row] = [r for r in spool(s) if r.outcome == "bounce"]
        assert row.ticket_id == ticket.id
        [audit] = s.scalars(select(AuditLog).where(AuditLog.action == "contact_bouncing")).all()
        assert audit.detail["email"] == ALICE and audit.detail["outbox_id"] == reply.id


def test_verp_matches_a_report_that_names_nobody_or_a_rewritten_address(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    address = verp(cfg, reply)
    nobody = (CORPUS / "111-verp-only-no-recipient.eml").read_bytes()
    nobody = nobody.replace(b"bounces+29-c2v3b4n5m6a7s2d3f4g5@example.com", address.encode())
    result = deliver(session_factory, cfg, nobody, address)
    assert (result.outcome, result.reason) == ("bounce", f"permanent failure for {ALICE}: no status given")
    with session_factory() as s:
        assert contact(s, ALICE).status == "bouncing"  # type: ignore[union-attr]

    # The customer's server rewrote the address (alias → mailbox): the VERP MAC still names Alice.
    with transaction(session_factory) as s:
        contact(s, ALICE).status = "active"  # type: ignore[union-attr]
    rewritten = postfix_dsn(
        ALICE,
        to=address,
        final_recipient="a.example@mailstore.customer.example",
        report_id="<other@mx1.customer.example>",
    )
    result = deliver(session_factory, cfg, rewritten, address)
    assert result.outcome == "bounce" and result.reason.startswith(
        f"permanent failure for {ALICE}: 550 5.1.1"
    )
    with session_factory() as s:
        assert contact(s, ALICE).status == "bouncing"  # type: ignore[union-attr]
        assert contact(s, "a.example@mailstore.customer.example") is None


def test_without_an_envelope_recipient_the_verp_address_in_the_headers_matches(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    # IMAP, or a pipe without --recipient: the bounce's To names the return path it was sent to.
    address = verp(cfg, reply)
    result = deliver(session_factory, cfg, postfix_dsn(ALICE, to=address), "")
    assert result.outcome == "bounce" and result.reason.startswith(f"permanent failure for {ALICE}: ")
    with session_factory() as s:
        [note] = notes(s)
        assert "matched by verp" in note.text


def test_a_temporary_bounce_is_only_noted(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    address = verp(cfg, reply)
    delayed = postfix_dsn(
        ALICE,
        to=address,
        status="4.4.1",
        action="delayed",
        diagnostic="X-Postfix; connect to mx.customer.example[192.0.2.7]:25: Connection timed out",
    )
    result = deliver(session_factory, cfg, delayed, address)
    assert result.outcome == "bounce"
    assert result.reason == (
        f"temporary failure for {ALICE}: 4.4.1 connect to mx.customer.example[192.0.2.7]:25: "
        "Connection timed out"
    )
    with session_factory() as s:
        assert contact(s, ALICE).status == "active"  # type: ignore[union-attr]
        [note] = notes(s)
        assert note.text.startswith(f"Mail to {ALICE} is delayed: 4.4.1 connect to")
        assert [r.template for r in outbox(s)] == ["ticket_created"]  # no notice
        assert len(tickets(s)) == 1


def test_an_unmatched_bounce_is_archived(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    result = deliver(session_factory, cfg, postfix_dsn(ALICE, to=SUPPORT), SUPPORT)
    assert result.outcome == "archived"
    assert result.reason == (
        "bounce-unmatched: no VERP return path, and <unknown-original@example.com> is no mail maild sent"
    )
    with session_factory() as s:
        assert contact(s, ALICE).status == "active"  # type: ignore[union-attr]
        assert notes(s) == [] and len(outbox(s)) == 1 and len(tickets(s)) == 1


def test_without_verp_the_original_message_id_matches(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    # A forwarder re-sent our mail with its own envelope sender: the bounce reaches the desk address.
    raw = postfix_dsn(ALICE, to=SUPPORT, original_id=reply.message_id)
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "bounce" and result.reason.startswith(f"permanent failure for {ALICE}")
    with session_factory() as s:
        assert contact(s, ALICE).status == "bouncing"  # type: ignore[union-attr]
        [note] = notes(s)
        assert "matched by message-id" in note.text
    # A report about someone the mail was not sent to does not touch Alice.
    other = postfix_dsn(
        "mallory@customer.example",
        to=SUPPORT,
        original_id=reply.message_id,
        report_id="<x2@mx1.customer.example>",
    )
    result = deliver(session_factory, cfg, other, SUPPORT)
    assert result.outcome == "archived" and result.reason.startswith("bounce-unmatched: ")
    with session_factory() as s:
        assert contact(s, "mallory@customer.example") is None


def test_the_same_bounce_again_is_a_duplicate_and_changes_nothing_twice(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    address = verp(cfg, reply)
    raw = postfix_dsn(ALICE, to=address)
    assert deliver(session_factory, cfg, raw, address).outcome == "bounce"
    again = deliver(session_factory, cfg, raw, address)
    assert (again.outcome, again.reason) == ("duplicate", "this bounce was processed before")
    # The same report by another path: other Received lines, other bytes, same report Message-ID.
    other_path = postfix_dsn(ALICE, to=address, received="mx2.customer.example")
    assert hashlib.sha256(other_path).digest() != hashlib.sha256(raw).digest()
    assert deliver(session_factory, cfg, other_path, address).outcome == "duplicate"
    # An unmatched one again: still archived once, then a duplicate.
    stray = postfix_dsn("x@y.example", to=SUPPORT, report_id="<stray@mx>")
    assert deliver(session_factory, cfg, stray, SUPPORT).outcome == "archived"
    assert deliver(session_factory, cfg, stray, SUPPORT).outcome == "duplicate"
    with session_factory() as s:
        assert len(notes(s)) == 1
        assert [r.template for r in outbox(s)] == ["ticket_created", "bounce_notice"]
        assert len(s.scalars(select(AuditLog).where(AuditLog.action == "contact_bouncing")).all()) == 1


def test_a_forged_verp_address_does_not_match(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    real = verp(cfg, reply)
    forged = real.replace(real.split("-", 1)[1].split("@")[0], "a" * 20)
    assert forged != real
    result = deliver(session_factory, cfg, postfix_dsn(ALICE, to=forged), forged)
    assert result.outcome == "archived"
    assert result.reason.startswith(
        f"bounce-unmatched: VERP return path for outbox row {reply.id} does not verify (forged or stale)"
    )
    # A row that does not exist, with a MAC made for it elsewhere.
    elsewhere = bounce_address(b"another secret", SUPPORT, 999, ALICE)
    result = deliver(session_factory, cfg, postfix_dsn(ALICE, to=elsewhere, report_id="<o@x>"), elsewhere)
    assert result.reason.startswith("bounce-unmatched: VERP return path names outbox row 999")
    with session_factory() as s:
        assert contact(s, ALICE).status == "active"  # type: ignore[union-attr]
        assert notes(s) == [] and len(outbox(s)) == 1


def test_an_agent_or_desk_address_is_never_marked_bouncing(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    with transaction(session_factory) as s:
        row = OutboxMessage(
            desk_id=reply.desk_id,
            ticket_id=reply.ticket_id,
            template="agent_notice",
            message_id="<n1@example.com>",
            mail_from=SUPPORT,
            rcpt_to=[],
            delivered_to=["bob@example.com"],
            subject="[SUP] note",
            raw=b"x",
        )
        s.add(row)
        s.flush()
        s.expunge(row)
    address = verp(cfg, row, "bob@example.com")
    result = deliver(session_factory, cfg, postfix_dsn("bob@example.com", to=address), address)
    assert result.outcome == "bounce"
    with session_factory() as s:
        assert contact(s, "bob@example.com") is None
        [note] = notes(s)
        assert "belongs to the helpdesk (an agent or a desk address): not marked bouncing" in note.text
        assert [r.template for r in outbox(s)] == ["ticket_created", "agent_notice"]  # no notice


def test_no_agents_no_notice(desk: None, cfg: Config, session_factory: sessionmaker[Session]) -> None:
    make_desk(session_factory, "sales", ["sales@example.com"], "SALES-{{nr}}")
    assert (
        deliver(session_factory, cfg, mail(to="sales@example.com"), "sales@example.com").outcome == "created"
    )
    with session_factory() as s:
        [row] = outbox(s)
        s.expunge(row)
    address = verp(cfg, row)
    assert deliver(session_factory, cfg, postfix_dsn(ALICE, to=address), address).outcome == "bounce"
    with session_factory() as s:
        assert contact(s, ALICE).status == "bouncing"  # type: ignore[union-attr]
        assert len(notes(s)) == 1 and len(outbox(s)) == 1


def test_mail_to_the_return_path_that_is_no_bounce_is_archived(
    reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    address = verp(cfg, reply)
    vacation = mail(
        to=address,
        subject="Out of office",
        body="Back on Monday.\n",
        message_id="<oof@c.example>",
        extra=[("Auto-Submitted", "auto-replied")],
    )
    result = deliver(session_factory, cfg, vacation, address)
    assert result.outcome == "archived" and result.reason.startswith("bounce-address: ")
    with session_factory() as s:
        assert contact(s, ALICE).status == "active"  # type: ignore[union-attr]
        assert notes(s) == []


# --- the stage on each corpus file, matched by Message-ID ----------------------------------------


def run_stage(
    session: Session, cfg: Config, raw: bytes, recipient: str
) -> tuple[Stop | None, BounceInfo | None]:
    entry = SpoolEntry(
        sha256=hashlib.sha256(raw).hexdigest(), recipient=recipient, ingress="pipe", size=len(raw)
    )
    session.add(entry)
    session.flush()
    ctx = Context(session=session, cfg=cfg, spool=entry, raw=raw, now=NOW)
    assert parse.run(ctx) is None
    stop = bounce.run(ctx)
    if stop is not None:  # the stage decides; the runner's writing step carries out what it decided
        runner.record_stop(ctx, stop)
    return stop, ctx.bounce


@pytest.mark.parametrize("eml", FILES, ids=lambda p: p.stem)
def test_the_stage_matches_each_corpus_bounce_to_the_mail_it_returns(
    eml: Path, reply: OutboxMessage, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    want = expected(eml)
    raw = eml.read_bytes()
    report = read_bounce(raw)
    assert report is not None
    with session_factory() as s:
        if report.original_message_id:
            # Our mail that came back: this id, to the recipients the report names.
            s.add(
                OutboxMessage(
                    desk_id=reply.desk_id,
                    ticket_id=reply.ticket_id,
                    template="agent_reply",
                    message_id=report.original_message_id,
                    mail_from=SUPPORT,
                    rcpt_to=[],
                    delivered_to=want["recipients"],
                    subject="s",
                    raw=b"x",
                )
            )
            s.flush()
        stop, info = run_stage(s, cfg, raw, SUPPORT)
        assert stop is not None and info is not None
        assert (info.permanent, list(info.recipients), info.status) == (
            want["permanent"],
            want["recipients"],
            want["status"],
        )
        if report.original_message_id:
            assert (stop.outcome, info.matched_by) == ("bounce", "message-id")
            assert info.outbox_id is not None
            states = {c.email: c.status for c in s.scalars(select(Contact))}
            for address in want["recipients"]:
                assert states.get(address, "active") == ("bouncing" if want["permanent"] else "active")
        else:
            assert stop.outcome == "archived" and stop.reason.startswith("bounce-unmatched: ")
            assert (info.outbox_id, info.matched_by) == (None, "")
        s.rollback()


# --- maildctl contact unbounce --------------------------------------------------------------------


def test_contact_unbounce(
    reply: OutboxMessage, cfg: Config, config_file: Path, session_factory: sessionmaker[Session]
) -> None:
    address = verp(cfg, reply)
    assert deliver(session_factory, cfg, postfix_dsn(ALICE, to=address), address).outcome == "bounce"
    listed = json.loads(run_cli("maildctl", "contact", "list", "--json", config=config_file).stdout)
    [alice] = [c for c in listed if c["email"] == ALICE]
    assert (alice["status"], alice["status_reason"]) == (
        "bouncing",
        f"550 5.1.1 <{ALICE}>: Recipient address rejected: User unknown",
    )
    table = run_cli("maildctl", "contact", "list", config=config_file).stdout
    assert "bouncing" in table and "Recipient address rejected" in table

    done = run_cli("maildctl", "contact", "unbounce", "Alice@Customer.example", config=config_file)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (
        0,
        f"contact {ALICE}: bouncing -> active",
        "",
    )
    with session_factory() as s:
        alice_row = contact(s, ALICE)
        assert alice_row is not None and (alice_row.status, alice_row.status_reason) == ("active", "")
        [audit] = s.scalars(select(AuditLog).where(AuditLog.action == "contact_unbounce")).all()
        assert audit.actor == "maildctl" and audit.detail["email"] == ALICE
        assert audit.detail["was"].startswith("550 5.1.1")

    for argument, complaint in (
        (ALICE, f"contact {ALICE} is not bouncing (status active)"),
        ("nobody@nowhere.example", "no contact nobody@nowhere.example"),
    ):
        proc = run_cli("maildctl", "contact", "unbounce", argument, config=config_file)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and complaint in proc.stderr
