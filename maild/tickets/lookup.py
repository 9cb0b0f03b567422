"""Finding things the same way everywhere: the ticket a merged number leads to, the addresses a mail was
sent to, an agent named by address or name.

Each rule is written once, here, and used by the pipeline stages, the ticket services and maildctl.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.mail.addresses import normalize
from maild.mail.mailparse import ParsedMail
from maild.storage.models import Agent, Desk, Ticket

# A chain of merges is short; the bound (and the stop at a ticket seen before) only guards against a
# cycle, which would be a bug elsewhere: stop, do not spin.
MAX_MERGE_HOPS = 50


def merge_chain(ticket: Ticket) -> list[Ticket]:
    """`ticket` and each ticket it was merged into, merges of merges followed: the last is the survivor."""
    chain = [ticket]
    while len(chain) <= MAX_MERGE_HOPS:
        into = chain[-1].merged_into
        if into is None or any(into is seen for seen in chain):
            break
        chain.append(into)
    return chain


def survivor_of(ticket: Ticket) -> Ticket:
    """The ticket `ticket` was merged into, following merges of merges; `ticket` itself if never merged.
    Mail to a merged number lands there, and maildctl shows and changes it."""
    return merge_chain(ticket)[-1]


ENVELOPE = "envelope recipient"
DELIVERED_TO = "Delivered-To/X-Original-To"


def addressed_to(envelope_recipient: str, mail: ParsedMail) -> list[tuple[str, str]]:
    """(where, address) for each address the mail was sent to, in the order maild tries them: the
    envelope recipient, then Delivered-To/X-Original-To, To and Cc. `where` names the source."""
    headers = [
        *((DELIVERED_TO, a) for a in mail.delivered_to),
        *(("To", a) for _, a in mail.to),
        *(("Cc", a) for _, a in mail.cc),
    ]
    return [(ENVELOPE, envelope_recipient), *headers] if envelope_recipient else headers


def recipient_candidates(envelope_recipient: str, mail: ParsedMail, *, envelope_decides: bool) -> list[str]:
    """The addresses a mail was sent to, in the order maild tries them (addressed_to). `envelope_decides`:
    an envelope recipient, when there is one (LMTP/SMTP, a pipe with --recipient), is the only candidate;
    the headers count only without one (IMAP, a pipe without --recipient)."""
    if envelope_decides and envelope_recipient:
        return [envelope_recipient]
    return [address for _, address in addressed_to(envelope_recipient, mail)]


def matching_agents(
    session: Session, who: str, *, active_only: bool, desk: Desk | None = None
) -> list[Agent]:
    """The agents `who` names: by address, or by name or display name (case-insensitive), in id order.
    `active_only`: inactive agents are not considered. `desk`: of several agents a name fits, those of
    this desk, so two desks' "Anna"s do not make the name ambiguous on either."""
    query = select(Agent).order_by(Agent.id)
    if active_only:
        query = query.where(Agent.active.is_(True))
    agents = list(session.scalars(query))
    if "@" in who:
        return [a for a in agents if a.email == normalize(who)]
    wanted = who.strip().lower()
    found = [a for a in agents if wanted in (a.name.strip().lower(), a.display_name.strip().lower())]
    if desk is not None:
        found = [a for a in found if desk in a.desks] or found
    return found
