"""Carrying out an agent's mail commands once they were all checked (the pipeline's commands stage
resolves them into PlannedCommands; its writing step, apply, carries them out here)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from maild.config import Config
from maild.outbound.outgoing import agent_display_name
from maild.storage.models import Agent, OutboxMessage, Ticket
from maild.tickets import ticket_ops
from maild.tickets.commands import (
    AssignCommand,
    CcCommand,
    CloseCommand,
    Command,
    MergeCommand,
    PriorityCommand,
    StatusCommand,
    TagCommand,
    TimeCommand,
    UntagCommand,
)
from maild.tickets.merge import MergeRefused, merge_tickets
from maild.tickets.replies import queue_assigned_notice


@dataclass(frozen=True)
class PlannedCommand:
    """One checked command: what it names, resolved (the agent to assign, the ticket to merge)."""

    command: Command
    assignee: Agent | None = None  # #assign
    other: Ticket | None = None  # #merge


class CommandFailed(Exception):
    """A checked command that could not be carried out after all (an admin's merge in between)."""


def carry_out(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    step: PlannedCommand,
    *,
    agent: Agent,
    now: dt.datetime,
    queued: list[OutboxMessage],
) -> Ticket:
    """Carry out one command on `ticket`; returns the ticket the next commands act on (a merge's
    survivor). Assigning someone else queues them the assigned notice (into `queued`)."""
    actor = agent.email
    match step.command:
        case StatusCommand(status=status):
            ticket_ops.set_status(session, ticket, status, actor=actor, now=now)
        case CloseCommand():
            ticket_ops.set_status(session, ticket, "closed", actor=actor, now=now)
        case PriorityCommand(priority=priority):
            ticket_ops.set_priority(session, ticket, priority, actor=actor, now=now)
        case AssignCommand():
            assert step.assignee is not None
            ticket_ops.assign(session, ticket, step.assignee, actor=actor, now=now)
            if step.assignee is not agent:  # assigning oneself needs no mail
                row = queue_assigned_notice(
                    session, cfg, ticket, step.assignee, assigned_by=agent_display_name(agent), now=now
                )
                if row is not None:
                    queued.append(row)
        case TagCommand(tag=tag):
            ticket_ops.add_tag(session, ticket, tag, actor=actor, now=now)
        case UntagCommand(tag=tag):
            ticket_ops.remove_tag(session, ticket, tag, actor=actor, now=now)
        case CcCommand(action="add", address=address):
            ticket_ops.add_sub_customer(session, ticket, address, actor=actor, now=now)
        case CcCommand(address=address):
            ticket_ops.remove_sub_customer(session, ticket, address, actor=actor, now=now)
        case MergeCommand():
            assert step.other is not None
            try:
                return merge_tickets(session, [ticket, step.other], actor=actor, now=now)
            except MergeRefused as exc:  # checked before; a race with an admin's merge lands here
                raise CommandFailed(f"#merge: {exc}") from None
        case TimeCommand(minutes=minutes):
            ticket_ops.log_time(session, ticket, agent, minutes, actor=actor, now=now)
    return ticket
