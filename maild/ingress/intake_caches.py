"""What the intake knows of the database without asking it at every command: the desks' addresses
(RCPT) and, in reject mode, the blocklist (MAIL, DATA). Snapshots in memory, reloaded when maildctl
changed something (the change counter, storage/changes.py) and after a while anyway; the desk
addresses also on SIGHUP."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.ingress.desk_table import is_desk_address, write_table
from maild.logs import get_logger
from maild.mail.addresses import base_address
from maild.outbound.blocklist import Rule, load_rules, match_rules
from maild.storage.changes import current_changes
from maild.storage.models import DeskAddress

# Every maildctl change of desks, their addresses or the blocklist bumps the change counter
# (storage/changes.py); the caches compare it at most this often, so a change reaches the intake within
# about this time (until then the route and blocked stages handle what slipped through).
CHANGE_CHECK_SECONDS = 1.0
# A full reload whatever the counter says: for rows written by other means than maildctl.
REFRESH_SECONDS = 300.0
BLOCKLIST_REFRESH_SECONDS = 300.0

log = get_logger("maild.serve")


class _Snapshot:
    """A cache loaded from the database, which must load again when never loaded, older than
    `refresh_seconds`, or the change counter moved since (asked at most every `check_seconds`). Called
    from executor threads: at worst two of them both ask or both reload, which is harmless.

    A subclass says what it loads (`_load`); `refresh` reads the counter before the rows, so a change in
    between reloads again."""

    def __init__(
        self, factory: sessionmaker[DbSession], refresh_seconds: float, check_seconds: float
    ) -> None:
        self._factory = factory
        self._refresh_seconds = refresh_seconds
        self._check_seconds = check_seconds
        self._loaded_at: float | None = None
        self._checked_at = 0.0
        self._changes = 0

    def refresh(self) -> int:
        """Load now; how many entries were loaded."""
        with self._factory() as session:
            changes = current_changes(session)  # before the rows: a change in between reloads again
            count = self._load(session)
        self._changes, self._loaded_at = changes, time.monotonic()
        self._checked_at = self._loaded_at
        return count

    def _load(self, session: DbSession) -> int:
        """Read the rows and replace the snapshot whole (readers in other threads see the old or the
        new one, never a mix); how many entries it holds."""
        raise NotImplementedError

    def _refresh_if_stale(self) -> None:
        if self._stale():
            self.refresh()

    def _stale(self) -> bool:
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at > self._refresh_seconds:
            return True
        if now - self._checked_at < self._check_seconds:
            return False
        self._checked_at = now
        with self._factory() as session:
            return current_changes(session) != self._changes


class DeskAddresses(_Snapshot):
    """Which envelope recipients belong to a desk.

    Hits come from memory: on SQLite every transaction, reads too, is BEGIN IMMEDIATE, so a query per RCPT
    would queue behind the pipeline's write transactions. The set is reloaded when maildctl changed desks
    (the change counter, asked at most every CHANGE_CHECK_SECONDS), every REFRESH_SECONDS and on SIGHUP, so
    a removed address is refused within about a second. A miss also asks the database, so an address
    added by other means is accepted at once. With `table_dir` (the daemon's data_dir), every load also
    rewrites the desk-address table `maild pipe` reads (maild.ingress.desk_table). Blocking: call it in an
    executor."""

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        refresh_seconds: float = REFRESH_SECONDS,
        check_seconds: float = CHANGE_CHECK_SECONDS,
        table_dir: Path | None = None,
    ) -> None:
        super().__init__(factory, refresh_seconds, check_seconds)
        self._known: frozenset[str] = frozenset()
        self._table_dir = table_dir

    def _load(self, session: DbSession) -> int:
        self._set_known(frozenset(session.scalars(select(DeskAddress.address))))
        return len(self._known)

    def _set_known(self, known: frozenset[str]) -> None:
        self._known = known
        if self._table_dir is None:
            return
        try:
            write_table(self._table_dir, known)
        except OSError as exc:  # the pipe then asks this daemon, which still knows
            log.warning("desk_table_not_written", error=f"{exc.strerror or exc}")

    def is_desk(self, address: str) -> bool:
        """`address` is a desk's by maild.ingress.desk_table.is_desk_address (its `+token` form and VERP
        return paths too), asking the database on a miss."""
        self._refresh_if_stale()
        if is_desk_address(address, self._known):
            return True
        base = base_address(address)
        with self._factory() as session:
            found = session.scalars(select(DeskAddress.id).where(DeskAddress.address == base)).first()
        if found is not None:
            self._set_known(self._known | {base})
        return found is not None


class BlockedSenders(_Snapshot):
    """The blocklist as the intake sees it in reject mode: a snapshot in memory, reloaded like the desk
    addresses (the change counter, every `refresh_seconds`). Asking the database at every MAIL and DATA
    would queue each one behind the pipeline's write transactions on SQLite (see DeskAddresses); a stale
    snapshot costs little, since the blocked stage archives what slipped through. Blocking: call it in an
    executor."""

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        refresh_seconds: float = BLOCKLIST_REFRESH_SECONDS,
        check_seconds: float = CHANGE_CHECK_SECONDS,
    ) -> None:
        super().__init__(factory, refresh_seconds, check_seconds)
        self._rules: tuple[Rule, ...] = ()

    def _load(self, session: DbSession) -> int:
        self._rules = tuple(load_rules(session))
        return len(self._rules)

    def find(self, addresses: Iterable[str]) -> tuple[str, Rule] | None:
        self._refresh_if_stale()
        return match_rules(self._rules, addresses)
