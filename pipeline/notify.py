"""notify: queue what this mail calls for: the `ticket_created` auto-reply to the customer (and
sub-customers) of a new ticket, threaded to their mail, unless the desk has auto-replies off. Also the
answer to a refused mail (policy). A reply that cannot be rendered is noted on the spool row, never a
reason to lose the ticket.

Automatic mail (the autoreply stage's ctx.automatic) is never answered automatically: two robots would
answer each other forever. maild.outgoing drops bouncing, blocked and rate-limited recipients; what was
left out, and why, goes into the spool row's reason."""

from __future__ import annotations

from collections.abc import Callable

from maild.outgoing import queue_desk_mail, queue_mail
from maild.participants import customer_recipients
from pipeline.context import Context, Stop
from storage.db import is_transient
from storage.models import OutboxMessage


def _note(ctx: Context, note: str) -> None:
    ctx.reason = f"{ctx.reason}; {note}"[:2000] if ctx.reason else note[:2000]


def _queue_courtesy(ctx: Context, queue: Callable[[dict[str, str]], OutboxMessage | None]) -> None:
    dropped: dict[str, str] = {}
    try:
        row = queue(dropped)
    except Exception as exc:
        if is_transient(exc):
            raise
        # The ticket is the customer's mail and the auto-reply a courtesy: a broken desk template must not
        # roll the ticket back (and fail every new mail). queue_mail adds its rows last, so nothing half-made
        # is left in the session; the spool row's reason says why nothing was sent.
        _note(ctx, f"auto-reply not queued: {type(exc).__name__}: {exc}")
        return
    if dropped:
        who = ", ".join(f"{address} ({why})" for address, why in dropped.items())
        _note(ctx, f"auto-reply {'not queued' if row is None else 'not sent'} to {who}")
    if row is not None:
        ctx.queued.append(row)


def _automatic(ctx: Context) -> bool:
    """Automatic mail gets no automatic answer; the spool row says why none was sent."""
    if ctx.automatic is None:
        return False
    _note(ctx, f"not answered: automatic mail ({ctx.automatic}: {ctx.automatic_reason})")
    return True


def answer_refused(ctx: Context, template: str) -> None:
    """Tell the sender of a refused mail why (policy's replies_only), unless the desk answers nothing or
    the sender is a robot."""
    mail, desk = ctx.require_mail(), ctx.require_desk()
    if not desk.auto_reply or _automatic(ctx):
        return
    _queue_courtesy(
        ctx,
        lambda dropped: queue_desk_mail(
            ctx.session,
            ctx.cfg,
            desk,
            template,
            [(mail.from_name, mail.from_address)],
            in_reply_to=mail.message_id if mail.has_message_id else "",
            references=mail.references,
            automatic=True,
            now=ctx.now,
            variables={
                "customer_name": mail.from_name or mail.from_address,
                "original_subject": mail.subject or "(no subject)",
            },
            dropped=dropped,
        ),
    )


def run(ctx: Context) -> Stop | None:
    mail, desk, ticket = ctx.require_mail(), ctx.require_desk(), ctx.ticket
    if ctx.outcome != "created" or not desk.auto_reply or ticket is None or _automatic(ctx):
        return None
    customer, sub_customers = customer_recipients(ticket)
    _queue_courtesy(
        ctx,
        lambda dropped: queue_mail(
            ctx.session,
            ctx.cfg,
            ticket,
            "ticket_created",
            [customer],
            cc=sub_customers,
            in_reply_to=mail.message_id if mail.has_message_id else "",
            references=mail.references,
            automatic=True,
            now=ctx.now,
            dropped=dropped,
        ),
    )
    return None
