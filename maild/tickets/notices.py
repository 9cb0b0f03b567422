"""Notices to agents: who is told of a ticket's mail, what of its attachments a notice carries, and the
notice kinds. The notify stage, replies, escalations and flood digests use them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.attachment_policy import MB
from maild.outbound.outgoing import OutgoingAttachment
from maild.storage import attachments as attachment_store
from maild.storage.db import is_transient
from maild.storage.models import Agent, Message, OutboxMessage, Ticket

NEW_TICKET_NOTICE = "new_ticket_notice"
CUSTOMER_REPLY_NOTICE = "customer_reply_notice"
ASSIGNED_NOTICE = "assigned_notice"

# An agent notice attaches the mail's files up to these limits and lists the rest by name (all are on
# the ticket): 5,000 parts must not become 5,000 attachments in every agent's inbox.
NOTICE_MAX_FILES = 10
NOTICE_MAX_BYTES = 25 * MB
# A sender with more than NOTICE_BURST customer mails on a desk within NOTICE_BURST_WINDOW: further mails
# from them are stored as usual, but agents get no notice of each (a system note on the ticket instead);
# each such mail is marked held (Message.notice_held_at) and maild.tickets.flood_digest tells the agents of
# them
# in one digest per agent.
NOTICE_BURST = 5
NOTICE_BURST_WINDOW = dt.timedelta(minutes=10)


def notice_recipients(session: Session, ticket: Ticket) -> list[Agent]:
    """The agents told about a ticket's mail: its assigned agent if active, else its category's active
    agents, else the desk's active agents."""
    if ticket.assigned_agent_id is not None:
        assignee = session.get(Agent, ticket.assigned_agent_id)
        if assignee is not None and assignee.active:
            return [assignee]
    # A ticket's category with active agents narrows the list to them; else every active desk agent.
    if ticket.category is not None:
        # (an agent who has left the desk may still be listed in its category)
        category_agents = [a for a in ticket.category.agents if a.active and ticket.desk in a.desks]
        if category_agents:
            return category_agents
    return sorted((a for a in ticket.desk.agents if a.active), key=lambda a: a.id)


def message_attachments(
    cfg: Config, message: Message | None, in_memory: dict[str, bytes] | None = None, *, capped: bool = True
) -> tuple[list[dict[str, Any]], list[OutgoingAttachment]]:
    """What the template lists about a message's attachments, and the kept ones' bytes. Refused ones are
    only listed, with the reason; so is a file the store lacks (never a reason to lose the notice).
    `in_memory` (sha256 → bytes): the mail being processed still holds its attachments, so they are not
    read back from the store (a 30 MB file once, not twice); a dry run writes no file anyway.
    `capped` (notices to agents): at most NOTICE_MAX_FILES files of NOTICE_MAX_BYTES in all are attached,
    the rest only listed; an agent's reply relayed to customers carries all its files."""
    listed: list[dict[str, Any]] = []
    files: list[OutgoingAttachment] = []
    total = 0
    for row in message.attachments if message is not None else []:
        reason = row.refused_reason
        if (
            reason is None
            and capped
            and (len(files) >= NOTICE_MAX_FILES or total + row.size > NOTICE_MAX_BYTES)
        ):
            reason = (
                f"over the notice's limit of {NOTICE_MAX_FILES} files / {NOTICE_MAX_BYTES // MB} MB "
                "(the file is on the ticket)"
            )
        if reason is None and row.sha256:
            data = (in_memory or {}).get(row.sha256)
            if data is None:
                try:
                    data = attachment_store.path_of(cfg.attachment_dir, row.sha256).read_bytes()
                except FileNotFoundError:
                    data = None
            if data is None:
                reason = "missing from the attachment store"
            else:
                files.append(OutgoingAttachment(row.filename, row.content_type, data))
                total += len(data)
        listed.append(
            {
                "filename": row.filename,
                "content_type": row.content_type,
                "size": row.size,
                "refused_reason": reason or "",
            }
        )
    return listed, files


def queue_courtesy(
    session: Session, queue: Callable[[dict[str, str]], OutboxMessage | None], what: str, done: list[str]
) -> int | None:
    """Queue one mail a scheduled job sends (an escalation's notice or reminder, a flood digest); what went
    wrong goes into `done`, and never undoes the job's work: a broken desk template must not make the job
    fail on every run. Database trouble is raised. The queued row's id, or None."""
    dropped: dict[str, str] = {}
    try:
        row = queue(dropped)
    except Exception as exc:
        if is_transient(exc):
            raise
        done.append(f"{what} not sent: {type(exc).__name__}: {exc}"[:500])
        return None
    if dropped:
        who = ", ".join(f"{address} ({why})" for address, why in dropped.items())
        done.append(f"{what} not sent to {who}")
    if row is None:
        return None
    session.flush()  # the row's id, for the job to send it right away
    return row.id
