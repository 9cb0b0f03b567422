"""The 'received' spool row of a piped mail, committed without SQLAlchemy: `maild pipe` runs once per mail,
and importing the ORM costs it ~0.4 s. The same row and the same idempotence as
maild.storage.spool.record_received (a pending 'received' row of the same bytes and recipient is reused),
the same SQLite pragmas and BEGIN IMMEDIATE as maild.storage.db.make_engine.

SQLite: the standard library's sqlite3. PostgreSQL: libpq through ctypes (maild.storage.libpq: importing
psycopg alone costs ~0.1 s), or psycopg directly when no libpq can be loaded.
Errors are raised as RowNotCommitted (transient: try again later) or SchemaProblem (run maildctl init /
upgrade maild): the caller exits 75 or 78.

Importing this module costs only the standard library."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

from maild.storage.schema import HEAD, REVISIONS, sqlite_file

# "?" placeholders: sqlite3's; psycopg gets %s, libpq $1, $2 … (`_placeholders`).
_PENDING = (
    "SELECT id FROM spool WHERE sha256 = ? AND recipient = ? AND state = 'received' ORDER BY id LIMIT 1"
)
_INSERT = (
    "INSERT INTO spool (sha256, recipient, mail_from, ingress, size, state, reason, header_message_id, "
    "attempts, trace, received_at, released) "
    "VALUES (?, ?, ?, ?, ?, 'received', '', '', 0, '[]', ?, {false})"
)


def _placeholders(sql: str, style: str) -> str:
    """`sql` with its "?" placeholders as `style` writes them: "%s" (psycopg) or "$" (libpq: $1, $2 …)."""
    parts = sql.split("?")
    if style != "$":
        return style.join(parts)
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


class RowNotCommitted(Exception):
    """The database is locked, down or refused the row: the bytes are spooled, the MTA retries."""


class SchemaProblem(Exception):
    """The database has no schema, or not this code's: the message says what to do."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _check_revision(found: list[str]) -> None:
    if found == [HEAD]:
        return
    if not found:
        raise SchemaProblem("the database has no schema yet: run 'maildctl init'")
    if all(revision in REVISIONS for revision in found):
        raise SchemaProblem(f"the database schema is at an earlier revision than {HEAD}: run 'maildctl init'")
    raise SchemaProblem(f"the database schema is newer than this maild knows ({HEAD}): upgrade maild")


def record_received(
    url: str, busy_timeout_ms: int, digest: str, size: int, recipient: str, ingress: str, mail_from: str
) -> int:
    """Commit the 'received' row (or find the pending one of the same bytes and recipient); its id."""
    values = (digest, recipient, mail_from[:320], ingress, size)
    if url.startswith("sqlite"):
        return _record_sqlite(url, busy_timeout_ms, values)
    return _record_postgresql(url, values)


def _record_sqlite(url: str, busy_timeout_ms: int, values: tuple[Any, ...]) -> int:
    path = sqlite_file(url)
    if path is None or not Path(path).exists():  # never create it: `maildctl init` does
        raise SchemaProblem(f"no database at {path}: run 'maildctl init' first")
    try:
        # mode=rw: a file that vanished in between is an error, not a new empty database.
        conn = sqlite3.connect(
            Path(path).absolute().as_uri() + "?mode=rw", uri=True, timeout=busy_timeout_ms / 1000
        )
    except sqlite3.Error as exc:
        raise RowNotCommitted(f"{path}: {exc}") from None
    try:
        conn.isolation_level = None  # we BEGIN ourselves, as the engine does
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # the committed row survives power loss, like the file
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            spool_id = _find_or_insert(conn.cursor(), "?", values)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return spool_id
    except sqlite3.Error as exc:  # locked beyond busy_timeout, disk trouble, no spool table
        raise RowNotCommitted(f"{path}: {exc}") from None
    finally:
        conn.close()


def _find_or_insert(cursor: Any, style: str, values: tuple[Any, ...]) -> int:
    """In the caller's transaction: the pending row's id, or a new row's (sqlite3 or psycopg cursor)."""
    digest, recipient = values[0], values[1]
    cursor.execute(_placeholders(_PENDING, style), (digest, recipient))
    row = cursor.fetchone()
    if row is not None:
        return int(row[0])
    if style == "?":  # as SQLAlchemy stores a DateTime in SQLite
        insert = _INSERT.format(false="0")
        cursor.execute(insert, (*values, _utcnow().isoformat(sep=" ", timespec="microseconds")))
        return int(cursor.lastrowid)
    cursor.execute(
        _placeholders(_INSERT.format(false="false"), style) + " RETURNING id", (*values, _utcnow())
    )
    return int(cursor.fetchone()[0])


def postgresql_conninfo(url: str) -> str:
    """The libpq URL of a config's database URL (its SQLAlchemy driver name dropped), with a connect
    timeout unless it sets one (a host that drops packets would hang the pipe for minutes)."""
    url = "postgresql://" + url.split("://", 1)[1]
    if "connect_timeout=" not in url:
        url += ("&" if "?" in url else "?") + "connect_timeout=10"
    return url


def _record_postgresql(url: str, values: tuple[Any, ...]) -> int:
    from maild.storage import libpq

    lib = libpq.load()
    if lib is None:
        return _record_psycopg(url, values)
    try:
        conn = libpq.Connection(lib, postgresql_conninfo(url))
    except libpq.LibpqError as exc:
        raise RowNotCommitted(str(exc)) from None
    try:
        [(present,)] = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
        found = (
            [str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version")]
            if present == "t"
            else []
        )
        _check_revision(found)
        conn.execute("BEGIN")  # closing without COMMIT (an error below) rolls back
        text = tuple(str(v) for v in values)
        rows = conn.execute(_placeholders(_PENDING, "$"), text[:2])
        if not rows:
            insert = _placeholders(_INSERT.format(false="false"), "$") + " RETURNING id"
            rows = conn.execute(insert, (*text, _utcnow().isoformat(sep=" ")))
        conn.execute("COMMIT")
        return int(str(rows[0][0]))
    except libpq.LibpqError as exc:
        raise RowNotCommitted(str(exc)) from None
    finally:
        conn.close()


def _record_psycopg(url: str, values: tuple[Any, ...]) -> int:
    import psycopg

    try:
        with psycopg.connect(postgresql_conninfo(url)) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            row = cursor.fetchone()
            found: list[str] = []
            if row is not None and row[0]:
                cursor.execute("SELECT version_num FROM alembic_version")
                found = [r[0] for r in cursor.fetchall()]
            _check_revision(found)
            return _find_or_insert(cursor, "%s", values)  # committed when the block ends
    except psycopg.Error as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RowNotCommitted(text) from None
