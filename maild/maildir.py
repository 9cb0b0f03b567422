"""Deliver into a Maildir the way a durable MTA does: write in tmp/, fsync, rename into new/."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path


def ensure_maildir(root: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)


def deliver(root: Path, raw: bytes) -> Path:
    ensure_maildir(root)
    name = f"{time.time_ns()}.{uuid.uuid4().hex}.{socket.gethostname().replace('/', '_')}"
    tmp = root / "tmp" / name
    with tmp.open("wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    final = root / "new" / name
    os.rename(tmp, final)
    fd = os.open(root / "new", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final
