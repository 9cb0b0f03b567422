"""Short values for log fields, shared by the intake, the IMAP pollers and the daemon."""

from __future__ import annotations

import datetime as dt
import time


def describe(error: BaseException) -> str:
    """Type and first line of an error, short: log lines must not carry a mail (or a SQL statement)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def ms_since(started: float) -> float:
    """Milliseconds since `started` (a time.perf_counter() value), to a tenth."""
    return round((time.perf_counter() - started) * 1000, 1)


def iso_utc(value: dt.datetime) -> str:
    """A naive UTC time (as the database keeps them) in ISO 8601 with Z."""
    return value.isoformat() + "Z"
