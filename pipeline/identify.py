"""identify: the sender is an agent, or a contact (one per address, case-insensitive, name kept)."""

from __future__ import annotations

from sqlalchemy import select

from maild.participants import find_contact, get_or_create_contact
from pipeline.context import Context, Stop
from storage.models import Agent


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    ctx.agent = ctx.session.scalars(
        select(Agent).where(Agent.email == mail.from_address, Agent.active.is_(True))
    ).first()
    if ctx.agent is not None:
        return None
    # Known before this mail? (clients_only lets only known contacts open tickets.)
    ctx.known_sender = find_contact(ctx.session, mail.from_address) is not None
    ctx.contact = get_or_create_contact(ctx.session, mail.from_address, mail.from_name)
    return None
