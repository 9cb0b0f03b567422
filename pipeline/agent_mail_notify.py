"""The mail of an agent's desk command by mail (pipeline/agent_mail.py): #to's first mail to the customer
and CCs (maild.tickets.agent_open.send_first_mail, as an agent's reply), #customer's `ticket_created`
auto-reply to the customer (as for a mail they had sent the desk themselves, when the desk auto-replies),
and to the agent `desk_command_answer`: what was done (the ticket's number, their presence) or, for a
refused command, why nothing was. Called by notify (and by notify.answer_stop for a refused one)."""

from __future__ import annotations

from maild.outbound.outgoing import agent_display_name, queue_desk_mail, queue_mail
from maild.pipeline.context import AgentMail, Context
from maild.storage.models import Ticket
from maild.tickets.agent_open import send_first_mail
from maild.tickets.desk_commands import Away, Back, OnBehalf, OpenFor
from maild.tickets.notices import NEW_TICKET_NOTICE, message_attachments, notice_recipients, queue_courtesy
from maild.tickets.replies import queue_agent_notice

ANSWER = "desk_command_answer"


def _done_text(found: AgentMail, ticket: Ticket | None) -> str:
    command = found.command
    if isinstance(command, OpenFor) and ticket is not None:
        cc = f" (cc {', '.join(command.ccs)})" if command.ccs else ""
        return f"{ticket.number} opened for {command.customer}{cc}: your mail went to them from the desk.\n"
    if isinstance(command, OnBehalf) and ticket is not None:
        return (
            f"{ticket.number} opened on behalf of {ticket.customer.email}: the forwarded mail is its first "
            "message" + (", your words above it an internal note.\n" if found.text else ".\n")
        )
    if isinstance(command, Away):
        until = (
            f" until {command.until:%Y-%m-%d %H:%M} ({command.until.tzinfo})"
            if command.until
            else " until you write #back"
        )
        return f"You are marked away{until}: you get no notices of new mail meanwhile.\n"
    if isinstance(command, Back):
        return "You are marked present again: you get notices of new mail.\n"
    return ""


def answer_agent(ctx: Context, found: AgentMail, ticket: Ticket | None) -> None:
    """desk_command_answer to the agent: done (with what) or not carried out (errors_text)."""
    mail, desk, agent = ctx.require_mail(), ctx.require_desk(), found.agent
    row = queue_desk_mail(
        ctx.session,
        ctx.cfg,
        desk,
        ANSWER,
        [(agent_display_name(agent), agent.email)],
        in_reply_to=mail.message_id if mail.has_message_id else "",
        automatic=True,  # RFC 3834 auto-replied: the agent's client rules and vacation responder stay quiet
        exempt_agents=True,
        now=ctx.now,
        variables={
            "agent_name": agent_display_name(agent),
            "original_subject": mail.subject or "(no subject)",
            "carried_out": found.command is not None,
            "answer_text": found.errors_text or _done_text(found, ticket),
        },
    )
    if row is not None:
        ctx.queued.append(row)


def _auto_reply(ctx: Context, found: AgentMail, ticket: Ticket) -> None:
    """#customer: the customer hears of their ticket as if they had written to the desk."""
    if not ticket.desk.auto_reply or found.forwarded is None:
        return
    row = queue_mail(
        ctx.session,
        ctx.cfg,
        ticket,
        "ticket_created",
        [(ticket.customer.display_name, ticket.customer.email)],
        in_reply_to=found.forwarded.message_id,
        automatic=True,
        now=ctx.now,
        variables={"refused_attachments": []},
    )
    if row is not None:
        ctx.queued.append(row)


def _tell_agents(ctx: Context, found: AgentMail, ticket: Ticket) -> None:
    """#customer: the desk's other agents get new_ticket_notice, as for a customer's own new mail (not
    the agent who forwarded it). A notice that cannot be composed leaves the ticket as it is."""
    message, forwarded = ctx.message, found.forwarded
    if message is None or forwarded is None:
        return
    listed, files = message_attachments(ctx.cfg, message, {p.sha256: p.data for p in forwarded.attachments})
    variables = {
        "sender_name": forwarded.sender_name or forwarded.sender_address,
        "sender_email": forwarded.sender_address,
        "comment_content": message.visible_text,
        "attachments": listed,
        "automatic": "",
    }
    problems: list[str] = []
    for agent in notice_recipients(ctx.session, ticket, now=ctx.now):
        if agent.id == found.agent.id:
            continue
        queue_courtesy(
            ctx.session,
            lambda dropped, agent=agent: queue_agent_notice(  # type: ignore[misc]
                ctx.session,
                ctx.cfg,
                ticket,
                NEW_TICKET_NOTICE,
                agent,
                now=ctx.now,
                variables=variables,
                attachments=files,
                dropped=dropped,
            ),
            NEW_TICKET_NOTICE,
            problems,
        )
    if problems:
        ctx.reason = "; ".join([ctx.reason, *problems] if ctx.reason else problems)[:2000]


def run(ctx: Context, found: AgentMail) -> None:
    ticket, message = ctx.ticket, ctx.message
    if isinstance(found.command, OpenFor) and ticket is not None and message is not None:
        assert found.opened is not None
        sent = send_first_mail(
            ctx.session,
            ctx.cfg,
            ticket,
            message,
            found.opened.files,
            agent=found.agent,
            actor=found.agent.email,
            now=ctx.now,
        )
        ctx.queued.extend(row for row in (sent.relayed.row, *sent.notices) if row is not None)
    elif isinstance(found.command, OnBehalf) and ticket is not None:
        _auto_reply(ctx, found, ticket)
        _tell_agents(ctx, found, ticket)
    answer_agent(ctx, found, ticket)
