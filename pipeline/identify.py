"""identify: the sender is an authenticated agent, or a contact (one per address, case-insensitive, name
kept).

An agent reply counts only when all of these hold: the mail came to a signed reply (or note) address whose
token names an agent, that agent is active, the From header names exactly one address and it is that
agent's, a Sender header (when there is one) names that same address and no other, and no MTA trusted by
`[agents] trusted_authserv_ids` recorded a DKIM, SPF or DMARC failure. Agent-looking mail that fails any of
them (a stolen token with a forged or different From, an agent's From without an agent token, a failed
signature) is held: kept in the spool with the reason and noted on the ticket, never relayed, its
commands never run. A token without an agent (the customers' reply address) is a customer's reply.

A From of several addresses (`agent@example.com, attacker@evil.test`, or two From lines) or a Sender
other than the From is not an agent's reply even with a valid agent token: whoever else is named may
have written it, and DKIM signs for a domain, not for one of two authors. Such mail is held like the
rest, not taken as a customer's mail: as a customer's it would put a text under the agent's address on
the ticket (and reopen it), which is what the holding prevents; held, an agent sees the note and can
answer again from their own client. Mail that looks like no agent's (no agent token, no agent's address
first in From) is a customer's or a stranger's as before, its sender the first From address."""

from __future__ import annotations

from sqlalchemy import select

from maild.mail.addresses import normalize
from maild.mail.authresults import auth_failures
from maild.mail.tokens import ReplyTarget, load_secret, read_reply_address
from maild.pipeline.context import Context, Stop
from maild.pipeline.ticket_search import find_ticket
from maild.storage.models import Agent, Message, Ticket
from maild.tickets.lookup import recipient_candidates
from maild.tickets.participants import find_contact


def _reply_target(ctx: Context) -> tuple[ReplyTarget, bool] | None:
    """The first signed reply address among the envelope recipient and the addressee headers."""
    mail = ctx.require_mail()
    secret = load_secret(ctx.cfg.data_dir)
    for address in recipient_candidates(ctx.spool.recipient, mail, envelope_decides=False):
        found = read_reply_address(secret, address)
        if found is not None:
            ctx.reply_address = address
            return found
    return None


def _refusal(ctx: Context, sender: Agent | None) -> str | None:
    """Why this agent-looking mail is not an agent reply, or None when it is one."""
    mail, target = ctx.require_mail(), ctx.reply_target
    if target is None or target.agent_id is None:
        return (
            f"From {mail.from_address} is an agent's address, but the mail did not come to an agent's "
            "reply address (agents answer by replying to a notification)"
        )
    owner = ctx.session.get(Agent, target.agent_id)
    if owner is None:
        return f"the reply address names agent #{target.agent_id}, who no longer exists"
    authors = _other_authors(ctx)
    if authors is not None:
        return f"{owner.email}'s reply address was used by a mail whose {authors}"
    if normalize(mail.from_address) != owner.email:
        return f"{owner.email}'s reply address was used by {mail.from_address or '(no From)'}"
    if sender is None:
        return f"{owner.email} is not an active agent"
    failures = auth_failures(ctx.headers, ctx.cfg.agents.trusted_authserv_ids)
    if failures:
        return "authentication failed: " + "; ".join(failures)
    return None


def _other_authors(ctx: Context) -> str | None:
    """Why the mail may be someone else's besides its first From address, or None: an agent's reply has
    exactly one From address and no Sender but that one."""
    mail = ctx.require_mail()
    authors = list(dict.fromkeys(normalize(a) for a in mail.from_addresses))
    if len(authors) != 1:
        named = ", ".join(authors) or "nobody"
        return f"From names {len(authors)} addresses ({named}), an agent's reply exactly one"
    senders = set(map(normalize, mail.sender_addresses))
    if senders and senders != {authors[0]}:
        return f"Sender ({', '.join(sorted(senders))}) is not the From address {authors[0]}"
    return None


def _hold(ctx: Context, reason: str) -> Stop:
    """Keep the mail for review: the spool row says why; the ticket it follows up (by its token, else by
    the thread rules: an agent answering a customer directly with the desk in Cc) gets a system note
    (ctx.held_note, which apply adds)."""
    mail, target = ctx.require_mail(), ctx.reply_target
    if target is not None:
        ticket = ctx.session.get(Ticket, target.ticket_id)
    else:
        ticket, _ = find_ticket(ctx)
    if ticket is not None:
        ctx.ticket = ticket
        note = (
            f"A mail claiming to be an agent's reply was held for review "
            f"(Message-ID {mail.message_id}): {reason}"
        )
        already = ctx.session.scalars(
            select(Message.id).where(
                Message.ticket_id == ticket.id, Message.kind == "system", Message.text == note
            )
        ).first()
        if already is None:  # a re-delivery of the same mail adds no second note (apply adds it)
            ctx.held_note = note
    return Stop("held", f"not accepted as an agent reply: {reason}")


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    if ctx.agent_mail is not None:
        return None  # an agent's desk command: pipeline/agent_mail.py
    if ctx.desk_reply:
        return None  # the desk itself: neither an agent nor a contact
    found = _reply_target(ctx)
    ctx.reply_target, ctx.to_note_address = found if found is not None else (None, False)
    sender = ctx.session.scalars(
        select(Agent).where(Agent.email == normalize(mail.from_address), Agent.active.is_(True))
    ).first()
    token_names_agent = ctx.reply_target is not None and ctx.reply_target.agent_id is not None
    if sender is not None or token_names_agent:
        reason = _refusal(ctx, sender)
        if reason is not None:
            return _hold(ctx, reason)
        ctx.agent = sender
        return None
    # Known before this mail? (clients_only lets only known contacts open tickets.)
    ctx.customer_sender = True
    ctx.contact = find_contact(ctx.session, mail.from_address)  # a new one is made by apply
    ctx.known_sender = ctx.contact is not None
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    mail = ctx.require_mail()
    if ctx.agent is not None:
        where = "note address" if ctx.to_note_address else "reply address"
        return f"sender {mail.from_address} is agent {ctx.agent.name}, writing to their {where}"
    if ctx.customer_sender:
        return f"sender {mail.from_address} is a contact ({'known' if ctx.known_sender else 'new'})"
    return f"sender {mail.from_address} not identified"
