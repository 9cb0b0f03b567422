"""What every maildctl command shares: errors that print one line, the database, and output."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import make_engine, make_sessionmaker, transaction
from maild.storage.models import Desk, Ticket
from maild.tickets import ticket_ops
from maild.tickets.automation import after_changes
from maild.tickets.ticket_checks import InvalidValue, desk_named
from maild.tickets.ticket_ops import iso as iso  # maildctl shows times as the audit rows do


class UserError(Exception):
    """A mistake of the caller's: printed as one line, exit `code`, never a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class App:
    cfg: Config
    _factory: sessionmaker[Session] | None = None

    @property
    def factory(self) -> sessionmaker[Session]:
        if self._factory is None:
            self._factory = make_sessionmaker(make_engine(self.cfg.database_url, self.cfg.busy_timeout_ms))
        return self._factory

    @contextmanager
    def session(self) -> Iterator[Session]:
        with transaction(self.factory) as session:
            yield session
            # the rules and webhooks of what the command changed, in its transaction
            after_changes(session, self.cfg, dt.datetime.now(dt.UTC))

    def close(self) -> None:
        """Close the database connections (one command per process, but tests call main in-process)."""
        if self._factory is not None:
            bind = self._factory.kw["bind"]
            bind.dispose()
            self._factory = None


def who() -> str:
    """The admin's OS user: maildctl has no login of its own."""
    try:
        return getpass.getuser() or "maildctl"
    except Exception:  # no USER/LOGNAME and no passwd entry (a container's arbitrary uid)
        return "maildctl"


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def find_ticket(session: Session, number: str) -> Ticket:
    ticket = ticket_ops.ticket_by_number(session, number)
    if ticket is None:
        raise UserError(f"no ticket {number!r}: see 'maildctl ticket list'")
    return ticket


def find_desk(session: Session, name: str, option: str = "") -> Desk:
    """The desk named `name`, or UserError (naming the `option` it came from, if given)."""
    try:
        return desk_named(session, name, option)
    except InvalidValue as exc:
        raise UserError(exc.cli_message) from None
