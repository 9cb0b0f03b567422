"""Flood digests (scheduler job `flood_digest`): a sender with more than NOTICE_BURST customer mails on a
desk within NOTICE_BURST_WINDOW gets no agent notice per mail after that (pipeline.notify); each such mail
is marked held (Message.notice_held_at). This job tells the agents of them: per (desk, sender) whose flood
is over (the latest held mail is QUIET_AFTER old) or has lasted a window (the oldest held one is
NOTICE_BURST_WINDOW old), one `flood_digest_notice` per agent who would have been told of any of the mails
(maild.tickets.notices.notice_recipients, the sender left out), listing the mails that agent would have
heard of (at most MAX_LISTED, then "and N more"). The mail threads on, and replies go to, the ticket of
the latest mail listed.

Exactly once even with two daemons on one database: each (desk, sender) is its own transaction that
re-reads the held mails under a row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE
serialises writers), queues the digests and clears the marks in that transaction. A digest that cannot be
composed (a broken desk template) is logged and its marks cleared all the same: it must not fail every
run."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import Agent, Message
from maild.tickets.notices import NOTICE_BURST, NOTICE_BURST_WINDOW, notice_recipients, queue_courtesy
from maild.tickets.replies import queue_agent_notice

TEMPLATE = "flood_digest_notice"
INTERVAL_SECONDS = 60.0  # how often `maild serve` runs the job (not configurable)
QUIET_AFTER = dt.timedelta(minutes=1)  # no held mail from the sender for this long: the flood is over
MAX_LISTED = 50  # mails listed per digest; the rest are counted
BATCH = 200  # (desk, sender) groups per run; the next run takes the rest

log = logging.getLogger("maild.flood_digest")


@dataclass
class DigestResult:
    digests: list[tuple[int, str, int]] = field(default_factory=list)  # (desk id, sender, mails held)
    outbox_ids: list[int] = field(default_factory=list)


def _sender() -> Any:
    return func.lower(Message.from_address)


def _due_groups(session: Session, now: dt.datetime) -> list[tuple[int, str]]:
    """The (desk id, sender) pairs with held notices that are due, oldest flood first."""
    query = (
        select(Message.desk_id, _sender())
        .where(Message.notice_held_at.is_not(None))
        .group_by(Message.desk_id, _sender())
        .having(
            or_(
                func.max(Message.notice_held_at) <= now - QUIET_AFTER,
                func.min(Message.notice_held_at) <= now - NOTICE_BURST_WINDOW,
            )
        )
        .order_by(func.min(Message.notice_held_at))
        .limit(BATCH)
    )
    return [(desk_id, sender) for desk_id, sender in session.execute(query)]


def _is_due(held: Sequence[Message], now: dt.datetime) -> bool:
    marks = [m.notice_held_at for m in held if m.notice_held_at is not None]
    return bool(marks) and (max(marks) <= now - QUIET_AFTER or min(marks) <= now - NOTICE_BURST_WINDOW)


def _listed(message: Message) -> dict[str, str]:
    return {
        "ticket_number": message.ticket.number,
        "subject": message.subject,
        "at": message.created_at.strftime("%Y-%m-%d %H:%M UTC"),
    }


def _digest(
    session: Session, cfg: Config, desk_id: int, sender: str, now: dt.datetime
) -> tuple[int, list[int]] | None:
    """Queue the digests of `sender`'s held mails on the desk and clear their marks: (mails, outbox ids);
    None when there is nothing (left) to digest or it is not due any more."""
    # populate_existing: the marks as read under the lock, never ones loaded earlier in this session.
    held = list(
        session.scalars(
            select(Message)
            .where(
                Message.desk_id == desk_id,
                _sender() == sender,
                Message.notice_held_at.is_not(None),
            )
            .order_by(Message.created_at, Message.id)
            .options(selectinload(Message.ticket))
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    )
    if not _is_due(held, now):
        return None
    # Who would have been told of each mail: its ticket's notice recipients, not the sender themself.
    agents: dict[int, Agent] = {}
    mails: dict[int, list[Message]] = {}
    recipients: dict[int, list[Agent]] = {}
    for message in held:
        if message.ticket_id not in recipients:
            recipients[message.ticket_id] = [
                a for a in notice_recipients(session, message.ticket, now=now) if a.email != sender
            ]
        for agent in recipients[message.ticket_id]:
            agents[agent.id] = agent
            mails.setdefault(agent.id, []).append(message)
    outbox_ids: list[int] = []
    for agent_id, theirs in mails.items():
        row_id = _queue(session, cfg, agents[agent_id], sender, theirs, now)
        if row_id is not None:
            outbox_ids.append(row_id)
    for message in held:
        message.notice_held_at = None
    session.flush()
    return len(held), outbox_ids


def _queue(
    session: Session, cfg: Config, agent: Agent, sender: str, mails: Sequence[Message], now: dt.datetime
) -> int | None:
    latest = mails[-1]
    variables = {
        "sender_name": latest.from_name,
        "sender_email": sender,
        "held_mails": [_listed(m) for m in mails[:MAX_LISTED]],
        "held_count": len(mails),
        "held_more": max(0, len(mails) - MAX_LISTED),
        "burst_limit": NOTICE_BURST,
        "burst_minutes": int(NOTICE_BURST_WINDOW.total_seconds() // 60),
    }
    problems: list[str] = []
    row_id = queue_courtesy(
        session,
        lambda dropped: queue_agent_notice(
            session,
            cfg,
            latest.ticket,
            TEMPLATE,
            agent,
            now=now.replace(tzinfo=dt.UTC),
            variables=variables,
            dropped=dropped,
        ),
        f"flood digest about {sender} to {agent.email}",
        problems,
    )
    for problem in problems:
        log.warning("%s", problem)
    return row_id


def send_flood_digests(
    factory: sessionmaker[Session], cfg: Config, now: dt.datetime | None = None
) -> DigestResult:
    """One run. `now` is naive UTC (tests pass their own)."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    result = DigestResult()
    with factory() as session:
        groups = _due_groups(session, now)
    for desk_id, sender in groups:
        with transaction(factory) as session:
            done = _digest(session, cfg, desk_id, sender, now)
        if done is not None:
            result.digests.append((desk_id, sender, done[0]))
            result.outbox_ids += done[1]
    return result
