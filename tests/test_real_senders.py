"""A customer is never ignored (issue 17): the sender of real-world mail whose From is missing, empty or
broken, and header blocks the stdlib misreads, through the real spool and pipeline.

`tests/corpus_senders/NAME.eml` with `NAME.json` (format: tests/corpus_senders/README.md) is each delivered
into a fresh database with its envelope sender; the ticket's contact (address and name), subject and the
outcome are checked. The issue's examples are also tests of their own, through the pipeline and through
`maildctl explain --json` (the parsed subject, from, to, cc and each attachment's md5)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.header_repair import repair_header_block
from maild.mail.mailparse import parse_mail
from maild.pipeline.runner import Result, process
from maild.storage.db import transaction
from maild.storage.spool import record_received, write_raw
from tests.conftest import run_cli, uses_database
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, crlf, make_desk, spool, tickets

Factory = sessionmaker[Session]
CORPUS = Path(__file__).resolve().parent / "corpus_senders"
NAMES = sorted(path.stem for path in CORPUS.glob("*.eml"))
KNOWN_KEYS = {
    "description",
    "mail_from",
    "outcome",
    "outcome_any",
    "reason_contains",
    "reaches",
    "from_address",
    "from_name",
    "subject",
    "subject_alternatives",
    "defect_contains",
    "unchanged",
}


@pytest.fixture(autouse=True)
def _support(request: pytest.FixtureRequest) -> None:
    """The support desk, in every test that has a database (the ones that only parse get none)."""
    if uses_database(request):
        make_desk(request.getfixturevalue("session_factory"), "support", [SUPPORT], SUP_PATTERN)


def deliver(factory: Factory, cfg: Config, raw: bytes, mail_from: str = "") -> Result:
    """What an LMTP ingress does: the bytes durable, a 'received' row with the envelope sender, the
    pipeline."""
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(factory) as session:
        spool_id = record_received(session, digest, len(raw), SUPPORT, "lmtp", mail_from).id
    return process(factory, cfg, spool_id, NOW)


def expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    assert set(data) <= KNOWN_KEYS, f"{name}.json: unknown keys {set(data) - KNOWN_KEYS}"
    return data


def mismatches(factory: Factory, cfg: Config, name: str) -> list[str]:
    """How the pipeline's result for corpus file `name` differs from its expectation ([]: as expected)."""
    want = expected(name)
    raw = (CORPUS / f"{name}.eml").read_bytes()
    result = deliver(factory, cfg, raw, want.get("mail_from", ""))
    problems = []
    outcomes = want.get("outcome_any") or [want["outcome"]]
    if result.outcome not in outcomes:
        problems.append(f"outcome {result.outcome!r} ({result.reason}), expected {' or '.join(outcomes)}")
    if want.get("reason_contains", "") not in result.reason:
        problems.append(f"reason {result.reason!r} lacks {want['reason_contains']!r}")
    with factory() as s:
        [entry] = spool(s)
        stages = [step["stage"] for step in entry.trace]
        if "reaches" in want and want["reaches"] not in stages:
            problems.append(f"stopped at {stages[-1]}, before {want['reaches']}")
        found = tickets(s)
        if outcomes != ["created"]:
            if found:
                problems.append(f"a ticket was opened: {found[0].number}")
            return problems
        if len(found) != 1:
            return [*problems, f"{len(found)} tickets"]
        ticket = found[0]
        contact = (ticket.customer.email, ticket.customer.display_name)
        if contact != (want["from_address"], want["from_name"]):
            problems.append(f"contact {contact}, expected {(want['from_address'], want['from_name'])}")
        subjects = [want["subject"], *want.get("subject_alternatives", [])] if "subject" in want else []
        if subjects and ticket.subject not in subjects:
            problems.append(f"subject {ticket.subject!r}, expected {want['subject']!r}")
    return problems


def test_the_corpus_is_wide() -> None:
    assert len(NAMES) >= 25
    assert all((CORPUS / f"{name}.json").exists() for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_file(name: str, session_factory: Factory, cfg: Config) -> None:
    problems = mismatches(session_factory, cfg, name)
    assert not problems, f"{name}.eml ({expected(name)['description']}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_defects_say_what_was_repaired(name: str) -> None:
    """Each fallback and repair is a defect (agents see it as a note); a mail without a problem keeps its
    bytes."""
    want = expected(name)
    raw = (CORPUS / f"{name}.eml").read_bytes()
    if want.get("unchanged"):
        assert repair_header_block(raw).raw is raw
    if "defect_contains" in want:
        defects = parse_mail(raw, want.get("mail_from", "")).defects
        assert any(want["defect_contains"] in d for d in defects), defects


# --- the issue's examples, one by one ------------------------------------------------------------------

BODY = "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nMy order never arrived.\n"
ISSUE_EXAMPLES = [
    # (id, raw, envelope sender, expected (address, name), a defect that names the fallback or repair)
    (
        "trailing-dot",
        crlf('From: "Claudia" <claudia.shu@yahoo.com.>\nTo: support@example.com\nSubject: Order\n' + BODY),
        "",
        ("claudia.shu@yahoo.com", "Claudia"),
        "",
    ),
    (
        "empty-angle",
        crlf('From: "Support team" <>\nTo: support@example.com\nSubject: Order\n' + BODY),
        "team@corp.test",
        ("team@corp.test", "Support team"),
        "envelope sender",
    ),
    (
        "only-reply-to",
        crlf("Reply-To: Rita Ray <rita@corp.test>\nTo: support@example.com\nSubject: Order\n" + BODY),
        "",
        ("rita@corp.test", "Rita Ray"),
        "Reply-To",
    ),
    (
        "only-sender",
        crlf("Sender: Sam Stone <sam@corp.test>\nTo: support@example.com\nSubject: Order\n" + BODY),
        "",
        ("sam@corp.test", "Sam Stone"),
        "Sender",
    ),
    (
        "envelope-only",
        crlf("To: support@example.com\nSubject: Order\n" + BODY),
        "eve@corp.test",
        ("eve@corp.test", ""),
        "envelope sender",
    ),
    (
        "return-path-only",
        crlf("Return-Path: <rp@corp.test>\nTo: support@example.com\nSubject: Order\n" + BODY),
        "",
        ("rp@corp.test", ""),
        "Return-Path",
    ),
    (
        "unindented-continuation",
        crlf(
            f"X-Tracker: a\nb=c\nFrom: Bob <bob@corp.test>\nTo: support@example.com\nSubject: Order\n{BODY}"
        ),
        "",
        ("bob@corp.test", "Bob"),
        "unindented",
    ),
    (
        "export-banner",
        crlf(
            "---- Original email message ----\nFrom: Bob <bob@corp.test>\nTo: support@example.com\n"
            "Subject: Order\n" + BODY
        ),
        "",
        ("bob@corp.test", "Bob"),
        "before the headers",
    ),
]


@pytest.mark.parametrize(
    ("raw", "mail_from", "sender", "defect"),
    [example[1:] for example in ISSUE_EXAMPLES],
    ids=[example[0] for example in ISSUE_EXAMPLES],
)
def test_a_customer_is_never_ignored(
    raw: bytes, mail_from: str, sender: tuple[str, str], defect: str, session_factory: Factory, cfg: Config
) -> None:
    result = deliver(session_factory, cfg, raw, mail_from)
    assert result.outcome == "created", result.reason
    with session_factory() as s:
        [ticket] = tickets(s)
        assert (ticket.customer.email, ticket.customer.display_name) == sender
        assert ticket.subject == "Order"
        [message] = ticket.messages
        assert message.text.strip() == "My order never arrived."
        assert (message.from_address, message.from_name) == sender
    if defect:
        assert any(defect in d for d in parse_mail(raw, mail_from).defects)


@pytest.mark.parametrize("from_header", ["MAILER-DAEMON <>", "<MAILER-DAEMON>", "<>"])
def test_a_sender_less_delivery_report_reaches_the_bounce_stage(
    from_header: str, session_factory: Factory, cfg: Config
) -> None:
    raw = (CORPUS / "dsn-mailer-daemon-empty-angle.eml").read_bytes()
    raw = raw.replace(b"From: MAILER-DAEMON <>", f"From: {from_header}".encode())
    result = deliver(session_factory, cfg, raw, "<>")
    assert (result.outcome, result.ticket_number) == ("archived", None)
    assert result.reason.startswith("bounce-unmatched")
    with session_factory() as s:
        assert spool(s)[0].trace[-1]["stage"] == "bounce"


def test_a_plain_text_report_without_a_sender_is_not_refused_by_parse(
    session_factory: Factory, cfg: Config
) -> None:
    raw = (CORPUS / "exim-plain-sender-less.eml").read_bytes()
    result = deliver(session_factory, cfg, raw, "<>")
    assert result.ticket_number is None
    with session_factory() as s:
        assert [step["stage"] for step in spool(s)[0].trace][:3] == ["parse", "loop", "bounce"]


# --- the header repair: only what is broken changes ---------------------------------------------------


def test_mail_without_a_header_problem_keeps_its_very_bytes() -> None:
    """The golden corpus (real-world-shaped mail and real bounces) is read as it is: not one byte changes."""
    tests = Path(__file__).resolve().parent
    paths = [
        *tests.glob("corpus/**/*.eml"),
        *(CORPUS / f"{n}.eml" for n in NAMES if expected(n).get("unchanged")),
    ]
    assert len(paths) > 150
    for path in paths:
        raw = path.read_bytes()
        assert repair_header_block(raw).raw is raw, path


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: hi\nFrom: Bob <bob@corp.test>\nHello,\nthis is my question\n\nmore\n",
        b"Subject: web form\nFrom: form@corp.test\nDear team,\nName: Bob\nPhone: 12345\n\nthanks\n",
        b"Subject: hi\nFrom: Bob <bob@corp.test>\nNote : call me\n\nmore\n",
        b"hello world\n\nno headers here\n",
        b"POST /hook HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/plain\r\n\r\nx",
    ],
    ids=["body-without-separator", "form-fields-in-body", "unknown-spaced-name", "no-headers", "http"],
)
def test_a_body_that_merely_lacks_the_empty_line_is_not_taken_for_headers(raw: bytes) -> None:
    assert repair_header_block(raw).raw is raw


def test_the_repair_changes_the_header_block_only() -> None:
    body = b"\r\n--b\r\nnot: a header\r\nb=c\r\n"
    raw = b"X-A: 1\r\nb=c\r\nFrom: a@corp.test\r\nContent-Type: multipart/mixed; boundary=b\r\n" + body
    repaired = repair_header_block(raw)
    assert repaired.raw == raw.replace(b"\r\nb=c\r\nFrom", b"\r\n b=c\r\nFrom", 1)
    assert repaired.raw.endswith(body)


# --- maildctl explain --json: the parsed headers and md5 ---------------------------------------------

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


def test_explain_json_gives_subject_from_to_cc_and_md5(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    attached = base64.encodebytes(PDF).decode()
    mails = {
        "attachment.eml": crlf(
            "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <J.Mueller@Contoso.de>\n"
            "To: Support <support@example.com>, Sales <sales@example.com>\n"
            'Cc: "Doe, Jane" <jane@contoso.de>\nSubject: =?UTF-8?Q?R=C3=BCckfrage?= invoice\n'
            "Message-ID: <x1@contoso.de>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b1"\n\n'
            "--b1\nContent-Type: text/plain\n\nSee attached.\n"
            '--b1\nContent-Type: application/pdf; name="a.pdf"\nContent-Transfer-Encoding: base64\n\n'
            f"{attached}--b1--\n"
        ),
        "empty-angle.eml": (CORPUS / "gateway-empty-angle-return-path.eml").read_bytes(),
        "broken-fold.eml": (CORPUS / "unindented-x-tracker.eml").read_bytes(),
        "report.eml": (CORPUS / "dsn-angle-mailer-daemon.eml").read_bytes(),
    }
    for name, raw in mails.items():
        (tmp_path / name).write_bytes(raw)
    files = [str(tmp_path / name) for name in mails]
    proc = run_cli("maildctl", "explain", *files, "--recipient", SUPPORT, "--json", config=config_file)
    assert proc.returncode == 0, proc.stderr
    attachment, empty_angle, broken_fold, report = json.loads(proc.stdout)

    assert attachment["subject"] == "Rückfrage invoice"
    assert attachment["from"] == {"address": "j.mueller@contoso.de", "name": "Jürgen Müller"}
    assert attachment["to"] == [
        {"address": "support@example.com", "name": "Support"},
        {"address": "sales@example.com", "name": "Sales"},
    ]
    assert attachment["cc"] == [{"address": "jane@contoso.de", "name": "Doe, Jane"}]
    [pdf] = attachment["attachments"]
    assert pdf["md5"] == hashlib.md5(PDF).hexdigest()
    assert pdf["sha256"] == hashlib.sha256(PDF).hexdigest()  # the existing field, beside the new one

    assert empty_angle["outcome"] == "created"
    assert empty_angle["from"] == {"address": "helpdesk@fabrikam.test", "name": "Fabrikam Helpdesk"}
    assert any("Return-Path" in d for d in empty_angle["defects"])
    assert broken_fold["from"] == {"address": "lena.berg@example.org", "name": "Lena Berg"}
    assert broken_fold["subject"] == "Invoice address change"
    assert report["from"] == {"address": "", "name": ""}
    assert report["to"] == [{"address": "support@example.com", "name": ""}] and report["cc"] == []
    assert report["outcome"] == "archived" and report["bounce"] is not None


def test_explain_json_of_what_is_no_mail_has_empty_header_fields(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    path = CORPUS / "not-mail-zip.eml"
    proc = run_cli("maildctl", "explain", str(path), "--recipient", SUPPORT, "--json", config=config_file)
    [result] = json.loads(proc.stdout)
    assert result["outcome"] == "quarantined"
    assert (result["subject"], result["from"], result["to"], result["cc"]) == (None, None, [], [])


_HEADERISH = st.lists(
    st.sampled_from(
        [b"From: a@b.test", b"Subject : x", b"b=c", b"X-A: 1", b" fold", b"", b"From x", b"\xef\xbb\xbf"]
    )
    | st.binary(max_size=20),
    max_size=12,
)


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(_HEADERISH, st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_the_repair_never_raises_and_reports_every_change(lines: list[bytes], eol: bytes) -> None:
    raw = eol.join(lines)
    repaired = repair_header_block(raw)
    assert isinstance(repaired.raw, bytes)
    assert (repaired.raw is raw) == (not repaired.repairs)
