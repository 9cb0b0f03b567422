"""identify: the sender is an agent, or a contact (one per address, case-insensitive, name kept)."""

from __future__ import annotations

from sqlalchemy import select

from pipeline.context import Context, Stop
from storage.models import Agent, Contact


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    ctx.agent = ctx.session.scalars(
        select(Agent).where(Agent.email == mail.from_address, Agent.active.is_(True))
    ).first()
    if ctx.agent is not None:
        return None
    contact = ctx.session.scalars(select(Contact).where(Contact.email == mail.from_address)).first()
    if contact is None:
        contact = Contact(email=mail.from_address, display_name=mail.from_name)
        ctx.session.add(contact)
        ctx.session.flush()
    elif mail.from_name and not contact.display_name:
        contact.display_name = mail.from_name
    ctx.contact = contact
    return None
