"""Changes to contacts by hand, each with its audit entry (maildctl contact unbounce)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from maild.storage.models import Contact
from maild.tickets.ticket_ops import record


def unbounce(session: Session, contact: Contact, *, actor: str) -> None:
    """A bouncing contact gets mail again."""
    reason = contact.status_reason
    contact.status, contact.status_reason = "active", ""
    record(session, "contact_unbounce", {"email": contact.email, "was": reason}, actor=actor)
