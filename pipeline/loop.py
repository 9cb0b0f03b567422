"""loop: our own outgoing mail coming back → outcome `looped`, before anything could answer it.

Ours means exactly our identity, never merely our domain (a colleague writing from the desk's domain is a
customer like any other): an X-Loop naming a desk address (we put `X-Loop: <desk address>` on every mail
we send), a Message-ID we gave one of our outgoing mails, or a desk address (or its `+token` form) as the
From sender. Runs before route, so every desk's addresses count: desk A's auto-reply sent to desk B is
a loop too. In an imported backlog (`maildctl import`), mail From a desk address is the desk's old answer:
it goes on (desk_reply) to be stored on its ticket."""

from __future__ import annotations

from sqlalchemy import select

from maild.mail.addresses import base_address
from maild.mail.automatic import x_loop_addresses
from maild.pipeline.context import IMPORT_INGRESS, Context, Stop
from maild.storage.models import DeskAddress, OutboxMessage


def _desk_addresses(ctx: Context) -> set[str]:
    return set(ctx.session.scalars(select(DeskAddress.address)))


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    desks = _desk_addresses(ctx)
    for address in x_loop_addresses(ctx.headers):
        if base_address(address) in desks:
            return Stop("looped", f"X-Loop: {address} is our own")
    if (
        mail.has_message_id
        and ctx.session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.message_id == mail.message_id)
        ).first()
    ):
        return Stop("looped", f"Message-ID {mail.message_id} is one we sent")
    if base_address(mail.from_address) in desks:
        if ctx.spool.ingress == IMPORT_INGRESS:
            ctx.desk_reply = True  # a backlog's old answer of the desk: history to keep, not a loop
            return None
        return Stop("looped", f"sender {mail.from_address} is a desk address")
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    return (
        "not our own mail coming back (no X-Loop of ours, no Message-ID we sent, sender is no desk address)"
    )
