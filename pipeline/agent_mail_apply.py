"""The writing part of an agent's desk command by mail (pipeline/agent_mail.py decided it): the ticket it
opens (#to: maild.tickets.agent_open; #customer: maild.tickets.agent_forward) or the agent's presence
(#away, #back: maild.tickets.presence). Called by apply; the mail it causes is notify's
(pipeline/agent_mail_notify.py)."""

from __future__ import annotations

from maild.pipeline.context import AgentMail, Context, Stop
from maild.tickets.agent_forward import open_on_behalf
from maild.tickets.agent_open import create_ticket
from maild.tickets.desk_commands import Away, Back, OnBehalf, OpenFor
from maild.tickets.presence import mark_away, mark_back


def run(ctx: Context, found: AgentMail) -> Stop | None:
    mail, desk, agent = ctx.require_mail(), ctx.require_desk(), found.agent
    command = found.command
    if isinstance(command, OpenFor):
        assert found.opened is not None, "agent_mail checks a #to"
        ctx.ticket, ctx.message = create_ticket(
            ctx.session,
            ctx.cfg,
            found.opened,
            desk=desk,
            text=found.text,
            agent=agent,
            actor=agent.email,
            now=ctx.now,
            message_id=mail.message_id,
            store_files=not ctx.dry_run,
        )
        ctx.outcome = "created"
    elif isinstance(command, OnBehalf):
        assert found.forwarded is not None, "agent_mail finds the forward"
        ctx.ticket, ctx.message = open_on_behalf(
            ctx.session,
            ctx.cfg,
            desk=desk,
            forwarded=found.forwarded,
            note=found.text,
            subject=mail.subject,
            agent=agent,
            message_id=mail.message_id,
            now=ctx.now,
            store_files=not ctx.dry_run,
        )
        ctx.outcome = "created"
    elif isinstance(command, Away):
        mark_away(ctx.session, agent, command.until, actor=agent.email, now=ctx.now)
        ctx.outcome = "agent_away"
    elif isinstance(command, Back):
        mark_back(ctx.session, agent, actor=agent.email)
        ctx.outcome = "agent_back"
    return None
