"""Deliver into a Maildir the way a durable MTA does: write in tmp/, fsync, rename into new/."""

from __future__ import annotations

import glob
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


def deliver_pieces(root: Path, pieces: Iterable[bytes], name: str | None = None) -> Path:
    """Deliver the mail made of `pieces`, written as they come (a big mail is never whole in memory). If
    they raise, the file in tmp/ is removed and nothing reaches new/.

    With `name` the delivery is idempotent: a file of that name already in new/ (or in cur/, where a
    reader moved it, with or without its ":2,..." flags) means it was delivered before, so nothing is
    written and `pieces` is not read; the final link never replaces a file of that name."""
    ensure_maildir(root)
    if name is not None:
        name = name.replace("/", "_").replace(":", "_")
        present = _present(root, name)
        if present is not None:
            return present
    final_name = name or f"{time.time_ns()}.{uuid.uuid4().hex}.{hostname()}"
    tmp = root / "tmp" / (final_name if name is None else f"{name}.{uuid.uuid4().hex}")
    try:
        with tmp.open("wb") as fh:
            for piece in pieces:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    final = root / "new" / final_name
    if name is None:
        os.rename(tmp, final)
    else:
        try:
            os.link(tmp, final)  # unlike rename, never replaces a copy that got there first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    fd = os.open(root / "new", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def hostname() -> str:
    return socket.gethostname().replace("/", "_").replace(":", "_")


def _present(root: Path, name: str) -> Path | None:
    if (root / "new" / name).exists():
        return root / "new" / name
    if (root / "cur" / name).exists():
        return root / "cur" / name
    for path in (root / "cur").glob(f"{glob.escape(name)}:*"):
        return path
    return None
