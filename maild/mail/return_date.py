"""When is the writer of an out-of-office reply back? The date its text states, read the way people write
it in English, German, Polish, Hungarian and Portuguese:

  "I am out of the office until 12 December"     until   → back the day after (the 13th)
  "back on 2026-12-14", "zurück am 14.12.2026"   back on → back that day
  "bis zum 14.12.2026", "do 14.12.2026", "até 14/12/2026", "december 14-ig", "vom 10. bis 14.12."

Rules, and why:
- A date counts only with a word that says what it is: "until"-words (until, till, through, bis, do, até,
  Hungarian -ig) name the last day away, "back"-words (back, return, zurück, wieder, ab, wracam,
  powrót, volto, retorno, visszatér, -tól/-től) the first day back; a range's end ("10.–14.12.", "from 10
  to 14 December") is an "until". Other dates (the office's holidays, a quoted mail's date) are ignored.
- Of several such dates the last one counts ("away from 10.12. until 14.12., back on 15.12.").
- Numbers are day first (d.m.y, d/m/y); month first only with slashes where day first is impossible
  (12/14/2026).
- A date without a year is this year's, unless that lies more than 60 days back: then next year's (an
  OOO written on 20 December saying "until 5 January").
Pure: no maild imports; `today` is the caller's (the mail's arrival, in the agent's time zone)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "january jan januar jänner stycznia styczeń styczen január janeiro jan.",
        "february feb februar lutego luty február febr fevereiro fev",
        "march mar märz maerz marca marzec március márc marc março marco",
        "april apr kwietnia kwiecień kwiecien április ápr abril abr",
        "may mai maja maj május máj maio",
        "june jun juni czerwca czerwiec június jún junho",
        "july jul juli lipca lipiec július júl julho",
        "august aug sierpnia sierpień sierpien augusztus agosto ago",
        "september sep sept września wrzesnia wrzesień wrzesien szeptember szept setembro set",
        "october oct oktober okt października pazdziernika październik pazdziernik október outubro out",
        "november nov listopada listopad novembro",
        "december dec dezember dez grudnia grudzień grudzien dezembro",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name.rstrip(".")] = _number
_MONTH = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))
_ORDINAL = r"(?:st|nd|rd|th|\.|º)?"

_DATE = re.compile(
    rf"(?P<iy>\d{{4}})-(?P<im>\d{{1,2}})-(?P<id>\d{{1,2}})\b"  # 2026-12-14
    rf"|(?P<hy>\d{{4}})\.\s?(?P<hm>\d{{1,2}})\.\s?(?P<hd>\d{{1,2}})\b\.?"  # 2026.12.14. (hu)
    rf"|(?P<nd>\d{{1,2}})(?P<ns>[./])(?P<nm>\d{{1,2}})(?:[./](?P<ny>\d{{4}}|\d{{2}})\b|\.|\b)"  # 14.12.26
    rf"|(?P<dd>\d{{1,2}}){_ORDINAL}\s*(?:de\s+|of\s+)?(?P<dm>{_MONTH})\b\.?"  # 14 December, 14 de dezembro
    rf"(?:,?\s*(?:de\s+)?(?P<dy>\d{{4}})\b)?"
    rf"|(?:(?P<my>\d{{4}})\.?\s+)?(?P<mm>{_MONTH})\b\.?\s*(?P<md>\d{{1,2}})(?!\d){_ORDINAL}"  # December 14
    rf"(?:,?\s*(?P<my2>\d{{4}})\b)?",
    re.IGNORECASE,
)

_UNTIL_WORDS = re.compile(
    r"\b(?:until|till|til|through|thru|up to and including|bis(?:\s+(?:zum|zur|einschließlich|inkl\.?))?"
    r"|do(?:\s+dnia)?|até|ate)\s+(?:(?:the|dem|den|dia|ao|o|dnia|dzień|inclusive|einschließlich)\s+)*"
    r"(?:\w+,?\s+){0,2}$",
    re.IGNORECASE,
)
_BACK_WORDS = re.compile(
    r"\b(?:back|return|returns|returning|zurück|wieder|ab|wracam|wrócę|wroce|powrót|powrot|volto|voltarei"
    r"|de volta|retorno|regresso|regressarei|visszatérek|visszatérés|vissza)\b[^.!?\n\d]{0,30}$",
    re.IGNORECASE,
)
_BACK_AFTER = re.compile(
    r"^[^.!?\n\d]{0,30}\b(?:back|zurück|wieder|wracam|wrócę|volto|voltarei|de volta|regresso|retorno"
    r"|visszatérek|vissza)\b",
    re.IGNORECASE,
)
_HU_UNTIL = re.compile(r"^\.?-?(?:ig|éig|áig|jéig|jáig)\b", re.IGNORECASE)
_HU_FROM = re.compile(r"^\.?-?(?:tól|től|étől|ától|jétől|jától)\b", re.IGNORECASE)
_RANGE = re.compile(r"^\s*(?:-|–|—|to|bis|do|a|até|and)\s*$", re.IGNORECASE)
# "from 10 to 18 December", "vom 10. bis 14.12.", "de 10 a 14 de dezembro": a bare day starts the range.
_RANGE_FROM_DAY = re.compile(r"\b\d{1,2}(?:st|nd|rd|th|\.)?\s*(?:-|–|—|to|bis|do|a|até)\s*$", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[!?;\n]|\.\s+(?=[A-ZÄÖÜŁŚŻÁÉÓ])")

NO_YEAR_LOOKBACK = dt.timedelta(days=60)
_BEFORE, _AFTER = 60, 40


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    day: dt.date


def _year(text: str | None, month: int, day: int, today: dt.date) -> int:
    if text:
        return int(text) + (2000 if len(text) == 2 else 0)
    try:
        this_year = dt.date(today.year, month, day)
    except ValueError:
        return today.year + 1  # 29 February of a year that has none
    return today.year + 1 if this_year < today - NO_YEAR_LOOKBACK else today.year


def _day(match: re.Match[str], today: dt.date) -> dt.date | None:
    g = match.groupdict()
    try:
        if g["iy"]:
            return dt.date(int(g["iy"]), int(g["im"]), int(g["id"]))
        if g["hy"]:
            return dt.date(int(g["hy"]), int(g["hm"]), int(g["hd"]))
        if g["nd"]:
            first, second = int(g["nd"]), int(g["nm"])
            # 12/14/2026 can only be month first; 9.30 is a time, never 30 September
            day, month = (second, first) if second > 12 and g["ns"] == "/" else (first, second)
            return dt.date(_year(g["ny"], month, day, today), month, day)
        if g["dd"]:
            month, day = _MONTHS[g["dm"].lower().rstrip(".")], int(g["dd"])
            return dt.date(_year(g["dy"], month, day, today), month, day)
        month, day = _MONTHS[g["mm"].lower().rstrip(".")], int(g["md"])
        return dt.date(_year(g["my"] or g["my2"], month, day, today), month, day)
    except ValueError:
        return None


def _dates(text: str, today: dt.date) -> list[_Found]:
    found = []
    for match in _DATE.finditer(text):
        day = _day(match, today)
        if day is not None:
            found.append(_Found(match.start(), match.end(), day))
    return found


def _clause_before(text: str, start: int) -> str:
    window = text[max(0, start - _BEFORE) : start]
    ends = list(_CLAUSE_END.finditer(window))
    return window[ends[-1].end() :] if ends else window


def _first_day_back(
    text: str, found: _Found, following: _Found | None, previous: _Found | None
) -> dt.date | None:
    """The first day back this date states, or None when it states none."""
    one_day = dt.timedelta(days=1)
    if following is not None and _RANGE.match(text[found.end : following.start]):
        return None  # a range's start: its end says when
    after = text[found.end : found.end + _AFTER]
    if _HU_UNTIL.match(after):
        return found.day + one_day
    if _HU_FROM.match(after):
        return found.day
    if previous is not None and _RANGE.match(text[previous.end : found.start]):
        return found.day + one_day
    before = _clause_before(text, found.start)
    if _UNTIL_WORDS.search(before) or _RANGE_FROM_DAY.search(before):
        return found.day + one_day
    if _BACK_WORDS.search(before) or _BACK_AFTER.search(after):
        return found.day
    return None


def stated_return(text: str, today: dt.date) -> dt.date | None:
    """The first day the writer is back, as `text` states it (see the module's rules), or None when it
    states no date; a date in the past is returned as it is (the caller decides what that means)."""
    found = _dates(text, today)
    answer = None
    for index, date in enumerate(found):
        following = found[index + 1] if index + 1 < len(found) else None
        previous = found[index - 1] if index else None
        back = _first_day_back(text, date, following, previous)
        if back is not None:
            answer = back
    return answer
