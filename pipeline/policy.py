"""policy: the desk's rules about joining the ticket that thread found.

- Hijack guard: a mail that matched only by the `[NUMBER]` in its subject, from someone who is not a
  participant of that ticket, does not join it: it opens a new ticket linked to that one, with a note.
- Closed tickets: a customer reply within the desk's reopen window reopens it (apply sets `open`);
  later, it opens a new ticket linked to the closed one.
- New tickets by mail: `clients_only` refuses senders who were not contacts before (silently: no
  backscatter to strangers); `replies_only` refuses everyone, answering with `replies_only_refusal`.
  Replies to existing tickets pass both."""

from __future__ import annotations

import datetime as dt

from maild.pipeline.context import Context, Refusal, Stop
from maild.tickets.participants import is_participant


def _open_linked_instead(ctx: Context, note: str) -> None:
    ctx.linked_ticket, ctx.ticket, ctx.threaded_by = ctx.ticket, None, "new"
    ctx.notes.append(note)


def _refuse_new_ticket(ctx: Context) -> Stop | None:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    if desk.clients_only and not ctx.known_sender:
        template = None  # silently: no backscatter to strangers
        verdict = Stop("refused", f"clients_only: {mail.from_address} is not a known contact of {desk.name}")
    elif desk.replies_only:
        template = "replies_only_refusal"
        verdict = Stop("refused", f"replies_only: {desk.name} takes replies to existing tickets only")
    else:
        return None
    # A refused mail makes no new contact (it leaves only its spool record); notify sends the answer.
    ctx.refusal = Refusal(template)
    return verdict


def _check_follow_up(ctx: Context) -> None:
    """Turn a follow-up that must not join its ticket into a new, linked one."""
    mail, ticket = ctx.require_mail(), ctx.ticket
    if ticket is None or ctx.agent is not None:
        return
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
        return
    if ticket.status == "closed":
        window = dt.timedelta(days=ticket.desk.reopen_days)
        if ctx.now_naive - ticket.updated_at > window:
            _open_linked_instead(
                ctx,
                f"follow-up to {ticket.number}, closed more than {ticket.desk.reopen_days} days ago",
            )


def run(ctx: Context) -> Stop | None:
    if ctx.agent_mail is not None:
        return None  # an agent's desk command: pipeline/agent_mail.py
    if ctx.desk_reply:
        if ctx.ticket is None:
            return Stop("looped", "the desk's own mail, following no ticket")
        return None
    _check_follow_up(ctx)
    if ctx.ticket is None and ctx.agent is None:
        return _refuse_new_ticket(ctx)
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    if ctx.linked_ticket is not None:
        notes = "; ".join(ctx.notes) or "policy refused the follow-up"
        return f"{notes}: would open a new ticket linked to {ctx.linked_ticket.number}"
    ticket = ctx.ticket
    if ticket is None:
        return "new ticket: no rule applies"
    if ctx.agent is not None:
        return f"agent mail joins {ticket.number}: the customer rules do not apply"
    if ticket.status == "closed":
        return (
            f"{ticket.number} is closed but within the desk's {ticket.desk.reopen_days}-day reopen window: "
            "the reply reopens it"
        )
    return f"joins {ticket.number} (status {ticket.status})"
