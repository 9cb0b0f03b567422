"""The audit entry of a mailbox import (maildctl import): the import itself is maild.ingress.importer's,
mail replayed through the pipeline."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from maild.storage.db import transaction
from maild.tickets.ticket_ops import record


def record_import(
    factory: sessionmaker[Session], kind: str, path: str, desk: str, summary: dict[str, Any], *, actor: str
) -> None:
    """The `import` audit row, in its own transaction: what was imported (`summary`) from where."""
    with transaction(factory) as session:
        record(session, "import", {"kind": kind, "path": path, "desk": desk, **summary}, actor=actor)
