"""`maildctl contact export` and `maildctl contact forget` (issue 18, item 8): a person's data as JSON and
an mbox, and its erasure everywhere maild keeps it.

The mail goes through the real spool and pipeline (tests/pipeline/helpers.py), an agent answers with
`maildctl ticket reply`, the outbox is delivered to the outgoing Maildir; then every text column of every
table and every file under the data directory is searched for what must be gone."""

from __future__ import annotations

import base64
import datetime as dt
import json
import mailbox
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, LargeBinary, String, Text, select
from sqlalchemy.orm import Session, sessionmaker

from maild.admin_cli.common import who
from maild.config import Config
from maild.outbound import sender
from maild.pipeline.runner import Result, process
from maild.storage import attachments as attachment_store
from maild.storage.models import AuditLog, Base, BlockEntry, Contact, Message, Rating, Ticket
from maild.storage.spool import record_received, write_raw
from maild.tickets import contact_forget
from maild.tickets.contact_data import address_pattern
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, crlf, deliver, make_agent, make_desk, ticket

Factory = sessionmaker[Session]
ALICE, ALICE_NAME = "alice.gdpr@customer.example", "Alicia Forgetmenot"
QUINN, QUINN_NAME = "quinn@other.example", "Quinn Keepme"
AGENT = "bob.agent@example.com"
PHRASE = "the purple giraffe swallowed invoice 4711"  # Alice's words
QUINN_PHRASE = "my lighthouse keeper reports a blue moon"  # Quinn's words, which stay
PDF_ALICE = b"%PDF-1.4\nalice only " + bytes(range(256)) + b"\n%%EOF\n"
PDF_SHARED = b"%PDF-1.4\nsent by both " + bytes(range(255, -1, -1)) + b"\n%%EOF\n"


@pytest.fixture
def config_file(data_dir: Path, database_url: str) -> Path:
    """With [web] public_url, so every mail to a customer carries their own ticket link (ticket_links)."""
    path = data_dir.parent / "maild.toml"
    path.write_text(
        f'data_dir = "{data_dir}"\n\n[database]\nurl = "{database_url}"\n\n'
        '[web]\npublic_url = "https://help.example.com"\n'
    )
    return path


def _mail(
    sender: str,
    subject: str,
    message_id: str,
    body: str,
    *,
    cc: str = "",
    in_reply_to: str = "",
    pdfs: tuple[tuple[str, bytes], ...] = (),
    html: str = "",
) -> bytes:
    head = [f"From: {sender}", f"To: {SUPPORT}", *([f"Cc: {cc}"] if cc else [])]
    head += [f"Subject: {subject}", f"Message-ID: {message_id}", f"Date: {format_datetime(NOW)}"]
    head += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"] if in_reply_to else []
    head.append("MIME-Version: 1.0")
    if html:
        alternative = ['Content-Type: multipart/alternative; boundary="a1"', "", "--a1"]
        alternative += ["Content-Type: text/plain; charset=utf-8", "", body, "--a1"]
        alternative += ["Content-Type: text/html; charset=utf-8", "", html, "--a1--", ""]
        return crlf("\n".join([*head, *alternative]))
    if not pdfs:
        return crlf("\n".join([*head, "Content-Type: text/plain; charset=utf-8", "", body]))
    parts = [
        'Content-Type: multipart/mixed; boundary="b1"',
        "",
        "--b1",
        "Content-Type: text/plain; charset=utf-8",
    ]
    parts += ["", body]
    for name, data in pdfs:
        parts += [
            "--b1",
            f'Content-Type: application/pdf; name="{name}"',
            "Content-Transfer-Encoding: base64",
        ]
        parts += [
            f'Content-Disposition: attachment; filename="{name}"',
            "",
            base64.encodebytes(data).decode(),
        ]
    return crlf("\n".join([*head, *parts, "--b1--", ""]))


@pytest.fixture
def world(session_factory: Factory, cfg: Config, config_file: Path) -> dict[str, str]:
    """Alice's own ticket (an attachment, an agent reply by maildctl, a rating), and Quinn's ticket with
    Alice as sub-customer, where both write and Quinn quotes Alice; everything delivered to the Maildir."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, AGENT, "Bob Agent", ["support"])
    first = _deliver_from(
        session_factory,
        cfg,
        ALICE,
        _mail(
            f"{ALICE_NAME} <{ALICE}>",
            "Invoice trouble",
            "<a1@customer.example>",
            f"Hello,\n\n{PHRASE}.\n\n{ALICE_NAME}\n",
            pdfs=(("alice.pdf", PDF_ALICE), ("shared.pdf", PDF_SHARED)),
        ),
    )
    mine = first.ticket_number
    assert mine is not None, first.reason
    reply = f"Dear {ALICE_NAME},\n\nwe found the giraffe; {ALICE} is on our list.\n"
    ok(ctl(config_file, "ticket", "reply", mine, stdin=reply.encode()))
    theirs_raw = _mail(
        f"{QUINN_NAME} <{QUINN}>",
        "Lighthouse",
        "<q1@other.example>",
        f"Hi,\n\n{QUINN_PHRASE}.\n",
        cc=f"{ALICE_NAME} <{ALICE}>",
        pdfs=(("same.pdf", PDF_SHARED),),
    )
    theirs = deliver(session_factory, cfg, theirs_raw, SUPPORT).ticket_number
    assert theirs is not None
    _shared_thread(session_factory, cfg, theirs)
    _rate_the_agent_reply(session_factory)
    sender.flush(session_factory, cfg)
    return {"mine": mine, "theirs": theirs}


def _shared_thread(session_factory: Factory, cfg: Config, theirs: str) -> None:
    """Alice writes on Quinn's ticket, and Quinn quotes her."""
    deliver(
        session_factory,
        cfg,
        _mail(
            f"{ALICE_NAME} <{ALICE}>",
            f"Re: [{theirs}] Lighthouse",
            "<a2@customer.example>",
            f"Quinn,\n\n{PHRASE} again, sorry.\n",
            in_reply_to="<q1@other.example>",
        ),
        SUPPORT,
    )
    # Quinn quotes Alice's line without her address: the stored text and the raw mail still name her.
    deliver(
        session_factory,
        cfg,
        _mail(
            f"{QUINN_NAME} <{QUINN}>",
            f"Re: [{theirs}] Lighthouse",
            "<q2@other.example>",
            f"Thanks.\n\n> {PHRASE} again, sorry.\n",
            in_reply_to="<a2@customer.example>",
            html=f"<p>Thanks.</p><blockquote>{PHRASE} again, sorry.</blockquote>",
        ),
        SUPPORT,
    )


def _rate_the_agent_reply(session_factory: Factory) -> None:
    """As the ticket page would: Alice rates the agent's reply, with a comment in her words."""
    with session_factory.begin() as session:
        agent_reply = session.scalars(
            select(Message).where(Message.kind == "agent").order_by(Message.id)
        ).first()
        assert agent_reply is not None
        alice = session.scalars(select(Contact).where(Contact.email == ALICE)).one()
        session.add(
            Rating(
                message_id=agent_reply.id,
                ticket_id=agent_reply.ticket_id,
                contact_id=alice.id,
                desk_id=agent_reply.desk_id,
                score=4,
                comment=f"{PHRASE}, but fast",
            )
        )


def _deliver_from(factory: Factory, cfg: Config, mail_from: str, raw: bytes) -> Result:
    """helpers.deliver with an envelope sender (what LMTP and SMTP record in spool.mail_from)."""
    digest = write_raw(cfg.spool_dir, raw)
    with factory.begin() as session:
        spool_id = record_received(session, digest, len(raw), SUPPORT, "lmtp", mail_from).id
    return process(factory, cfg, spool_id, NOW)


def _text_columns() -> list[tuple[str, str]]:
    return [
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, String | Text | JSON | LargeBinary)
    ]


def _leftovers(session_factory: Factory, data_dir: Path, needles: list[str]) -> list[str]:
    """Where any needle is still found: `table.column` of every text column, and every file."""
    found = []
    with session_factory() as session:
        for table, column in _text_columns():
            for (value,) in session.execute(
                Base.metadata.tables[table].select().with_only_columns(Base.metadata.tables[table].c[column])
            ):
                text = _as_text(value).lower()
                found += [f"{table}.{column}: {n}" for n in needles if n.lower() in text]
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            found += [f"{path.relative_to(data_dir)}: {n}" for n in needles if n.lower().encode() in data]
    return found


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def test_forget_leaves_nothing_of_the_person_and_everything_of_the_others(
    session_factory: Factory, cfg: Config, config_file: Path, world: dict[str, str]
) -> None:
    needles = [ALICE, ALICE_NAME, PHRASE]
    before = {
        place.split(":")[0].split("/")[0] for place in _leftovers(session_factory, cfg.data_dir, needles)
    }
    assert before >= {
        "audit_log.detail",
        "auto_replies.address",
        "contacts.display_name",
        "contacts.email",
        "messages.from_address",
        "messages.from_name",
        "messages.html",
        "messages.text",
        "messages.visible_text",
        "outbox.delivered_to",
        "outbox.raw",
        "outgoing",  # the outgoing Maildir
        "ratings.comment",
        "spool",  # the raw files
        "spool.mail_from",
    }
    with session_factory() as session:
        counts = (len(session.scalars(select(Ticket)).all()), len(session.scalars(select(Message)).all()))
    alice_pdf = attachment_store.path_of(cfg.attachment_dir, _sha(PDF_ALICE))
    assert alice_pdf.exists()

    refusal = one_line_error(ctl(config_file, "contact", "forget", ALICE))
    assert "--yes" in refusal
    out = ok(ctl(config_file, "contact", "forget", ALICE.upper(), "--yes"))
    assert out.startswith(f"{ALICE} -> forgotten-")

    assert _leftovers(session_factory, cfg.data_dir, needles) == []
    assert not alice_pdf.exists()
    assert attachment_store.path_of(cfg.attachment_dir, _sha(PDF_SHARED)).exists()  # Quinn's mail has it
    with session_factory() as session:
        assert (
            len(session.scalars(select(Ticket)).all()),
            len(session.scalars(select(Message)).all()),
        ) == counts
        assert session.scalars(select(Rating.score)).all() == [4]
        quinn_texts = [m.text for m in session.scalars(select(Message).where(Message.from_address == QUINN))]
        assert any(QUINN_PHRASE in t for t in quinn_texts)
        assert any("> [removed]" in t for t in quinn_texts)  # the quote of Alice, not Quinn's words
        assert ticket(session, world["theirs"]).subject == "Lighthouse"
        [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "contact_forget")).all()
        assert entry.actor == who() and entry.detail["contact"].startswith("forgotten-")
        pseudonym = entry.detail["contact"]
    assert QUINN in json.dumps(_export(config_file, QUINN))  # Quinn's own data is untouched

    for again in (ALICE, pseudonym):  # idempotent, by the address or the pseudonym
        assert "forgotten before" in ok(ctl(config_file, "contact", "forget", again, "--yes"))
    with session_factory() as session:
        assert len(session.scalars(select(AuditLog).where(AuditLog.action == "contact_forget")).all()) == 1
    assert "is an agent" in one_line_error(ctl(config_file, "contact", "forget", AGENT, "--yes"))
    line = one_line_error(ctl(config_file, "contact", "forget", "nobody@nowhere.example", "--yes"))
    assert "no contact nobody@nowhere.example" in line


def _export(config_file: Path, address: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(ctl(config_file, "contact", "export", address)))
    return data


def _body(mail: mailbox.mboxMessage) -> str:
    parts = [p.get_payload(decode=True) for p in mail.walk() if p.get_content_maintype() == "text"]
    return "".join(p.decode("utf-8", "replace") for p in parts if isinstance(p, bytes))


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_export_holds_their_mail_and_no_other_address(
    config_file: Path, tmp_path: Path, world: dict[str, str]
) -> None:
    target = tmp_path / "export"
    proc = ctl(config_file, "contact", "export", ALICE, "--output", str(target))
    ok(proc)
    data = json.loads((target / "contact.json").read_text())
    assert data["contact"]["email"] == ALICE and data["internal_notes_included"] is False
    roles = {t["number"]: t["role"] for t in data["tickets"]}
    assert roles == {world["mine"]: "customer", world["theirs"]: "cc"}
    shared = next(t for t in data["tickets"] if t["role"] == "cc")
    assert [m["author"] for m in shared["messages"]] == [QUINN_NAME, "you", QUINN_NAME]
    assert [r["comment"] for r in data["ratings"]] == [f"{PHRASE}, but fast"]
    assert data["ticket_links"] and "token" not in json.dumps(data["ticket_links"])
    assert data["automatic_replies"]["count"] >= 1
    assert QUINN not in json.dumps(data) and AGENT not in json.dumps(data)  # nobody else's address

    box = mailbox.mbox(str(target / "mail.mbox"))
    mails = list(box)
    ids = {m["Message-ID"] for m in mails}
    assert {"<a1@customer.example>", "<a2@customer.example>"} <= ids  # what they wrote, as it came
    assert "<q1@other.example>" not in ids  # Quinn's raw mail is Quinn's
    for mail in mails:  # each from them or to them
        assert ALICE in (mail["From"] or "") + (mail["To"] or "") + (mail["Cc"] or "")
    assert any("we found the giraffe" in _body(m) for m in mails)  # the agent's reply they got
    assert ok(ctl(config_file, "contact", "export", ALICE)).startswith("{")  # stdout: the JSON alone
    line = one_line_error(ctl(config_file, "contact", "export", "nobody@nowhere.example"))
    assert "no contact nobody@nowhere.example" in line


def test_a_crash_after_the_commit_leaves_files_the_next_run_removes(
    session_factory: Factory,
    cfg: Config,
    config_file: Path,
    world: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with session_factory.begin() as session:
        session.add(BlockEntry(pattern=ALICE, reason="abuse", added_by="root"))
    alice_pdf = attachment_store.path_of(cfg.attachment_dir, _sha(PDF_ALICE))

    def crash(*_args: object, **_kwargs: object) -> int:
        raise KeyboardInterrupt  # the process dies between the commit and the files

    monkeypatch.setattr(contact_forget, "remove_files", crash)
    with pytest.raises(KeyboardInterrupt):
        contact_forget.forget(session_factory, cfg, ALICE, actor="root", now=dt.datetime.now(dt.UTC))
    monkeypatch.undo()
    assert alice_pdf.exists()  # an orphan: no row points at it, the audit entry lists it
    left = _leftovers(session_factory, cfg.data_dir, [ALICE, ALICE_NAME, PHRASE])
    assert left and all(p.startswith(("spool/", "outgoing/", "blocklist.pattern")) for p in left), left

    out = ok(ctl(config_file, "contact", "forget", ALICE, "--yes"))
    assert "forgotten before" in out
    assert not alice_pdf.exists()
    assert _leftovers(session_factory, cfg.data_dir, [ALICE, ALICE_NAME, PHRASE]) == [
        f"blocklist.pattern: {ALICE}"  # kept on purpose: the admin's block stays in force
    ]


def test_the_address_is_found_whole_never_inside_another() -> None:
    pattern = address_pattern("alice@x.example")
    found = [
        t for t in ("malice@x.example", "alice@x.example.org", "bob.alice@x.example") if pattern.search(t)
    ]
    assert found == []
    assert all(
        pattern.search(t) for t in ("<Alice@X.example>", "write alice@x.example.", '"alice@x.example"')
    )
