"""A desk's business hours: "mon-fri 09:00-17:00, sat 10:00-14:00" in the desk's time zone. Rules ask
whether a moment is inside them (`inside business hours`); `maildctl desk set --business-hours` checks
the text with `parse_hours`."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"([a-z]{3})(?:-([a-z]{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
EXAMPLE = "mon-fri 09:00-17:00, sat 10:00-14:00"


class BadHours(ValueError):
    """Business hours that do not read as "DAY[-DAY] HH:MM-HH:MM, …"."""


@dataclass(frozen=True)
class Span:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # exclusive; 24:00 is 1440


def _minutes(hours: str, minutes: str, text: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise BadHours(f"invalid time in {text!r}: use HH:MM from 00:00 to 24:00")
    return value


def _day(name: str, text: str) -> int:
    if name not in DAYS:
        raise BadHours(f"invalid day {name!r} in {text!r}: use {', '.join(DAYS)}")
    return DAYS.index(name)


@lru_cache(maxsize=256)
def parse_hours(text: str) -> tuple[Span, ...]:
    """The spans of `text` ("" means no hours: never inside). Raises BadHours saying what is wrong."""
    spans = []
    for part in (p.strip() for p in text.lower().split(",")):
        if not part:
            continue
        found = _SPAN.fullmatch(part)
        if found is None:
            raise BadHours(f"invalid business hours {part!r}: write them like {EXAMPLE!r}")
        first = _day(found[1], part)
        last = _day(found[2], part) if found[2] else first
        days = range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]
        start, end = _minutes(found[3], found[4], part), _minutes(found[5], found[6], part)
        if start >= end:
            raise BadHours(f"invalid business hours {part!r}: the end must be after the start")
        spans.append(Span(frozenset(days), start, end))
    return tuple(spans)


def is_inside(text: str, timezone: str, now: dt.datetime) -> bool:
    """Whether `now` (aware, or naive UTC) falls inside the hours `text` in `timezone`."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    local = aware.astimezone(ZoneInfo(timezone))
    minute = local.hour * 60 + local.minute
    return any(local.weekday() in s.days and s.start <= minute < s.end for s in parse_hours(text))
