"""Outgoing mail templates (Jinja2, sandboxed, per-desk overrides over package defaults) and the mail that
`maild.outbound.outgoing.queue_mail` composes from them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import UndefinedError
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound.outgoing import queue_mail
from maild.outbound.templating import check_templates, render
from maild.storage.models import Contact, Desk, DeskAddress, OutboxMessage, Ticket

NOW = dt.datetime(2026, 3, 7, 12, 30, tzinfo=dt.UTC)
VARIABLES = {
    "ticket_title": "Printer on fire",
    "ticket_number": "SUP-7",
    "ticket_url": "https://help.example.com/t/SUP-7",
    "desk_name": "Support",
    "customer_name": "Carol Customer",
}


def override(template_root: Path, desk: str, name: str, text: str) -> None:
    directory = template_root / desk
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


# --- rendering --------------------------------------------------------------------------------------


def test_ticket_created_uses_every_variable(tmp_path: Path) -> None:
    rendered = render(tmp_path / "templates", "support", "ticket_created", VARIABLES)

    assert rendered.subject == "[SUP-7] Printer on fire"
    assert "Hello Carol Customer," in rendered.text
    assert "thank you for writing to Support" in rendered.text
    assert 'SUP-7: "Printer on fire"' in rendered.text
    assert "You can follow it at https://help.example.com/t/SUP-7" in rendered.text
    assert "keep [SUP-7] in the subject" in rendered.text
    assert rendered.text.rstrip().endswith("Support")

    assert rendered.html is not None
    assert "<p>Hello Carol Customer,</p>" in rendered.html
    assert "<strong>SUP-7</strong>" in rendered.html
    assert "Printer on fire" in rendered.html
    assert '<a href="https://help.example.com/t/SUP-7">https://help.example.com/t/SUP-7</a>' in rendered.html
    assert "{{" not in rendered.text + rendered.html + rendered.subject


def test_without_a_ticket_url_there_is_no_link(tmp_path: Path) -> None:
    rendered = render(tmp_path, "support", "ticket_created", {**VARIABLES, "ticket_url": ""})
    assert "follow it at" not in rendered.text
    assert rendered.html is not None
    assert "<a " not in rendered.html


def test_a_missing_variable_is_an_error_not_a_blank(tmp_path: Path) -> None:
    variables = {k: v for k, v in VARIABLES.items() if k != "customer_name"}
    with pytest.raises(UndefinedError, match="customer_name"):
        render(tmp_path, "support", "ticket_created", variables)


def test_html_part_is_autoescaped_and_text_part_is_literal(tmp_path: Path) -> None:
    title = "<script>alert('x')</script> & <b>bold</b>"
    rendered = render(tmp_path, "support", "ticket_created", {**VARIABLES, "ticket_title": title})

    assert rendered.html is not None
    assert "<script>" not in rendered.html
    assert "<b>bold</b>" not in rendered.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in rendered.html
    assert title in rendered.text
    assert rendered.subject == f"[SUP-7] {title}"


def test_html_escapes_every_variable(tmp_path: Path) -> None:
    rendered = render(
        tmp_path,
        "support",
        "ticket_created",
        {
            **VARIABLES,
            "customer_name": "<i>Eve</i>",
            "desk_name": "R&D",
            "ticket_url": 'https://x/"><script>',
        },
    )
    assert rendered.html is not None
    assert "<i>Eve</i>" not in rendered.html and "&lt;i&gt;Eve&lt;/i&gt;" in rendered.html
    assert "R&amp;D" in rendered.html
    assert '"><script>' not in rendered.html


def test_subject_is_one_line(tmp_path: Path) -> None:
    override(
        tmp_path, "support", "ticket_created.subject.j2", "[{{ ticket_number }}]\n  {{ ticket_title }}\n\n"
    )
    rendered = render(tmp_path, "support", "ticket_created", {**VARIABLES, "ticket_title": "a\r\nb\tc"})
    assert rendered.subject == "[SUP-7] a b c"


# --- per-desk overrides -----------------------------------------------------------------------------


def test_desk_override_takes_precedence_for_that_desk_only(tmp_path: Path) -> None:
    override(
        tmp_path,
        "support",
        "ticket_created.txt.j2",
        "Dear {{ customer_name }}, ticket {{ ticket_number }}.\n",
    )
    override(tmp_path, "support", "ticket_created.subject.j2", "We got it: {{ ticket_title }}")

    support = render(tmp_path, "support", "ticket_created", VARIABLES)
    assert support.subject == "We got it: Printer on fire"
    assert support.text == "Dear Carol Customer, ticket SUP-7.\n"
    # only the text part was overridden: the package's HTML (other words) is not sent beside it
    assert support.html is None

    sales = render(tmp_path, "sales", "ticket_created", {**VARIABLES, "desk_name": "Sales"})
    assert sales.subject == "[SUP-7] Printer on fire"
    assert "thank you for writing to Sales" in sales.text


def test_desk_override_of_the_html_part(tmp_path: Path) -> None:
    override(tmp_path, "support", "ticket_created.html.j2", "<p>{{ ticket_title }}</p>")
    rendered = render(tmp_path, "support", "ticket_created", {**VARIABLES, "ticket_title": "<x>"})
    assert rendered.html == "<p>&lt;x&gt;</p>"  # overrides are autoescaped too
    # the text part says what the desk's HTML says, not the package default's words
    assert rendered.text == "<x>\n"


def test_an_edited_override_is_picked_up(tmp_path: Path) -> None:
    override(tmp_path, "support", "ticket_created.subject.j2", "first {{ ticket_number }}")
    assert render(tmp_path, "support", "ticket_created", VARIABLES).subject == "first SUP-7"
    path = tmp_path / "support" / "ticket_created.subject.j2"
    path.write_text("second {{ ticket_number }}")
    stat = path.stat()
    # make sure the modification time differs even on coarse-grained file systems
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert render(tmp_path, "support", "ticket_created", VARIABLES).subject == "second SUP-7"


# --- sandbox ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ticket_title.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ticket_title.format.__globals__ }}",
    ],
)
def test_sandbox_refuses_unsafe_attribute_access(tmp_path: Path, source: str) -> None:
    # The sandbox's refusal is found when the override is validated: refused, the package default is sent.
    override(tmp_path, "support", "ticket_created.txt.j2", source)
    [problem] = check_templates(tmp_path, "support")
    assert problem.file == "ticket_created.txt.j2" and problem.error.startswith("SecurityError: ")
    rendered = render(tmp_path, "support", "ticket_created", VARIABLES)
    assert "thank you for writing to Support" in rendered.text


def test_sandbox_refuses_unsafe_access_in_the_subject_too(tmp_path: Path) -> None:
    override(tmp_path, "support", "ticket_created.subject.j2", "{{ ticket_number.__class__ }}")
    [problem] = check_templates(tmp_path, "support")
    assert problem.file == "ticket_created.subject.j2" and problem.error.startswith("SecurityError: ")
    assert render(tmp_path, "support", "ticket_created", VARIABLES).subject == "[SUP-7] Printer on fire"


# --- the composed mail ----------------------------------------------------------------------------


@pytest.fixture
def ticket(session_factory: sessionmaker[Session]) -> Ticket:
    with session_factory() as s, s.begin():
        desk = Desk(name="support", pattern="SUP-{{nr}}", timezone="UTC")
        desk.addresses = [DeskAddress(address="support@example.com"), DeskAddress(address="help@example.org")]
        customer = Contact(email="carol@customer.test", display_name="Carol Customer")
        ticket = Ticket(number="SUP-7", desk=desk, subject="Printer on fire", customer=customer)
        s.add(ticket)
    return ticket


def compose(
    factory: sessionmaker[Session], cfg: Config, ticket_id: int, **kwargs: Any
) -> tuple[OutboxMessage, EmailMessage]:
    options: dict[str, Any] = {"automatic": True, "now": NOW, **kwargs}
    with factory() as s, s.begin():
        row = queue_mail(
            s,
            cfg,
            s.get(Ticket, ticket_id),  # type: ignore[arg-type]
            "ticket_created",
            [("Carol Customer", "carol@customer.test")],
            **options,
        )
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return row, msg


def test_queue_mail_composes_the_mail(
    session_factory: sessionmaker[Session], cfg: Config, ticket: Ticket
) -> None:
    cfg = dataclasses.replace(cfg, ticket_url="https://help.example.com/t/{number}")
    row, msg = compose(
        session_factory,
        cfg,
        ticket.id,
        in_reply_to="<m2@customer.test>",
        references=["<m0@customer.test>", "<m1@customer.test>"],
    )

    assert msg["Subject"] == "[SUP-7] Printer on fire"
    assert msg["From"] == "support <support@example.com>"  # the desk (its primary address)
    # Reply-To is the desk's address signed for this ticket (see tests/test_tokens.py)
    reply_to = msg["Reply-To"].addresses[0]
    assert reply_to.display_name == "support"
    assert reply_to.username.startswith("support+") and reply_to.domain == "example.com"
    assert msg["To"] == "Carol Customer <carol@customer.test>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Loop"] == "support@example.com"
    assert msg["X-Maild-Ticket"] == "SUP-7"
    assert msg["In-Reply-To"] == "<m2@customer.test>"
    assert msg["References"] == "<m0@customer.test> <m1@customer.test> <m2@customer.test>"
    assert parsedate_to_datetime(msg["Date"]) == NOW

    message_id = msg["Message-ID"]
    assert message_id == row.message_id
    local, _, domain = message_id.strip("<>").partition("@")
    assert local and domain == "example.com"  # under the desk's domain

    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert "Hello Carol Customer," in text.get_content()
    assert "https://help.example.com/t/SUP-7" in text.get_content()
    assert '<a href="https://help.example.com/t/SUP-7">' in html.get_content()

    assert row.template == "ticket_created"
    assert row.mail_from == "support@example.com"
    assert row.rcpt_to == ["carol@customer.test"]
    assert row.subject == "[SUP-7] Printer on fire"
    assert row.status == "queued"
    assert row.attempts == 0
    assert row.next_attempt_at == NOW.replace(tzinfo=None)  # due at once
    assert row.ticket_id == ticket.id


def test_every_mail_gets_its_own_message_id(
    session_factory: sessionmaker[Session], cfg: Config, ticket: Ticket
) -> None:
    ids = {compose(session_factory, cfg, ticket.id)[0].message_id for _ in range(3)}
    assert len(ids) == 3
    assert all(mid.endswith("@example.com>") for mid in ids)


def test_a_manual_mail_is_not_marked_auto_submitted(
    session_factory: sessionmaker[Session], cfg: Config, ticket: Ticket
) -> None:
    _, msg = compose(session_factory, cfg, ticket.id, automatic=False)
    assert msg["Auto-Submitted"] is None
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_subject_always_carries_the_number_even_if_an_override_drops_it(
    session_factory: sessionmaker[Session], cfg: Config, ticket: Ticket
) -> None:
    override(cfg.template_dir, "support", "ticket_created.subject.j2", "Thanks for: {{ ticket_title }}")
    row, msg = compose(session_factory, cfg, ticket.id)
    assert msg["Subject"] == "[SUP-7] Thanks for: Printer on fire"
    assert row.subject == msg["Subject"]


def test_subject_tag_is_not_doubled_when_the_override_places_it(
    session_factory: sessionmaker[Session], cfg: Config, ticket: Ticket
) -> None:
    override(
        cfg.template_dir, "support", "ticket_created.subject.j2", "Thanks ({{ '[' ~ ticket_number ~ ']' }})"
    )
    _, msg = compose(session_factory, cfg, ticket.id)
    assert msg["Subject"] == "Thanks ([SUP-7])"


def test_queue_mail_uses_the_desks_override(
    session_factory: sessionmaker[Session], cfg: Config, ticket: Ticket
) -> None:
    override(cfg.template_dir, "support", "ticket_created.txt.j2", "Custom for {{ customer_name }}\n")
    _, msg = compose(session_factory, cfg, ticket.id)
    text = msg.get_body(("plain",))
    assert text is not None
    assert text.get_content() == "Custom for Carol Customer\n"


def test_customer_without_a_display_name_is_greeted_by_address(
    session_factory: sessionmaker[Session], cfg: Config, ticket: Ticket
) -> None:
    with session_factory() as s, s.begin():
        contact = s.get(Ticket, ticket.id).customer  # type: ignore[union-attr]
        contact.display_name = ""
    _, msg = compose(session_factory, cfg, ticket.id)
    text = msg.get_body(("plain",))
    assert text is not None
    assert "Hello carol@customer.test," in text.get_content()
