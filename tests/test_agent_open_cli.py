"""`maildctl ticket open` (issue 19, agent-opened tickets): the ticket, its first mail from the desk to the
customer and CCs (signed Reply-To, the customer's own ticket link, the attachment), the customer's answer
threading into it, the audit, and a one-line error for each wrong input."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import load_secret, read_reply_address
from maild.outbound.stored_attachments import sent_bytes
from maild.storage.models import AuditLog, OutboxMessage
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import NOW, SUPPORT, deliver, mail, make_agent, make_desk, ticket

Factory = sessionmaker[Session]
ANNA = "anna@example.com"
ALICE, BOB = "alice@customer.example", "bob@customer.example"


@pytest.fixture
def config_file(data_dir: Path, database_url: str) -> Path:
    """With [web] public_url: each customer's copy of the first mail carries their own ticket link."""
    path = data_dir.parent / "maild.toml"
    path.write_text(
        f'data_dir = "{data_dir}"\n\n[database]\nurl = "{database_url}"\n\n'
        '[web]\npublic_url = "https://help.example.com"\n'
    )
    return path


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, ANNA, "Anna", ["support"])


def first_mails(factory: Factory, cfg: Config) -> list[EmailMessage]:
    with factory() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "agent_reply"))
        found = []
        for row in rows:
            msg = message_from_bytes(bytes(sent_bytes(row.raw, cfg.attachment_dir)), policy=policy.default)
            assert isinstance(msg, EmailMessage)
            found.append(msg)
        return found


def test_open_with_cc_and_attachment_sends_the_first_mail_and_the_answer_threads_in(
    config_file: Path, cfg: Config, session_factory: Factory, tmp_path: Path
) -> None:
    (tmp_path / "text.txt").write_text("Hello Alice,\n\nyour replacement printer ships today.\n")
    (tmp_path / "invoice.pdf").write_bytes(b"%PDF-1.4 the invoice\n")
    out = ok(
        ctl(
            config_file,
            *("ticket", "open", "--desk", "support", "--to", "Alice@Customer.example", "--cc", BOB),
            *("--subject", "Your replacement printer", "--file", str(tmp_path / "text.txt")),
            *("--attach", str(tmp_path / "invoice.pdf"), "--as", "anna", "--json"),
        )
    )
    data = json.loads(out)
    assert data["number"] == "SUP-1" and data["desk"] == "support" and data["status"] == "waiting"
    assert data["customer"] == ALICE and data["cc"] == [BOB] and data["attachments"] == ["invoice.pdf"]
    mails = first_mails(session_factory, cfg)
    assert len(mails) == 2  # each recipient their own copy: their own ticket link
    assert sorted(m["Message-ID"] for m in mails) == data["message_ids"]
    secret = load_secret(cfg.data_dir)
    for msg in mails:
        assert msg["Subject"] == "[SUP-1] Your replacement printer"  # the title, no "Re:"
        assert msg["To"].addresses[0].addr_spec == ALICE and msg["Cc"].addresses[0].addr_spec == BOB
        assert "Anna" in str(msg["From"]) and SUPPORT in str(msg["From"])
        target = read_reply_address(secret, msg["Reply-To"].addresses[0].addr_spec)
        assert target is not None and target[0].agent_id is None
        body = msg.get_body(("plain",))
        assert body is not None and "replacement printer ships today" in body.get_content()
        assert "https://help.example.com/t/" in body.get_content()
        [file] = [part for part in msg.iter_attachments()]
        assert file.get_filename() == "invoice.pdf" and file.get_content() == b"%PDF-1.4 the invoice\n"
    with session_factory() as s:
        t = ticket(s, "SUP-1")
        assert t.status == "waiting" and t.customer.email == ALICE
        assert [(p.contact.email, p.role) for p in t.participants] == [(ALICE, "customer"), (BOB, "cc")]
        [first] = t.messages
        assert first.kind == "agent" and first.from_address == ANNA and first.attachments[0].size == 21
        actions = [a.action for a in s.scalars(select(AuditLog).where(AuditLog.ticket_id == t.id))]
        assert "ticket_opened" in actions and "reply" in actions
        reply_to = next(iter(mails))["Reply-To"].addresses[0].addr_spec
    answer = mail(
        sender=f"Alice <{ALICE}>",
        to=reply_to,
        subject="Re: [SUP-1] Your replacement printer",
        body="Thanks, it arrived!\n",
        message_id="<answer@customer.example>",
        extra=[("In-Reply-To", mails[0]["Message-ID"])],
    )
    result = deliver(session_factory, cfg, answer, reply_to, NOW)
    assert (result.outcome, result.ticket_number) == ("replied", "SUP-1")
    with session_factory() as s:
        assert ticket(s, "SUP-1").status == "open"


def test_text_from_stdin_prints_the_number(config_file: Path, session_factory: Factory) -> None:
    out = ok(
        ctl(
            config_file,
            *("ticket", "open", "--desk", "support", "--to", ALICE, "--subject", "Hello"),
            stdin=b"Just checking in.\n",
        )
    )
    assert out.strip() == "SUP-1"
    with session_factory() as s:
        [first] = ticket(s, "SUP-1").messages
        assert first.text == "Just checking in." and first.from_address == SUPPORT  # the desk wrote it


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["--desk", "nosuch", "--to", ALICE, "--subject", "S"], b"x", "nosuch"),
        (["--desk", "support", "--to", "not-an-address", "--subject", "S"], b"x", "not an email address"),
        (["--desk", "support", "--to", ANNA, "--subject", "S"], b"x", "is an agent"),
        (["--desk", "support", "--to", ALICE, "--cc", SUPPORT, "--subject", "S"], b"x", "desk address"),
        (["--desk", "support", "--to", ALICE, "--subject", "S"], b"  \n", "empty"),
        (["--desk", "support", "--to", ALICE, "--subject", " "], b"x", "subject is empty"),
        (
            ["--desk", "support", "--to", ALICE, "--subject", "S", "--attach", "/nonexistent/f"],
            b"x",
            "cannot read",
        ),
        (["--desk", "support", "--to", ALICE, "--subject", "S", "--as", "nobody"], b"x", "no agent 'nobody'"),
        (
            ["--desk", "support", "--to", ALICE, "--subject", "S", "--file", "/nonexistent/t"],
            b"",
            "cannot read",
        ),
    ],
)
def test_each_wrong_input_is_one_line(
    config_file: Path, session_factory: Factory, args: list[str], stdin: bytes, expected: str
) -> None:
    line = one_line_error(ctl(config_file, "ticket", "open", *args, stdin=stdin))
    assert expected in line
    with session_factory() as s:
        assert s.scalars(select(OutboxMessage)).first() is None


def test_a_refused_attachment_and_a_blocked_customer_are_refused(config_file: Path, tmp_path: Path) -> None:
    (tmp_path / "setup.exe").write_bytes(b"MZ\x90\x00" + b"\x00" * 100)
    base = ["ticket", "open", "--desk", "support", "--to", ALICE, "--subject", "S"]
    line = one_line_error(ctl(config_file, *base, "--attach", str(tmp_path / "setup.exe"), stdin=b"x"))
    assert "setup.exe" in line
    ok(ctl(config_file, "block", "add", "alice@customer.example"))
    assert "blocked" in one_line_error(ctl(config_file, *base, stdin=b"x"))
