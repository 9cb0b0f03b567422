"""`maild pipe`: one message on stdin from an MTA's pipe transport.

Order matters: the raw bytes are durable in the spool before anything else; only then is the message
processed — by `maild serve` when one runs on the same data directory (maild.ingress.control: no start-up cost
for SQLAlchemy and the pipeline), else by an on-demand worker or here.

The fast path (`--recipient` given, as Postfix's master.cf passes it, and found in the desk-address table
maild.ingress.desk_table; a recipient the table does not know takes the slow path, where the database
decides whether it is 67): the mail is spooled, handed
to the daemon if one answers, else its 'received' row is committed without SQLAlchemy
(maild.storage.pipe_rows) and an on-demand worker (maild.ingress.spool_worker) started if none runs: exit 0
once the bytes are fsynced and the row committed, before processing. Without a recipient or a table, a
pipe with no daemon runs the pipeline here (only the pipeline can tell an unknown recipient from the
headers). Exit codes (sysexits) tell the MTA what to do:
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
from maild.ingress.desk_table import is_desk_address
from maild.mail.addresses import normalize

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
    known = _desk_table(cfg, recipient)
    if recipient and known is not None and not is_desk_address(recipient, known):
        # Only the database may bounce a mail (67): the table may miss an address added a moment ago
        # or by hand. The slow path asks it.
        known = None

    # storage.spool.write_raw's one line: that module's intake classes cost the pipe ~3–7 ms to import.
    from maild.storage.files import store_bytes

    try:
        digest, _ = store_bytes(cfg.spool_dir, raw, ".eml")
    except OSError as exc:
        _say(f"cannot write the spool in {cfg.spool_dir}: {exc.strerror}; try again later")
        return EX_TEMPFAIL

    # A running daemon on this data directory processes it warm; else (or if it fails us) we do.
    from maild.ingress.control import ask_daemon, socket_path

    request = {"sha256": digest, "size": len(raw), "recipient": recipient or "", "mail_from": mail_from}
    verdict = ask_daemon(socket_path(cfg.data_dir), request)
    if verdict is not None:
        return _exit_code(verdict["outcome"], str(verdict.get("reason", "")))
    if recipient and known is not None:
        return _commit_for_worker(cfg, digest, len(raw), normalize(recipient), mail_from)
    return _process_here(cfg, digest, len(raw), recipient or "", mail_from)


def _desk_table(cfg: Config, recipient: str | None) -> frozenset[str] | None:
    """The desks' addresses from the table maildctl and the daemon keep; None without a recipient to
    check or a readable table (then the slow path decides)."""
    if not recipient:
        return None
    from maild.ingress.desk_table import read_table

    return read_table(cfg.data_dir)


def _commit_for_worker(cfg: Config, digest: str, size: int, recipient: str, mail_from: str) -> int:
    """A desk's mail and no daemon: commit its 'received' row (no SQLAlchemy), make sure a worker will
    process it, exit 0. The row first, then the worker's lock (maild.ingress.spool_worker: the race)."""
    from maild.ingress.spool_worker import start_worker
    from maild.storage.pipe_rows import RowNotCommitted, SchemaProblem, record_received

    try:
        record_received(cfg.database_url, cfg.busy_timeout_ms, digest, size, recipient, "pipe", mail_from)
    except SchemaProblem as exc:
        _say(str(exc))
        return EX_CONFIG
    except RowNotCommitted as exc:
        _say(f"database unavailable ({exc}); the message is spooled, try again later")
        return EX_TEMPFAIL
    try:
        start_worker(cfg.data_dir, cfg.path)
    except Exception as exc:  # the row is committed: the next pipe's worker or `maild serve` takes it
        _say(f"no worker started ({type(exc).__name__}: {exc}); the message waits in the spool")
    return EX_OK


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
