"""`maild pipe`: one message on stdin from an MTA's pipe transport.

Order matters: the raw bytes are durable in the spool before anything else; only then is the message
processed — by `maild serve` when one runs on the same data directory (maild.ingress.control: no start-up cost
for SQLAlchemy and the pipeline), else here. Exit codes (sysexits) tell the MTA what to do:
  0  done (a ticket, a reply, a duplicate, or kept in quarantine)
  67 EX_NOUSER   no desk has the recipient address: the MTA bounces
  75 EX_TEMPFAIL disk or database trouble: the MTA keeps the mail and retries
  78 EX_CONFIG   the config file is invalid, or the database has no schema or not this maild's ("run
                 'maildctl init'", "upgrade maild"); Postfix keeps the mail and retries
Nothing here creates the database: a SQLite file that is not there stays missing (storage.schema).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from maild.config import EX_CONFIG, Config, ConfigError, load_config

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EX_OK, EX_NOUSER, EX_TEMPFAIL = 0, 67, 75


def _say(line: str) -> None:
    print(f"maild pipe: {line}", file=sys.stderr)


def run_pipe(
    config: str | None, recipient: str | None, stdin: bytes | None = None, mail_from: str = ""
) -> int:
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _say(str(exc))
        return EX_CONFIG
    if cfg.is_sqlite and not _sqlite_schema_ready(cfg):
        return EX_CONFIG
    raw = sys.stdin.buffer.read() if stdin is None else stdin

    from maild.storage.spool import write_raw

    try:
        digest = write_raw(cfg.spool_dir, raw)
    except OSError as exc:
        _say(f"cannot write the spool in {cfg.spool_dir}: {exc.strerror}; try again later")
        return EX_TEMPFAIL

    # A running daemon on this data directory processes it warm; else (or if it fails us) we do.
    from maild.ingress.control import ask_daemon, socket_path

    request = {"sha256": digest, "size": len(raw), "recipient": recipient or "", "mail_from": mail_from}
    verdict = ask_daemon(socket_path(cfg.data_dir), request)
    if verdict is not None:
        return _exit_code(verdict["outcome"], str(verdict.get("reason", "")))
    return _process_here(cfg, digest, len(raw), recipient or "", mail_from)


def _sqlite_schema_ready(cfg: Config) -> bool:
    """Before anything is written: an uninitialised data directory gets no spool, and no empty database
    from the engine of `_process_here`. Standard library only (sqlite3, read-only), about a millisecond.
    PostgreSQL is checked in `_process_here`, only when no daemon takes the mail: a running daemon
    checked it at its start, and the check would cost every pipe a connection and psycopg. False (said)
    when the schema is missing or not this code's; an unreachable database is the engine's to report
    (75)."""
    from maild.storage.schema import UNREACHABLE, check_database

    schema = check_database(cfg.database_url, cfg.busy_timeout_ms)
    if not schema.ready and schema.state != UNREACHABLE:
        _say(schema.problem())
        return False
    return True


def _process_here(cfg: Config, digest: str, size: int, recipient: str, mail_from: str) -> int:
    """No daemon took the spooled mail: record its row, run the pipeline and send its replies here."""
    from maild.storage.db import make_engine

    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
    if not cfg.is_sqlite:
        problem = _postgresql_problem(engine)
        if problem is not None:
            engine.dispose()
            return problem
    try:
        return _run_pipeline(cfg, engine, digest, size, recipient, mail_from)
    finally:
        engine.dispose()


def _postgresql_problem(engine: Engine) -> int | None:
    """The exit code when the PostgreSQL database cannot take the mail (said), else None."""
    from maild.storage.schema import UNREACHABLE, check_engine

    schema = check_engine(engine)
    if schema.state == UNREACHABLE:
        _say(f"database unavailable ({schema.detail}); the message is spooled, try again later")
        return EX_TEMPFAIL
    if not schema.ready:
        _say(schema.problem())
        return EX_CONFIG
    return None


def _run_pipeline(cfg: Config, engine: Engine, digest: str, size: int, recipient: str, mail_from: str) -> int:
    from maild.mail.addresses import normalize
    from maild.outbound.sender import flush
    from maild.pipeline.runner import process
    from maild.storage.db import is_transient, make_sessionmaker, transaction
    from maild.storage.spool import record_received

    factory = make_sessionmaker(engine)
    try:
        with transaction(factory) as session:
            entry = record_received(session, digest, size, normalize(recipient), "pipe", mail_from)
            spool_id = entry.id
        result = process(factory, cfg, spool_id)
    except Exception as exc:
        if is_transient(exc):
            _say(f"database unavailable ({type(exc).__name__}); the message is spooled, try again later")
            return EX_TEMPFAIL
        # Anything else before the pipeline ran: the bytes are safe in the spool, let the MTA retry.
        _say(f"internal error ({type(exc).__name__}: {exc}); the message is spooled, try again later")
        return EX_TEMPFAIL
    code = _exit_code(result.outcome, result.reason)
    if code == EX_OK and result.outbox_ids:
        # The ticket is committed; a send failure leaves the mail queued for `maildctl outbox flush`.
        try:
            flush(factory, cfg, result.outbox_ids)
        except Exception as exc:
            _say(f"queued reply not sent yet ({type(exc).__name__}); it stays in the outbox")
    return code


def _exit_code(outcome: str, reason: str) -> int:
    """What the MTA is told of the pipeline's outcome."""
    if outcome == "failed":
        _say(f"{reason}; will retry")
        return EX_TEMPFAIL
    if outcome == "deferred":  # the daemon could not reach the database
        _say(f"database unavailable ({reason}); the message is spooled, try again later")
        return EX_TEMPFAIL
    if outcome == "unknown_recipient":
        _say(reason)
        return EX_NOUSER
    return EX_OK
