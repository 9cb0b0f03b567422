"""Time-triggered rules ("N hours in S"), run by the escalation scheduler job with the escalation rules:
one scheduler, the same bookkeeping. A rule fires once per ticket state (the status and when it was
entered, as quiet.state_key says), recorded as a RuleFiring with the key `time:<state>`; each
firing is its own short transaction on the ticket locked (FOR UPDATE SKIP LOCKED on PostgreSQL), which
re-checks it, fires, and runs `after_changes` before its commit (the rule's changes set off the desk's
other rules and webhooks)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.events import TicketEvent
from maild.storage.models import Desk, Rule, RuleFiring, Ticket
from maild.tickets import ticket_ops
from maild.tickets.automation import after_changes
from maild.tickets.quiet import (
    escalation_since,
    is_quiet_import,
    not_quiet_import,
    state_entered,
    state_key,
    ticket_escalation_since,
)
from maild.tickets.rule_conditions import Facts
from maild.tickets.rule_store import LoadedRule, active_rules
from maild.tickets.rules_engine import conditions_hold, fire

BATCH = 500  # tickets read per query
MAX_PAGES = (
    20  # per rule and run: tickets whose conditions do not hold stay candidates, and must not hide others
)
TIME_EVENT = "rule.time"  # the event a time rule's webhook action is given


@dataclass
class TimerResult:
    fired: list[tuple[str, str, str]] = field(default_factory=list)  # (desk, rule, ticket number)
    outbox_ids: list[int] = field(default_factory=list)


def _candidates(session: Session, desk_id: int, rule: LoadedRule, now: dt.datetime, after: int) -> list[int]:
    """Due tickets in the rule's status with no firing in their state, by id after `after`."""
    trigger = rule.parsed.trigger
    entered = state_entered()
    fired = exists().where(
        and_(RuleFiring.rule_id == rule.id, RuleFiring.ticket_id == Ticket.id, RuleFiring.fired_at >= entered)
    )
    query = select(Ticket.id).where(
        Ticket.desk_id == desk_id,
        Ticket.status == trigger.status,
        Ticket.merged_into_id.is_(None),
        not_quiet_import(),
        escalation_since() <= now - dt.timedelta(hours=trigger.hours),
        ~fired,
        Ticket.id > after,
    )
    return list(session.scalars(query.order_by(Ticket.id).limit(BATCH)))


def _fire_one(
    session: Session, cfg: Config, desk_id: int, rule_id: int, ticket_id: int, now: dt.datetime
) -> tuple[str, str, str, list[int]] | None:
    ticket = ticket_ops.locked_ticket(session, ticket_id)
    found = active_rules(session, {desk_id}, {"time"}).get(desk_id, [])
    rule = next((r for r in found if r.id == rule_id), None)
    if ticket is None or rule is None or ticket.desk_id != desk_id:
        return None
    trigger = rule.parsed.trigger
    due = (
        ticket.status == trigger.status
        and ticket.merged_into_id is None
        and not is_quiet_import(ticket)
        and ticket_escalation_since(ticket) <= now - dt.timedelta(hours=trigger.hours)
    )
    if not due or not conditions_hold(rule.checks, Facts(session, ticket.desk, now, ticket=ticket)):
        return None
    event = TicketEvent(TIME_EVENT, ticket.id, desk_id, {"rule": rule.name, "status": ticket.status})
    firing = fire(session, cfg, rule, ticket, event, f"time:{state_key(ticket)}", now)
    after_changes(session, cfg, now.replace(tzinfo=dt.UTC))
    return ticket.desk.name, rule.name, ticket.number, firing.outbox_ids


def run_time_rules(factory: sessionmaker[Session], cfg: Config, now: dt.datetime) -> TimerResult:
    """One run over every desk's active time rules; `now` naive UTC."""
    result = TimerResult()
    with factory() as session:
        desk_ids = set(session.scalars(select(Rule.desk_id).where(Rule.active).join(Desk).distinct()))
        rules = active_rules(session, desk_ids, {"time"})
    for desk_id, found in rules.items():
        for rule in found:
            _run_rule(factory, cfg, desk_id, rule, now, result)
    return result


def _run_rule(
    factory: sessionmaker[Session],
    cfg: Config,
    desk_id: int,
    rule: LoadedRule,
    now: dt.datetime,
    result: TimerResult,
) -> None:
    after = 0
    for _page in range(MAX_PAGES):
        with factory() as session:
            ticket_ids = _candidates(session, desk_id, rule, now, after)
        for ticket_id in ticket_ids:
            try:
                with transaction(factory) as session:
                    fired = _fire_one(session, cfg, desk_id, rule.id, ticket_id, now)
            except IntegrityError:  # another instance fired it in this state meanwhile: rolled back
                continue
            if fired is not None:
                result.fired.append(fired[:3])
                result.outbox_ids += fired[3]
        if len(ticket_ids) < BATCH:
            return
        after = ticket_ids[-1]
