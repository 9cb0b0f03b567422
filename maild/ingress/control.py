"""The control socket of `maild serve`: `maild pipe` hands it a spooled mail instead of processing it.

`maild pipe` runs once per mail, and importing SQLAlchemy, the pipeline and Jinja2 costs it most of a
second. With a daemon running on the same data directory, the pipe makes the raw bytes durable (standard
library only, as always), sends this socket one JSON line naming them, and waits for one JSON line with the
verdict; the warm daemon records the spool row and runs the pipeline. Without a daemon, or when the socket
fails in any way before the verdict, the pipe processes the mail itself, as before: recording a spool row
is idempotent for the same bytes, and a mail processed twice is a duplicate.

Request:  {"sha256": "<64 hex>", "size": N, "recipient": "...", "mail_from": "..."}
          or {"request": "status"} (`maildctl health`): answered at once with the daemon's status object.
Verdict:  {"outcome": "...", "reason": "...", "ticket": "NUMBER" | null}. "spooled": the row is committed
          and the recipient is a desk's — the daemon processes it (LMTP's 250); for any other recipient
          (or none given) the pipeline's outcome, so that the pipe can answer 67 for an unknown one;
          "deferred": the database could not be reached (the MTA retries).

Importing this module costs only the standard library (the pipe's start-up time)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

SOCKET_NAME = "maild.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux; a longer path cannot be bound
CONNECT_SECONDS = 2.0
VERDICT_SECONDS = 120.0  # a 30 MB mail under load takes seconds; Postfix's pipe limit is 1000 s
MAX_LINE = 4096
STATUS = "status"
STATUS_SECONDS = 5.0
MAX_STATUS_LINE = 1024 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def socket_path(data_dir: Path) -> Path | None:
    """Where the daemon of `data_dir` listens, or None when the path is too long for a unix socket."""
    path = data_dir / SOCKET_NAME
    return path if len(str(path).encode()) <= MAX_SOCKET_PATH else None


class BadRequest(ValueError):
    pass


def parse_request(line: bytes) -> dict[str, Any]:
    """The request's fields, checked; BadRequest says what is wrong."""
    try:
        data = json.loads(line)
    except ValueError:
        raise BadRequest("not a JSON line") from None
    if not isinstance(data, dict):
        raise BadRequest("not a JSON object")
    if data.get("request") == STATUS:
        return {"request": STATUS}
    digest, size = data.get("sha256"), data.get("size")
    recipient, mail_from = data.get("recipient", ""), data.get("mail_from", "")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise BadRequest("sha256 must be 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest("size must be a whole number")
    if not isinstance(recipient, str) or not isinstance(mail_from, str):
        raise BadRequest("recipient and mail_from must be strings")
    return {"sha256": digest, "size": size, "recipient": recipient, "mail_from": mail_from}


def ask_daemon(path: Path | None, request: dict[str, Any]) -> dict[str, Any] | None:
    """The daemon's verdict on a spooled mail, or None when there is no daemon or it fails to answer
    (the caller then processes the mail itself)."""
    if path is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_SECONDS)
            sock.connect(str(path))
            sock.settimeout(VERDICT_SECONDS)
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as answer:
                line = answer.readline(MAX_LINE)
    except OSError:  # no socket, nobody listening, refused, timed out, cut off
        return None
    try:
        verdict = json.loads(line)
    except ValueError:  # EOF (the daemon stopped or died) or garbage
        return None
    if not isinstance(verdict, dict) or not isinstance(verdict.get("outcome"), str):
        return None
    return verdict


def ask_status(path: Path | None) -> dict[str, Any] | None:
    """The running daemon's status object, or None when no daemon answers on `path`."""
    if path is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_SECONDS)
            sock.connect(str(path))
            sock.settimeout(STATUS_SECONDS)
            sock.sendall(json.dumps({"request": STATUS}).encode() + b"\n")
            with sock.makefile("rb") as answer:
                line = answer.readline(MAX_STATUS_LINE)
    except OSError:
        return None
    try:
        status = json.loads(line)
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def claim_socket(path: Path) -> bool:
    """Whether `path` is free to bind: absent, or left by a daemon that died (nobody answers). False when
    another daemon listens there."""
    if not path.exists():
        return True
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(CONNECT_SECONDS)
            probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return True
    return False
