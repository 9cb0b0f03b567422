"""Number patterns: rendering (ISO weeks, desk time zones), validation, subject tags, overlaps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maild.numbering.pattern import COUNTERS, Pattern, PatternError, compile_pattern, find_numbers

EVERYTHING = "{{yyyy}}.{{yy}}.{{mm}}.{{ww}}.{{dd}}/{{nr}}-{{nr-y}}-{{nr-m}}-{{nr-w}}-{{nr-d}}"
VALUES = {"nr": 1234, "nr-y": 5, "nr-m": 10, "nr-w": 1, "nr-d": 99}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_every_token_rendered() -> None:
    # 2026-03-07 is a Saturday of ISO week 10 of 2026 (ISO year = calendar year here).
    number = Pattern(EVERYTHING).render(utc(2026, 3, 7, 12), "UTC", VALUES)
    assert number == "2026.26.03.10.07/1234-5-10-1-99"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("TK-{{nr}}", "TK-1"),
        ("{{yy}}-{{nr-y}}", "26-1"),
        ("SUP-{{yy}}-{{mm}}-{{nr-m}}", "SUP-26-02-1"),
        ("F-{{yy}}-{{ww}}-{{nr-w}}", "F-26-05-1"),
        ("D{{yyyy}}{{mm}}{{dd}}-{{nr-d}}", "D20260201-1"),
    ],
)
def test_design_examples(pattern: str, expected: str) -> None:
    p = Pattern(pattern)
    values = dict.fromkeys(p.counters, 1)
    assert p.render(utc(2026, 2, 1, 9), "UTC", values) == expected  # Sunday of ISO week 5


def test_counters_are_unpadded() -> None:
    p = Pattern("TK-{{nr}}")
    assert [p.render(utc(2026, 1, 1), "UTC", {"nr": n}) for n in (1, 9, 10, 123456)] == [
        "TK-1",
        "TK-9",
        "TK-10",
        "TK-123456",
    ]


def test_render_refuses_missing_or_zero_counter() -> None:
    p = Pattern("TK-{{nr}}")
    with pytest.raises(ValueError, match="at least 1"):
        p.render(utc(2026, 1, 1), "UTC", {})
    with pytest.raises(ValueError, match="at least 1"):
        p.render(utc(2026, 1, 1), "UTC", {"nr": 0})


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Pattern("TK-{{nr}}").periods(datetime(2026, 1, 1), "UTC")


@pytest.mark.parametrize(
    ("now", "pattern", "expected", "periods"),
    [
        # 2027-01-01 belongs to ISO week 53 of 2026: with {{ww}} the year tokens and {{nr-y}} follow it.
        (utc(2027, 1, 1), "F-{{yy}}-{{ww}}-{{nr-w}}", "F-26-53-1", {"nr-w": "2026-W53"}),
        (utc(2027, 1, 1), "{{yyyy}}W{{ww}}-{{nr-y}}", "2026W53-1", {"nr-y": "2026"}),
        (utc(2027, 1, 4), "{{yyyy}}W{{ww}}-{{nr-y}}", "2027W01-1", {"nr-y": "2027"}),
        # 2024-12-30 is already ISO 2025-W01.
        (utc(2024, 12, 30), "F-{{yy}}-{{ww}}-{{nr-w}}", "F-25-01-1", {"nr-w": "2025-W01"}),
        (utc(2024, 12, 30), "{{yyyy}}{{ww}}{{dd}}-{{nr-y}}", "20250130-1", {"nr-y": "2025"}),
        # Without {{ww}} the year is the calendar year.
        (utc(2027, 1, 1), "{{yy}}-{{nr-y}}", "27-1", {"nr-y": "2027"}),
        (utc(2024, 12, 30), "{{yyyy}}-{{mm}}-{{nr-m}}", "2024-12-1", {"nr-m": "2024-12"}),
        # Calendar month and day stay calendar even when the year is the ISO year.
        (
            utc(2027, 1, 1),
            "{{yy}}{{mm}}{{dd}}{{ww}}-{{nr-d}}",
            "26010153-1",
            {"nr-d": "2027-01-01"},
        ),
    ],
)
def test_iso_week_and_year_at_year_boundaries(
    now: datetime, pattern: str, expected: str, periods: dict[str, str]
) -> None:
    p = Pattern(pattern)
    assert p.render(now, "UTC", dict.fromkeys(p.counters, 1)) == expected
    assert p.periods(now, "UTC") == periods


def test_period_keys() -> None:
    p = Pattern(EVERYTHING)
    assert p.counters == COUNTERS
    assert p.periods(utc(2026, 3, 7, 12), "UTC") == {
        "nr": "",
        "nr-y": "2026",
        "nr-m": "2026-03",
        "nr-w": "2026-W10",
        "nr-d": "2026-03-07",
    }
    assert Pattern("F-{{yy}}-{{ww}}-{{nr-w}}").periods(utc(2026, 1, 28), "UTC") == {"nr-w": "2026-W05"}


def test_desk_time_zone_moves_the_month_and_day() -> None:
    p = Pattern("SUP-{{yy}}-{{mm}}-{{dd}}-{{nr-d}}")
    now = utc(2026, 2, 28, 23, 30)  # 00:30 on March 1st in Budapest (UTC+1)
    assert p.render(now, "UTC", {"nr-d": 1}) == "SUP-26-02-28-1"
    assert p.render(now, "Europe/Budapest", {"nr-d": 1}) == "SUP-26-03-01-1"
    assert p.periods(now, "Europe/Budapest") == {"nr-d": "2026-03-01"}
    assert Pattern("{{yyyy}}{{mm}}-{{nr-m}}").periods(now, "Europe/Budapest") == {"nr-m": "2026-03"}


def test_desk_time_zone_moves_the_year_and_week_backwards() -> None:
    now = utc(2026, 1, 1, 3)  # still 22:00 on New Year's Eve in New York
    assert Pattern("{{yy}}-{{nr-y}}").render(now, "America/New_York", {"nr-y": 1}) == "25-1"
    # Monday 2024-12-30 00:30 in Tokyo is still Sunday 2024-12-29 (ISO 2024-W52) in UTC.
    p = Pattern("F-{{yy}}-{{ww}}-{{nr-w}}")
    sunday_utc = utc(2024, 12, 29, 15, 30)
    assert p.render(sunday_utc, "UTC", {"nr-w": 1}) == "F-24-52-1"
    assert p.render(sunday_utc, "Asia/Tokyo", {"nr-w": 1}) == "F-25-01-1"


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "empty"),
        ("TK-{{foo}}", "unknown token {{foo}} in number pattern 'TK-{{foo}}'; use one of {{yy}}"),
        ("TK-{{NR}}", "unknown token {{NR}} in number pattern 'TK-{{NR}}'; write {{nr}}"),
        ("TK-{{ nr }}", "write {{nr}}"),
        ("TK-{{}}", "unknown token {{}}"),
        ("TK-{{nr}", "unbalanced brace '{' at position 4"),
        ("TK-{nr}}", "unbalanced brace '{'"),
        ("TK-{{{nr}}}", "unbalanced brace '{'"),
        ("TK}-{{nr}}", "unbalanced brace '}'"),
        ("TK-{{yy}}{{mm}}", "no counter"),
        ("TK", "no counter"),
        ("{{nr-y}}", "{{nr-y}} restarts every year"),
        ("{{mm}}-{{nr-y}}", "add a year ({{yy}} or {{yyyy}})"),
        ("{{yy}}-{{nr-m}}", "add {{mm}}"),
        ("{{mm}}-{{nr-m}}", "add a year ({{yy}} or {{yyyy}})"),
        ("{{yyyy}}{{mm}}{{dd}}-{{nr-w}}", "add {{ww}}"),
        ("{{ww}}-{{nr-w}}", "{{nr-w}} restarts every ISO week"),
        ("{{yy}}{{mm}}-{{nr-d}}", "add {{dd}}"),
        ("{{yy}}{{dd}}-{{nr-d}}", "add {{mm}}"),
        ("{{dd}}-{{nr-d}}", "add a year ({{yy}} or {{yyyy}}) and {{mm}}"),
        ("[TK-{{nr}}", "'[' at position 1"),
        ("TK]{{nr}}", "']' at position 3"),
        ("TK {{nr}}", "whitespace at position 3"),
        ("TK-{{nr}}\t", "whitespace at position 10"),
        ("TK-\u00a0{{nr}}", "whitespace"),
        ("TK\x07{{nr}}", "control character U+0007"),
        ("TK\u200b{{nr}}", "U+200B"),
        ("{{yy}}-{{nr}}{{nr-y}}", "{{nr}} and {{nr-y}}"),
        ("{{yy}}-{{nr}}0{{yy}}{{nr-y}}", "put a non-digit"),
    ],
)
def test_validation_errors(pattern: str, problem: str) -> None:
    with pytest.raises(PatternError) as error:
        Pattern(pattern)
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert problem in message
    assert "\n" not in message
    assert any(fix in message for fix in ("write", "add", "remove", "put", "use", "not allowed")), message


@pytest.mark.parametrize(
    "pattern",
    [
        "TK-{{nr}}",
        "{{nr}}",
        "{{yyyy}}{{mm}}{{dd}}-{{nr-d}}",
        "{{yy}}{{ww}}/{{nr-w}}",
        "Ügy#{{nr}}_{{yy}}",
        "A{{nr}}x{{yy}}{{nr-y}}",  # the 'x' tells where {{nr}} ends
        "{{nr}}{{yy}}",
        EVERYTHING,
    ],
)
def test_valid_patterns(pattern: str) -> None:
    assert Pattern(pattern).source == pattern


def test_compile_pattern_is_cached() -> None:
    assert compile_pattern("TK-{{nr}}") is compile_pattern("TK-{{nr}}")


@pytest.mark.parametrize(
    ("pattern", "near_misses"),
    [
        ("TK-{{nr}}", ["TK-0", "TK-01", "TK-", "TK-1a", "XTK-1", "TK-1-", "TK1", "TK-١"]),
        (
            "SUP-{{yy}}-{{mm}}-{{nr-m}}",
            ["SUP-26-13-1", "SUP-26-00-1", "SUP-26-2-1", "SUP-2026-02-1", "SUP-26-02"],
        ),
        ("F-{{yy}}-{{ww}}-{{nr-w}}", ["F-26-54-1", "F-26-00-1", "F-26-60-1", "F-6-05-1"]),
        ("{{yyyy}}{{mm}}{{dd}}-{{nr-d}}", ["20260132-1", "20260100-1", "2026011-1", "20260101-0"]),
        ("A.{{nr}}", ["AX1", "A.0"]),  # the dot is literal, not "any character"
    ],
)
def test_regex_round_trip(pattern: str, near_misses: list[str]) -> None:
    p = Pattern(pattern)
    for now in (utc(2026, 1, 1), utc(2026, 2, 1), utc(2026, 12, 31, 23), utc(2027, 1, 1), utc(2030, 10, 20)):
        for value in (1, 9, 10, 99, 100, 987654):
            number = p.render(now, "UTC", dict.fromkeys(p.counters, value))
            assert p.match(number) == number
            assert p.match(number.lower()) == number  # case-insensitive, answered in canonical spelling
    for miss in near_misses:
        assert p.match(miss) is None, miss


DESKS = ["TK-{{nr}}", "SUP-{{yy}}-{{mm}}-{{nr-m}}", "F-{{yy}}-{{ww}}-{{nr-w}}"]


@pytest.mark.parametrize(
    ("subject", "numbers"),
    [
        ("Re: AW: [SUP-26-02-1] printer broken", ["SUP-26-02-1"]),
        ("[TK-17] printer broken", ["TK-17"]),
        ("Re: printer broken [TK-17]", ["TK-17"]),
        ("SV: Fwd: RE: [tk-17] printer", ["TK-17"]),
        ("AW: [F-26-05-3] printer", ["F-26-05-3"]),
        ("Fwd: [SUP-26-02-1] and [TK-5] and [f-26-53-2]", ["SUP-26-02-1", "TK-5", "F-26-53-2"]),
        ("Re: [TK-5] Re: [TK-5]", ["TK-5"]),
        ("[[TK-5]]", ["TK-5"]),
        ("[TK-5][TK-6]", ["TK-5", "TK-6"]),
        ("[URGENT] [TK-0] [TK-] [ TK-5 ] [SUP-26-13-1] [XTK-5] TK-5 printer", []),
        ("[URGENT] [TK-9]", ["TK-9"]),
        ("", []),
    ],
)
def test_find_numbers(subject: str, numbers: list[str]) -> None:
    assert find_numbers(subject, DESKS) == numbers


def test_find_numbers_accepts_compiled_patterns() -> None:
    assert find_numbers("Re: [TK-3]", [Pattern("TK-{{nr}}")]) == ["TK-3"]
    assert find_numbers("Re: [TK-3]", []) == []


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("A{{nr}}", "A{{yy}}{{nr-y}}", True),  # A261
        ("A-{{nr}}", "A-{{yy}}-{{nr-y}}", False),  # A-26-1 has a second dash
        ("TK-{{nr}}", "tk-{{nr}}", True),  # case-insensitive
        ("Ügy-{{nr}}", "üGY-{{nr}}", True),
        ("TK-{{nr}}", "SUP-{{nr}}", False),
        ("X{{nr}}", "X1{{nr}}", True),  # X12
        ("A0{{nr}}", "A{{nr}}", False),  # a counter never starts with 0
        ("{{nr}}", "{{yy}}-{{nr-y}}", False),
        ("{{nr}}-{{nr}}", "{{yy}}-{{nr-y}}", True),  # 26-1
        ("{{nr}}", "{{yyyy}}{{mm}}{{dd}}{{nr-d}}", True),  # all digits
        ("{{yyyy}}{{mm}}-{{nr-m}}", "{{yyyy}}{{ww}}-{{nr-w}}", True),  # 202601-1
        ("{{yyyy}}{{mm}}-{{nr-m}}", "{{yyyy}}{{ww}}x{{nr-w}}", False),
        # Date fields only take real values: a month never starts with 2.
        ("X{{yy}}{{mm}}-{{nr-m}}", "X{{yy}}1{{nr}}-{{nr-y}}", True),  # X2612-1
        ("X{{yy}}{{mm}}-{{nr-m}}", "X{{yy}}2{{nr}}-{{nr-y}}", False),
        ("W{{yy}}{{ww}}-{{nr-w}}", "W{{yy}}5{{nr}}-{{nr-y}}", True),  # W2653-1
        ("W{{yy}}{{ww}}-{{nr-w}}", "W{{yy}}54-{{nr-y}}", False),
        ("A.{{nr}}", "AX{{nr}}", False),
        ("TK-{{nr}}", "TK-{{nr}}", True),
    ],
)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert Pattern(a).overlaps(Pattern(b)) is expected
    assert Pattern(b).overlaps(Pattern(a)) is expected


def test_overlap_agrees_with_rendered_numbers() -> None:
    # Whatever two patterns actually render in common must be reported as an overlap.
    a, b = Pattern("{{yy}}{{mm}}{{nr-m}}"), Pattern("{{nr}}")
    number = a.render(utc(2026, 3, 1), "UTC", {"nr-m": 7})
    assert b.match(number) == number
    assert a.overlaps(b)
