"""`maildctl import mbox|maildir` (a backlog replayed through the pipeline in date order, nothing sent) and
`maildctl ticket export` (a conversation as an mbox), run as real maildctl subprocesses.

The mailboxes are small and generated here, in an order that is not the mails' date order."""

from __future__ import annotations

import base64
import datetime as dt
import json
import mailbox
import subprocess
from email import message_from_bytes, policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage import attachments as attachment_store
from maild.storage.db import transaction
from maild.storage.models import Attachment, AuditLog, Message, SpoolEntry
from maild.storage.spool import read_raw
from maild.tickets.ticket_ops import add_note
from tests.conftest import run_cli
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    crlf,
    deliver,
    make_agent,
    make_desk,
    outbox,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
AGENT = "bob.agent@example.com"
ARCHIVE = "archive@example.com"
DAY = dt.timedelta(days=1)
T0 = dt.datetime(2025, 6, 2, 8, 0, tzinfo=dt.UTC)  # the backlog's first mail: numbers are SUP-25-06-…
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "archive", [ARCHIVE], "ARC-{{nr}}")
    make_agent(session_factory, AGENT, "Bob Agent", ["support", "archive"])


def raw_mail(
    sender: str,
    subject: str,
    message_id: str,
    date: dt.datetime | None,
    body: str,
    *,
    in_reply_to: str = "",
    references: str = "",
    to: str = SUPPORT,
    attachment: bytes | None = None,
) -> bytes:
    head = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: {message_id}"]
    if date is not None:
        head.append(f"Date: {format_datetime(date)}")
    if in_reply_to:
        head.append(f"In-Reply-To: {in_reply_to}")
    if references:
        head.append(f"References: {references}")
    head.append("MIME-Version: 1.0")
    if attachment is None:
        return crlf("\n".join([*head, "Content-Type: text/plain; charset=utf-8", "", body]))
    pdf = base64.encodebytes(attachment).decode()
    parts = [
        'Content-Type: multipart/mixed; boundary="b0"',
        "",
        "--b0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        body,
        "--b0",
        'Content-Type: application/pdf; name="scan.pdf"',
        'Content-Disposition: attachment; filename="scan.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        pdf,
        "--b0--",
        "",
    ]
    return crlf("\n".join([*head, *parts]))


ALICE = "Alice Example <alice@customer.example>"
CAROL = "Carol Client <carol@client.example>"


def backlog() -> list[bytes]:
    """Two conversations and the desk's own old reply, in file order newest first (date order is not
    file order); Carol's last reply has no Date at all."""
    a1 = raw_mail(
        ALICE, "Printer on fire", "<a1@customer.example>", T0, "the printer burns\n", attachment=PDF
    )
    b1 = raw_mail(CAROL, "Invoice wrong", "<b1@client.example>", T0 + DAY, "invoice 42 is wrong\n")
    desk = raw_mail(
        "Support <support@example.com>",
        "Re: Printer on fire",
        "<d1@example.com>",
        T0 + 2 * DAY,
        "we are on it\n",
        in_reply_to="<a1@customer.example>",
        references="<a1@customer.example>",
        to="alice@customer.example",
    )
    a2 = raw_mail(
        ALICE,
        "Re: Printer on fire",
        "<a2@customer.example>",
        T0 + 3 * DAY,
        "still burning\n",
        in_reply_to="<d1@example.com>",
        references="<a1@customer.example> <d1@example.com>",
    )
    a3 = raw_mail(
        ALICE,
        "AW: Printer on fire",
        "<a3@customer.example>",
        T0 + 4 * DAY,
        "out now\n",
        in_reply_to="<a2@customer.example>",
    )
    b2 = raw_mail(
        CAROL,
        "Re: Invoice wrong",
        "<b2@client.example>",
        None,
        "any news?\n",
        references="<b1@client.example>",
    )
    return [b2, a3, a2, desk, b1, a1]


def write_mbox(path: Path, mails: list[bytes]) -> Path:
    box = mailbox.mbox(str(path))
    for raw in mails:
        box.add(raw)
    box.flush()
    box.close()
    return path


def write_maildir(path: Path, mails: list[bytes]) -> Path:
    box = mailbox.Maildir(str(path), create=True)
    for raw in mails:
        box.add(raw)
    box.close()
    return path


def cli(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("maildctl", *args, config=config_file)


def import_json(config_file: Path, kind: str, path: Path, desk: str = "support") -> dict[str, Any]:
    proc = cli(config_file, "import", kind, str(path), "--desk", desk, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def counts(summary: dict[str, Any]) -> tuple[int, int, int, int, int, dict[str, int]]:
    return (
        summary["created"],
        summary["threaded"],
        summary["duplicates"],
        summary["desk_replies"],
        summary["desk_own_mail"],
        summary["other"],
    )


def naive(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=None)


def test_mbox_import_threads_in_date_order_and_sends_nothing(
    session_factory: Factory, config_file: Path, tmp_path: Path
) -> None:
    summary = import_json(config_file, "mbox", write_mbox(tmp_path / "backlog.mbox", backlog()))
    assert summary["mails"] == 6
    assert counts(summary) == (2, 3, 0, 1, 0, {})
    assert summary["undated"] == 1
    assert (summary["first_date"], summary["last_date"]) == ("2025-06-02T08:00:00Z", "2025-06-06T08:00:00Z")
    with session_factory() as s:
        alice, carol = tickets(s)
        # Numbered by the mails' dates, oldest conversation first, though file order is the reverse.
        assert (alice.number, carol.number) == ("SUP-25-06-1", "SUP-25-06-2")
        assert alice.customer.email == "alice@customer.example"
        assert naive(T0) == alice.created_at
        assert alice.updated_at == naive(T0 + 4 * DAY)
        # The desk's old answer is on the ticket as the desk's (agent) message, in its place in time.
        assert [(m.message_id, m.kind) for m in alice.messages] == [
            ("<a1@customer.example>", "customer"),
            ("<d1@example.com>", "agent"),
            ("<a2@customer.example>", "customer"),
            ("<a3@customer.example>", "customer"),
        ]
        assert [m.created_at for m in alice.messages] == [naive(T0 + n * DAY) for n in (0, 2, 3, 4)]
        assert alice.messages[1].visible_text == "we are on it"
        assert [a.filename for a in alice.messages[0].attachments] == ["scan.pdf"]
        # The undated reply came last and is dated at the import; it still threads by References.
        assert [m.message_id for m in carol.messages] == ["<b1@client.example>", "<b2@client.example>"]
        assert carol.messages[1].created_at > naive(NOW)
        # Nothing at all was queued: no auto-reply to the customers, no notice to the agent.
        assert outbox(s, agents=True) == []
        ingress = set(s.scalars(select(SpoolEntry.ingress)))
        assert ingress == {"import"}
        desk_row = s.scalars(select(SpoolEntry).where(SpoolEntry.outcome == "desk_reply")).one()
        assert desk_row.ticket_id == alice.id
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "import")).one()
        assert (audit.detail["desk"], audit.detail["created"]) == ("support", 2)


def test_importing_the_same_mbox_again_adds_nothing(
    session_factory: Factory, config_file: Path, tmp_path: Path
) -> None:
    path = write_mbox(tmp_path / "backlog.mbox", backlog())
    import_json(config_file, "mbox", path)
    with session_factory() as s:
        before = (len(tickets(s)), s.scalar(select(func.count(Message.id))))
    again = import_json(config_file, "mbox", path)
    assert counts(again) == (0, 0, 6, 0, 0, {})  # the desk's stored reply too
    with session_factory() as s:
        assert (len(tickets(s)), s.scalar(select(func.count(Message.id)))) == before == (2, 6)
        assert outbox(s, agents=True) == []


def test_the_same_mail_twice_in_one_backlog_is_one_ticket_and_a_duplicate(
    session_factory: Factory, config_file: Path, tmp_path: Path
) -> None:
    # Both copies land in one batch (one transaction): the second gets a spool row of its own and is
    # processed after the first, as a second delivery would be.
    first = backlog()[-1]
    summary = import_json(config_file, "mbox", write_mbox(tmp_path / "twice.mbox", [first, first]))
    assert (summary["created"], summary["duplicates"]) == (1, 1)
    with session_factory() as s:
        assert len(tickets(s)) == 1
        assert sorted(r.outcome or "" for r in s.scalars(select(SpoolEntry))) == ["created", "duplicate"]


def test_maildir_import(session_factory: Factory, config_file: Path, tmp_path: Path) -> None:
    summary = import_json(config_file, "maildir", write_maildir(tmp_path / "Maildir", backlog()))
    assert counts(summary) == (2, 3, 0, 1, 0, {})
    with session_factory() as s:
        alice, carol = tickets(s)
        assert (len(alice.messages), len(carol.messages)) == (4, 2)
        assert alice.created_at == naive(T0)


def test_future_dates_are_clamped_and_the_text_summary_is_printed(
    session_factory: Factory, config_file: Path, tmp_path: Path
) -> None:
    future = raw_mail(ALICE, "From the future", "<f1@customer.example>", NOW.replace(year=2099), "hi\n")
    path = write_mbox(tmp_path / "future.mbox", [future])
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    proc = cli(config_file, "import", "mbox", str(path), "--desk", "support")
    assert proc.returncode == 0, proc.stderr
    assert "tickets created      1" in proc.stdout
    assert "mail/s" in proc.stdout
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    with session_factory() as s:
        (only,) = tickets(s)
        assert before <= only.created_at <= dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _agent_and_stranger(config_file: Path, tmp_path: Path) -> dict[str, Any]:
    """An agent writing to the desk's plain address (held: not an agent reply) and a stranger's new
    mail to a replies_only desk (refused)."""
    assert cli(config_file, "desk", "set", "archive", "--replies-only").returncode == 0
    agent_mail = raw_mail(f"Bob <{AGENT}>", "Hello", "<g1@example.com>", T0, "hi\n", to=ARCHIVE)
    stranger = raw_mail(CAROL, "Question", "<q1@client.example>", T0 + DAY, "?\n", to=ARCHIVE)
    return import_json(
        config_file, "mbox", write_mbox(tmp_path / "x.mbox", [agent_mail, stranger]), "archive"
    )


def test_refused_and_held_mail_are_counted(
    session_factory: Factory, config_file: Path, tmp_path: Path
) -> None:
    summary = _agent_and_stranger(config_file, tmp_path)
    assert counts(summary) == (0, 0, 0, 0, 0, {"held": 1, "refused": 1})
    with session_factory() as s:
        assert tickets(s) == []


def test_refused_import_sends_no_refusal(session_factory: Factory, config_file: Path, tmp_path: Path) -> None:
    _agent_and_stranger(config_file, tmp_path)
    with session_factory() as s:
        assert outbox(s, agents=True) == []


@pytest.mark.parametrize(
    ("kind", "make", "expected"),
    [
        ("mbox", lambda p: p / "missing.mbox", "does not exist"),
        ("mbox", lambda p: _text_file(p / "notes.txt"), "is not an mbox"),
        ("mbox", lambda p: write_maildir(p / "Maildir", []), "is a directory"),
        ("maildir", lambda p: _text_file(p / "notes.txt"), "is not a Maildir"),
        ("maildir", lambda p: p, "is not a Maildir"),
    ],
)
def test_bad_sources_say_one_line(
    config_file: Path, tmp_path: Path, kind: str, make: Any, expected: str
) -> None:
    proc = cli(config_file, "import", kind, str(make(tmp_path)), "--desk", "support")
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def _text_file(path: Path) -> Path:
    path.write_text("just some notes\n")
    return path


def test_unknown_desk(config_file: Path, tmp_path: Path) -> None:
    proc = cli(
        config_file, "import", "mbox", str(write_mbox(tmp_path / "b.mbox", backlog())), "--desk", "nope"
    )
    assert proc.returncode != 0
    assert proc.stderr.strip() == "maildctl: no desk named 'nope': see 'maildctl desk list'"


# --- export -----------------------------------------------------------------------------------------


def _conversation(factory: Factory, cfg: Config) -> str:
    """A ticket with a customer mail with a PDF, an agent's reply by mail, the customer's reply, and an
    internal note with an attachment (no raw mail: generated on export)."""
    first = raw_mail(
        ALICE, "Printer on fire", "<a1@customer.example>", T0, "the printer burns\n", attachment=PDF
    )
    number = deliver(factory, cfg, first, SUPPORT, now=T0).ticket_number
    assert number is not None
    to = agent_address(factory, cfg, number, AGENT)
    answer = raw_mail(
        f"Bob Agent <{AGENT}>",
        f"Re: [{number}] Printer on fire",
        "<r1@example.com>",
        T0 + DAY,
        "use water\n",
        to=to,
    )
    assert deliver(factory, cfg, answer, to, now=T0 + DAY).outcome == "replied"
    second = raw_mail(
        ALICE,
        "Re: Printer on fire",
        "<a2@customer.example>",
        T0 + 2 * DAY,
        "it worked\n",
        references="<a1@customer.example>",
    )
    assert deliver(factory, cfg, second, SUPPORT, now=T0 + 2 * DAY).outcome == "replied"
    digest = attachment_store.store(cfg.attachment_dir, b"log line\n")
    with transaction(factory) as s:
        note = add_note(
            s,
            ticket(s, number),
            "customer is nice",
            author=("Bob Agent", AGENT),
            actor="tester",
            now=T0 + 3 * DAY,
        )
        note.attachments.append(
            Attachment(filename="debug.log", content_type="text/plain", size=9, sha256=digest)
        )
    return number


def read_mbox(path: Path) -> list[bytes]:
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()


def test_export_writes_the_conversation_with_raw_mail_and_generated_notes(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    number = _conversation(session_factory, cfg)
    out = tmp_path / "ticket.mbox"
    proc = cli(config_file, "ticket", "export", number, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{number}: 3 message(s) written to {out}" in proc.stderr
    exported = read_mbox(out)
    ids = [message_from_bytes(raw, policy=policy.default)["Message-ID"] for raw in exported]
    assert ids == ["<a1@customer.example>", "<r1@example.com>", "<a2@customer.example>"]
    with session_factory() as s:
        first = s.scalars(select(Message).where(Message.message_id == "<a1@customer.example>")).one()
        entry = s.get(SpoolEntry, first.spool_id)
        assert entry is not None
        assert exported[0] == read_raw(cfg.spool_dir, entry).replace(b"\r\n", b"\n")  # the original bytes

    # stdout by default; the note only with --include-notes, generated with its attachment.
    proc = run_cli(
        "maildctl", "ticket", "export", number, "--include-notes", config=config_file, subprocess=True
    )
    assert proc.returncode == 0, proc.stderr
    stdout_file = tmp_path / "stdout.mbox"
    stdout_file.write_text(proc.stdout)
    with_notes = read_mbox(stdout_file)
    assert len(with_notes) == 4
    note = message_from_bytes(with_notes[3], policy=policy.default)
    assert (note["X-Maild-Kind"], note["X-Maild-Ticket"], note["From"]) == (
        "note",
        number,
        f"Bob Agent <{AGENT}>",
    )
    body = note.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "customer is nice"
    (log,) = list(note.iter_attachments())
    assert (log.get_filename(), log.get_content()) == ("debug.log", "log line\n")


def test_import_of_an_export_recreates_the_ticket_on_a_fresh_desk(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    number = _conversation(session_factory, cfg)
    out = tmp_path / "ticket.mbox"
    assert cli(config_file, "ticket", "export", number, "--output", str(out)).returncode == 0
    with session_factory() as s:
        queued = len(outbox(s, agents=True))
    summary = import_json(config_file, "mbox", out, desk="archive")
    assert (summary["created"], summary["threaded"]) == (1, 1)
    with session_factory() as s:
        original = ticket(s, number)
        copy = ticket(s, "ARC-1")
        assert (copy.subject, copy.customer.email, copy.desk.name) == (
            original.subject,
            original.customer.email,
            "archive",
        )
        assert copy.created_at == original.created_at

        def customer_side(t: Any) -> list[tuple[Any, ...]]:
            return [
                (m.message_id, m.text.strip(), m.created_at, [(a.filename, a.sha256) for a in m.attachments])
                for m in t.messages
                if m.kind == "customer"
            ]

        assert customer_side(copy) == customer_side(original)
        assert len(customer_side(copy)) == 2
        assert len(original.messages) == 4  # the agent's mail in the export did not touch the original
        assert len(outbox(s, agents=True)) == queued


def test_export_errors(config_file: Path, tmp_path: Path) -> None:
    proc = cli(config_file, "ticket", "export", "SUP-99")
    assert (proc.returncode, proc.stderr.strip()) == (
        1,
        "maildctl: no ticket 'SUP-99': see 'maildctl ticket list'",
    )
    assert "export" in cli(config_file, "ticket", "export", "--help").stdout
    assert "--desk" in cli(config_file, "import", "mbox", "--help").stdout
