"""What a dry run (maildctl explain) created and would send: rows inserted inside the rolled-back
transaction, and the outgoing mail queued. Read by the stages' descriptions and by pipeline.explain."""

from __future__ import annotations

from email import message_from_bytes
from email.utils import getaddresses
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from maild.pipeline.context import Context

_INSERTED = "maild.explain.inserted"


def track_inserts(session: Session) -> None:
    """Remember every row the dry run inserts, so a verdict can say which sub-customers are new: inside
    the transaction a row inserted a moment ago looks like any other."""
    # The objects themselves, not their ids: the identity map holds rows weakly, and a collected object's
    # id can be reused by another.
    inserted: list[object] = session.info.setdefault(_INSERTED, [])

    @event.listens_for(session, "pending_to_persistent")
    def _remember(_session: Session, instance: object) -> None:
        inserted.append(instance)


def is_new(session: Session, instance: object) -> bool:
    return instance in session.new or any(row is instance for row in session.info.get(_INSERTED, []))


def _recipients(raw: bytes, header: str) -> list[str]:
    # Only the header block is parsed: the body of a queued mail says nothing about who gets it.
    values = message_from_bytes(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]).get_all(header) or []
    return [address for _, address in getaddresses([str(v) for v in values]) if address]


def would_send(ctx: Context) -> list[dict[str, Any]]:
    """The mail this run queued: template, To, Cc and subject of each."""
    return [
        {
            "template": row.template,
            "to": _recipients(row.raw, "To"),
            "cc": _recipients(row.raw, "Cc"),
            "subject": row.subject,
        }
        for row in ctx.queued
    ]
