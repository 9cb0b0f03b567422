"""parse: raw bytes → the stored ticket message (decoded subject, sender, text, HTML, attachments), and
input that is no mail at all quarantined with its reason instead of raising."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.attachments import path_of
from tests.pipeline.helpers import (
    CLIENTS,
    SUP_PATTERN,
    SUPPORT,
    client_mail,
    crlf,
    deliver,
    mail,
    make_desk,
    messages,
    outbox,
    spool,
    tickets,
)

Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_family_is_decoded(client: str, session_factory: Factory, cfg: Config) -> None:
    raw = client_mail(
        client,
        sender=("Müller, Jürgen", "J.Mueller@Contoso.de"),
        subject="Drucker brennt – bitte schnell",
        body="Hallo,\n\nder Drucker im 2. Stock brennt.\n\nGrüße aus Köln\nJürgen\n",
        message_id="<m1@contoso.de>",
    )
    result = deliver(session_factory, cfg, raw, SUPPORT)

    assert (result.outcome, result.ticket_number) == ("created", "SUP-26-03-1")
    with session_factory() as s:
        [t] = tickets(s)
        [m] = messages(s)
        assert t.subject == "Drucker brennt – bitte schnell"
        assert (t.customer.email, t.customer.display_name) == ("j.mueller@contoso.de", "Müller, Jürgen")
        assert (m.from_address, m.from_name) == ("j.mueller@contoso.de", "Müller, Jürgen")
        assert m.message_id == "<m1@contoso.de>"
        assert "Grüße aus Köln\nJürgen" in m.text
        assert "<" not in m.text
        # Outlook and Gmail send multipart/alternative: the HTML is kept beside the text.
        assert (m.html is not None) == (client in {"outlook", "gmail"})
        [entry] = spool(s)
        assert entry.header_message_id == "<m1@contoso.de>"
        assert entry.trace[0]["stage"] == "parse"


def test_folded_and_encoded_subject_is_one_line(session_factory: Factory, cfg: Config) -> None:
    raw = mail(subject="=?UTF-8?Q?R=C3=BCckfrage_zu?=\n =?UTF-8?Q?_Rechnung_4711?=\n\tund Mahnung")
    deliver(session_factory, cfg, raw, SUPPORT)
    with session_factory() as s:
        assert tickets(s)[0].subject == "Rückfrage zu Rechnung 4711 und Mahnung"


def test_html_only_mail_gets_a_readable_text(session_factory: Factory, cfg: Config) -> None:
    html = (
        "<html><head><style>p {color: red}</style><title>x</title></head><body>"
        "<p>Hello&nbsp;team,</p><p>the invoice is <b>wrong</b> &amp; late.</p>"
        "<ul><li>item one</li><li>item two</li></ul></body></html>"
    )
    raw = crlf(
        "From: Bob <bob@customer.example>\nTo: support@example.com\nSubject: Invoice\n"
        "Message-ID: <html-only@customer.example>\nMIME-Version: 1.0\n"
        'Content-Type: text/html; charset="utf-8"\n\n' + html + "\n"
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert m.html is not None and "<b>wrong</b>" in m.html
        assert "the invoice is wrong & late." in m.text
        assert "- item one" in m.text and "- item two" in m.text
        assert "color" not in m.text and "<" not in m.text


def test_line_ends_do_not_depend_on_the_ingress(session_factory: Factory, cfg: Config) -> None:
    """LMTP and SMTP hand over CRLF, an MTA's pipe transport LF: the ticket text is the same."""
    body = "first line\nsecond line\n"
    lf = mail(message_id="<lf@customer.example>", body=body).replace(b"\r\n", b"\n")
    crlf_raw = mail(message_id="<crlf@customer.example>", subject="other", body=body)
    deliver(session_factory, cfg, lf, SUPPORT)
    deliver(session_factory, cfg, crlf_raw, SUPPORT)
    with session_factory() as s:
        assert [m.text for m in messages(s)] == [body, body]


@pytest.mark.parametrize(
    ("content_type", "encoding", "payload"),
    [
        # Declared UTF-8, written by an old client in windows-1252: the usual truth for 8-bit text.
        ("text/plain; charset=utf-8", "8bit", "Grüße aus Köln – Jürgen\n".encode("cp1252")),
        # No charset at all, 8-bit bytes.
        ("text/plain", "8bit", "Grüße aus Köln – Jürgen\n".encode("cp1252")),
        # A charset Python does not know, the bytes are UTF-8.
        ("text/plain; charset=x-unknown-8bit", "8bit", "Grüße aus Köln – Jürgen\n".encode()),
        # Declared us-ascii, sent as UTF-8.
        ("text/plain; charset=us-ascii", "8bit", "Grüße aus Köln – Jürgen\n".encode()),
    ],
    ids=["utf8-label-cp1252-bytes", "no-charset", "unknown-charset", "ascii-label-utf8-bytes"],
)
def test_mislabelled_charsets_are_decoded_without_replacement_characters(
    content_type: str, encoding: str, payload: bytes, session_factory: Factory, cfg: Config
) -> None:
    head = crlf(
        "From: Legacy <legacy@customer.example>\nTo: support@example.com\nSubject: Umlaute\n"
        f"Message-ID: <legacy@customer.example>\nMIME-Version: 1.0\nContent-Type: {content_type}\n"
        f"Content-Transfer-Encoding: {encoding}\n\n"
    )
    assert deliver(session_factory, cfg, head + payload, SUPPORT).outcome == "created"
    with session_factory() as s:
        assert messages(s)[0].text == "Grüße aus Köln – Jürgen\n"


def test_attachments_go_to_the_content_addressed_store(session_factory: Factory, cfg: Config) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
    inner = crlf(
        "From: Carol <carol@customer.example>\nTo: alice@customer.example\nSubject: the original\n"
        "Message-ID: <inner@customer.example>\n\nforwarded text\n"
    )
    raw = (
        crlf(
            "From: Alice Example <alice@customer.example>\nTo: support@example.com\nSubject: Scan attached\n"
            "Message-ID: <att@customer.example>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="outer"\n\n'
            "--outer\nContent-Type: text/plain; charset=utf-8\n\nSee the scan.\n"
            '--outer\nContent-Type: application/pdf; name="scan.pdf"\n'
            # RFC 2231 filename, as Outlook and Thunderbird write non-ASCII names.
            "Content-Disposition: attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf\n"
            "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(pdf).decode() + "\n"
            "--outer\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n"
        )
        + inner
        + b"\r\n--outer--\r\n"
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert m.text.strip() == "See the scan."
        pdf_att, eml_att = m.attachments
        assert (pdf_att.filename, pdf_att.content_type, pdf_att.size) == (
            "Rechnung März.pdf",
            "application/pdf",
            len(pdf),
        )
        assert pdf_att.sha256 is not None
        assert path_of(cfg.attachment_dir, pdf_att.sha256).read_bytes() == pdf
        assert eml_att.content_type == "message/rfc822"
        assert eml_att.sha256 is not None
        assert b"forwarded text" in path_of(cfg.attachment_dir, eml_att.sha256).read_bytes()


def test_the_same_attachment_is_stored_once(session_factory: Factory, cfg: Config) -> None:
    logo = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + b"logo" * 100).decode()

    def with_logo(n: int) -> bytes:
        return crlf(
            f"From: a@customer.example\nTo: support@example.com\nSubject: mail {n}\n"
            f"Message-ID: <logo{n}@customer.example>\n"
            'Content-Type: multipart/mixed; boundary="b"\n\n'
            "--b\nContent-Type: text/plain\n\nhi\n"
            "--b\nContent-Type: image/png\nContent-Disposition: attachment; filename=logo.png\n"
            f"Content-Transfer-Encoding: base64\n\n{logo}\n--b--\n"
        )

    deliver(session_factory, cfg, with_logo(1), SUPPORT)
    deliver(session_factory, cfg, with_logo(2), SUPPORT)
    with session_factory() as s:
        digests = [a.sha256 for m in messages(s) for a in m.attachments]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert len([p for p in Path(cfg.attachment_dir).rglob("*") if p.is_file()]) == 1


def test_mail_without_message_id_gets_one_from_its_bytes(session_factory: Factory, cfg: Config) -> None:
    raw = mail(message_id=None)
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert m.message_id.startswith("<") and m.message_id.endswith("@no-message-id.maild>")
        assert spool(s)[0].header_message_id == ""
        # The auto-reply cannot point at a Message-ID the customer never had.
        [reply] = outbox(s)
        assert b"In-Reply-To" not in reply.raw


def test_sender_header_stands_in_for_an_unusable_from(session_factory: Factory, cfg: Config) -> None:
    raw = mail(sender="undisclosed-recipients:;", extra=[("Sender", "Front Desk <desk@customer.example>")])
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        assert tickets(s)[0].customer.email == "desk@customer.example"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty input"),
        (b"\r\n\r\n  \n", "empty input"),
        (b"\x00\x01\x02\xff\xfe\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "no header fields"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n", "no header fields"),
    ],
    ids=["empty", "blank-lines", "binary", "pdf"],
)
def test_input_that_is_no_mail_is_quarantined_with_a_reason(
    raw: bytes, reason: str, session_factory: Factory, cfg: Config
) -> None:
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "quarantined"
    assert reason in result.reason
    assert result.ticket_number is None
    with session_factory() as s:
        [entry] = spool(s)
        assert (entry.state, entry.outcome) == ("done", "quarantined")
        assert reason in entry.reason
        assert entry.trace == [{"stage": "parse", "ms": entry.trace[0]["ms"], "stop": "quarantined"}]
        assert tickets(s) == [] and outbox(s) == []


@pytest.mark.parametrize(
    "raw",
    [
        crlf("To: support@example.com\nSubject: who am I\n\nno sender here\n"),
        crlf("From: not an address\nTo: support@example.com\nSubject: x\n\nbody\n"),
    ],
    ids=["no-from", "from-without-address"],
)
def test_mail_that_names_no_sender_anywhere_is_quarantined_after_the_bounce_stage(
    raw: bytes, session_factory: Factory, cfg: Config
) -> None:
    # A mail, not junk: parse lets it through (a delivery report from a mail system names no sender
    # either, issue 17), and the bounce stage quarantines what is no delivery report.
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert (result.outcome, result.ticket_number) == ("quarantined", None)
    assert "no sender address" in result.reason
    with session_factory() as s:
        [entry] = spool(s)
        assert (entry.state, entry.outcome, entry.trace[-1]["stage"]) == ("done", "quarantined", "bounce")
        assert tickets(s) == [] and outbox(s) == []


@pytest.mark.parametrize(
    "body",
    [
        # multipart without a boundary parameter
        "Content-Type: multipart/mixed\n\nthe printer is on fire\n",
        # the closing boundary never comes
        'Content-Type: multipart/mixed; boundary="zz"\n\n--zz\nContent-Type: text/plain\n\n'
        "the printer is on fire\n",
        # an unknown transfer encoding
        "Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode-ish\n\nthe printer is on fire\n",
        # broken base64
        "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\ndGhlIHByaW50ZXIgaXMgb24gZmlyZQ=\n",
        # a header line without a colon in the middle of the header
        "X-Broken header without colon\nContent-Type: text/plain\n\nthe printer is on fire\n",
    ],
    ids=["no-boundary", "no-close-boundary", "unknown-cte", "bad-base64", "header-without-colon"],
)
def test_broken_mime_still_makes_a_ticket_with_its_text(
    body: str, session_factory: Factory, cfg: Config
) -> None:
    raw = crlf(
        "From: Alice <alice@customer.example>\nTo: support@example.com\nSubject: broken\n"
        "Message-ID: <broken@customer.example>\nMIME-Version: 1.0\n" + body
    )
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "created"
    with session_factory() as s:
        assert "the printer is on fire" in messages(s)[0].text


def test_sender_with_a_line_break_in_its_display_name_is_still_identified(
    session_factory: Factory, cfg: Config
) -> None:
    """The display name decodes to a line break, which the header parser refuses; the address is fine."""
    raw = mail(sender="=?utf-8?Q?Evil=0ABob?= <bob@customer.example>")
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        contact = tickets(s)[0].customer
        assert contact.email == "bob@customer.example"
        assert "\n" not in contact.display_name
        [reply] = outbox(s)
        assert reply.rcpt_to == ["bob@customer.example"]


def test_encoded_line_breaks_cannot_inject_headers_into_the_auto_reply(
    session_factory: Factory, cfg: Config
) -> None:
    raw = mail(subject="=?utf-8?Q?Hello=0D=0ABcc:_victim@elsewhere.example?=")
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        assert tickets(s)[0].subject == "Hello Bcc: victim@elsewhere.example"
        [reply] = outbox(s)
    assert b"\nBcc:" not in reply.raw and reply.rcpt_to == ["alice@customer.example"]


def test_overlong_names_are_kept_as_far_as_they_fit(session_factory: Factory, cfg: Config) -> None:
    """Signature-style display names and generated attachment names exceed the column widths; PostgreSQL
    refuses an overlong value where SQLite would not, and the mail must become a ticket on both."""
    name = "Alice Example | Senior Procurement Manager | " * 8
    filename = "Rechnung_" + "x" * 300 + ".pdf"
    raw = crlf(
        f"From: {name.strip()} <alice@customer.example>\nTo: support@example.com\nSubject: long\n"
        "Message-ID: <long@customer.example>\n"
        'Content-Type: multipart/mixed; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nsee attachment\n"
        f'--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="{filename}"\n\n'
        "%PDF-1.4\n--b--\n"
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert m.from_name and name.startswith(m.from_name)
        assert m.ticket.customer.display_name == m.from_name
        [att] = m.attachments
        assert att.filename.startswith("Rechnung_xxx") and att.filename.endswith(".pdf")


def test_nul_bytes_in_the_text_do_not_lose_the_mail(session_factory: Factory, cfg: Config) -> None:
    """PostgreSQL text cannot hold U+0000; some broken senders put NULs in text parts."""
    raw = mail(body="before\x00after\n")
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        text = messages(s)[0].text
    assert "before" in text and "after" in text and "\x00" not in text
