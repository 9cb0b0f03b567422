"""The desks' rules (issue 19): placeholder until the rules engine lands; runs no rule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.orm import Session

from maild.config import Config
from maild.storage.events import TicketEvent


def run_rules(session: Session, cfg: Config, events: Sequence[TicketEvent], now: dt.datetime) -> None:
    """Run each desk's rules whose trigger matches one of `events`."""
    del session, cfg, events, now
