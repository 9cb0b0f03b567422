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


def set_attributes(session: Session, contact: Contact, changes: dict[str, str | None], *, actor: str) -> None:
    """Set (a text) or remove (None) custom attributes, audited with what they were."""
    attributes = dict(contact.attributes or {})
    before = {key: attributes.get(key) for key in changes}
    for key, value in changes.items():
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    contact.attributes = attributes  # a new dict: the JSON column sees the change
    detail = {"email": contact.email, "before": before, "after": changes}
    record(session, "contact_attr", detail, actor=actor)
