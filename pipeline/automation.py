"""After apply, before notify: the desk's rules run on what apply changed (a new ticket, a customer's or
agent's mail, a status the commands set), and webhooks are queued for it, in the mail's own savepoint. So a
rule's assignment or priority is what notify's notices show.

A mail of `maildctl import` is history: nobody is answered or told, so its events go to neither."""

from __future__ import annotations

from maild.pipeline.context import IMPORT_INGRESS, Context, Stop
from maild.storage.events import take_pending
from maild.tickets.automation import after_changes
from maild.tickets.rules_engine import firing_json, take_firings


def run(ctx: Context) -> Stop | None:
    if ctx.spool.ingress == IMPORT_INGRESS:
        take_pending(ctx.session)
        return None
    take_firings(ctx.session)  # another writer's, earlier in this session: not this mail's
    after_changes(ctx.session, ctx.cfg, ctx.now)
    ctx.rule_firings = [firing_json(f) for f in take_firings(ctx.session)]
    return None


def describe(ctx: Context, stop: Stop | None) -> str:
    """Which rules fired and what they did (in a dry run: what they would do)."""
    del stop
    if not ctx.rule_firings:
        return "no rule fired"
    parts = []
    for firing in ctx.rule_firings:
        what = "; ".join(firing["done"]) or "nothing to change"
        if firing["failed"]:
            what += f"; failed: {'; '.join(firing['failed'])}"
        parts.append(f"rule {firing['rule']} ({firing['trigger']}): {what}")
    return "rules fired: " + " | ".join(parts)
