"""The pure parts of desk commands by mail: the command line of an agent's new mail
(maild.tickets.desk_commands) and the forwarded mail below `#customer` (maild.mail.forwards)."""

from __future__ import annotations

import datetime as dt

import pytest

from maild.mail.forwards import forwarded_mail
from maild.mail.mailparse import parse_mail
from maild.tickets.desk_commands import Away, Back, OnBehalf, OpenFor, parse_desk_command
from tests.pipeline.helpers import NOW, mail


def test_to_with_cc_lines_and_the_text_after_them() -> None:
    text = (
        "\n#to Alice@Customer.example\n#cc bob@customer.example, <carol@customer.example>\n\n"
        "#cc dan@x.example\nHi\n#tag no\n"
    )
    parsed = parse_desk_command(text, NOW)
    assert parsed == OpenFor(
        "alice@customer.example",
        ("bob@customer.example", "carol@customer.example", "dan@x.example"),
        "Hi\n#tag no",  # a command after the text is text
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("#to\nHi", "#to: needs the customer's address"),
        ("#to a@b.example\n#priority high\nHi", "only #cc lines may follow #to"),
        ("#to a@b.example\n#cc nope\nHi", "#cc: 'nope' is not an email address"),
        ("#cc a@b.example\nHi", "#cc goes after a #to line"),
        ("#back now", "#back takes no argument"),
        ("#customer please", "#customer takes no argument"),
        ("#away until 2026-02-30", "is no date"),
        ("#away until 2026-03-07 09:00", "is in the past"),
        ("#costumer", "did you mean #customer?"),
    ],
)
def test_each_bad_command_line_is_named(text: str, problem: str) -> None:
    parsed = parse_desk_command(text, NOW)
    assert isinstance(parsed, list) and any(problem in e.problem for e in parsed), parsed


def test_what_is_no_desk_command() -> None:
    assert parse_desk_command("Hello\n#to a@b.example", NOW) is None  # not on the first line
    assert parse_desk_command("#1 priority", NOW) is None  # no command line at all
    assert parse_desk_command("#close\nDone.", NOW) is None  # a reply's command: identify holds it
    assert parse_desk_command("", NOW) is None


def test_presence_and_customer() -> None:
    assert parse_desk_command("#away", NOW) == Away(None)
    assert parse_desk_command("#AWAY until 2026-03-09 17:30", NOW) == Away(
        dt.datetime(2026, 3, 9, 17, 30, tzinfo=dt.UTC)
    )
    assert parse_desk_command("#back\n", NOW) == Back()
    assert parse_desk_command("#customer\nnote\n", NOW) == OnBehalf("note\n")


def test_an_inline_forward_without_a_header_block_is_not_one() -> None:
    parsed = parse_mail(mail(body="#customer\nFrom: the sales team\nplease call her\n"))
    assert forwarded_mail(parsed, "From: the sales team\nplease call her\n") is None


def test_a_quoted_inline_forward_and_a_bold_outlook_block() -> None:
    rest = (
        "see below\n\n*From:* Carol <carol@customer.example>\n*Sent:* Friday\n*To:* Anna\n"
        "*Subject:* Help\n\nBody\n"
    )
    found = forwarded_mail(parse_mail(mail(body="#customer\n" + rest)), rest)
    assert found is not None
    note, forwarded = found
    assert (note, forwarded.sender_address, forwarded.subject, forwarded.text) == (
        "see below",
        "carol@customer.example",
        "Help",
        "Body",
    )
