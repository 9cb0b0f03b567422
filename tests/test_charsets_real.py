"""Every charset readable (issue 17): the mails in tests/corpus_charsets (Chinese, Japanese, Korean,
Russian, Ukrainian, Greek, Hebrew, Arabic, Turkish, Polish, Czech, Hungarian, German, Portuguese,
Vietnamese; labelled rightly, wrongly or not at all) come out with the subject, sender, body text and
attachment names a person reads, through maild.mail.mailparse.parse_mail and a few through the pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.charsets import decode_bytes
from maild.mail.mailparse import parse_mail
from tests.pipeline.helpers import SUPPORT, deliver, make_desk, messages

Factory = sessionmaker[Session]
CORPUS = Path(__file__).parent / "corpus_charsets"
NAMES = sorted(path.name.removesuffix(".eml") for path in CORPUS.glob("*.eml"))
FIELDS = ("subject", "from_name", "from_address", "body", "attachments")


def _expected(name: str) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads((CORPUS / f"{name}.expected.json").read_text("utf-8"))
    return expected


def problems(name: str) -> dict[str, str]:
    """The fields of one corpus mail that do not come out as expected: field → what came out."""
    expected = _expected(name)
    try:
        mail = parse_mail((CORPUS / f"{name}.eml").read_bytes())
    except Exception as exc:  # counted, so that the "before" run of the old code can be measured
        return dict.fromkeys(FIELDS, f"raised {type(exc).__name__}")
    got = {
        "subject": mail.subject,
        "from_name": mail.from_name,
        "from_address": mail.from_address,
        "body": " ".join(mail.text.split()),
        "attachments": sorted(a.filename for a in mail.attachments),
    }
    wanted = {
        "subject": expected["subject"],
        "from_name": expected["from_name"],
        "from_address": expected["from_address"],
        "body": " ".join(expected["body_contains"].split()),
        "attachments": sorted(expected["attachments"]),
    }
    found = {field: repr(got[field]) for field in FIELDS if field != "body" and got[field] != wanted[field]}
    if wanted["body"] not in got["body"]:
        found["body"] = repr(got["body"][:120])
    return found


def test_corpus_is_wide() -> None:
    assert len(NAMES) >= 30


@pytest.mark.parametrize("name", NAMES)
def test_corpus_mail(name: str) -> None:
    assert problems(name) == {}, _expected(name)["description"]


@pytest.mark.parametrize(
    "name", ["zh-qq-raw-gbk-headers", "ja-becky-iso2022jp-vendor", "de-raw-utf8-address", "pl-iso8859-2"]
)
def test_corpus_through_the_pipeline(session_factory: Factory, cfg: Config, name: str) -> None:
    make_desk(session_factory, "Support", [SUPPORT], "SUP-{{nr}}")
    expected = _expected(name)
    assert deliver(session_factory, cfg, (CORPUS / f"{name}.eml").read_bytes(), SUPPORT).outcome == "created"
    with session_factory() as session:
        [message] = messages(session)
        assert message.subject == expected["subject"]
        assert " ".join(expected["body_contains"].split()) in " ".join(message.text.split())
        assert sorted(a.filename for a in message.attachments) == sorted(expected["attachments"])


def _mail(headers: bytes, body: bytes = b"Hello\r\n") -> bytes:
    return b"To: support@example.com\r\nMessage-ID: <x@y.test>\r\n" + headers + b"\r\n\r\n" + body


def test_the_issues_examples() -> None:
    gbk = parse_mail(_mail(b"From: a@b.test\r\nSubject: " + "转发：整体".encode("gbk")))
    assert gbk.subject == "转发：整体"
    umlaut = parse_mail(_mail("From: K. Günther <k.günther@example.de>\r\nSubject: x".encode()))
    assert (umlaut.from_name, umlaut.from_address) == ("K. Günther", "k.günther@example.de")
    comment = parse_mail(_mail(b"From: marc@example.com (Marc Smith)\r\nSubject: x"))
    assert (comment.from_name, comment.from_address) == ("Marc Smith", "marc@example.com")
    words = parse_mail(
        _mail(
            b"From: a@b.test\r\n"
            b"Subject: =?UTF-8?Q?Caf=C3=A9?= =?UTF-8?Q?_cr=C3=A8me?= and =?UTF-8?Q?th=C3=A9?="
        )
    )
    assert words.subject == "Café crème and thé"
    vendor = parse_mail(_mail(b"From: a@b.test\r\nSubject: =?ISO-2022-JP?B?GyRCLSEtahsoQg==?="))
    assert vendor.subject == "①㈱"


def test_declared_latin1_on_valid_utf8_is_utf8_and_real_latin1_stays() -> None:
    assert decode_bytes("Grüße".encode(), "iso-8859-1") == "Grüße"
    assert decode_bytes("Grüße, “Preis” 10 €".encode("cp1252"), "iso-8859-1") == "Grüße, “Preis” 10 €"
    assert decode_bytes("转发：整体方案的报价".encode("gbk"), "iso-8859-1") == "转发：整体方案的报价"
    assert decode_bytes("Привет, мир".encode(), "koi8-r") == "Привет, мир"  # valid UTF-8 wins
    assert decode_bytes(b"\xef\xbb\xbfHall\xc3\xb6", "utf-8") == "Hallö"  # no byte order mark in the text


def test_detection_is_bounded_on_large_undeclared_text() -> None:
    """A 4 MB undeclared body: the detector reads a bounded sample, not the megabytes."""
    data = ("Здравствуйте, когда будет доставка заказа? " * 100_000).encode("cp1251")
    started = time.perf_counter()
    text = decode_bytes(data, None)
    assert time.perf_counter() - started < 5
    assert text.startswith("Здравствуйте, когда будет доставка")
