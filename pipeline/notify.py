"""notify: queue what this mail calls for. For now: the `ticket_created` auto-reply to the customer of a
new ticket, threaded to their mail, unless the desk has auto-replies off. A reply that cannot be rendered
is noted on the spool row, never a reason to lose the ticket."""

from __future__ import annotations

from maild.outgoing import queue_mail
from maild.participants import customer_recipients
from pipeline.context import Context, Stop
from storage.db import is_transient


def run(ctx: Context) -> Stop | None:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    if ctx.outcome != "created" or not desk.auto_reply or ctx.ticket is None:
        return None
    customer, sub_customers = customer_recipients(ctx.ticket)
    try:
        row = queue_mail(
            ctx.session,
            ctx.cfg,
            ctx.ticket,
            "ticket_created",
            [customer],
            cc=sub_customers,
            in_reply_to=mail.message_id if mail.has_message_id else "",
            references=mail.references,
            automatic=True,
            now=ctx.now,
        )
    except Exception as exc:
        if is_transient(exc):
            raise
        # The ticket is the customer's mail and the auto-reply a courtesy: a broken desk template must not
        # roll the ticket back (and fail every new mail). queue_mail adds its row last, so nothing half-made
        # is left in the session; the spool row's reason says why nothing was sent.
        ctx.reason = f"auto-reply not queued: {type(exc).__name__}: {exc}"[:2000]
        return None
    ctx.queued.append(row)
    return None
