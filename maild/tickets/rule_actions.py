"""What a rule's actions do to a ticket, each through the one-ticket services (ticket_ops, outgoing, …)
so each change is audited with the actor `rule:<name>`. Each returns what it did, in words, for the
firing's audit row, the explain output and the notes; one that cannot be done raises (ValueError and
its kin), and the engine leaves a system note instead (maild.tickets.rules_engine)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from maild.config import Config
from maild.outbound.outgoing import queue_mail
from maild.storage.events import TicketEvent
from maild.storage.models import Agent, Rule, Ticket
from maild.tickets import status_ops, ticket_ops, webhook_queue
from maild.tickets.lookup import matching_agents
from maild.tickets.notices import notice_recipients
from maild.tickets.participants import automatic_recipients
from maild.tickets.presence import present_agents
from maild.tickets.quiet import without_automatic_senders
from maild.tickets.replies import queue_agent_notice
from maild.tickets.rule_grammar import Action
from maild.tickets.statuses import statuses_of

NOTICE_TEMPLATE = "rule_notice"
ROUND_ROBIN = "round-robin"


class ActionFailed(ValueError):
    """An action that cannot be done on this ticket (an unknown status, nobody present, …)."""


@dataclass
class Firing:
    """One rule at work on one ticket: what its actions need and what they did."""

    session: Session
    cfg: Config
    rule_id: int
    rule_name: str
    ticket: Ticket
    event: TicketEvent
    now: dt.datetime  # aware UTC
    trigger: str = ""
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)

    @property
    def actor(self) -> str:
        return f"rule:{self.rule_name}"


def _status(run: Firing, action: Action) -> str:
    ticket = run.ticket
    if action.value not in statuses_of(run.session, ticket.desk_id):
        raise ActionFailed(f"desk {ticket.desk.name} has no status {action.value!r}")
    if ticket.status == action.value:
        return f"status already {action.value}"
    before = ticket.status
    ticket_ops.set_status(run.session, ticket, action.value, actor=run.actor, now=run.now)
    return f"status {before} → {action.value}"


def _priority(run: Firing, action: Action) -> str:
    if run.ticket.priority == action.value:
        return f"priority already {action.value}"
    before = run.ticket.priority
    ticket_ops.set_priority(run.session, run.ticket, action.value, actor=run.actor, now=run.now)
    return f"priority {before} → {action.value}"


def _category(run: Firing, action: Action) -> str:
    ticket = run.ticket
    category = None
    if action.value.lower() != "none":
        category = status_ops.category_named(run.session, ticket.desk_id, action.value)
        if category is None:
            raise ActionFailed(f"desk {ticket.desk.name} has no category {action.value!r}")
    before, after = status_ops.set_category(run.session, ticket, category, actor=run.actor, now=run.now)
    if before == after:
        return f"category already {after or 'none'}"
    return f"category {before or 'none'} → {after or 'none'}"


def _next_present(run: Firing) -> Agent:
    """Round-robin: the present agent after the one this rule assigned last (by id), else the first."""
    present = sorted(present_agents(run.ticket, run.now), key=lambda a: a.id)
    if not present:
        raise ActionFailed("nobody is present to assign the ticket to")
    last = run.session.scalar(select(Rule.last_agent_id).where(Rule.id == run.rule_id))
    chosen = next((a for a in present if last is not None and a.id > last), present[0])
    run.session.execute(update(Rule).where(Rule.id == run.rule_id).values(last_agent_id=chosen.id))
    return chosen


def _assign(run: Firing, action: Action) -> str:
    if action.value.lower() == ROUND_ROBIN:
        agent = _next_present(run)
    else:
        found = matching_agents(run.session, action.value, active_only=True, desk=run.ticket.desk)
        found = [a for a in found if run.ticket.desk in a.desks]
        if len(found) != 1:
            raise ActionFailed(f"no single active agent {action.value!r} on desk {run.ticket.desk.name}")
        agent = found[0]
    if run.ticket.assigned_agent_id == agent.id:
        return f"already assigned to {agent.email}"
    ticket_ops.assign(run.session, run.ticket, agent, actor=run.actor, now=run.now)
    return f"assigned to {agent.email}"


def _tag(run: Firing, action: Action) -> str:
    ticket_ops.add_tag(run.session, run.ticket, action.value, actor=run.actor, now=run.now)
    return f"tagged {action.value}"


def _untag(run: Firing, action: Action) -> str:
    if action.value not in ticket_ops.tags_of(run.session, run.ticket):
        return f"not tagged {action.value}"
    ticket_ops.remove_tag(run.session, run.ticket, action.value, actor=run.actor, now=run.now)
    return f"tag {action.value} removed"


def _cc(run: Firing, action: Action) -> str:
    ticket_ops.add_sub_customer(run.session, run.ticket, action.value.lower(), actor=run.actor, now=run.now)
    return f"{action.value} added as CC"


def _note(run: Firing, action: Action) -> str:
    author = (f"rule {run.rule_name}", "")
    ticket_ops.add_note(run.session, run.ticket, action.value, author=author, actor=run.actor, now=run.now)
    return "internal note added"


def _send(run: Firing, action: Action) -> str:
    customer, sub_customers = automatic_recipients(run.ticket)
    # Never to an address whose latest mail on the ticket is automatic: two auto-responders would loop.
    to, cc, dropped = without_automatic_senders(run.session, run.ticket, [customer], sub_customers)
    row = None
    if to or cc:
        row = queue_mail(
            run.session,
            run.cfg,
            run.ticket,
            action.value,
            to or cc[:1],
            cc=cc if to else cc[1:],
            automatic=True,
            now=run.now,
            variables={"ticket_status": run.ticket.status, "rule_name": run.rule_name},
            dropped=dropped,
        )
    ticket_ops.audit(
        run.session, run.ticket, "rule_send", actor=run.actor, now=run.now, template=action.value
    )
    if row is None:
        why = ", ".join(f"{a} ({r})" for a, r in dropped.items()) or "nobody to send to"
        return f"{action.value} not sent: {why}"
    run.session.flush()
    run.outbox_ids.append(row.id)
    return f"{action.value} sent to the customer"


def _notify(run: Firing, action: Action) -> str:
    # Whom the ticket's notices go to: present agents (MUTicket's present supporters); with nobody
    # present, the desk's when_nobody_present decides (maild.tickets.notices.notice_targets).
    agents = notice_recipients(run.session, run.ticket, now=run.now)
    if not agents:
        raise ActionFailed("no agent to notify (none active, or none present and the desk is unavailable)")
    variables = {"rule_name": run.rule_name, "trigger": run.trigger, "actions": list(run.done)}
    for agent in agents:
        row = queue_agent_notice(
            run.session, run.cfg, run.ticket, NOTICE_TEMPLATE, agent, now=run.now, variables=variables
        )
        if row is not None:
            run.session.flush()
            run.outbox_ids.append(row.id)
    emails = ", ".join(a.email for a in agents)
    ticket_ops.audit(run.session, run.ticket, "rule_notify", actor=run.actor, now=run.now, agents=emails)
    return f"agents notified ({emails})"


def _webhook(run: Firing, action: Action) -> str:
    webhook_queue.queue_to_webhook(run.session, action.value, run.event, run.now)
    ticket_ops.audit(
        run.session, run.ticket, "rule_webhook", actor=run.actor, now=run.now, webhook=action.value
    )
    return f"webhook {action.value} called"


RUNNERS: dict[str, Callable[[Firing, Action], str]] = {
    "status": _status,
    "priority": _priority,
    "category": _category,
    "assign": _assign,
    "tag": _tag,
    "untag": _untag,
    "cc": _cc,
    "note": _note,
    "send": _send,
    "notify": _notify,
    "webhook": _webhook,
}


def describe(action: Action) -> str:
    """What the action would do, for `maildctl rule test` (which does nothing)."""
    words = {
        "status": f"set status {action.value}",
        "priority": f"set priority {action.value}",
        "category": f"set category {action.value}",
        "assign": f"assign to {action.value}",
        "tag": f"add tag {action.value}",
        "untag": f"remove tag {action.value}",
        "cc": f"add {action.value} as CC",
        "note": "add an internal note",
        "send": f"send {action.value} to the customer",
        "notify": "notify the agents",
        "webhook": f"call webhook {action.value}",
        "stop": "stop: no further rule runs on this event",
    }
    return words[action.verb]
