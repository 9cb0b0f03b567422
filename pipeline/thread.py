"""thread: is this a follow-up of an existing ticket?

In order: a signed reply address (`desk+token@`) among the recipients, In-Reply-To/References against
every Message-ID we stored (inbound) or sent (outbox), then a `[NUMBER]` tag of any desk's pattern, current
or retired (`desk set --pattern`, `desk remove --move-to`), in the subject; otherwise the mail opens a new
ticket. The rule that matched is recorded on the message (`threaded_by`). A ticket found by any rule that
was merged into another leads to the survivor.

Hijack guard for the headers (the desk's `hijack_guard`, default on): a Message-ID proves nothing, it is in
every copy of a mail and every quote of it. A mail found by In-Reply-To/References from someone who is
not a participant of that ticket (its customer or a sub-customer; agents are identified before this)
does not join it: it opens a new ticket linked to that one, with a note, exactly as policy does for a
`[NUMBER]` in the subject, and agents can merge the two. The signed reply address still threads anyone:
it proves the mail we sent arrived there."""

from __future__ import annotations

from maild.pipeline.context import Context, Stop
from maild.pipeline.ticket_search import find_ticket
from maild.tickets.participants import is_participant


def _guard_references(ctx: Context) -> None:
    """A stranger's follow-up by headers opens a new ticket linked to the one it names (see above)."""
    mail, ticket = ctx.require_mail(), ctx.ticket
    if (
        ticket is None
        or ctx.threaded_by != "references"
        or ctx.agent is not None
        or ctx.desk_reply  # the desk's own old reply, imported: it answers the ticket it names
        or not ticket.desk.hijack_guard
        or is_participant(ticket, mail.from_address)
    ):
        return
    # What policy does for the subject rule: policy then sees a new ticket (clients_only, replies_only
    # apply to it) and apply links it to this one.
    ctx.linked_ticket, ctx.ticket, ctx.threaded_by = ticket, None, "new"
    ctx.notes.append(
        f"{mail.from_address} answered a mail of {ticket.number} (In-Reply-To/References) but is not on "
        "that ticket, so this mail opened a new one"
    )


def run(ctx: Context) -> Stop | None:
    if ctx.agent_mail is not None:
        return None  # an agent's desk command: pipeline/agent_mail.py
    ctx.ticket, ctx.threaded_by = find_ticket(ctx)
    _guard_references(ctx)
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    ticket = ctx.ticket
    if ticket is None or ctx.threaded_by == "new":
        return (
            "new ticket: no signed reply address, no known In-Reply-To/References, "
            "no [NUMBER] of an existing ticket in the subject"
        )
    # A rule found a ticket that was merged: the number it matched is the first one passed on the way.
    matched = ctx.redirected_from[0] if ctx.redirected_from else ticket.number
    merged = f" ({' → '.join([*ctx.redirected_from, ticket.number])}: merged)" if ctx.redirected_from else ""
    if ctx.threaded_by == "token":
        via = ctx.reply_address or "?"
        return f"threaded by token to {ticket.number} via the signed reply address {via}{merged}"
    if ctx.threaded_by == "references":
        return f"threaded by references to {ticket.number} via {ctx.thread_reference or '?'}{merged}"
    if ctx.threaded_by == "subject":
        return f"threaded by subject to {ticket.number} ([{matched}] in the subject){merged}"
    return f"threaded by {ctx.threaded_by} to {ticket.number}{merged}"
