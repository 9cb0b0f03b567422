"""`maildctl template check|install|preview`, the validated desk templates the daemon renders from
(maild.outbound.templating: a broken override is refused, logged as template_invalid, and the last good
version or
the package default is used instead), and the refused attachments the customer is told of
(`refused_attachments` of ticket_created and agent_reply)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound import templating
from maild.outbound.templating import check_templates, render, sample_variables
from maild.storage.db import transaction
from maild.storage.models import OutboxMessage, Ticket
from maild.templates import DEFAULT_DIR
from maild.tickets.replies import send_reply
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    crlf,
    deliver,
    mail,
    make_agent,
    make_desk,
)

Factory = sessionmaker[Session]
ANNA = "anna@example.com"


@pytest.fixture
def desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def write(root: Path, desk: str, file: str, text: str) -> Path:
    path = root / desk / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def touch_later(path: Path) -> None:
    """A new modification time even on coarse file systems: the snapshot notices the edit."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


# --- maildctl template check ------------------------------------------------------------------------


@pytest.mark.usefixtures("desk")
def test_check_names_desk_file_and_line_of_a_syntax_error(config_file: Path, cfg: Config) -> None:
    write(cfg.template_dir, "support", "ticket_created.txt.j2", "Hello {{ customer_name }},\n\n{% if x %}\n")

    proc = ctl(config_file, "template", "check", subprocess=True)

    assert proc.returncode == 1, proc.stderr
    [line] = proc.stdout.splitlines()
    assert line.startswith("support/ticket_created.txt.j2 line 3: Unexpected end of template"), line


@pytest.mark.usefixtures("desk")
def test_check_finds_an_undefined_variable_and_a_misspelt_file_name(config_file: Path, cfg: Config) -> None:
    # agent_name is agent_reply's, not ticket_created's: the customer would silently get no auto-reply.
    write(
        cfg.template_dir, "support", "ticket_created.subject.j2", "Hi\n{{ agent_name }}: {{ ticket_title }}\n"
    )
    write(cfg.template_dir, "support", "ticket_creatd.txt.j2", "Dear {{ customer_name }}\n")

    proc = ctl(config_file, "template", "check", "support")

    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "support/ticket_creatd.txt.j2: unknown template name 'ticket_creatd': did you mean ticket_created?",
        "support/ticket_created.subject.j2 line 2: UndefinedError: 'agent_name' is undefined",
    ]
    as_json = ctl(config_file, "template", "check", "--json")
    assert (as_json.returncode, as_json.stderr) == (1, "")
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["checked"] == ["support"]
    assert [(p["desk"], p["file"], p["line"]) for p in data["problems"]] == [
        ("support", "ticket_creatd.txt.j2", None),
        ("support", "ticket_created.subject.j2", 2),
    ]


@pytest.mark.usefixtures("desk")
def test_check_reports_a_directory_of_no_desk_and_an_unknown_desk(config_file: Path, cfg: Config) -> None:
    write(cfg.template_dir, "suport", "ticket_created.txt.j2", "fine {{ ticket_number }}\n")
    proc = ctl(config_file, "template", "check")
    assert proc.returncode == 1
    assert proc.stdout.startswith("suport: no desk of this name: these templates are never used")
    assert "no desk named 'sales'" in one_line_error(ctl(config_file, "template", "check", "sales"))


@pytest.mark.usefixtures("desk")
def test_install_then_check_passes_and_install_refuses_to_overwrite(config_file: Path, cfg: Config) -> None:
    assert ok(ctl(config_file, "template", "check")) == "templates ok (no desk has overrides)\n"

    out = ok(ctl(config_file, "template", "install", "support", "ticket_created"))

    target = cfg.template_dir / "support"
    assert f"into {target}" in out
    for part in ("subject", "txt", "html"):
        file = f"ticket_created.{part}.j2"
        assert (target / file).read_bytes() == (DEFAULT_DIR / file).read_bytes()
    assert ok(ctl(config_file, "template", "check", "support")) == "templates ok (support)\n"

    (target / "ticket_created.txt.j2").write_text("My own words, {{ customer_name }}.\n")
    line = one_line_error(ctl(config_file, "template", "install", "support", "ticket_created"))
    assert "ticket_created.subject.j2, ticket_created.txt.j2, ticket_created.html.j2 already in" in line
    assert "--force" in line
    assert (target / "ticket_created.txt.j2").read_text() == "My own words, {{ customer_name }}.\n"

    ok(ctl(config_file, "template", "install", "support", "ticket_created", "--force"))
    assert (target / "ticket_created.txt.j2").read_bytes() == (
        DEFAULT_DIR / "ticket_created.txt.j2"
    ).read_bytes()


@pytest.mark.usefixtures("desk")
def test_install_of_an_unknown_name_lists_the_names(config_file: Path, cfg: Config) -> None:
    line = one_line_error(ctl(config_file, "template", "install", "support", "ticket_creatd"))
    assert line.startswith("maildctl: unknown template 'ticket_creatd': use one of agent_reply, ")
    assert "ticket_created" in line and "reminder" in line
    assert "no desk named 'sales'" in one_line_error(
        ctl(config_file, "template", "install", "sales", "ticket_created")
    )
    assert not (cfg.template_dir / "support").exists()


@pytest.mark.usefixtures("desk")
def test_preview_prints_subject_text_and_whether_there_is_html(config_file: Path, cfg: Config) -> None:
    out = ok(ctl(config_file, "template", "preview", "support", "ticket_created"))
    lines = out.splitlines()
    assert lines[0] == "Subject: [SUP-26-03-1] Printer on fire"
    assert "HTML part: yes" in out and "from the package default" in out
    assert "Hello Carol Customer," in out
    assert "- setup.exe: we do not accept programs or scripts" in out  # the sample refused attachments

    sparse = ok(ctl(config_file, "template", "preview", "support", "ticket_created", "--sparse"))
    assert "We could not accept" not in sparse

    write(cfg.template_dir, "support", "ticket_created.txt.j2", "Got it, {{ customer_name }}.\n")
    write(cfg.template_dir, "support", "ticket_created.subject.j2", "Thanks: {{ ticket_title }}\n")
    out = ok(ctl(config_file, "template", "preview", "support", "ticket_created"))
    assert out.splitlines()[:4] == [
        "Subject: [SUP-26-03-1] Thanks: Printer on fire (maild adds the number tag)",
        "Subject from: the desk's override",
        "Text from: the desk's override",
        "HTML part: none (text only)",  # the desk's text alone: never the package's words beside it
    ]
    assert out.endswith("\nGot it, Carol Customer.\n")


@pytest.mark.usefixtures("desk")
def test_preview_of_a_broken_override_shows_what_the_daemon_sends_instead(
    config_file: Path, cfg: Config
) -> None:
    write(cfg.template_dir, "support", "ticket_created.txt.j2", "Hello {{ nosuch }}\n")
    proc = ctl(config_file, "template", "preview", "support", "ticket_created")
    out = ok(proc)
    assert "Text from: the package default (the desk's file is refused)" in out
    assert "thank you for writing to support" in out
    assert "template_invalid: support/ticket_created.txt.j2 line 1: UndefinedError" in proc.stderr
    assert "unknown template 'nosuch'" in one_line_error(
        ctl(config_file, "template", "preview", "support", "nosuch")
    )


# --- the daemon's path: maild.outbound.templating.render ----------------------------------------------------


VARIABLES = {**sample_variables("ticket_created"), "desk_name": "support"}


def test_a_broken_override_falls_back_to_the_last_good_version_then_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "templates"
    path = write(root, "support", "ticket_created.subject.j2", "Good: {{ ticket_title }}\n")
    assert render(root, "support", "ticket_created", VARIABLES).subject == "Good: Printer on fire"

    path.write_text("Broken: {{ ticket_title }\n")
    touch_later(path)
    with caplog.at_level(logging.ERROR, logger="maild.templating"):
        rendered = render(root, "support", "ticket_created", VARIABLES)

    assert rendered.subject == "Good: Printer on fire"  # the last good version, not no mail at all
    [record] = [r for r in caplog.records if "template_invalid" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "support/ticket_created.subject.j2 line 1" in record.getMessage()
    assert "in its place: the last good version" in record.getMessage()

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="maild.templating"):
        render(root, "support", "ticket_created", VARIABLES)
    assert caplog.records == []  # refused once, loudly; not again with every mail

    # A daemon that never saw a good version (a restart) sends the package default.
    templating._loaded.clear()
    with caplog.at_level(logging.ERROR, logger="maild.templating"):
        rendered = render(root, "support", "ticket_created", VARIABLES)
    assert rendered.subject == "[SUP-26-03-1] Printer on fire"
    assert any("in its place: the package default" in r.getMessage() for r in caplog.records)

    # Fixed on disk: picked up with the next mail.
    path.write_text("Fixed: {{ ticket_title }}\n")
    touch_later(path)
    assert render(root, "support", "ticket_created", VARIABLES).subject == "Fixed: Printer on fire"
    assert check_templates(root) == []


def test_reload_validates_again_and_reports(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "templates"
    write(
        root, "support", "agent_reply.txt.j2", "{{ comment_content }}\n{{ refused_attachments[0].nosuch }}\n"
    )
    with caplog.at_level(logging.ERROR, logger="maild.templating"):
        problems = templating.reload_templates(root)
    [problem] = problems
    assert (problem.desk, problem.file, problem.line) == ("support", "agent_reply.txt.j2", 2)
    assert "nosuch" in problem.error
    assert any("template_invalid" in r.getMessage() for r in caplog.records)


# --- refused attachments, told to the customer ------------------------------------------------------


def _attachment(data: bytes, content_type: str, filename: str) -> str:
    body = base64.encodebytes(data).decode()
    return (
        f"Content-Type: {content_type}\nContent-Transfer-Encoding: base64\n"
        f'Content-Disposition: attachment; filename="{filename}"\n\n{body}'
    )


def _mail_with(filename: str, *, message_id: str, subject: str = "Printer on fire", extra: str = "") -> bytes:
    return crlf(
        "From: Alice Example <alice@customer.example>\nTo: support@example.com\n"
        f"Subject: {subject}\nMessage-ID: {message_id}\nMIME-Version: 1.0\n{extra}"
        'Content-Type: multipart/mixed; boundary="b0undary"\n\n'
        "--b0undary\nContent-Type: text/plain; charset=utf-8\n\nSee the attachment.\n"
        f"--b0undary\n{_attachment(b'harmless bytes', 'application/octet-stream', filename)}"
        "--b0undary--\n"
    )


def _text(row: OutboxMessage) -> str:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def _customer_mail(factory: Factory, template: str) -> list[OutboxMessage]:
    with factory() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.template == template)))
        s.expunge_all()
    return rows


@pytest.mark.usefixtures("desk")
def test_the_auto_reply_names_a_refused_exe_and_why(session_factory: Factory, cfg: Config) -> None:
    result = deliver(
        session_factory, cfg, _mail_with("setup.exe", message_id="<exe@customer.example>"), SUPPORT
    )
    assert result.outcome == "created"

    [auto_reply] = _customer_mail(session_factory, "ticket_created")
    text = _text(auto_reply)
    assert "We could not accept this attachment of your mail:\n" in text
    assert "\n- setup.exe: we do not accept programs or scripts\n" in text
    assert "setup.exe" in auto_reply.raw.decode("ascii", "replace")  # the HTML part too (quoted-printable)


@pytest.mark.usefixtures("desk")
def test_the_next_agent_reply_names_a_follow_ups_refused_file_once(
    session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, _mail_with("setup.exe", message_id="<m1@customer.example>"), SUPPORT)
    # The follow-up gets no auto-reply: the agent's next reply is the first mail that can tell the customer.
    follow_up = _mail_with(
        "tool.bat", message_id="<m2@customer.example>", subject="Re: [SUP-26-03-1] Printer on fire"
    )
    assert deliver(session_factory, cfg, follow_up, SUPPORT).outcome == "replied"

    for text in ("We are on it.", "Fixed."):
        with transaction(session_factory) as s:
            ticket = s.scalars(select(Ticket)).one()
            send_reply(s, cfg, ticket, text, agent=None, actor="admin", now=NOW)

    first, second = _customer_mail(session_factory, "agent_reply")
    first_text = _text(first)
    assert (
        "We could not accept this attachment you sent us:\n- tool.bat: we do not accept programs"
        in first_text
    )
    assert "setup.exe" not in first_text  # the auto-reply told them of the opening mail's already
    assert "We could not accept" not in _text(second)  # told once


@pytest.mark.usefixtures("desk")
def test_an_agents_reply_by_mail_names_the_refused_files_too(session_factory: Factory, cfg: Config) -> None:
    make_agent(session_factory, ANNA, "Anna", ["support"])
    assert deliver(session_factory, cfg, mail(), SUPPORT).outcome == "created"  # nothing refused
    follow_up = _mail_with(
        "tool.bat", message_id="<m2@customer.example>", subject="Re: [SUP-26-03-1] Printer on fire"
    )
    assert deliver(session_factory, cfg, follow_up, SUPPORT).outcome == "replied"
    with session_factory() as s:
        notice = s.scalars(
            select(OutboxMessage.message_id)
            .where(OutboxMessage.template == "customer_reply_notice")
            .order_by(OutboxMessage.id.desc())
        ).first()
    assert notice is not None
    raw = mail(
        sender=f"Anna <{ANNA}>",
        subject="Re: [SUP-26-03-1] Printer on fire",
        body="Please send it as a zip.\n",
        message_id="<anna-1@example.com>",
        extra=[("In-Reply-To", notice), ("References", notice)],
    )
    address = agent_address(session_factory, cfg, "SUP-26-03-1", ANNA)
    result = deliver(session_factory, cfg, raw, address, now=NOW + dt.timedelta(minutes=5))
    assert result.outcome == "replied", result.reason

    [relay] = _customer_mail(session_factory, "agent_reply")
    text = _text(relay)
    assert text.startswith("Please send it as a zip.\n\nWe could not accept this attachment you sent us:\n")
    assert "- tool.bat: we do not accept programs or scripts\n" in text
