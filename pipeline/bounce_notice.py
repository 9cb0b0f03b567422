"""The bounce_notice: the desk's present agents told of an address that turned bouncing (notify's
answer_stop sends it after the bounce stage stopped the mail). Never about a bounce of a bounce_notice:
a bouncing agent address would loop."""

from __future__ import annotations

from maild.outbound.outgoing import queue_mail
from maild.pipeline.context import BounceEffect, BounceVerdict, Context
from maild.storage.db import is_transient
from maild.storage.models import OutboxMessage, Ticket
from maild.tickets.notices import desk_recipients

BOUNCE_NOTICE = "bounce_notice"


def tell_of_bounce(ctx: Context, verdict: BounceVerdict) -> None:
    """The bounce_notice for each address that turned bouncing; what went wrong with one is added to that
    address's part of the spool row's reason."""
    ticket, row = ctx.ticket, verdict.row
    if ticket is None:
        return
    reasons = []
    for effect in verdict.effects:
        reason = effect.reason
        # Only when the address turns bouncing: later bounces of mail queued before say nothing new, and a
        # bounce of a notice must never cause another notice (a bouncing agent address would loop).
        if effect.mark and effect.newly and row.template != BOUNCE_NOTICE:
            problem = queue_bounce_notice(ctx, ticket, effect, row)
            reason += f" ({problem})" if problem else ""
        reasons.append(reason)
    ctx.reason = "; ".join(reasons)[:2000]


def queue_bounce_notice(ctx: Context, ticket: Ticket, effect: BounceEffect, row: OutboxMessage) -> str:
    """Queue the bounce_notice to the desk's agents; returns what went wrong, if anything."""
    address = effect.address
    agents = [(a.name, a.email) for a in desk_recipients(ticket.desk, now=ctx.now) if a.email != address]
    if not agents:
        return ""
    dropped: dict[str, str] = {}
    try:
        # Automatic: Auto-Submitted keeps an agent's vacation responder from answering it (RFC 3834). The
        # per-address rate limit of automatic mail applies too; what it holds back is named in the reason.
        notice = queue_mail(
            ctx.session,
            ctx.cfg,
            ticket,
            BOUNCE_NOTICE,
            agents,
            automatic=True,
            now=ctx.now,
            variables={
                "bounced_address": address,
                "bounce_status": effect.status,
                "bounce_diagnostic": effect.diagnostic,
                "bounced_subject": row.subject,
            },
            dropped=dropped,
        )
    except Exception as exc:
        if is_transient(exc):
            raise
        # The note and the contact are what matters; a broken desk template must not undo them.
        return f"bounce_notice not queued: {type(exc).__name__}: {exc}"[:500]
    if notice is not None:
        ctx.queued.append(notice)
    if dropped:
        return "bounce_notice not sent to " + ", ".join(f"{a} ({why})" for a, why in dropped.items())
    return ""
