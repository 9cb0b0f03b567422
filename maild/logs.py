"""JSON log lines on stdout for `maild serve`: one object per line, for journald or a log shipper.

structlog renders everything, also what libraries log through the standard `logging` module (aiosmtpd,
asyncio, SQLAlchemy): their records pass through the same ProcessorFormatter, so every line is JSON.
Tracebacks become structured dicts *without local variables*: locals of the pipeline hold mail bodies,
addresses and the reply-token secret, none of which belongs in a log."""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

_configured = False


def is_configured() -> bool:
    """Whether this process logs JSON lines (`maild serve`), not structlog's own flag: structlog's test
    helpers set that one in any process."""
    return _configured


def configure(stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    global _configured
    _configured = True
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)  # flushes after every record
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command line and every connection at INFO: noise (and addresses) per mail.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def get_logger(name: str = "maild") -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


def log_event(logger: str, level: int, event: str, **fields: Any) -> None:
    """One event with its fields: a JSON object of its own under `maild serve`, else (maild pipe,
    maildctl: their stdout belongs to the MTA or the admin) a stdlib record `event key=value ...` on
    stderr. Never a dict rendered into the event's text."""
    if _configured:
        structlog.stdlib.get_logger(logger).log(level, event, **fields)
        return
    shown = " ".join(f"{key}={value}" for key, value in fields.items())
    logging.getLogger(logger).log(level, "%s %s", event, shown)
