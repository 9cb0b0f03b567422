"""Ticket number patterns (DESIGN.md §3): parse and validate, render, find again in subjects, and detect
patterns of two desks that could produce the same number.

A pattern is literal text around tokens: `{{nr}}` (never resets), `{{nr-y}}` `{{nr-m}}` `{{nr-w}}` `{{nr-d}}`
(reset per year / month / ISO week / day), `{{yy}}` `{{yyyy}}` `{{mm}}` `{{ww}}` `{{dd}}`. When `{{ww}}` is
present the year tokens show the ISO year, so that 2027-01-01 (ISO 2026-W53) reads 26-53 and not 27-53.

Every token has one `_Shape` (the strings it can render to). The subject regex and the overlap automaton
are both built from it, so "the regex finds the number" and "two desks cannot collide" talk about the
same set of strings.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from zoneinfo import ZoneInfo

DATE_FIELDS = ("yy", "yyyy", "mm", "ww", "dd")
# This order is also the order counters are incremented in, so concurrent transactions lock the
# number_counters rows in the same order and cannot deadlock each other on PostgreSQL.
COUNTERS = ("nr", "nr-y", "nr-m", "nr-w", "nr-d")
TOKENS = DATE_FIELDS + COUNTERS

_DIGITS = "0123456789"
_TOKEN = re.compile(r"\{\{([^{}]*)\}\}")
_TAG = re.compile(r"\[([^\[\]]+)\]")


class PatternError(ValueError):
    """An invalid number pattern; the message says, in one line, what is wrong and how to fix it."""


@dataclass(frozen=True)
class _Shape:
    """What a token renders to: one of `alternatives` (each a fixed sequence of digit sets), followed by
    any number of `repeat` digits. Date fields only allow real values (month 01-12, week 01-53, day 01-31),
    so "[SUP-26-13-1]" is not taken for a number and fewer desk patterns count as overlapping."""

    alternatives: tuple[tuple[str, ...], ...]
    repeat: str = ""


_COUNTER = _Shape((("123456789",),), repeat=_DIGITS)  # unpadded, from 1
_SHAPES: dict[str, _Shape] = {
    "yy": _Shape(((_DIGITS, _DIGITS),)),
    "yyyy": _Shape(((_DIGITS,) * 4,)),
    "mm": _Shape((("0", "123456789"), ("1", "012"))),
    "ww": _Shape((("0", "123456789"), ("1234", _DIGITS), ("5", "0123"))),
    "dd": _Shape((("0", "123456789"), ("12", _DIGITS), ("3", "01"))),
    **dict.fromkeys(COUNTERS, _COUNTER),
}

# The date tokens that must be visible for a resetting counter, else the same number comes back next period.
_PERIOD_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "nr-y": ("year", ("year",)),
    "nr-m": ("month", ("year", "mm")),
    "nr-w": ("ISO week", ("year", "ww")),
    "nr-d": ("day", ("year", "mm", "dd")),
}

# An automaton edge label: one literal (non-digit) character, or a set of ASCII digits.
_Label = str | frozenset[str]


def _tok(name: str) -> str:
    return "{{" + name + "}}"


@dataclass(frozen=True)
class Part:
    """A piece of a pattern: a token name (`token=True`) or literal text."""

    text: str
    token: bool


@dataclass(frozen=True)
class _Automaton:
    """An epsilon-free NFA: state 0 is the start, `final` the only accepting state."""

    edges: tuple[tuple[tuple[_Label, int], ...], ...]
    final: int


class Pattern:
    """A validated number pattern. `Pattern(source)` raises PatternError when the pattern is unusable."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.parts = _parse(source)
        names = {p.text for p in self.parts if p.token}
        self.counters: tuple[str, ...] = tuple(c for c in COUNTERS if c in names)
        # An ISO week next to a calendar year would be wrong around New Year: 2027-01-01 is 2026-W53.
        self.iso_year = "ww" in names
        _validate(source, self.parts, names, self.counters)
        self.regex: re.Pattern[str] = re.compile(_regex(self.parts), re.IGNORECASE)
        self._automaton = _automaton(self.parts)

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def _local(self, now: datetime, timezone: str) -> tuple[datetime, int, int, int]:
        """The desk-local time, the year the pattern shows, the ISO year and the ISO week."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"now must be timezone-aware (UTC), got naive {now.isoformat()}")
        local = now.astimezone(ZoneInfo(timezone))
        iso = local.isocalendar()
        return local, (iso.year if self.iso_year else local.year), iso.year, iso.week

    def periods(self, now: datetime, timezone: str) -> dict[str, str]:
        """The counters this pattern uses, in COUNTERS order, each with its period key at `now`
        (e.g. {"nr": "", "nr-m": "2026-03"}), seen in the desk's time zone."""
        local, year, iso_year, week = self._local(now, timezone)
        keys = {
            "nr": "",
            "nr-y": f"{year:04d}",  # the ISO year when the pattern shows {{ww}}, like {{yy}} does
            "nr-m": f"{local.year:04d}-{local.month:02d}",
            "nr-w": f"{iso_year:04d}-W{week:02d}",
            "nr-d": local.date().isoformat(),
        }
        return {c: keys[c] for c in self.counters}

    def render(self, now: datetime, timezone: str, values: Mapping[str, int]) -> str:
        """The number for counter `values` (e.g. {"nr-m": 3}) at `now`, in the desk's time zone."""
        local, year, _, week = self._local(now, timezone)
        fields = {
            "yy": f"{year % 100:02d}",
            "yyyy": f"{year:04d}",
            "mm": f"{local.month:02d}",
            "ww": f"{week:02d}",
            "dd": f"{local.day:02d}",
        }
        for counter in self.counters:
            value = values.get(counter)
            if value is None or value < 1:
                raise ValueError(f"{_tok(counter)} needs a value of at least 1, got {value!r}")
            fields[counter] = str(value)
        return "".join(fields[p.text] if p.token else p.text for p in self.parts)

    def match(self, text: str) -> str | None:
        """`text` in this pattern's own spelling if it is a number of this pattern (case-insensitive,
        so "sup-26-02-1" gives "SUP-26-02-1" and can be looked up exactly), else None."""
        m = self.regex.fullmatch(text)
        if m is None:
            return None
        groups = iter(m.groups())
        return "".join(next(groups) if p.token else p.text for p in self.parts)

    @property
    def prefix(self) -> str:
        """The literal text before the first token ("SUP-" of "SUP-{{yy}}-{{nr-y}}"), possibly empty."""
        first = self.parts[0]
        return "" if first.token else first.text

    def counters_of(self, number: str) -> dict[str, tuple[str, int]] | None:
        """For a number of this pattern (case-insensitive), each counter's period key (as `periods` gives
        it) and value: "SUP-26-03-7" of SUP-{{yy}}-{{mm}}-{{nr-m}} gives {"nr-m": ("2026-03", 7)}. None when
        `number` is no number this pattern could have rendered. Two-digit years are read as 20yy."""
        m = self.regex.fullmatch(number)
        if m is None:
            return None
        fields: dict[str, str] = {}
        for part, value in zip((p for p in self.parts if p.token), m.groups(), strict=True):
            if fields.setdefault(part.text, value) != value:
                return None  # a token shown twice always renders the same value twice
        if "yyyy" in fields:
            year = int(fields["yyyy"])
        elif "yy" in fields:
            year = 2000 + int(fields["yy"])
        else:
            year = 0  # no year shown: only {{nr}} may be used (validated), which needs none
        week = int(fields.get("ww", "0"))
        month = int(fields.get("mm", "0"))
        calendar_year = year
        if self.iso_year and month:
            # The year shown is the ISO year: early January may still be in the last ISO week of the year
            # before, late December already in week 1 of the next.
            if month == 1 and week >= 52:
                calendar_year = year + 1
            elif month == 12 and week == 1:
                calendar_year = year - 1
        keys = {"nr": "", "nr-y": f"{year:04d}", "nr-w": f"{year:04d}-W{week:02d}"}
        if month:
            keys["nr-m"] = f"{calendar_year:04d}-{month:02d}"
        if month and "dd" in fields:
            try:
                keys["nr-d"] = date(calendar_year, month, int(fields["dd"])).isoformat()
            except ValueError:
                return None  # 02-31: never rendered
        return {c: (keys[c], int(fields[c])) for c in self.counters}

    def overlaps(self, other: Pattern) -> bool:
        """True when some string is a number of both patterns (case-insensitive): a breadth-first search
        of the product of the two automata for a state where both accept."""
        a, b = self._automaton, other._automaton
        seen = {(0, 0)}
        queue = deque(seen)
        while queue:
            i, j = queue.popleft()
            if i == a.final and j == b.final:
                return True
            for label_a, next_a in a.edges[i]:
                for label_b, next_b in b.edges[j]:
                    state = (next_a, next_b)
                    if state not in seen and _intersects(label_a, label_b):
                        seen.add(state)
                        queue.append(state)
        return False


@cache
def compile_pattern(source: str) -> Pattern:
    """Pattern(source), cached: desks' patterns are compiled for every incoming mail."""
    return Pattern(source)


def find_numbers(subject: str, patterns: Iterable[str | Pattern]) -> list[str]:
    """The ticket numbers in `[NUMBER]` tags of `subject`, in order of appearance and without repeats,
    each in its pattern's own spelling. Bracketed text that is no number of any pattern is ignored.

    Desks' patterns never overlap, but a desk's current pattern may overlap its own retired ones (the
    allocation skips numbers that exist): a tag both match gives each spelling ("tk-5" and "TK-5")."""
    compiled = [p if isinstance(p, Pattern) else compile_pattern(p) for p in patterns]
    found: list[str] = []
    for tag in _TAG.finditer(subject):
        for pattern in compiled:
            number = pattern.match(tag.group(1))
            if number is not None and number not in found:
                found.append(number)
    return found


def _parse(source: str) -> tuple[Part, ...]:
    if not source:
        raise PatternError("number pattern is empty; write e.g. TK-{{nr}}")
    parts: list[Part] = []
    pos = 0
    for m in _TOKEN.finditer(source):
        _add_literal(source, pos, m.start(), parts)
        name = m.group(1)
        if name not in _SHAPES:
            near = name.strip().lower()
            hint = f"write {_tok(near)}" if near in _SHAPES else "use one of " + " ".join(map(_tok, TOKENS))
            raise PatternError(f"unknown token {m.group(0)} in number pattern {source!r}; {hint}")
        parts.append(Part(name, token=True))
        pos = m.end()
    _add_literal(source, pos, len(source), parts)
    return tuple(parts)


def _add_literal(source: str, start: int, end: int, parts: list[Part]) -> None:
    text = source[start:end]
    for offset, ch in enumerate(text):
        where = f"at position {start + offset + 1} of number pattern {source!r}"
        if ch in "{}":
            raise PatternError(
                f"unbalanced brace {ch!r} {where}; "
                "tokens are written {{name}}, literal braces are not allowed"
            )
        if ch in "[]":
            raise PatternError(f"{ch!r} {where} cannot appear inside a [NUMBER] subject tag; remove it")
        if ch.isspace():
            raise PatternError(f"whitespace {where} would split the subject tag; remove it or use '-'")
        if unicodedata.category(ch).startswith("C"):
            raise PatternError(f"invisible or control character U+{ord(ch):04X} {where}; remove it")
    if text:
        parts.append(Part(text, token=False))


def _validate(source: str, parts: tuple[Part, ...], names: set[str], counters: tuple[str, ...]) -> None:
    if not counters:
        raise PatternError(
            f"number pattern {source!r} has no counter, so every ticket would get the same number; "
            "add {{nr}} (or {{nr-y}}, {{nr-m}}, {{nr-w}}, {{nr-d}})"
        )
    shown = names | ({"year"} if names & {"yy", "yyyy"} else set())
    for counter in counters:
        if counter not in _PERIOD_NEEDS:  # {{nr}} never resets
            continue
        period, needs = _PERIOD_NEEDS[counter]
        missing = [n for n in needs if n not in shown]
        if missing:
            add = " and ".join("a year ({{yy}} or {{yyyy}})" if n == "year" else _tok(n) for n in missing)
            raise PatternError(
                f"{_tok(counter)} restarts every {period} but number pattern {source!r} does not show "
                f"the whole {period}, so numbers would repeat; add {add}"
            )
    # Two counters with only digits between them are ambiguous: nr=12,nr-y=11 and nr=121,nr-y=1 both
    # give 1211. A non-digit literal between them fixes where each one ends.
    previous: str | None = None
    separated = True
    for part in parts:
        if part.token and part.text in COUNTERS:
            if previous is not None and not separated:
                raise PatternError(
                    f"{_tok(previous)} and {_tok(part.text)} in number pattern {source!r} have only digits "
                    "between them, so numbers would repeat (12|11 and 121|1 both read 1211); "
                    "put a non-digit such as '-' between them"
                )
            previous, separated = part.text, False
        elif not part.token and any(ch not in _DIGITS for ch in part.text):
            separated = True


def _regex(parts: tuple[Part, ...]) -> str:
    """Literal text escaped; each token in one capturing group (match() rebuilds the canonical spelling)."""
    out: list[str] = []
    for part in parts:
        if not part.token:
            out.append(re.escape(part.text))
            continue
        shape = _SHAPES[part.text]
        alternatives = "|".join("".join(_charclass(s) for s in alt) for alt in shape.alternatives)
        out.append(f"((?:{alternatives}){_charclass(shape.repeat) + '*' if shape.repeat else ''})")
    return "".join(out)


def _charclass(digits: str) -> str:
    # Explicit ASCII digits: \d would also accept other scripts' digits, which we never render.
    if len(digits) == 1:
        return digits
    contiguous = _DIGITS[int(digits[0]) : int(digits[-1]) + 1] == digits
    return f"[{digits[0]}-{digits[-1]}]" if contiguous else f"[{digits}]"


def _automaton(parts: tuple[Part, ...]) -> _Automaton:
    edges: list[list[tuple[_Label, int]]] = [[]]

    def new_state() -> int:
        edges.append([])
        return len(edges) - 1

    current = 0
    for part in parts:
        if not part.token:
            for ch in part.text:
                # A literal digit is the same thing as a one-digit set, so it meets token digits.
                label: _Label = frozenset(ch) if ch in _DIGITS else ch
                nxt = new_state()
                edges[current].append((label, nxt))
                current = nxt
            continue
        shape = _SHAPES[part.text]
        end = new_state()
        for alternative in shape.alternatives:
            state = current
            for i, digits in enumerate(alternative):
                nxt = end if i == len(alternative) - 1 else new_state()
                edges[state].append((frozenset(digits), nxt))
                state = nxt
        if shape.repeat:
            edges[end].append((frozenset(shape.repeat), end))
        current = end
    return _Automaton(tuple(tuple(e) for e in edges), current)


@cache
def _intersects(a: _Label, b: _Label) -> bool:
    """Can one character match both labels under the regex's IGNORECASE?"""
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return bool(a & b)
    if isinstance(a, str) and isinstance(b, str):
        # Asking the regex engine itself keeps this exactly in line with how subjects are matched;
        # if either literal matches the other character, that character is in both languages.
        return any(re.fullmatch(re.escape(x), y, re.IGNORECASE) for x, y in ((a, b), (b, a)))
    return False  # a non-digit literal never matches an ASCII digit
