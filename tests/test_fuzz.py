"""Robustness (issue 3, item 7): arbitrary bytes and byte-level mutations of realistic mails never crash
parsing or the pipeline. Parsing returns a mail or raises NotAMessage; through the real spool and runner,
every input ends as a ticket (created, replied) or as a record with an outcome and its reason
(quarantined, unknown_recipient, duplicate, ...), never an exception and never "failed".

Deterministic (derandomize) and bounded, so it runs in seconds on either database."""

from __future__ import annotations

import base64
import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.htmltext import html_to_text, sanitize_html
from maild.mail.mailparse import NotAMessage, ParsedMail, parse_mail
from maild.mail.quotes import visible_text
from maild.storage.models import SpoolEntry
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, crlf, deliver, mail, make_desk

Factory = sessionmaker[Session]

# --- realistic seeds --------------------------------------------------------------------------------

_PDF = base64.encodebytes(b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n").decode()
_PNG = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + bytes(range(100))).decode()
_EXE = base64.encodebytes(b"MZ" + b"\x90" * 58 + (0x40).to_bytes(4, "little") + b"PE\x00\x00").decode()

# `MSGID` is replaced by a fresh id per example, so mutated mails are not all duplicates of the first.
SEEDS: list[bytes] = [
    # Outlook: encoded sender and subject, Thread-Index, multipart/mixed with alternative inside,
    # RFC 2231 filename, an executable, winmail.dat.
    crlf(
        "From: =?iso-8859-1?Q?M=FCller=2C_J=FCrgen?= <j.mueller@contoso.de>\n"
        "To: Support <support@example.com>\nCC: boss@contoso.de\n"
        "Subject: =?iso-8859-1?Q?AW:_Rechnung_M=E4rz_=96_bitte_pr=FCfen?=\n"
        "Thread-Topic: Rechnung\nThread-Index: AQHZ1234567890abcdefABCDEF==\n"
        "Date: Sat, 7 Mar 2026 09:00:00 +0000\nMessage-ID: MSGID\n"
        "In-Reply-To: <earlier@contoso.de>\nReferences: <root@customer.example> <earlier@contoso.de>\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="_004_AM0PR07MB_"\n\n'
        '--_004_AM0PR07MB_\nContent-Type: multipart/alternative; boundary="_000_AM0PR07MB_"\n\n'
        '--_000_AM0PR07MB_\nContent-Type: text/plain; charset="iso-8859-1"\n'
        "Content-Transfer-Encoding: quoted-printable\n\n"
        "Hallo,=0D\nanbei die Rechnung f=FCr M=E4rz.=0D\n\nVon: Support <support@example.com>\n"
        "Gesendet: Freitag, 6. M=E4rz 2026 17:00\nAn: J=FCrgen\nBetreff: Rechnung\n\nBitte pr=FCfen.\n"
        '--_000_AM0PR07MB_\nContent-Type: text/html; charset="iso-8859-1"\n'
        "Content-Transfer-Encoding: quoted-printable\n\n"
        '<html><body><p>Hallo,</p><p onclick=3D"x()">anbei <b>die Rechnung</b></p>'
        "<script>alert(1)</script></body></html>\n--_000_AM0PR07MB_--\n\n"
        "--_004_AM0PR07MB_\nContent-Type: application/pdf\n"
        "Content-Disposition: attachment;\n filename*0*=UTF-8''Rechnung%20M%C3%A4;\n filename*1*=rz.pdf\n"
        f"Content-Transfer-Encoding: base64\n\n{_PDF}\n"
        '--_004_AM0PR07MB_\nContent-Type: application/octet-stream; name="setup.exe"\n'
        'Content-Disposition: attachment; filename="setup.exe"\n'
        f"Content-Transfer-Encoding: base64\n\n{_EXE}\n"
        '--_004_AM0PR07MB_\nContent-Type: application/ms-tnef; name="winmail.dat"\n'
        "Content-Transfer-Encoding: base64\n\neJ8+IgAAAAAAAA==\n--_004_AM0PR07MB_--\n"
    ),
    # Gmail: base64 text and HTML alternative, reply with a quote.
    crlf(
        "MIME-Version: 1.0\nReferences: <root@customer.example>\nIn-Reply-To: <root@customer.example>\n"
        "From: Alice Example <alice@customer.example>\nDate: Sat, 7 Mar 2026 09:00:00 +0000\n"
        "Message-ID: MSGID\nSubject: =?UTF-8?B?UmU6IFtTVVAtMjYtMDMtMV0gRHJ1Y2tlciBicmVubnQg8J+UpQ==?=\n"
        "To: support@example.com\n"
        'Content-Type: multipart/alternative; boundary="000000000000a1b2c3"\n\n'
        '--000000000000a1b2c3\nContent-Type: text/plain; charset="UTF-8"\n'
        "Content-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(
            b"Thanks!\r\n\r\nOn Sat, Mar 7, 2026 at 8:00 AM Support <support@example.com> wrote:\r\n"
            b"> Please try again.\r\n"
        ).decode()
        + '\n--000000000000a1b2c3\nContent-Type: text/html; charset="UTF-8"\n\n'
        '<div dir="ltr">Thanks!</div><div class="gmail_quote"><blockquote>Please try again.'
        "</blockquote></div>\n--000000000000a1b2c3--\n"
    ),
    # Apple Mail: inline image between two text parts, cid image in related HTML.
    crlf(
        'Content-Type: multipart/mixed;\n\tboundary="Apple-Mail=_A1"\n'
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774\\))\nSubject: Photo\n"
        "From: Alice Example <alice@customer.example>\nDate: Sat, 7 Mar 2026 09:00:00 +0000\n"
        "Message-Id: MSGID\nTo: support@example.com\n\n"
        "--Apple-Mail=_A1\nContent-Transfer-Encoding: 7bit\nContent-Type: text/plain;\n\tcharset=us-ascii\n\n"
        "Here is the photo:\n\n--Apple-Mail=_A1\nContent-Transfer-Encoding: base64\n"
        'Content-Disposition: inline;\n\tfilename="IMG_0001.png"\n'
        'Content-Type: image/png;\n\tname="IMG_0001.png"\n'
        f"Content-Id: <IMG1@icloud.com>\n\n{_PNG}\n"
        "--Apple-Mail=_A1\nContent-Transfer-Encoding: quoted-printable\nContent-Type: text/plain;\n"
        "\tcharset=utf-8\n\nSmoke from the left side =E2=80=93 Alice\n\nSent from my iPhone\n"
        "--Apple-Mail=_A1--\n"
    ),
    # A forward with a nested message/rfc822 and an HTML-only body with a cid image.
    crlf(
        "From: Bob <bob@customer.example>\nTo: support@example.com\nSubject: Fwd: server down\n"
        "Message-ID: MSGID\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="outer"\n\n'
        '--outer\nContent-Type: multipart/related; boundary="rel"\n\n'
        "--rel\nContent-Type: text/html; charset=windows-1252\nContent-Transfer-Encoding: 8bit\n\n"
        '<p>See below <img src="cid:logo@x"></p><table><tr><td>host</td><td>db1</td></tr></table>\n'
        "--rel\nContent-Type: image/png\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\n"
        f"{_PNG}\n--rel--\n"
        "--outer\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n"
        "From: Monitor <alerts@customer.example>\nTo: bob@customer.example\n"
        "Subject: =?utf-8?Q?Server_down_03/2026?=\nMessage-ID: <inner@customer.example>\n\n"
        "> host db1 is DOWN\n> since 08:50\n\n--outer--\n"
    )
    + "Grüße\r\n".encode("cp1252"),
    # Minimal text/plain, 8-bit headers, no Message-ID placeholder kept (the id comes from the bytes).
    "From: Jürgen <j@customer.example>\r\nTo: support@example.com\r\nSubject: Grüße MSGID\r\n\r\n"
    "Der Drucker brennt.\r\n> quoted\r\n> twice\r\n".encode("cp1252"),
]

_ids = itertools.count()


def _fresh(raw: bytes) -> bytes:
    """Applied in the test, not the strategy: hypothesis needs the drawn data to be reproducible."""
    return raw.replace(b"MSGID", f"<fuzz.{next(_ids)}@customer.example>".encode())


_TOKENS = [
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"--",
    b":",
    b";",
    b'"',
    b"=",
    b"=?",
    b"?=",
    b"=?utf-8?B?",
    b"=?iso-8859-1?Q?=E4",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b"\t",
    b" ",
    b"<",
    b">",
    b"@",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Disposition: attachment; filename*0*=x''%FF;filename*1=",
    b"charset=x-unknown",
    b"From: \r\n",
    b"> ",
    b"\r\n> quoted\r\n> again\r\n",
    b"On Sat, Mar 7, 2026 at 9:00 AM X <x@y> wrote:\r\n",
]


def _header_lines(raw: bytes) -> list[bytes]:
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    return [line for line in re.split(rb"\r?\n", head) if line and line[:1] not in (b" ", b"\t")]


def _boundaries(raw: bytes) -> list[bytes]:
    return re.findall(rb'boundary="?([^";\r\n]+)', raw)


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    """A realistic mail after a few byte-level mutations."""
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(
            st.sampled_from(
                ["delete", "insert", "replace", "truncate", "duplicate_header", "corrupt_boundary", "splice"]
            )
        )
        size = len(raw)
        at = draw(st.integers(0, size))
        if op == "delete":
            del raw[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            raw[at:at] = draw(st.one_of(st.sampled_from(_TOKENS), st.binary(min_size=1, max_size=16)))
        elif op == "replace" and size:
            at = min(at, size - 1)
            raw[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del raw[at:]
        elif op == "duplicate_header":
            lines = _header_lines(bytes(raw))
            if lines:
                line = draw(st.sampled_from(lines))
                raw[0:0] = line + b"\r\n"
        elif op == "corrupt_boundary":
            found = _boundaries(bytes(raw))
            if found:
                boundary = draw(st.sampled_from(found))
                damaged = draw(
                    st.sampled_from([boundary[:-1], boundary + b"x", b"", boundary.upper(), boundary + b"--"])
                )
                occurrences = [m.start() for m in re.finditer(re.escape(b"--" + boundary), bytes(raw))]
                if occurrences:
                    start = draw(st.sampled_from(occurrences)) + 2
                    raw[start : start + len(boundary)] = damaged
        elif op == "splice" and size > 8:
            # A chunk of the mail copied elsewhere: repeated parts, headers inside bodies.
            start = draw(st.integers(0, size - 1))
            chunk = bytes(raw[start : start + draw(st.integers(1, 200))])
            raw[at:at] = chunk
    return bytes(raw)


ANY_INPUT = st.one_of(
    st.binary(max_size=1500),
    # Arbitrary bytes after a header that makes it a mail: the body and MIME structure are the noise.
    st.binary(max_size=1500).map(lambda b: b"From: a@customer.example\r\nTo: support@example.com\r\n" + b),
    mutated_mail(),
)


# --- (a) parsing ------------------------------------------------------------------------------------


def _check_parsed(parsed: ParsedMail) -> None:
    assert isinstance(parsed.text, str) and isinstance(parsed.visible_text, str)
    assert "\x00" not in parsed.text and "\x00" not in parsed.subject
    # "" when nothing names a sender (issue 17: the bounce stage decides, a delivery report goes on there).
    assert parsed.from_address == "" or "@" in parsed.from_address
    assert parsed.message_id.startswith("<") and parsed.message_id.endswith(">")
    for attachment in parsed.attachments:
        assert attachment.filename and "/" not in attachment.filename and "\\" not in attachment.filename
        assert len(attachment.filename) <= 255
        assert isinstance(attachment.data, bytes)
    if parsed.html is not None:
        assert "<script" not in parsed.html.lower()


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(ANY_INPUT)
def test_parse_mail_never_crashes(raw: bytes) -> None:
    try:
        parsed = parse_mail(raw)
    except NotAMessage as exc:
        assert str(exc)
        return
    _check_parsed(parsed)
    assert isinstance(visible_text(parsed.text), str)


@settings(max_examples=150, derandomize=True, deadline=None, database=None)
@given(
    st.text(max_size=800)
    | st.lists(
        st.sampled_from(
            ["> quoted", ">", "", "text:", "On x wrote:", "Thanks,", "- item", "Von: a", "2. click:"]
        ),
        max_size=30,
    ).map("\n".join)
)
def test_visible_text_and_html_never_crash(text: str) -> None:
    assert isinstance(visible_text(text), str)
    assert isinstance(html_to_text(text), str)
    assert isinstance(sanitize_html(text), str)


# --- (b) the pipeline -------------------------------------------------------------------------------


@pytest.fixture
def support_desk(session_factory: Factory, cfg: Config) -> None:
    """The desk, and the ticket the reply seeds answer (by References, and by subject tag)."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    root = deliver(session_factory, cfg, mail(message_id="<root@customer.example>"), SUPPORT)
    assert root.ticket_number == "SUP-26-03-1"


TICKET_OUTCOMES = {"created", "replied"}
RECORD_OUTCOMES = {"quarantined", "unknown_recipient", "duplicate", "refused", "rejected"}


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=ANY_INPUT, recipient=st.sampled_from([SUPPORT, ""]))
def test_pipeline_ends_every_input_as_a_ticket_or_a_record(
    raw: bytes, recipient: str, support_desk: None, session_factory: Factory, cfg: Config
) -> None:
    """One database for all examples, as in production: later inputs meet the tickets of earlier ones
    (replies, duplicates)."""
    result = deliver(session_factory, cfg, _fresh(raw), recipient)
    assert result.outcome != "failed", result.reason
    assert result.outcome in TICKET_OUTCOMES | RECORD_OUTCOMES, (result.outcome, result.reason)
    if result.outcome in TICKET_OUTCOMES:
        assert result.ticket_number
    else:
        assert result.reason
    with session_factory() as s:
        entry = s.scalars(select(SpoolEntry).order_by(SpoolEntry.id.desc())).first()
        assert entry is not None
        assert (entry.state, entry.outcome) == ("done", result.outcome)


# --- pathological shapes, each once -----------------------------------------------------------------

_HEAD = "From: Alice <alice@customer.example>\nTo: support@example.com\nSubject: {}\nMIME-Version: 1.0\n"
_NEST = 1000
_COMMENTS = b"(" * 3000 + b")" * 3000


def _nested_multipart(depth: int) -> bytes:
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth))
    closing = "".join(f"\n--b{i}--\n" for i in reversed(range(depth)))
    return crlf(_HEAD.format("deep") + opening + "Content-Type: text/plain\n\ndeep text" + closing)


def _nested_messages(depth: int) -> bytes:
    raw = "Content-Type: text/plain\n\ninnermost\n"
    for i in range(depth):
        raw = f"From: x{i}@customer.example\nSubject: level {i}\nContent-Type: message/rfc822\n\n" + raw
    return crlf(_HEAD.format("forwards") + raw)


def _with_header(line: bytes) -> bytes:
    return crlf(_HEAD.format("odd header")) + line + b"\r\n\r\nbody\r\n"


def _body(text: str, content_type: str = "text/plain; charset=utf-8") -> bytes:
    return crlf(_HEAD.format("body") + f"Content-Type: {content_type}\n\n") + text.encode()


# (id, raw, the outcome, what the reason says when it is not a ticket)
PATHOLOGICAL = [
    # The lenient policy (maild.mail.lenient) reads what it can where the stdlib gave up: the parts below
    # the depth it reaches stay text, and a customer's mail is not lost for its shape.
    ("multipart-nested-1000-deep", _nested_multipart(_NEST), "created", ""),
    ("multipart-nested-200-deep", _nested_multipart(200), "created", ""),
    ("messages-nested-1000-deep", _nested_messages(_NEST), "created", ""),
    (
        "comments-in-from",
        crlf(_HEAD.format("x")).replace(b"<alice@customer.example>", b"a@b" + _COMMENTS),
        "quarantined",
        "nested too deeply",
    ),
    (
        "comments-in-content-type",
        _with_header(b"Content-Type: text/plain" + _COMMENTS),
        "created",  # the header's value is kept unparsed: text/plain, the default
        "",
    ),
    (
        "comments-in-message-id",
        _with_header(b"Message-ID: <a@b>" + _COMMENTS),
        "created",  # the header parser gives up; the raw value still has the id
        "",
    ),
    # Undeclared 8-bit bytes in an address, which the header parser trips over: never a surrogate in the
    # stored address (the database refuses it).
    (
        "8bit-in-address",
        b"From: a.:\x80@customer.example\r\nTo: support@example.com\r\n\r\nbody\r\n",
        "created",
        "",
    ),
    (
        "8bit-name-and-address",
        b"From: J\xfcrgen <j\xfc@customer.example>\r\nTo: support@example.com\r\n\r\nx\r\n",
        "created",
        "",
    ),
    ("nul-in-charset", _body("Grüße\n", 'text/plain; charset="utf\x008"'), "created", ""),
    ("100k-blank-lines", _body("\n" * 100_000 + "hello\n"), "created", ""),
    ("100k-paragraph-on-one-line", _body("Op maandag werkte het. Op dinsdag niet. " * 2500), "created", ""),
    ("trailing-quoted-lines", _body("My config:\n> a = 1\n> b = 2\n"), "created", ""),
    ("100k-nested-divs", _body("<div>" * 100_000 + "x", "text/html; charset=utf-8"), "created", ""),
]


@pytest.mark.parametrize(
    ("raw", "outcome", "reason"), [p[1:] for p in PATHOLOGICAL], ids=[p[0] for p in PATHOLOGICAL]
)
def test_pathological_shapes_end_in_time_as_a_ticket_or_a_record(
    raw: bytes, outcome: str, reason: str, support_desk: None, session_factory: Factory, cfg: Config
) -> None:
    # Each used to take minutes (or forever) in visible text or the HTML sanitiser; how long they take now
    # is measured in bench/, not asserted here.
    result = deliver(session_factory, cfg, raw, SUPPORT)
    assert result.outcome == outcome, result.reason
    assert reason in result.reason
