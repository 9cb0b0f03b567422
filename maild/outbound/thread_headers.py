"""How our mail threads in the customer's client: the References chain built from a ticket's own history,
and the Thread-Topic / Thread-Index every mail of the ticket carries, so Outlook, Gmail and Apple Mail show
the ticket as one conversation whichever of our mails they answer."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.mail.addresses import domain_of
from maild.storage.models import Desk, Message, OutboxMessage, Ticket

# RFC 5322 §3.6.4 sets no limit, but MTAs and clients choke on huge headers; trim as news and mail
# clients do (RFC 5537 §3.4.4): keep the first id (the root) and the newest ones.
MAX_REFERENCES = 20
MAX_REFERENCES_CHARS = 2000

# Ids that name nothing on the customer's side: our system notes, and the stand-ins mailparse makes for a
# mail without a Message-ID or with an overlong one.
_SYNTHETIC_ID_SUFFIXES = (
    "@maild.invalid>",
    "@no-message-id.maild>",
    "@long-message-id.maild>",
    "@reused-message-id.maild>",
)
# Never sent to customers as such: notes and system notes stay inside; an agent's mail (and a held one) is
# relayed under a Message-ID of ours, so its client's id would name a mail no customer saw.
_UNSTORED_KINDS = ("system", "note", "agent", "held")
# Mail to agents only: kept out of the References of later ticket mail, which customers get too (the
# ids would name mails they never saw). Notices still thread, on the customer mail they quote.
AGENT_ONLY_TEMPLATES = (
    "new_ticket_notice",
    "customer_reply_notice",
    "assigned_notice",
    "agent_reply_notice",
    "collision_notice",
    "command_errors",
    "escalation_notice",
    "flag_notice",
    "flood_digest_notice",
    "quarantine_digest_notice",
    "desk_command_answer",
)

# Reply and forward prefixes of the common clients' languages; Outlook's Thread-Topic has none.
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|aw|fw|fwd|wg|sv|vs|antw|tr|rif)\s*(?:\[\d+\])?\s*:\s*)+", re.I)
_THREAD_NAMESPACE = uuid.UUID("6f1c3d52-8a47-4f1e-9d1b-7c2b5a0e9f31")  # maild's own, for Thread-Index GUIDs
_FILETIME_EPOCH = dt.datetime(1601, 1, 1)


def _is_real_id(message_id: str) -> bool:
    return bool(message_id) and not message_id.endswith(_SYNTHETIC_ID_SUFFIXES)


def ticket_history(session: Session, ticket: Ticket) -> list[str]:
    """Message-IDs of the ticket's mail, in and out, oldest first. Inbound and outbound rows interleave by
    time; on a tie the inbound one goes first (an auto-reply carries the time of the mail it answers)."""
    inbound = session.execute(
        select(Message.created_at, Message.id, Message.message_id).where(
            Message.ticket_id == ticket.id, Message.kind.not_in(_UNSTORED_KINDS)
        )
    )
    outbound = session.execute(
        select(OutboxMessage.created_at, OutboxMessage.id, OutboxMessage.message_id).where(
            OutboxMessage.ticket_id == ticket.id, OutboxMessage.template.not_in(AGENT_ONLY_TEMPLATES)
        )
    )
    rows = [(at, 0, row_id, mid) for at, row_id, mid in inbound]
    rows += [(at, 1, row_id, mid) for at, row_id, mid in outbound]
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return [mid for *_, mid in rows]


def _merge(history: Sequence[str], given: Sequence[str]) -> list[str]:
    """The ticket's history with the caller's references woven in, each list keeping its own order: ids
    the ticket does not know go before the first id it knows (they are older, e.g. the thread a new ticket
    was a reply to) or right after the last known id that precedes them."""
    known = set(history)
    before: list[str] = []
    after: dict[str, list[str]] = {}
    anchor: str | None = None
    for mid in given:
        if mid in known:
            anchor = mid
        elif anchor is None:
            before.append(mid)
        else:
            after.setdefault(anchor, []).append(mid)
    return [*before, *(m for known_id in history for m in (known_id, *after.get(known_id, [])))]


def cap_references(chain: Sequence[str]) -> list[str]:
    """The root and as many of the newest ids as fit in MAX_REFERENCES ids / MAX_REFERENCES_CHARS."""
    if len(chain) <= MAX_REFERENCES and len(" ".join(chain)) <= MAX_REFERENCES_CHARS:
        return list(chain)
    root, newest_first = chain[0], list(reversed(chain[1:]))
    kept: list[str] = []
    size = len(root)
    for mid in newest_first:
        if len(kept) + 2 > MAX_REFERENCES or size + 1 + len(mid) > MAX_REFERENCES_CHARS:
            break
        kept.append(mid)
        size += 1 + len(mid)
    return [root, *reversed(kept)]


def thread_chain(
    history: Sequence[str], references: Sequence[str], in_reply_to: str
) -> tuple[str, list[str]]:
    """(In-Reply-To, References): de-duplicated, oldest first, the answered id last; without an explicit
    one the mail answers the newest id, so Gmail (which needs In-Reply-To or References) still threads it."""
    real_history = [mid for mid in history if _is_real_id(mid)]
    real_references = [mid for mid in references if _is_real_id(mid)]
    in_reply_to = in_reply_to if _is_real_id(in_reply_to) else ""
    chain = [mid for mid in dict.fromkeys(_merge(real_history, real_references)) if mid != in_reply_to]
    if in_reply_to:
        chain.append(in_reply_to)
    chain = cap_references(chain) if chain else []
    return (in_reply_to or (chain[-1] if chain else "")), chain


def thread_topic(ticket: Ticket) -> str:
    """The subject a conversation is known by: the ticket's, without our tag and reply prefixes."""
    topic = ticket.subject.replace(f"[{ticket.number}]", " ")
    return " ".join(_SUBJECT_PREFIX.sub("", topic).split()) or ticket.number


def thread_index(ticket: Ticket, desk: Desk) -> str:
    """Outlook's Thread-Index of a conversation's first mail: 6 bytes of FILETIME (the ticket's creation;
    its top byte is 0x01 from 1829 to 2057) and a GUID, here a uuid5 of the ticket number under the
    desk's domain. Derived, not stored, so it is the same on every mail of the ticket; Outlook groups by
    these 22 bytes."""
    # Integer arithmetic: a float has too few digits for 100-ns ticks since 1601.
    ticks = (ticket.created_at - _FILETIME_EPOCH) // dt.timedelta(microseconds=1) * 10
    header = ticks.to_bytes(8, "big")[:6]
    guid = uuid.uuid5(_THREAD_NAMESPACE, f"{ticket.number}@{domain_of(desk.primary_address)}")
    return base64.b64encode(header + guid.bytes).decode("ascii")
