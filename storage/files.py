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

    Returns (sha256 hex, path). Storing the same bytes twice only refreshes the file's mtime the second
    time: the retention purge (discard_stale) keeps a file touched after its cutoff, so a mail delivered
    again while its old copy is being purged keeps its bytes. `digest`, when the caller hashed the bytes
    already, saves hashing them again."""
    digest = digest or hashlib.sha256(data).hexdigest()
    path = content_path(root, digest, suffix)
    try:
        if path.stat().st_size == len(data):
            os.utime(path)
            return digest, path
    except FileNotFoundError:
        pass  # not there, or taken by a purge between stat and utime: write it
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return digest, path


def store_file(root: Path, written: Path, digest: str, suffix: str = "") -> Path:
    """Make `written`, a closed file on `root`'s file system whose sha256 is `digest`, durable under that
    address (fsync, rename, fsync dir), as store_bytes does for bytes held in memory. When the same bytes
    are there already, `written` is removed and the file's mtime refreshed (see store_bytes); their
    directory is fsynced again, since the delivery that renamed them may not have done so yet."""
    path = content_path(root, digest, suffix)
    try:
        if path.stat().st_size == written.stat().st_size:
            os.utime(path)
            written.unlink()
            _fsync_dir(path.parent)
            return path
    except FileNotFoundError:
        pass  # not there, or taken by a purge between stat and utime: rename ours
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(written, os.O_RDONLY)  # Linux fsyncs a file through any descriptor of it
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(written, path)
    _fsync_dir(path.parent)
    return path


def discard_stale(path: Path, cutoff: float) -> int | None:
    """Delete `path` unless it was written or touched (mtime) at or after `cutoff` (a POSIX time); returns
    the bytes freed (0 when there was no file), or None when the file is kept.

    Against store_bytes of the same bytes at the same moment: the file is first renamed away, so a store
    either touched it before (the mtime says so: renamed back) or finds it gone and writes a new one."""
    aside = path.parent / f".purge-{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return 0
    stat = aside.stat()
    if stat.st_mtime >= cutoff:
        if path.exists():  # written anew meanwhile: the same bytes, already durable
            aside.unlink()
        else:
            os.rename(aside, path)
        return None
    aside.unlink()
    return stat.st_size
