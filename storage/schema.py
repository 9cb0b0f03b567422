"""Is the database ready for this code? Its Alembic revision against the code's, read without creating
anything.

`maild pipe`, `maild serve`, `maild check-config` and maildctl ask before they use the database: an
uninitialised data directory must say "run 'maildctl init'" (exit 78 for maild), not look healthy and then
fail every mail. Opening a SQLite file that is not there would create an empty one, so SQLite is read with
the standard library's sqlite3, read-only by URI: `maild pipe` runs once per mail and pays for neither
SQLAlchemy nor Alembic. REVISIONS mirrors storage/migrations/versions (tests/test_readiness.py proves it
equal to Alembic's history, so this module needs no Alembic).

Importing this module costs only the standard library."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

REVISIONS = tuple(f"{n:04d}" for n in range(1, 21))  # "0001" … "0020"
HEAD = REVISIONS[-1]

# The states of a database, as seen by this code:
CURRENT = "current"  # at HEAD: ready
MISSING = "missing"  # no database file, no alembic_version table or no row in it: never initialised
OLD = "old"  # an earlier revision: `maildctl init` upgrades it
NEWER = "newer"  # a revision this code does not know: a newer maild migrated it
BROKEN = "broken"  # not a database, or one it cannot read for a reason a retry will not cure
UNREACHABLE = "unreachable"  # down, locked, refused: try again later


@dataclass(frozen=True)
class Schema:
    state: str
    revision: str | None = None  # what alembic_version says, when it says anything
    detail: str = ""  # MISSING: the SQLite file; BROKEN, UNREACHABLE: the error

    @property
    def ready(self) -> bool:
        return self.state == CURRENT

    def problem(self) -> str:
        """What is wrong, in one line that says what to do; "" when ready."""
        if self.state == CURRENT:
            return ""
        if self.state == MISSING:
            if self.detail:
                return f"no database at {self.detail}: run 'maildctl init' first"
            return "the database has no schema yet: run 'maildctl init'"
        if self.state == OLD:
            return (
                f"the database schema is at revision {self.revision}, this maild needs {HEAD}: "
                "run 'maildctl init' to upgrade it"
            )
        if self.state == NEWER:
            return (
                f"the database schema is at revision {self.revision}, newer than this maild knows "
                f"({HEAD}): upgrade maild"
            )
        if self.state == BROKEN:
            return f"cannot use the database: {self.detail}"
        return f"database unavailable: {self.detail}"


def _from_revisions(found: list[str]) -> Schema:
    if not found:
        return Schema(MISSING)
    if found == [HEAD]:
        return Schema(CURRENT, HEAD)
    shown = ", ".join(sorted(found))
    if all(revision in REVISIONS for revision in found):
        return Schema(OLD, shown)
    return Schema(NEWER, shown)


def sqlite_file(url: str) -> str | None:
    """The file of a sqlite:// URL as SQLAlchemy reads it (relative to the working directory), or None
    for an in-memory database."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    rest = rest.split("?", 1)[0]
    path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel → rel, sqlite:////abs → /abs
    return None if path in ("", ":memory:") else path


def check_sqlite(path: str, timeout_seconds: float) -> Schema:
    """The schema of the SQLite file at `path`; never creates it."""
    if not Path(path).exists():
        return Schema(MISSING, detail=path)
    try:
        # mode=ro: read-only, and a file that vanished in between is an error, not a new empty database.
        conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True, timeout=timeout_seconds)
    except sqlite3.Error as exc:  # a directory there, no permission: the admin fixes it, mail waits
        return Schema(UNREACHABLE, detail=f"{path}: {exc}")
    try:
        table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if table is None:
            return Schema(MISSING)
        return _from_revisions([row[0] for row in conn.execute("SELECT version_num FROM alembic_version")])
    except sqlite3.OperationalError as exc:  # locked (busy beyond the timeout), I/O trouble
        return Schema(UNREACHABLE, detail=f"{path}: {exc}")
    except sqlite3.DatabaseError as exc:  # "file is not a database": no retry cures that
        return Schema(BROKEN, detail=f"{path}: {exc}")
    finally:
        conn.close()


def check_connection(conn: Connection) -> Schema:
    """The schema as seen through an open SQLAlchemy connection (PostgreSQL; SQLite works too)."""
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return Schema(MISSING)
    return _from_revisions(list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars()))


def check_engine(engine: Engine) -> Schema:
    """check_connection on a connection of `engine`; a database it cannot reach is UNREACHABLE."""
    from maild.storage.db import is_transient

    try:
        with engine.connect() as conn:
            return check_connection(conn)
    except Exception as exc:
        orig = getattr(exc, "orig", None) or exc
        text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        return Schema(UNREACHABLE if is_transient(exc) else BROKEN, detail=text)


def check_database(url: str, busy_timeout_ms: int) -> Schema:
    """The schema of the database at `url`: SQLite with sqlite3 (never creating the file), PostgreSQL
    with a short-lived SQLAlchemy engine."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is None:
            return Schema(BROKEN, detail="an in-memory SQLite database has no schema: set [database] url")
        return check_sqlite(path, busy_timeout_ms / 1000)
    from maild.storage.db import make_engine

    engine = make_engine(url, busy_timeout_ms)
    try:
        return check_engine(engine)
    finally:
        engine.dispose()
