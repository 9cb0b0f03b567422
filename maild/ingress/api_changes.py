"""The JSON API's changes to one ticket (issue 19), each in the caller's transaction (a pool thread of
maild.ingress.web): the same checks (maild.tickets.ticket_checks) and services (ticket_ops, replies) as
`maildctl ticket status|priority|assign|tag|untag|note|reply`, audited with the actor `api:<token name>`,
then `after_changes` (the desk's rules, webhooks) before the commit, as every writer does.

Each answers like a row of `maildctl ticket bulk --json`: {ticket, action, before, after, changed}, with
a few fields more for a note or a reply. A merged number is a 409 here (maildctl changes its survivor and
says so on a line; an API client is told to act on the survivor itself)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import event
from sqlalchemy.orm import Session

from maild.config import Config
from maild.ingress.api_support import ApiError
from maild.storage.models import Agent, OutboxMessage, Ticket
from maild.tickets import ticket_ops
from maild.tickets.agent_open import OpenRefused, open_ticket
from maild.tickets.automation import after_changes
from maild.tickets.lookup import survivor_of
from maild.tickets.replies import queue_assigned_notice, send_reply
from maild.tickets.ticket_checks import agent_named, desk_named, priority_name, status_name, tag_name
from maild.tickets.ticket_views import show_json

# (session, cfg, ticket, value, actor, now) -> the answer's JSON
Change = Callable[[Session, Config, Ticket, Any, str, dt.datetime], dict[str, Any]]


@dataclass
class Done:
    """A committed change's answer, and the outbox rows it queued (sent at once, not at the next run)."""

    answer: dict[str, Any]
    outbox_ids: list[int] = field(default_factory=list)


def target(session: Session, number: str) -> Ticket:
    """The ticket a change acts on: 404 when there is none, 409 when it is merged into another."""
    ticket = ticket_ops.ticket_by_number(session, number)
    if ticket is None:
        raise ApiError(404, f"no ticket {number!r}")
    if ticket.merged_into_id is not None:
        survivor = survivor_of(ticket)
        raise ApiError(409, f"{ticket.number} is merged into {survivor.number}: act on {survivor.number}")
    return ticket


def run_change(
    session: Session, cfg: Config, change: Change, number: str, value: Any, actor: str, now: dt.datetime
) -> Done:
    """`change` on ticket `number`, then the rules and webhooks of what it changed."""

    def on_ticket(s: Session) -> dict[str, Any]:
        return change(s, cfg, target(s, number), value, actor, now)

    return run_write(session, cfg, on_ticket, now)


def run_write(
    session: Session, cfg: Config, write: Callable[[Session], dict[str, Any]], now: dt.datetime
) -> Done:
    """`write(session)` (any change of the API's: one ticket's, or a new ticket's), then `after_changes`
    (the desk's rules, the webhooks) before the commit the caller makes, collecting the mail it all
    queued. A handler runs it as `await pages.write(run_write, cfg, partial(its_change, …), now)`."""
    queued: list[OutboxMessage] = []

    def collect(flushing: Session, _context: object, _instances: object) -> None:
        queued.extend(o for o in flushing.new if isinstance(o, OutboxMessage))

    event.listen(session, "before_flush", collect)
    try:
        answer = write(session)
        after_changes(session, cfg, now)
        session.flush()
    finally:
        event.remove(session, "before_flush", collect)
    return Done(answer, [row.id for row in queued])


def _answer(ticket: Ticket, action: str, before: str, after: str, **more: Any) -> dict[str, Any]:
    return {
        "ticket": ticket.number,
        "action": action,
        "before": before,
        "after": after,
        "changed": before != after,
        **more,
    }


def set_status(
    session: Session, _cfg: Config, ticket: Ticket, wanted: str, actor: str, now: dt.datetime
) -> dict[str, Any]:
    status, before = status_name(session, ticket, wanted), ticket.status
    if before != status:
        ticket_ops.set_status(session, ticket, status, actor=actor, now=now)
    return _answer(ticket, "status", before, status)


def set_priority(
    session: Session, _cfg: Config, ticket: Ticket, wanted: str, actor: str, now: dt.datetime
) -> dict[str, Any]:
    priority, before = priority_name(wanted), ticket.priority
    if before != priority:
        ticket_ops.set_priority(session, ticket, priority, actor=actor, now=now)
    return _answer(ticket, "priority", before, priority)


def assign(
    session: Session, cfg: Config, ticket: Ticket, who: str | None, actor: str, now: dt.datetime
) -> dict[str, Any]:
    """To the agent `who` names (their assigned_notice queued, as maildctl does), or None: unassigned."""
    agent = agent_named(session, who) if who is not None else None
    current = session.get(Agent, ticket.assigned_agent_id) if ticket.assigned_agent_id is not None else None
    before, after = (current.email if current else ""), (agent.email if agent else "")
    mailed = False
    if before != after:
        ticket_ops.assign(session, ticket, agent, actor=actor, now=now)
        if agent is not None:
            try:
                row = queue_assigned_notice(session, cfg, ticket, agent, assigned_by=actor, now=now)
            except TemplateError as error:
                raise ApiError(500, f"cannot compose assigned_notice: {type(error).__name__}") from None
            mailed = row is not None
    return _answer(ticket, "assign", before, after, notice_queued=mailed)


def add_tag(
    session: Session, _cfg: Config, ticket: Ticket, text: str, actor: str, now: dt.datetime
) -> dict[str, Any]:
    tag = tag_name(text)
    had = tag in ticket_ops.tags_of(session, ticket)
    if not had:
        ticket_ops.add_tag(session, ticket, tag, actor=actor, now=now)
    return _answer(ticket, "tag", tag if had else "", tag)


def remove_tag(
    session: Session, _cfg: Config, ticket: Ticket, text: str, actor: str, now: dt.datetime
) -> dict[str, Any]:
    tag = tag_name(text)
    try:
        ticket_ops.remove_tag(session, ticket, tag, actor=actor, now=now)
    except ValueError as error:  # not tagged so
        raise ApiError(404, str(error)) from None
    return _answer(ticket, "untag", tag, "")


def add_note(
    session: Session, _cfg: Config, ticket: Ticket, text: str, actor: str, now: dt.datetime
) -> dict[str, Any]:
    note = ticket_ops.add_note(session, ticket, text, author=(actor, ""), actor=actor, now=now)
    return _answer(ticket, "note", "", "added", note_id=note.id)


@dataclass(frozen=True)
class ReplyText:
    text: str
    as_agent: str | None  # maildctl's --as: the agent the reply is from (None: the desk)


def reply(
    session: Session, cfg: Config, ticket: Ticket, given: ReplyText, actor: str, now: dt.datetime
) -> dict[str, Any]:
    """`maildctl ticket reply`: to the customer (and sub-customers) by mail, the ticket waiting."""
    agent = agent_named(session, given.as_agent) if given.as_agent is not None else None
    before = ticket.status
    try:
        sent = send_reply(session, cfg, ticket, given.text, agent=agent, actor=actor, now=now)
    except TemplateError as error:
        raise ApiError(500, f"cannot compose the reply: {type(error).__name__}") from None
    to = sent.relayed.row.rcpt_to if sent.relayed.row is not None else []
    return {
        **_answer(ticket, "reply", "", "sent" if to else "stored"),
        "message_id": sent.message.id,
        "sent_to": list(to),
        "not_sent": sent.relayed.not_sent,
        "status_before": before,
        "status": ticket.status,
        "notice_errors": list(sent.notice_errors),
    }


@dataclass(frozen=True)
class NewTicket:
    """POST /api/v1/tickets: what `maildctl ticket open` takes (no attachments: JSON carries none)."""

    desk: str
    to: str
    cc: tuple[str, ...]
    subject: str
    text: str
    as_agent: str | None


def open_new(session: Session, cfg: Config, given: NewTicket, actor: str, now: dt.datetime) -> dict[str, Any]:
    """`maildctl ticket open`: a ticket for a customer, its first mail sent from the desk; the answer is
    the new ticket as `ticket show --json` shows it. 422 for what open_ticket refuses."""
    desk = desk_named(session, given.desk)
    agent = agent_named(session, given.as_agent) if given.as_agent is not None else None
    try:
        ticket = open_ticket(
            session,
            cfg,
            desk=desk,
            customer=given.to,
            cc=given.cc,
            subject=given.subject,
            text=given.text,
            attachments=[],
            agent=agent,
            actor=actor,
            now=now,
        )
    except OpenRefused as error:
        raise ApiError(422, str(error)) from None
    except TemplateError as error:
        raise ApiError(500, f"cannot compose the first mail: {type(error).__name__}") from None
    return show_json(session, ticket)
