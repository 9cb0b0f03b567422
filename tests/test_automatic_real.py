"""Issue 17, automatic mail: what robots really send (tests/corpus/bounces/real/, the files whose JSON
says {"class": "auto-reply", "kind": …}, challenge-response notices and read receipts included) goes
through the real pipeline: stored, flagged with its class, and never answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.config import Config
from maild.mail.automatic import (
    AUTO_GENERATED,
    CHALLENGE_RESPONSE,
    LIST,
    OUT_OF_OFFICE,
    classify,
    read_headers,
)
from tests.pipeline.helpers import mail, messages
from tests.test_bounces_real import ALL, Factory, deliver_lmtp, desk, envelope, spec

AUTOMATIC = [p for p in ALL if spec(p)["class"] == "auto-reply"]
__all__ = ["desk"]  # the fixture, shared with tests/test_bounces_real.py


def test_the_corpus_has_every_kind() -> None:
    assert len([p for p in AUTOMATIC if not spec(p).get("lookalike")]) >= 15
    assert {spec(p)["kind"] for p in AUTOMATIC} == {OUT_OF_OFFICE, AUTO_GENERATED, CHALLENGE_RESPONSE}


@pytest.mark.parametrize("eml", AUTOMATIC, ids=lambda p: p.stem)
def test_automatic_mail_is_never_answered(eml: Path, desk: Factory, cfg: Config) -> None:
    result = deliver_lmtp(desk, cfg, eml.read_bytes(), envelope(eml))
    assert result.outbox_ids == (), f"{eml.stem}: answered: {result.reason}"


@pytest.mark.parametrize("eml", AUTOMATIC, ids=lambda p: p.stem)
def test_automatic_mail_is_stored_with_its_class(eml: Path, desk: Factory, cfg: Config) -> None:
    result = deliver_lmtp(desk, cfg, eml.read_bytes(), envelope(eml))
    with desk() as s:
        stored = [m.automatic for m in messages(s) if m.kind == "customer"]
    assert stored == [spec(eml)["kind"]], f"{eml.stem}: {result.outcome}: {result.reason}"


def kind(
    subject: str, *headers: tuple[str, str], is_reply: bool = False, sender: str = "a@b.example"
) -> str | None:
    raw = mail(sender=sender, subject=subject, extra=headers)
    found = classify(read_headers(raw), subject=subject, sender=sender, envelope=None, is_reply=is_reply)
    return found.kind if found else None


@pytest.mark.parametrize(
    ("subject", "headers", "expected"),
    [
        ("AUTO: Jane Smith is out of the office (returning 03/01/2026)", (), OUT_OF_OFFICE),
        ("Request to join Jane's Guest List", (("X-Boxbe-Message", "1"),), CHALLENGE_RESPONSE),
        ("Hello", (("X-JIRA-FingerPrint", "3f5b"),), AUTO_GENERATED),
        ("INC0012345 updated", (("X-ServiceNow-Source", "Notification-1"),), AUTO_GENERATED),
        ("[acme/w] Issue #1", (("X-GitHub-Reason", "subscribed"),), AUTO_GENERATED),
        ("ops | Pipeline failed", (("X-GitLab-Project", "ops"),), AUTO_GENERATED),
        ("[Bug 1] x", (("X-Bugzilla-Reason", "CC"),), AUTO_GENERATED),
        ("[P - Bug #1] x", (("X-Redmine-Issue-Id", "1"),), AUTO_GENERATED),
        ("Re: your question", (("Precedence", "bulk"),), OUT_OF_OFFICE),
        ("I am on vacation", (("Precedence", "junk"),), OUT_OF_OFFICE),
        (
            "Out of Office: Printer",
            (("Precedence", "bulk"), ("X-Auto-Response-Suppress", "All")),
            OUT_OF_OFFICE,
        ),
        ("Weekly news", (("Precedence", "bulk"),), LIST),
        ("Auto: Frage zur Kfz-Versicherung", (), None),  # "Auto" is also a car
        ("Re: Termin", (("X-Apple-Action", "vacation"),), OUT_OF_OFFICE),
        ("Thank you", (("X-Autoresponse", "yes"),), OUT_OF_OFFICE),
    ],
)
def test_the_issues_examples(
    subject: str, headers: tuple[tuple[str, str], ...], expected: str | None
) -> None:
    is_reply = subject.startswith("Re:")
    assert kind(subject, *headers, is_reply=is_reply) == expected
