"""The content-addressed attachment store: `<data_dir>/attachments/ab/cd/<sha256>`, deduplicated."""

from __future__ import annotations

from pathlib import Path

from storage.files import content_path, store_bytes


def store(root: Path, data: bytes) -> str:
    digest, _ = store_bytes(root, data)
    return digest


def path_of(root: Path, digest: str) -> Path:
    return content_path(root, digest)
