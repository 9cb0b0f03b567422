"""Durable, content-addressed files: the raw-mail spool and the attachment store share this."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def content_path(root: Path, digest: str, suffix: str = "") -> Path:
    return root / digest[:2] / digest[2:4] / f"{digest}{suffix}"


def store_bytes(root: Path, data: bytes, suffix: str = "", *, digest: str | None = None) -> tuple[str, Path]:
    """Write `data` under its sha256 and make it durable (write tmp, fsync, rename, fsync dir).

    Returns (sha256 hex, path). Storing the same bytes twice is a no-op the second time. `digest`, when the
    caller hashed the bytes already, saves hashing them again."""
    digest = digest or hashlib.sha256(data).hexdigest()
    path = content_path(root, digest, suffix)
    if path.exists() and path.stat().st_size == len(data):
        return digest, path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return digest, path
