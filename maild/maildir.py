"""Deliver into a Maildir the way a durable MTA does: write in tmp/, fsync, rename into new/."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path


def ensure_maildir(root: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)


def deliver(root: Path, raw: bytes) -> Path:
    return deliver_pieces(root, (raw,))


def deliver_pieces(root: Path, pieces: Iterable[bytes]) -> Path:
    """Deliver the mail made of `pieces`, written as they come (a big mail is never whole in memory). If
    they raise, the file in tmp/ is removed and nothing reaches new/."""
    ensure_maildir(root)
    name = f"{time.time_ns()}.{uuid.uuid4().hex}.{socket.gethostname().replace('/', '_')}"
    tmp = root / "tmp" / name
    try:
        with tmp.open("wb") as fh:
            for piece in pieces:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    final = root / "new" / name
    os.rename(tmp, final)
    fd = os.open(root / "new", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final
