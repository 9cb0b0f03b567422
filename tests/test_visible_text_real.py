"""The visible text of real-looking replies in many languages and clients (tests/corpus_replies/, see its
README.md): exactly what the sender wrote, and never fewer of the sender's words than expected."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from maild.mail.flowed import unflow
from maild.mail.quotes import visible_text

CORPUS = Path(__file__).parent / "corpus_replies"
REPLY_MARK = "\n=== reply ===\n"
VISIBLE_MARK = "=== visible ===\n"
MIN_CASES = 60
LANGUAGES = (
    "en",
    "de",
    "fr",
    "es",
    "pt",
    "it",
    "nl",
    "pl",
    "fi",
    "ru",
    "sv",
    "da",
    "no",
    "cs",
    "hu",
    "tr",
    "ja",
    "zh",
)
# A generous bound, not a speed claim: a regex with catastrophic backtracking takes minutes to hours on
# these inputs, a linear one well under a second.
PATHOLOGICAL_LIMIT_SECONDS = 20.0


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    visible: str


def _plain_text(raw: bytes) -> str:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    text = str(part.get_content())  # type: ignore[attr-defined]
    if str(part.get_param("format", "")).lower() == "flowed":
        text = unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
    return text


def _load(path: Path) -> Case:
    if path.suffix == ".eml":
        expected = path.with_suffix(".visible").read_text(encoding="utf-8").removesuffix("\n")
        return Case(path.stem, _plain_text(path.read_bytes()), expected)
    content = path.read_text(encoding="utf-8")
    _, body = content.split(REPLY_MARK, 1)
    reply, expected = body.split(VISIBLE_MARK, 1)
    return Case(path.stem, reply.removesuffix("\n"), expected.removesuffix("\n"))


CASES = [_load(path) for path in sorted(CORPUS.iterdir()) if path.suffix in (".txt", ".eml")]


def hides_words(expected: str, got: str) -> bool:
    """Whether a line the sender wrote (a line of the expected visible text) is missing from `got`."""
    shown = {line.strip() for line in got.splitlines()}
    return any(line.strip() not in shown for line in expected.splitlines() if line.strip())


def score() -> tuple[int, int, int, list[str]]:
    """(exactly right, hiding the sender's words, cases, names of the wrong ones)."""
    right, hiding, wrong = 0, 0, []
    for case in CASES:
        got = visible_text(case.text)
        if got == case.visible:
            right += 1
        else:
            wrong.append(case.name)
        hiding += hides_words(case.visible, got)
    return right, hiding, len(CASES), wrong


def test_the_corpus_is_wide() -> None:
    assert len(CASES) >= MIN_CASES
    languages = {case.name.split("-")[0] for case in CASES if not case.name.startswith("eml-")}
    assert set(LANGUAGES) <= languages


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_visible_text(case: Case) -> None:
    assert visible_text(case.text) == case.visible


def test_no_case_hides_the_senders_words() -> None:
    hiding = [case.name for case in CASES if hides_words(case.visible, visible_text(case.text))]
    assert hiding == []


def test_crlf_gives_the_same_visible_text() -> None:
    for case in [case for case in CASES if not case.name.startswith("eml-")][:30]:
        assert visible_text(case.text.replace("\n", "\r\n")) == case.visible


def test_the_full_text_is_untouched_by_stripping() -> None:
    case = next(case for case in CASES if case.name == "en-outlook-desktop")
    original = case.text
    visible_text(original)
    assert "From: Support <support@example.com>" in original


def test_an_agent_reply_of_commands_above_a_forward_stays_empty() -> None:
    forward = next(case for case in CASES if case.name == "en-forward-only-gmail")
    assert visible_text(forward.text, whole_when_empty=False) == ""


@pytest.mark.parametrize(
    "text",
    [
        "On " + "a " * 50_000 + "wrote:\n> x\n",  # nested quantifier bait on one line
        "> q\n" * 10_000 + "answer\n",  # 10,000 quoted lines
        ("From: a\n" * 5 + "x\n") * 20_000,  # header-field lines over and over
        ("On Wed, 30 Apr 2025 " + "x " * 100 + "\n") * 5_000,  # openers that never end in "wrote:"
        ("Sent from " * 30 + "\n") * 3_000,
        "-" * 1_000_000,  # 1 MB on one line
        ("word " * 60 + "\n") * 3_500,  # 1 MB of prose
    ],
    ids=["long-attribution", "quoted-lines", "header-fields", "openers", "sent-from", "dashes", "prose"],
)
def test_pathological_input_takes_bounded_time(text: str) -> None:
    started = time.monotonic()
    assert isinstance(visible_text(text), str)
    assert time.monotonic() - started < PATHOLOGICAL_LIMIT_SECONDS
