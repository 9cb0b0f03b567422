"""After apply, before notify: the desk's rules run on what apply changed (a new ticket, a customer's or
agent's mail, a status the commands set), and webhooks are queued for it, in the mail's own savepoint. So a
rule's assignment or priority is what notify's notices show."""

from __future__ import annotations

from maild.pipeline.context import Context, Stop
from maild.tickets.automation import after_changes


def run(ctx: Context) -> Stop | None:
    after_changes(ctx.session, ctx.cfg, ctx.now)
    return None
