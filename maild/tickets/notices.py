"""Notices to agents: who is told of a ticket's mail, what of its attachments a notice carries, and the
notice kinds. The notify stage, replies, escalations and flood digests use them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.attachment_policy import MB
from maild.outbound.outgoing import OutgoingAttachment
from maild.storage import attachments as attachment_store
from maild.storage.db import is_transient
from maild.storage.models import Agent, Desk, Message, OutboxMessage, Ticket
from maild.tickets.presence import is_present, present_agents

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


# What a desk does when none of its agents is present (desks.when_nobody_present, `desk set
# --when-nobody-present`): tell every active agent anyway, as if nobody were away (the default), or tell
# nobody and send the customer the desk's desk_unavailable mail, once per ticket.
NOTIFY_ALL = "notify-all"
DESK_UNAVAILABLE = "desk-unavailable"
WHEN_NOBODY_PRESENT = (NOTIFY_ALL, DESK_UNAVAILABLE)
DESK_UNAVAILABLE_TEMPLATE = "desk_unavailable"


@dataclass(frozen=True)
class NoticeTargets:
    agents: list[Agent]  # who gets the notice
    desk_unavailable: bool  # nobody present and the desk says so: the customer may get desk_unavailable


def notice_targets(session: Session, ticket: Ticket, *, now: dt.datetime) -> NoticeTargets:
    """The one answer to "who is told of this ticket's mail" (the notify stage, agents' replies and notes,
    escalations, flood digests, a customer closing on the web): its assigned agent if present, else its
    category's present agents, else the desk's present agents (maild.tickets.presence); with nobody
    present, the desk's `when_nobody_present` decides."""
    assignee = session.get(Agent, ticket.assigned_agent_id) if ticket.assigned_agent_id else None
    if assignee is not None and is_present(assignee, now):
        return NoticeTargets([assignee], False)
    present = present_agents(ticket, now)
    if present:
        return NoticeTargets(present, False)
    if ticket.desk.when_nobody_present == DESK_UNAVAILABLE:
        return NoticeTargets([], True)
    return NoticeTargets(_active_recipients(ticket, assignee), False)


def notice_recipients(session: Session, ticket: Ticket, *, now: dt.datetime) -> list[Agent]:
    """The agents told about a ticket's mail (see notice_targets)."""
    return notice_targets(session, ticket, now=now).agents


def desk_recipients(desk: Desk, *, now: dt.datetime) -> list[Agent]:
    """The agents told of a desk's mail about no one ticket (bounce notices, quarantine digests): its
    present agents; with nobody present, every active one (notify-all) or nobody (desk-unavailable)."""
    present = sorted((a for a in desk.agents if is_present(a, now)), key=lambda a: a.id)
    if present or desk.when_nobody_present == DESK_UNAVAILABLE:
        return present
    return sorted((a for a in desk.agents if a.active), key=lambda a: a.id)


def _active_recipients(ticket: Ticket, assignee: Agent | None) -> list[Agent]:
    """Who is told when presence is set aside (notify-all with nobody present): its assigned agent if
    active, else its category's active agents, else the desk's active agents."""
    if assignee is not None and assignee.active:
        return [assignee]
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
