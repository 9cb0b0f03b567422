"""policy: the desk's rules about joining the ticket that thread found.

- Hijack guard: a mail that matched only by the `[NUMBER]` in its subject, from someone who is not a
  participant of that ticket, does not join it: it opens a new ticket linked to that one, with a note.
- Closed tickets: a customer reply within the desk's reopen window reopens it (apply sets `open`);
  later, it opens a new ticket linked to the closed one."""

from __future__ import annotations

import datetime as dt

from maild.participants import is_participant
from pipeline.context import Context, Stop


def _open_linked_instead(ctx: Context, note: str) -> None:
    ctx.linked_ticket, ctx.ticket, ctx.threaded_by = ctx.ticket, None, "new"
    ctx.notes.append(note)


def run(ctx: Context) -> Stop | None:
    mail, ticket = ctx.require_mail(), ctx.ticket
    if ticket is None or ctx.agent is not None:
        return None
    if (
        ctx.threaded_by == "subject"
        and ticket.desk.hijack_guard
        and not is_participant(ticket, mail.from_address)
    ):
        _open_linked_instead(
            ctx,
            f"{mail.from_address} quoted {ticket.number} in the subject but is not on that ticket, "
            "so this mail opened a new one",
        )
        return None
    if ticket.status == "closed":
        window = dt.timedelta(days=ticket.desk.reopen_days)
        if ctx.now_naive - ticket.updated_at > window:
            _open_linked_instead(
                ctx,
                f"follow-up to {ticket.number}, closed more than {ticket.desk.reopen_days} days ago",
            )
    return None
