"""route: which desk is this mail for? The envelope recipient decides; without one (a pipe with no
--recipient, IMAP) the first desk address among Delivered-To, X-Original-To, To and Cc does."""

from __future__ import annotations

from sqlalchemy import select

from maild.mail.addresses import base_address
from maild.pipeline.context import Context, Stop
from maild.storage.models import DeskAddress
from maild.tickets.lookup import recipient_candidates


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    for candidate in recipient_candidates(ctx.spool.recipient, mail, envelope_decides=True):
        desk_address = ctx.session.scalars(
            select(DeskAddress).where(DeskAddress.address == base_address(candidate))
        ).first()
        if desk_address is not None:
            ctx.desk = desk_address.desk
            return None
    if ctx.spool.recipient:
        return Stop("unknown_recipient", f"no desk has the address {ctx.spool.recipient}")
    return Stop("unknown_recipient", "no desk address in Delivered-To, X-Original-To, To or Cc")
