"""The content-addressed attachment store: `<data_dir>/attachments/ab/cd/<sha256>`, deduplicated."""

from __future__ import annotations

from pathlib import Path

from maild.storage.files import content_path, store_bytes


def store(root: Path, data: bytes, digest: str | None = None) -> str:
    digest, _ = store_bytes(root, data, digest=digest)
    return digest


def path_of(root: Path, digest: str) -> Path:
    return content_path(root, digest)
