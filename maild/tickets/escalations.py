"""Escalations and reminders (scheduler job): per-desk rules "after H hours in status S (and priority P) →
set status / priority / desk, notify the agents, send the customer a reminder" (storage.models
EscalationRule, managed with `maildctl escalation`).

A rule fires once per ticket state: the state is the status and the time it was entered
(`status_changed_at`), so a ticket that leaves the status and comes back later is a new state, and a rule
that changes the status cannot fire again on the state it left. Exactly once even with two daemons on one
database: each firing is its own short transaction that re-reads the ticket under a row lock (`FOR UPDATE
SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers), re-checks it, and inserts the
EscalationFired row whose unique (rule, ticket, state) constraint refuses a second firing; the actions go in
the same transaction, so they happen exactly when that row is committed.

Left alone (maild.tickets.quiet): imported tickets nothing has happened on since their import; once live, an
imported ticket's time in its status counts from the import at the earliest. A reminder is not sent to an
address whose latest mail on the ticket is automatic (the rule still fires; its note says so)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound.outgoing import queue_mail
from maild.storage.db import transaction
from maild.storage.models import Desk, EscalationFired, EscalationRule, Ticket
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops
from maild.tickets.automation import after_changes
from maild.tickets.notices import notice_recipients, queue_courtesy
from maild.tickets.participants import automatic_recipients
from maild.tickets.quiet import (
    AUTOMATIC_REASON,
    escalation_since,
    is_quiet_import,
    not_quiet_import,
    state_entered,
    state_key,
    ticket_escalation_since,
    without_automatic_senders,
)
from maild.tickets.replies import queue_agent_notice
from maild.tickets.rule_timer import run_time_rules

ACTOR = "scheduler"
NOTICE_TEMPLATE = "escalation_notice"
DEFAULT_REMINDER = "reminder"
BATCH = 500  # tickets looked at per rule and run; the next run takes the rest

log = logging.getLogger("maild.escalations")


@dataclass
class EscalationResult:
    fired: list[tuple[str, str, str]] = field(default_factory=list)  # (desk, rule, ticket number)
    outbox_ids: list[int] = field(default_factory=list)


def describe_span(span: dt.timedelta) -> str:
    """A time in a status as people say it: "45 minutes", "5 hours", "2 days 3 hours"."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"
    days, hours = divmod(minutes // 60, 24)
    parts = [f"{days} day" if days == 1 else f"{days} days"] if days else []
    if hours:
        parts.append(f"{hours} hour" if hours == 1 else f"{hours} hours")
    return " ".join(parts)


def describe_rule(rule: EscalationRule) -> str:
    """The rule in one line, for `maildctl escalation list` and the notes."""
    when = f"after {rule.after_hours:g}h in {rule.in_status}"
    if rule.with_priority:
        when += f" with priority {rule.with_priority}"
    return f"{when} → {', '.join(rule_actions(rule))}"


def rule_actions(rule: EscalationRule) -> list[str]:
    actions = []
    if rule.set_status:
        actions.append(f"status {rule.set_status}")
    if rule.set_priority:
        actions.append(f"priority {rule.set_priority}")
    if rule.set_desk is not None:
        actions.append(f"desk {rule.set_desk.name}")
    if rule.notify_agents:
        actions.append("notify agents")
    if rule.remind_template:
        actions.append(f"remind with {rule.remind_template}")
    return actions


def _candidates(session: Session, rule: EscalationRule, now: dt.datetime) -> list[int]:
    """Ids of the rule's tickets that look due; each is checked again under its lock. A firing at or after
    the state began means this state has fired (the exact test is the state key, under the lock): without
    this the same fired tickets would fill every batch."""
    fired = exists().where(
        and_(
            EscalationFired.rule_id == rule.id,
            EscalationFired.ticket_id == Ticket.id,
            EscalationFired.fired_at >= state_entered(),
        )
    )
    query = select(Ticket.id).where(
        Ticket.desk_id == rule.desk_id,
        Ticket.status == rule.in_status,
        Ticket.merged_into_id.is_(None),
        not_quiet_import(),
        escalation_since() <= now - dt.timedelta(hours=rule.after_hours),
        ~fired,
    )
    if rule.with_priority:
        query = query.where(Ticket.priority == rule.with_priority)
    return list(session.scalars(query.order_by(escalation_since(), Ticket.id).limit(BATCH)))


def _due(rule: EscalationRule | None, ticket: Ticket, now: dt.datetime) -> bool:
    if rule is None or not rule.active:
        return False
    return (
        ticket.desk_id == rule.desk_id
        and ticket.status == rule.in_status
        and (not rule.with_priority or ticket.priority == rule.with_priority)
        and ticket.merged_into_id is None
        and not is_quiet_import(ticket)
        and ticket_escalation_since(ticket) <= now - dt.timedelta(hours=rule.after_hours)
    )


def _move(session: Session, ticket: Ticket, desk: Desk, now: dt.datetime) -> None:
    before = ticket.desk.name
    ticket.desk, ticket.updated_at = desk, now
    ticket_ops.audit(session, ticket, "desk", actor=ACTOR, now=now, before=before, after=desk.name)
    if ticket.category is not None and ticket.category.desk_id != desk.id:
        # Categories belong to one desk: the old desk's would send the notices to its agents.
        ticket_ops.audit(
            session, ticket, "category", actor=ACTOR, now=now, before=ticket.category.name, after=None
        )
        ticket.category = None


def _notify(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    variables: dict[str, Any],
    done: list[str],
    now: dt.datetime,
) -> list[int]:
    agents = notice_recipients(session, ticket, now=now)
    if not agents:
        done.append("no agent to notify (none active, or none present and the desk is unavailable)")
        return []
    ids = []
    for agent in agents:
        row_id = queue_courtesy(
            session,
            lambda dropped, agent=agent: queue_agent_notice(  # type: ignore[misc]
                session,
                cfg,
                ticket,
                NOTICE_TEMPLATE,
                agent,
                now=now.replace(tzinfo=dt.UTC),
                variables=variables,
                dropped=dropped,
            ),
            f"notice to {agent.email}",
            done,
        )
        if row_id is not None:
            ids.append(row_id)
    if ids:
        done.append(f"agents notified ({', '.join(a.email for a in agents)})")
    return ids


def _remind(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    template: str,
    variables: dict[str, Any],
    done: list[str],
    now: dt.datetime,
) -> list[int]:
    customer, sub_customers = automatic_recipients(ticket)  # the customer alone until an agent answered
    to, cc, robots = without_automatic_senders(session, ticket, [customer], sub_customers)
    if robots:
        done.append(f"reminder ({template}) not sent to {', '.join(robots)}: {AUTOMATIC_REASON}")
    if not to and not cc:
        return []
    row_id = queue_courtesy(
        session,
        lambda dropped: queue_mail(
            session,
            cfg,
            ticket,
            template,
            to,
            cc=cc,
            automatic=True,
            now=now.replace(tzinfo=dt.UTC),
            variables={
                "ticket_status": ticket.status,
                "waiting_for": variables["in_status_for"],
                "rule_name": variables["rule_name"],
            },
            dropped=dropped,
        ),
        f"reminder ({template})",
        done,
    )
    if row_id is None:
        return []
    done.append(f"reminder ({template}) sent to the customer")
    return [row_id]


def _fire(
    session: Session, cfg: Config, rule_id: int, ticket_id: int, now: dt.datetime
) -> tuple[str, str, str, list[int]] | None:
    """Fire the rule on the ticket if it is still due and has not fired in this state: (desk, rule, ticket
    number, outbox ids); None when not (locked by another instance, no longer due, fired). Raises
    IntegrityError when another instance fired it meanwhile."""
    claimed = _claim(session, rule_id, ticket_id, now)
    if claimed is None:
        return None
    rule, ticket, key = claimed
    desk_name = ticket.desk.name
    in_status_for = describe_span(now - ticket_escalation_since(ticket))
    status_before = ticket.status
    done = _change(session, rule, ticket, now)
    ticket_ops.audit(
        session,
        ticket,
        "escalation",
        actor=ACTOR,
        now=now,
        rule=rule.name,
        desk=desk_name,
        state=key,
        hours=rule.after_hours,
    )
    variables = {
        "rule_name": rule.name,
        "after_hours": f"{rule.after_hours:g}",
        "in_status": status_before,
        "in_status_for": in_status_for,
        "actions": list(done),
    }
    outbox_ids: list[int] = []
    if rule.notify_agents:
        outbox_ids += _notify(session, cfg, ticket, variables, done, now)
    if rule.remind_template:
        outbox_ids += _remind(session, cfg, ticket, rule.remind_template, variables, done, now)
    add_system_note(
        session,
        ticket,
        f"Escalation rule {rule.name!r} fired after {in_status_for} in status {status_before}: "
        + ("; ".join(done) if done else "nothing to change")
        + ".",
        by=ACTOR,
        at=now,
    )
    session.flush()
    return desk_name, rule.name, ticket.number, outbox_ids


def _claim(
    session: Session, rule_id: int, ticket_id: int, now: dt.datetime
) -> tuple[EscalationRule, Ticket, str] | None:
    """(the rule, the ticket locked, its state key) with the firing recorded, if the rule is still due on
    the ticket and has not fired in this state; None when not. Raises IntegrityError when another instance
    fired it meanwhile."""
    ticket = ticket_ops.locked_ticket(session, ticket_id)
    if ticket is None:
        return None
    rule = session.get(EscalationRule, rule_id, populate_existing=True)
    if rule is None or not _due(rule, ticket, now):
        return None
    key = state_key(ticket)
    already = session.scalars(
        select(EscalationFired.id).where(
            EscalationFired.rule_id == rule.id,
            EscalationFired.ticket_id == ticket.id,
            EscalationFired.state_key == key,
        )
    ).first()
    if already is not None:
        return None
    session.add(EscalationFired(rule_id=rule.id, ticket_id=ticket.id, state_key=key, fired_at=now))
    session.flush()  # the unique constraint speaks now, before any action
    return rule, ticket, key


def _change(session: Session, rule: EscalationRule, ticket: Ticket, now: dt.datetime) -> list[str]:
    """The rule's changes to the ticket (status, priority, desk), each audited: what was done, in words."""
    desk_name, status_before = ticket.desk.name, ticket.status
    done: list[str] = []
    if rule.set_status and rule.set_status != ticket.status:
        ticket_ops.set_status(session, ticket, rule.set_status, actor=ACTOR, now=now)
        done.append(f"status {status_before} → {rule.set_status}")
    if rule.set_priority and rule.set_priority != ticket.priority:
        before = ticket.priority
        ticket_ops.set_priority(session, ticket, rule.set_priority, actor=ACTOR, now=now)
        done.append(f"priority {before} → {rule.set_priority}")
    if rule.set_desk is not None and rule.set_desk_id != ticket.desk_id:
        _move(session, ticket, rule.set_desk, now)
        done.append(f"moved from desk {desk_name} to {rule.set_desk.name}")
    return done


def escalate(factory: sessionmaker[Session], cfg: Config, now: dt.datetime | None = None) -> EscalationResult:
    """One run over every active rule. `now` is naive UTC (tests pass their own)."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    result = EscalationResult()
    with factory() as session:
        rule_ids = list(
            session.scalars(
                select(EscalationRule.id).where(EscalationRule.active).order_by(EscalationRule.id)
            )
        )
    for rule_id in rule_ids:
        with factory() as session:
            rule = session.get(EscalationRule, rule_id)
            ticket_ids = _candidates(session, rule, now) if rule is not None else []
        for ticket_id in ticket_ids:
            try:
                with transaction(factory) as session:
                    fired = _fire(session, cfg, rule_id, ticket_id, now)
                    after_changes(session, cfg, now.replace(tzinfo=dt.UTC))  # the rules and webhooks
            except IntegrityError:  # another instance fired it in this state meanwhile: rolled back
                continue
            if fired is not None:
                result.fired.append(fired[:3])
                result.outbox_ids += fired[3]
    # The desks' time-triggered rules: the same job, bookkeeping and locking (maild.tickets.rule_timer).
    timed = run_time_rules(factory, cfg, now)
    result.fired += timed.fired
    result.outbox_ids += timed.outbox_ids
    return result


def run_escalations(factory: sessionmaker[Session], cfg: Config, now: dt.datetime | None = None) -> int:
    """One run; the number of firings."""
    return len(escalate(factory, cfg, now).fired)
