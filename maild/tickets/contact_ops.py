"""Changes to contacts by hand, each with its audit entry (maildctl contact add, unbounce, attr)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from maild.storage.models import Contact
from maild.tickets.participants import find_contact, get_or_create_contact
from maild.tickets.ticket_ops import record


def add_or_name(session: Session, email: str, name: str, *, actor: str) -> bool:
    """The contact `email` known (made if new), `name` (if given) its preferred name; True when it
    existed. Audited as contact_add or contact_name."""
    existed = find_contact(session, email) is not None
    contact = get_or_create_contact(session, email)
    before = contact.display_name
    if name.strip():
        contact.display_name = name.strip()[:200]  # the admin's word is the preferred name
    if not existed:
        record(session, "contact_add", {"email": email, "name": contact.display_name}, actor=actor)
    elif contact.display_name != before:
        record(
            session,
            "contact_name",
            {"email": email, "before": before, "after": contact.display_name},
            actor=actor,
        )
    return existed


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
