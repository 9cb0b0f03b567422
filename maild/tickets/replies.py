"""Agent replies as the customers get them and as the other agents hear of them, one way for both
roads in: an agent answering a notice by mail (pipeline/notify.py) and `maildctl ticket reply`
(send_reply). Also the flag notice of `maildctl ticket flag`, the other mail an admin's ticket change
sends an agent.

The relay (`agent_reply`) goes To the customer and Cc the sub-customers, From the desk's address under
the agent's display name (the desk's name when an admin answers as the desk), in reply to the customers'
latest mail. It names the attachments the desk refused from the customers' mails since the previous agent
reply (`refused_attachments`, see refused_since_last_reply): a follow-up mail gets no auto-reply, so the
next reply is the first mail that can tell them. It is not a courtesy: a failure to compose it
propagates, so that nothing is stored as answered when nobody got it. The notices to the other agents
(`agent_reply_notice`) are: the caller's `courtesy` decides what a failure means there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.attachment_policy import for_customer
from maild.mail.tokens import load_secret, note_address
from maild.outbound.outgoing import OutgoingAttachment, agent_display_name, queue_mail
from maild.storage.db import is_transient
from maild.storage.models import Agent, Message, OutboxMessage, Ticket, naive_utc
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops
from maild.tickets.notices import ASSIGNED_NOTICE, message_attachments, notice_recipients
from maild.tickets.participants import customer_recipients

AGENT_REPLY = "agent_reply"
AGENT_REPLY_NOTICE = "agent_reply_notice"
FLAG_NOTICE = "flag_notice"

Queue = Callable[[dict[str, str]], OutboxMessage | None]  # queues one mail; fills in who was dropped, why
Courtesy = Callable[[Queue, str], None]  # runs a Queue for a mail that must not fail the change (template)


def status_variables(session: Session, ticket: Ticket) -> dict[str, Any]:
    """The status line every notice to agents carries."""
    assignee = session.get(Agent, ticket.assigned_agent_id) if ticket.assigned_agent_id else None
    return {
        "ticket_status": ticket.status,
        "ticket_priority": ticket.priority,
        "assigned_agent": agent_display_name(assignee) if assignee is not None else "",
        "customer_email": ticket.customer.email,
    }


def latest_customer_message(ticket: Ticket, *, people_only: bool = False) -> Message | None:
    """The customers' newest mail on the ticket; `people_only`: not an automatic one (out-of-office)."""
    return next(
        (
            m
            for m in reversed(ticket.messages)
            if m.kind == "customer" and not (people_only and m.automatic is not None)
        ),
        None,
    )


def queue_agent_notice(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    template: str,
    agent: Agent,
    *,
    now: dt.datetime,
    variables: dict[str, Any] | None = None,
    attachments: Sequence[OutgoingAttachment] = (),
    in_reply_to: str = "",
    references: Sequence[str] = (),
    dropped: dict[str, str] | None = None,
) -> OutboxMessage | None:
    """One notice about `ticket` to `agent`: the status line, their name and note address filled in,
    Reply-To bound to them. Automatic and auto-generated (RFC 3834), so agents' vacation responders stay
    quiet; exempt from the per-address rate limit (a busy desk sends an agent dozens). None when the agent
    gets no mail (bouncing, blocked); errors propagate."""
    secret = load_secret(cfg.data_dir)
    return queue_mail(
        session,
        cfg,
        ticket,
        template,
        [(agent_display_name(agent), agent.email)],
        in_reply_to=in_reply_to,
        references=list(references),
        automatic=True,
        auto_submitted="auto-generated",
        exempt_agents=True,
        agent_id=agent.id,
        now=now,
        variables={
            **status_variables(session, ticket),
            "agent_name": agent_display_name(agent),
            "note_address": note_address(secret, ticket.desk.primary_address, ticket.id, agent.id),
            **(variables or {}),
        },
        attachments=attachments,
        dropped=dropped,
    )


def refused_since_last_reply(session: Session, ticket: Ticket, reply: Message | None) -> list[dict[str, Any]]:
    """The customers' refused attachments that the relay of `reply` (the agent's message, stored or None)
    tells them of: those of the customer mails since the previous agent reply. Not the opening mail's when
    the ticket_created auto-reply went out (it listed them already), and not mail imported from a backlog
    (history: nobody is told of it again)."""
    messages = sorted(ticket.messages, key=lambda m: (m.created_at, m.id or 0))
    opening = next((m for m in messages if m.kind == "customer"), None)
    told_on_opening = (
        opening is not None
        and ticket.id is not None
        and session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.ticket_id == ticket.id, OutboxMessage.template == "ticket_created")
            .limit(1)
        ).first()
        is not None
    )
    since: list[Message] = []
    for message in reversed(messages):
        if message is reply:
            continue
        if message.kind == "agent":
            break  # the previous reply: what came before was the customers' to hear about then
        if message.kind != "customer" or (message is opening and told_on_opening):
            continue
        if ticket.imported_at is not None and message.created_at <= ticket.imported_at:
            continue
        since.append(message)
    return for_customer(row for message in reversed(since) for row in message.attachments)


@dataclass
class Relayed:
    row: OutboxMessage | None  # None: every customer was dropped
    dropped: dict[str, str] = field(default_factory=dict)  # customers left out: address → why

    @property
    def not_sent(self) -> str:
        return ", ".join(f"{address} ({why})" for address, why in self.dropped.items())


def relay_reply(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    text: str,
    *,
    writer: Agent | None,
    writer_label: str,
    now: dt.datetime,
    files: Sequence[OutgoingAttachment] = (),
    reply: Message | None = None,
    opening: bool = False,
) -> Relayed:
    """Queue the `agent_reply` mail of `text`. `writer` None: the desk answers (From its name). Customers
        who must get no mail (bouncing, blocked) are left out, and a system note on the ticket says so, so
        that the agents see it (`writer_label`: whose reply, in that note). `reply`: the stored message of
        this reply, which is not the "previous agent reply" of refused_since_last_reply. `opening`: the first
    mail of a ticket an agent opened (maild.tickets.agent_open): its subject is the title, not "Re: …"."""
    customer, sub_customers = customer_recipients(ticket)
    # As a person's reply: to the customers' latest mail (not to our own auto-reply, the newest id).
    latest = latest_customer_message(ticket, people_only=True)
    name = agent_display_name(writer) if writer is not None else ticket.desk.name
    dropped: dict[str, str] = {}
    if reply is not None and ticket.desk.web_ratings and reply.id is None:
        session.flush()  # the reply's id goes into its rating links
    row = queue_mail(
        session,
        cfg,
        ticket,
        AGENT_REPLY,
        [customer],
        cc=sub_customers,
        in_reply_to=latest.message_id if latest is not None else "",
        automatic=False,
        now=now,
        variables={
            "agent_name": name,
            "comment_content": text,
            "refused_attachments": refused_since_last_reply(session, ticket, reply),
            "opening": opening,
        },
        attachments=files,
        from_name=name,
        dropped=dropped,
        rated_reply=reply.id if reply is not None and ticket.desk.web_ratings else None,
    )
    relayed = Relayed(row, dropped)
    if dropped:
        add_system_note(
            session, ticket, f"{writer_label}'s reply was not sent to {relayed.not_sent}", by="notify", at=now
        )
    return relayed


def tell_other_agents(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    text: str,
    *,
    writer: Agent | None,
    sender: tuple[str, str],
    is_note: bool,
    now: dt.datetime,
    courtesy: Courtesy,
    listed: Sequence[dict[str, Any]] = (),
    files: Sequence[OutgoingAttachment] = (),
) -> None:
    """`agent_reply_notice` to the agents who would be told of the ticket's mail (the present ones:
    maild.tickets.notices.notice_targets), not to the `writer`; one mail each, Reply-To bound to them.
    `sender`: (name, address) of who wrote; `listed`/`files`: the reply's attachments."""
    others = [a for a in notice_recipients(session, ticket, now=now) if writer is None or a.id != writer.id]
    if not others:
        return
    variables = {
        "sender_name": sender[0],
        "sender_email": sender[1],
        "comment_content": text,
        "is_note": is_note,
        "attachments": list(listed),
    }
    for agent in others:
        courtesy(
            lambda dropped, agent=agent: queue_agent_notice(  # type: ignore[misc]
                session,
                cfg,
                ticket,
                AGENT_REPLY_NOTICE,
                agent,
                now=now,
                variables=variables,
                attachments=files,
                dropped=dropped,
            ),
            AGENT_REPLY_NOTICE,
        )


@dataclass
class SentReply:
    message: Message
    relayed: Relayed
    notices: list[OutboxMessage] = field(default_factory=list)
    notice_errors: list[str] = field(default_factory=list)  # notices that could not be composed

    def courtesy(self, queue: Queue, what: str) -> None:
        """Queue one notice to the other agents, kept in `notices`; one that cannot be composed goes into
        `notice_errors` (the reply went; a broken notice template must not take it back)."""
        try:
            row = queue({})
        except Exception as exc:
            if is_transient(exc):
                raise
            self.notice_errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return
        if row is not None:
            self.notices.append(row)


def send_reply(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    text: str,
    *,
    agent: Agent | None,
    actor: str,
    now: dt.datetime,
) -> SentReply:
    """An admin's reply (`maildctl ticket reply`), as an agent's by mail is: stored as an `agent` message,
    relayed, the ticket `waiting`, the other agents told. `agent` None: from the desk. Audited as
    `reply` (and `status`). Flushes; the caller commits."""
    desk = ticket.desk
    name, address = (
        (agent_display_name(agent), agent.email) if agent is not None else (desk.name, desk.primary_address)
    )
    message = _store_reply(session, ticket, text, (name, address), actor=actor, now=now)
    relayed = relay_reply(
        session,
        cfg,
        ticket,
        text,
        writer=agent,
        writer_label=agent.email if agent else actor,
        now=now,
        reply=message,
    )
    return replied(session, cfg, ticket, message, relayed, agent=agent, actor=actor, now=now)


def replied(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    message: Message,
    relayed: Relayed,
    *,
    agent: Agent | None,
    actor: str,
    now: dt.datetime,
) -> SentReply:
    """After a reply from maild's side was stored and relayed: the other agents told, and the `reply`
    audit entry with whom it went to."""
    sent = SentReply(message, relayed)
    tell_other_agents(
        session,
        cfg,
        ticket,
        message.text,
        writer=agent,
        sender=(message.from_name, message.from_address),
        is_note=False,
        now=now,
        courtesy=sent.courtesy,
    )
    ticket_ops.audit(
        session,
        ticket,
        "reply",
        actor=actor,
        now=now,
        message=message.id,
        as_agent=agent.email if agent is not None else None,
        to=relayed.row.rcpt_to if relayed.row is not None else [],
        not_sent=relayed.dropped,
    )
    return sent


def _store_reply(
    session: Session, ticket: Ticket, text: str, sender: tuple[str, str], *, actor: str, now: dt.datetime
) -> Message:
    """The reply stored as an `agent` message from `sender` (name, address); the ticket `waiting`."""
    # The customers get it under the relay's Message-ID (in the outbox, which threads their answers).
    message = ticket_ops.written_message(
        ticket, "agent", text, author=sender, subject=f"Re: {ticket.subject}", now=now
    )
    session.add(message)
    if ticket.status != "waiting":  # as an agent's reply by mail does
        ticket_ops.set_status(session, ticket, "waiting", actor=actor, now=now)
    ticket.updated_at = naive_utc(now)
    session.flush()
    return message


def queue_flag_notice(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    agent: Agent,
    *,
    flagged_by: str,
    note: str,
    now: dt.datetime,
) -> OutboxMessage | None:
    """Tell `agent` that `flagged_by` flagged `ticket` for them (with `note`): the status line and the
    latest customer text, Reply-To bound to the agent, so that they can answer right away. None when the
    agent gets no mail (inactive, bouncing, blocked). Errors propagate."""
    if not agent.active:
        return None
    latest = latest_customer_message(ticket)
    return queue_agent_notice(
        session,
        cfg,
        ticket,
        FLAG_NOTICE,
        agent,
        now=now,
        variables={
            "flagged_by": flagged_by,
            "flag_note": note,
            "sender_name": (latest.from_name or latest.from_address) if latest is not None else "",
            "sender_email": latest.from_address if latest is not None else "",
            "comment_content": latest.visible_text if latest is not None else "",
        },
    )


def queue_assigned_notice(
    session: Session, cfg: Config, ticket: Ticket, agent: Agent, *, assigned_by: str, now: dt.datetime
) -> OutboxMessage | None:
    """Tell `agent` they were assigned `ticket` (by `assigned_by`, a name or address), with the status line
    and the latest customer mail. For `#assign`; None when the agent gets no mail (inactive, bouncing,
    blocked). Errors propagate: the caller decides whether the assignment stands without it."""
    if not agent.active:
        return None
    latest = next((m for m in reversed(ticket.messages) if m.kind == "customer"), None)
    listed, files = message_attachments(cfg, latest)
    return queue_agent_notice(
        session,
        cfg,
        ticket,
        ASSIGNED_NOTICE,
        agent,
        now=now,
        variables={
            "assigned_by": assigned_by,
            "sender_name": (latest.from_name or latest.from_address) if latest is not None else "",
            "sender_email": latest.from_address if latest is not None else "",
            "comment_content": latest.visible_text if latest is not None else "",
            "attachments": listed,
            "automatic": "",
        },
        attachments=files,
    )
