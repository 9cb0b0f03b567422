"""route: which desk is this mail for? The envelope recipient decides; without one (a pipe with no
--recipient, IMAP) the first desk address among Delivered-To, X-Original-To, To and Cc does."""

from __future__ import annotations

from sqlalchemy import select

from maild.mail.addresses import base_address
from maild.pipeline.context import Context, Stop
from maild.storage.models import DeskAddress
from maild.tickets.lookup import ENVELOPE, addressed_to


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    # The envelope recipient decides when there is one (recipient_candidates' envelope_decides).
    envelope = ctx.spool.recipient
    candidates = [(ENVELOPE, envelope)] if envelope else addressed_to("", mail)
    for where, candidate in candidates:
        desk_address = ctx.session.scalars(
            select(DeskAddress).where(DeskAddress.address == base_address(candidate))
        ).first()
        if desk_address is not None:
            ctx.desk, ctx.routed_by = desk_address.desk, f"{where} {candidate}"
            return None
    if ctx.spool.recipient:
        return Stop("unknown_recipient", f"no desk has the address {ctx.spool.recipient}")
    return Stop("unknown_recipient", "no desk address in Delivered-To, X-Original-To, To or Cc")


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    desk = ctx.require_desk()
    return f"desk {desk.name} ({ctx.routed_by})" if ctx.routed_by else f"desk {desk.name}"
