"""When is the writer of an out-of-office reply back? The date its text states, read the way vacation
responders and people write it in English, German, Polish, Hungarian, Portuguese, French, Spanish, Italian,
Dutch, Czech, Swedish and Danish (the words: maild.mail.return_date_words):

  "I am out of the office until 12 December"     until   → back the day after (the 13th)
  "back on 2026-12-14", "zurück am 14.12.2026"   back on → back that day
  "bis zum 14.12.2026", "jusqu'au 14 décembre", "december 14-ig", "vom 10. bis 14.12.", "December 8-14"

Rules, and why:
- A date counts only with a word that says what it is: until-words (until, bis, do, até, jusqu'au, hasta,
  fino al, t/m, till, til, Hungarian -ig) name the last day away; back-words (back, zurück, wieder,
  wracam, volto, de retour, rientro, terug, zpět, tillbaka, tilbage, -tól) the first day back; after-words
  (after, nach, po, après le) the day before it; a range's end ("10.–14.12.", "from 10 to 14 December",
  "December 8-14") is an until. Other dates (when the text was written, "since 1 December", the office's
  holidays, a quoted mail's date, an address) are ignored.
- A date after words about someone else in its sentence is theirs: "If it is urgent, please email my
  manager, who is in the office until 11/12", "In dringenden Fällen wenden Sie sich bis 18.12. an …".
- A negated return before an until-word is a back-word: "will not return until 12/14/2026" (Lotus Notes'
  template, whose subject says "returning 12/14/2026"), "won't be back until", "no volveré hasta el"; so
  is any return before "do" (= "to"): "Wracam do pracy 14 grudnia". German "ab" (from) alone starts an
  absence as often as it ends one: "ab 14.12. wieder da" reads by its "wieder".
- An until with a time of day ("until 14:00 on Friday 11 December", "bis 12 Uhr am 11.12.") names the day
  they are back: they work part of it.
- Of several such dates the last one counts ("away from 10.12. until 14.12., back on 15.12."), except a
  range starting more than a week after `today`: a responder answers while its writer is away, so that is
  a later absence ("back on 14 December; also away 24 December to 4 January"). "and" joins a range only
  after "between" ("zwischen dem 7. und 11.12."); else it joins days ("closed on 25 December and 1 January").
- Dotted numbers are day first (14.12.2026, 14. 12. 2026; 12.14.2026 can only be month first); slashed
  and dashed ones (14/12/2026, 12/14/2026, 14-12-2026) take the order the text shows elsewhere (a day
  above 12), else the reading nearer to `today`: a responder states a return days or weeks ahead, so
  12/11 on 8 December is 11 December, US or UK.
- A date without a year is this year's, unless that lies more than 60 days back: then next year's (an
  OOO written on 20 December saying "until 5 January").
- No date, no answer: "until further notice", "bis auf Weiteres", "back next week", and weekday-only
  "back on Monday" (a responder repeats a text written on a day we do not know: "Monday" read from the
  day it arrives can be a week late; the caller's away-with-no-end is ended by the agent's #back).
- Text from HTML: non-breaking and other odd spaces, soft hyphens and typographic dashes/apostrophes are
  plain ones; a single line break is a space (HTML wraps sentences), an empty line ends a clause.
Pure: no maild imports; `today` is the caller's (the mail's arrival, in the agent's time zone)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from maild.mail import return_date_words as words

_MONTHS: dict[str, int] = {}
for _spellings in words.MONTHS_BY_LANGUAGE.values():
    for _number, _names in enumerate(_spellings.split(), start=1):
        for _name in _names.split("|"):
            _MONTHS[_name] = _number


def _alternatives(phrases: Iterable[str]) -> str:
    """A regex alternation of `phrases` (longest first), each a whole word or phrase; spaces match any."""
    escaped = (re.escape(p).replace(r"\ ", r"\s+") for p in sorted(set(phrases), key=len, reverse=True))
    return r"(?<!\w)(?:" + "|".join(escaped) + r")(?![^\W\d])"  # "all'11": a digit may follow "'"


_MONTH = _alternatives(_MONTHS) + r"\.?"
_LEFT = r"(?<![\w.,/:])"  # not a piece of a longer number (a phone, a version, a time)
_DATE = re.compile(
    rf"{_LEFT}(?P<iy>\d{{4}})-(?P<im>\d{{1,2}})-(?P<id>\d{{1,2}})(?!\d)"  # 2026-12-14
    rf"|{_LEFT}(?P<hy>\d{{4}})\.\s?(?P<hm>\d{{1,2}})\.\s?(?P<hd>\d{{1,2}})(?!\d)\.?"  # 2026.12.14. (hu)
    rf"|{_LEFT}(?P<xa>\d{{1,2}})-(?P<xb>\d{{1,2}})-(?P<xy>\d{{4}})(?!\d)"  # 14-12-2026 (nl)
    rf"|{_LEFT}(?P<na>\d{{1,2}})(?P<ns>[./])\s?(?P<nb>\d{{1,2}})"  # 14.12.26, 14. 12. 2026, 12/14/2026
    rf"(?:(?P=ns)\s?(?P<ny>\d{{4}}|\d{{2}})(?!\d)|\.|(?![\d:]))"
    rf"|{_LEFT}(?P<dd>\d{{1,2}})(?:st|nd|rd|th|er|\.|º)?[\s-]*(?:(?:de|of|the)\s+)?(?P<dm>{_MONTH})"
    rf"(?:,?[\s-]*(?:(?:de|del)\s+)?(?P<dy>\d{{4}})(?!\d))?"  # 14 December, 14 de dezembro, 14-Dec-2026
    rf"|(?:{_LEFT}(?P<my>\d{{4}})\.?\s+)?(?P<mm>{_MONTH})\s*(?:the\s+)?(?P<md>\d{{1,2}})(?![\d:])"
    rf"(?:st|nd|rd|th|\.)?(?:\s*(?:-|to|through|thru|és(?=\s*\d{{1,2}}\.?\s+között))\s*"
    rf"(?P<me>\d{{1,2}})(?![\d:/]|\.\d)(?:st|nd|rd|th|\.)?)?"
    rf"(?:,?\s*(?P<my2>\d{{4}})(?!\d))?",  # December 14th, 2026 · 2026. december 14 · December 8-14
    re.IGNORECASE,
)

# A weekday or the like between a date's word and the date: "Monday, ", "segunda-feira, ", "Mo. ".
_WORD = r"[^\W\d]+(?:-[^\W\d]+)?\.?,?\s+"
_TIME = r"\d{1,2}(?:[:.]\d{2}\s*(?:uhr|h|am|pm|a\.m\.|p\.m\.)?|\s*(?:uhr|h|am|pm|a\.m\.|p\.m\.)(?!\w))"
_UNTIL = re.compile(
    _alternatives(words.UNTIL)
    + rf"\s*(?:{_alternatives(words.UNTIL_FILLERS)}\s*)*(?P<time>{_TIME}\s*(?:on|am|le|el|il|op|den|,)?\s*)?"
    + rf"(?:{_WORD}){{0,2}}$",
    re.IGNORECASE,
)
_NEGATED_RETURN = re.compile(
    rf"(?:n't|{_alternatives(words.NEGATIONS)})(?!\w)[^.!?\n\d]{{0,40}}{_alternatives(words.RETURN_VERBS)}"
    r"[^.!?\n\d]{0,40}$",
    re.IGNORECASE,
)
# A back-word's few words to its date may hold abbreviations: "tilbage mandag d. 14/12", "ab Mo. 14.12.".
_BACK = re.compile(_alternatives(words.BACK) + r"[^!?\n\d]{0,30}$", re.IGNORECASE)
_BACK_AFTER = re.compile(r"^[^.!?\n\d]{0,30}" + _alternatives(words.BACK_AFTER), re.IGNORECASE)
_AFTER = re.compile(
    _alternatives(words.AFTER) + rf"\s+(?:(?:the|dem|den|le|el|il)\s+)?(?:{_WORD})?$", re.IGNORECASE
)
_HU_UNTIL = re.compile(r"^(?:\.?-?(?:ig|éig|áig|jéig|jáig)|\.?\s+között)(?!\w)", re.IGNORECASE)
_HU_FROM = re.compile(r"^\.?-?(?:tól|től|étől|ától|jétől|jától)(?!\w)", re.IGNORECASE)
_CONNECTOR = r"(?:-|" + _alternatives(w for w in words.RANGE_CONNECTORS if w != "-") + ")"
_RANGE = re.compile(rf"^\s*,?\s*{_CONNECTOR}\s*(?:{_WORD})?$", re.IGNORECASE)
_AND = re.compile(rf"^\s*{_alternatives(words.RANGE_AND)}\s*(?:{_WORD})?$", re.IGNORECASE)
_BETWEEN = re.compile(
    rf"{_alternatives(words.BETWEEN)}\s+(?:{_alternatives(words.UNTIL_FILLERS)}\s+)?(?:{_WORD})?$",
    re.IGNORECASE,
)
# "from 10 to 18 December", "vom 10. bis 14.12.", "du 8 au 14 décembre", "between 7 and 11 December": a
# bare day starts the range.
_BARE_DAY = rf"{_LEFT}(?P<first>\d{{1,2}})(?:st|nd|rd|th|er|\.|º)?\s*"
_RANGE_FROM_DAY = re.compile(rf"{_BARE_DAY}{_CONNECTOR}\s*(?:{_WORD})?$", re.IGNORECASE)
_BETWEEN_DAYS = re.compile(
    rf"{_alternatives(words.BETWEEN)}\s+(?:{_alternatives(words.UNTIL_FILLERS)}\s+)?(?:{_WORD})?{_BARE_DAY}"
    rf"{_alternatives(words.RANGE_AND)}\s*(?:{_WORD})?$",
    re.IGNORECASE,
)
_OTHERS = re.compile(_alternatives(words.OTHERS), re.IGNORECASE)
# "bis einschl. Fr., 11.12.", "until Mon. Dec 14": these dots end no sentence.
_ABBREVIATION = re.compile(rf"{_alternatives(words.ABBREVIATIONS)}\.$", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[!?;\n]|\.\s+(?=[A-ZÄÖÜŁŚŻÁÉÓÚČŘŠŽÅÆØ])")

# A responder's statement is short and near the top; what follows (signatures, disclaimers, a pasted
# history) is not read, which also bounds the time a robot's megabyte costs.
TEXT_LIMIT = 10_000
NO_YEAR_LOOKBACK = dt.timedelta(days=60)
# A range that starts later than this after the reply is another absence ("I am back on 14 December;
# note I am also away from 24 December to 4 January"): a responder answers while its writer is away.
LATER_ABSENCE = dt.timedelta(days=7)
_BEFORE, _AFTER_CHARS, _SENTENCE = 70, 40, 240
_ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    day: dt.date
    range_start: dt.date | None = None  # "December 8-14": the day is a range's end, this its start


_SPACES = re.compile(r"[()\t\u00a0\u2000-\u200a\u202f\u205f\u3000]|&nbsp;", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200d\u2060\ufeff]")
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
# "Dear colleagues,\n" or "Hallo,\n" opening a paragraph is one of its own: not part of the first sentence.
_GREETING = re.compile(r"(^|\n[ ]*\n)([^\n,.!?]{1,40},)[ ]*\n")
_PARAGRAPH = re.compile(r"\n(?: *\n)+")  # tried at line breaks only: linear on long runs of spaces


def _normalized(text: str) -> str:
    """One space for HTML's odd spaces, "-" and "'" for typographic dashes and apostrophes; line breaks
    inside a paragraph are spaces, a paragraph ends a clause ("\n")."""
    text = _INVISIBLE.sub("", text[:TEXT_LIMIT].replace("\r\n", "\n").replace("\r", "\n"))
    text = _DASHES.sub("-", _SPACES.sub(" ", text)).replace("\u2019", "'").replace("\u02bc", "'")
    text = _GREETING.sub("\\1\\2\n\n", text)
    paragraphs = _PARAGRAPH.split(text)
    return "\n".join(re.sub(r"\s+", " ", p) for p in paragraphs)


def _year(text: str | None, month: int, day: int, today: dt.date) -> int:
    if text:
        return int(text) + (2000 if len(text) == 2 else 0)
    try:
        this_year = dt.date(today.year, month, day)
    except ValueError:
        return today.year + 1  # 29 February of a year that has none
    return today.year + 1 if this_year < today - NO_YEAR_LOOKBACK else today.year


def _dated(year: str | None, month: int, day: int, today: dt.date) -> dt.date | None:
    try:
        return dt.date(_year(year, month, day, today), month, day)
    except ValueError:
        return None


def _slashed(
    first: int, second: int, year: str | None, month_first: bool | None, today: dt.date
) -> dt.date | None:
    """12/14/2026 or 14/12/2026: the order a day above 12 shows, else the text's, else the nearer reading."""
    if second > 12 or (first <= 12 and month_first):
        return _dated(year, first, second, today)
    day_first = _dated(year, second, first, today)
    if first > 12 or month_first is False or day_first is None:
        return day_first
    month_first_day = _dated(year, first, second, today)
    if month_first_day is None:
        return day_first
    return min(day_first, month_first_day, key=lambda d: abs((d - today).days))


def _day(g: dict[str, str | None], month_first: bool | None, today: dt.date) -> dt.date | None:
    def n(name: str) -> int:
        return int(g[name] or 0)

    if g["iy"]:
        return _dated(g["iy"], n("im"), n("id"), today)
    if g["hy"]:
        return _dated(g["hy"], n("hm"), n("hd"), today)
    if g["xa"]:
        return _slashed(n("xa"), n("xb"), g["xy"], month_first, today)
    if g["na"]:
        if g["ns"] == "/":
            return _slashed(n("na"), n("nb"), g["ny"], month_first, today)
        if n("nb") > 12 >= n("na") and g["ny"]:  # 12.14.2026: a US writer's dots
            return _dated(g["ny"], n("na"), n("nb"), today)
        return _dated(g["ny"], n("nb"), n("na"), today)  # 9.30 is a time: month 30, no date
    if g["dd"]:
        return _dated(g["dy"], _MONTHS[(g["dm"] or "").lower().rstrip(".")], n("dd"), today)
    day = n("me") or n("md")
    return _dated(g["my"] or g["my2"], _MONTHS[(g["mm"] or "").lower().rstrip(".")], day, today)


def _text_order(matches: list[re.Match[str]]) -> bool | None:
    """True when the text writes slashed dates month first (12/14/2026), False day first, None: unknown."""
    for match in matches:
        first, second = match["na"] or match["xa"], match["nb"] or match["xb"]
        if first and second and (match["ns"] in ("/", None)):
            if int(second) > 12 >= int(first):
                return True
            if int(first) > 12 >= int(second):
                return False
    return None


def _dates(text: str, today: dt.date) -> list[_Found]:
    matches = list(_DATE.finditer(text))
    month_first = _text_order(matches)
    found = []
    for match in matches:
        day = _day(match.groupdict(), month_first, today)
        if day is not None:
            start = day.replace(day=int(match["md"])) if match["me"] and int(match["md"]) <= day.day else None
            found.append(_Found(match.start(), match.end(), day, range_start=start))
    return found


def _clause_before(text: str, start: int, chars: int = _BEFORE) -> str:
    window = text[max(0, start - chars) : start]
    ends = [
        end for end in _CLAUSE_END.finditer(window) if not _ABBREVIATION.search(window, 0, end.start() + 1)
    ]
    return window[ends[-1].end() :] if ends else window


def _later(start: dt.date | None, today: dt.date) -> bool:
    """Does a range starting on `start` describe a later absence, not the one the responder answers for?"""
    return start is not None and start > today + LATER_ABSENCE


def _range_end(start: dt.date | None, end: dt.date, today: dt.date) -> dt.date | None:
    return None if _later(start, today) else end + _ONE_DAY


def _bare_start(first: str, end: dt.date) -> dt.date | None:
    """The start of "from 10 to 18 December" (the 10th of the end's month), None when it is not."""
    return end.replace(day=int(first)) if 0 < int(first) <= end.day else None


def _said_before(before: str, day: dt.date, today: dt.date) -> dt.date | None:
    """What the words before a date say it is: the first day back it states, or None."""
    until = _UNTIL.search(before)
    if until is not None:
        head = before[: until.start()]
        if until["time"] or _NEGATED_RETURN.search(head) or _BACK.search(head):
            # "until 14:00 on Friday 11 December", "will not return until 12/14/2026", and "do" after a
            # return is "to": "Wracam do pracy 14 grudnia", "Vrátím se do kanceláře 14. 12."
            return day
        return day + _ONE_DAY
    bare = _RANGE_FROM_DAY.search(before) or _BETWEEN_DAYS.search(before)
    if bare is not None:
        return _range_end(_bare_start(bare["first"], day), day, today)
    if _AFTER.search(before):
        return day + _ONE_DAY
    if _BACK.search(before):
        return day
    return None


def _joined(text: str, first: _Found, second: _Found) -> bool:
    """Are two dates a range's start and end? "10.12. - 14.12.", "between 7 December and 11 December"."""
    between = text[first.end : second.start]
    if _RANGE.match(between):
        return True
    return bool(_AND.match(between) and _BETWEEN.search(_clause_before(text, first.start)))


def _first_day_back(
    text: str, found: _Found, neighbours: tuple[_Found | None, _Found | None], today: dt.date
) -> dt.date | None:
    """The first day back this date states, or None when it states none (or states someone else's)."""
    previous, following = neighbours
    if _OTHERS.search(_clause_before(text, found.start, _SENTENCE)):
        return None
    if found.range_start is not None:
        return _range_end(found.range_start, found.day, today)
    if following is not None and _joined(text, found, following):
        return None  # a range's start: its end says when
    after = text[found.end : found.end + _AFTER_CHARS]
    if _HU_UNTIL.match(after):
        return found.day + _ONE_DAY
    if _HU_FROM.match(after):
        return found.day
    if previous is not None and _joined(text, previous, found):
        return _range_end(previous.day, found.day, today)
    said = _said_before(_clause_before(text, found.start), found.day, today)
    if said is None and _BACK_AFTER.search(after):
        return found.day
    return said


def stated_return(text: str, today: dt.date) -> dt.date | None:
    """The first day the writer is back, as `text` states it (see the module's rules), or None when it
    states no date; a date in the past is returned as it is (the caller decides what that means)."""
    text = _normalized(text)
    found = _dates(text, today)
    answer = None
    for index, date in enumerate(found):
        following = found[index + 1] if index + 1 < len(found) else None
        previous = found[index - 1] if index else None
        back = _first_day_back(text, date, (previous, following), today)
        if back is not None:
            answer = back
    return answer
