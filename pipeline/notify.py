"""notify: queue what this mail calls for. For now: the `ticket_created` auto-reply to the customer of a
new ticket, threaded to their mail, unless the desk has auto-replies off."""

from __future__ import annotations

from maild.outgoing import queue_mail
from pipeline.context import Context, Stop


def run(ctx: Context) -> Stop | None:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    if ctx.outcome != "created" or not desk.auto_reply or ctx.ticket is None:
        return None
    customer = ctx.ticket.customer
    ctx.queued.append(
        queue_mail(
            ctx.session,
            ctx.cfg,
            ctx.ticket,
            "ticket_created",
            [(customer.display_name, customer.email)],
            in_reply_to=mail.message_id if mail.has_message_id else "",
            references=mail.references,
            automatic=True,
            now=ctx.now,
        )
    )
    return None
