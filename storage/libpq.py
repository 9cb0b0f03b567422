"""A minimal PostgreSQL client: libpq through ctypes, for `maild pipe`'s one row (maild.storage.pipe_rows).

Importing psycopg costs ~0.1 s here, as much as the pipe's whole budget; loading libpq itself costs a few
milliseconds. Only what the pipe needs: connect, run a statement with text parameters, read text values,
finish. `load()` is None when no libpq can be loaded (the caller then uses psycopg): the system's
(libpq5), else the one psycopg's binary wheel bundles.

Importing this module costs only the standard library (ctypes is imported by `load`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONNECTION_OK = 0
PGRES_COMMAND_OK, PGRES_TUPLES_OK = 1, 2


class LibpqError(Exception):
    """A connection or statement failed; the message is libpq's first line."""


def _candidates() -> list[str]:
    found = ["libpq.so.5", "libpq.so"]
    try:
        from importlib.util import find_spec

        spec = find_spec("psycopg_binary")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent.parent / "psycopg_binary.libs"
        found += sorted(str(path) for path in bundled.glob("libpq*.so*"))
    return found


def load() -> Any | None:
    """libpq with the prototypes used here, or None."""
    import ctypes

    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        pointer, text, integer = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for function, argtypes, restype in (
            ("PQconnectdb", [text], pointer),
            ("PQstatus", [pointer], integer),
            ("PQerrorMessage", [pointer], text),
            ("PQfinish", [pointer], None),
            ("PQexecParams", [pointer, text, integer, pointer, pointer, pointer, pointer, integer], pointer),
            ("PQresultStatus", [pointer], integer),
            ("PQresultErrorMessage", [pointer], text),
            ("PQntuples", [pointer], integer),
            ("PQnfields", [pointer], integer),
            ("PQgetisnull", [pointer, integer, integer], integer),
            ("PQgetvalue", [pointer, integer, integer], text),
            ("PQclear", [pointer], None),
        ):
            getattr(lib, function).argtypes = argtypes
            getattr(lib, function).restype = restype
        return lib
    return None


def _first_line(message: bytes | None) -> str:
    text = (message or b"").decode("utf-8", "replace").strip()
    return (text.splitlines() or ["unknown libpq error"])[0]


class Connection:
    """One libpq connection; `close` it. Statements run in autocommit unless the caller says BEGIN."""

    def __init__(self, lib: Any, conninfo: str) -> None:
        self._lib = lib
        self._conn = lib.PQconnectdb(conninfo.encode())
        if not self._conn or lib.PQstatus(self._conn) != CONNECTION_OK:
            message = _first_line(lib.PQerrorMessage(self._conn)) if self._conn else "out of memory"
            self.close()
            raise LibpqError(message)

    def execute(self, sql: str, params: tuple[str, ...] = ()) -> list[tuple[str | None, ...]]:
        """Run `sql` ($1, $2 … take `params` as text); its rows as text values."""
        import ctypes

        values = (ctypes.c_char_p * max(1, len(params)))(*(p.encode() for p in params))
        lib = self._lib
        result = lib.PQexecParams(self._conn, sql.encode(), len(params), None, values, None, None, 0)
        if not result:
            raise LibpqError(_first_line(lib.PQerrorMessage(self._conn)))
        try:
            if lib.PQresultStatus(result) not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
                raise LibpqError(_first_line(lib.PQresultErrorMessage(result)))
            return [
                tuple(
                    None if lib.PQgetisnull(result, row, col) else lib.PQgetvalue(result, row, col).decode()
                    for col in range(lib.PQnfields(result))
                )
                for row in range(lib.PQntuples(result))
            ]
        finally:
            lib.PQclear(result)

    def close(self) -> None:
        if self._conn:
            self._lib.PQfinish(self._conn)
            self._conn = None
