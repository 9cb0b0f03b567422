"""The desks' rules (Fluent Support's workflow engine): on a trigger, if every condition holds, do the
actions in order; `stop` ends the desk's rules for that event. Event triggers run here, inside the
writer's transaction (maild.tickets.automation.after_changes); time triggers run in the escalation
scheduler (maild.tickets.rule_timer), through `fire` too.

A rule fires at most once per event: its RuleFiring row (rule, ticket, event key) is unique. Each action
runs in a savepoint of its own; one that fails is rolled back alone and leaves a system note on the
ticket, so a broken rule never costs the mail. Every firing is audited (`rule`, actor `rule:<name>`), and
recorded on the session for `maildctl explain` (`take_firings`)."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert
from sqlalchemy.orm import Session, SessionTransaction

from maild.config import Config
from maild.storage.db import is_transient
from maild.storage.events import TicketEvent, discard_since, pending_mark
from maild.storage.models import Message, RuleFiring, Ticket, naive_utc
from maild.storage.notes import add_system_note
from maild.tickets import rule_actions, ticket_ops
from maild.tickets.quiet import is_quiet_import
from maild.tickets.rule_conditions import Facts, holds
from maild.tickets.rule_grammar import Condition
from maild.tickets.rule_store import LoadedRule, active_rules

log = logging.getLogger("maild.rules")

_FIRINGS = "maild.rules.firings"
_FIRED_IN_PASS = "maild.rules.fired_in_pass"
# Two changes to the same status in one transaction (at one `now`) are two events: numbered apart.
_STATUS_EVENTS = itertools.count()
EVENT_TRIGGERS = {"ticket.created": "created", "status.changed": "status_changed"}


def _trigger_of(event: TicketEvent, created: set[int]) -> str | None:
    if event.kind == "message.received":
        if event.ticket_id in created:
            return None  # the opening message: `ticket created` is its trigger
        return {"customer": "customer_replied", "agent": "agent_replied"}.get(str(event.data.get("kind")))
    return EVENT_TRIGGERS.get(event.kind)


def _event_key(event: TicketEvent, ticket: Ticket) -> str:
    if event.kind == "message.received":
        return f"message:{event.data.get('message_id')}"
    if event.kind == "status.changed":
        since = ticket.status_changed_at or ticket.updated_at
        return f"status:{event.data.get('after')}@{since.isoformat()}#{next(_STATUS_EVENTS)}"
    return event.kind


def conditions_hold(conditions: Sequence[Condition], facts: Facts) -> bool:
    return all(holds(facts, condition) for condition in conditions)


def _holds(rule: LoadedRule, facts: Facts) -> bool:
    """The rule's conditions all hold; one that cannot be checked (a bug, a broken contact attribute) means
    the rule does not fire, logged, and never costs the mail. Database trouble is raised."""
    try:
        return conditions_hold(rule.checks, facts)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.exception("the conditions of rule %s could not be checked", rule.name)
        return False


def run_rules(
    session: Session, cfg: Config, events: Sequence[TicketEvent], now: dt.datetime
) -> list[rule_actions.Firing]:
    """Run each desk's rules whose trigger matches one of `events`; the firings."""
    created = {e.ticket_id for e in events if e.kind == "ticket.created"}
    wanted = [(e, kind) for e in events if (kind := _trigger_of(e, created)) is not None]
    if not wanted:
        return []
    rules = active_rules(session, {e.desk_id for e, _ in wanted})
    # The opening message of a new ticket, for `ticket created`'s sender, subject and body conditions.
    opening = {
        e.ticket_id: int(e.data["message_id"])
        for e in events
        if e.kind == "message.received" and e.ticket_id in created
    }
    fired: list[rule_actions.Firing] = []
    for event, kind in wanted:
        candidates = [r for r in rules.get(event.desk_id, ()) if r.parsed.trigger.kind == kind]
        if candidates:
            message_id = event.data.get("message_id", opening.get(event.ticket_id))
            fired += _run_event(session, cfg, event, candidates, message_id, now)
    return fired


def _run_event(
    session: Session,
    cfg: Config,
    event: TicketEvent,
    candidates: list[LoadedRule],
    message_id: int | None,
    now: dt.datetime,
) -> list[rule_actions.Firing]:
    ticket = session.get(Ticket, event.ticket_id)
    # An imported ticket nothing live has happened on keeps quiet, as for escalations (maild.tickets.quiet):
    # an import of old mail must not send auto-replies to every old customer.
    if ticket is None or ticket.merged_into_id is not None or is_quiet_import(ticket):
        return []
    message = session.get(Message, message_id) if message_id is not None else None
    facts = Facts(session, ticket.desk, now, ticket=ticket, message=message)
    key = _event_key(event, ticket)
    fired = []
    for rule in candidates:
        wanted_status = rule.parsed.trigger.status
        if wanted_status is not None and event.data.get("after") != wanted_status:
            continue
        fired_in_pass = session.info.get(_FIRED_IN_PASS)
        if fired_in_pass is not None and (rule.id, ticket.id) in fired_in_pass:
            continue
        if not _holds(rule, facts):
            continue
        if fired_in_pass is not None:
            fired_in_pass.add((rule.id, ticket.id))
        firing = fire(session, cfg, rule, ticket, event, key, now)
        fired.append(firing)
        if any(a.verb == "stop" for a in rule.parsed.actions):
            break
    return fired


def fire(
    session: Session,
    cfg: Config,
    rule: LoadedRule,
    ticket: Ticket,
    event: TicketEvent,
    key: str,
    now: dt.datetime,
) -> rule_actions.Firing:
    """Record the firing and do the rule's actions, each in a savepoint. The firing's row is unique per
    (rule, ticket, event key): an event trigger's key is new with each event (a message's id, a ticket's
    creation, a status change), a time trigger's is the ticket's state, and firing twice raises
    IntegrityError here, before any action (the scheduler's transaction is then rolled back)."""
    # A plain INSERT (no unit of work for one row): the unique constraint speaks now, before any action.
    session.execute(
        insert(RuleFiring).values(
            rule_id=rule.id, ticket_id=ticket.id, event_key=key[:200], fired_at=naive_utc(now)
        )
    )
    firing = rule_actions.Firing(
        session, cfg, rule.id, rule.name, ticket, event, _aware(now), trigger=rule.parsed.trigger.text
    )
    for action in rule.parsed.actions:
        if action.verb != "stop":
            _act(firing, action)
    ticket_ops.audit(
        session,
        ticket,
        "rule",
        actor=firing.actor,
        now=now,
        rule=rule.name,
        trigger=rule.parsed.trigger.text,
        event=key,
        done=firing.done,
        failed=firing.failed,
    )
    session.info.setdefault(_FIRINGS, []).append(firing)
    return firing


def _act(firing: rule_actions.Firing, action: Any) -> None:
    session = firing.session
    mark = pending_mark(session)
    try:
        with session.begin_nested():
            firing.done.append(rule_actions.RUNNERS[action.verb](firing, action))
    except Exception as exc:
        if is_transient(exc):
            raise
        discard_since(session, mark)  # the events of the rolled-back changes
        why = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError | LookupError) else str(exc)
        firing.failed.append(f"{action.text}: {why}"[:500])
        add_system_note(
            session,
            firing.ticket,
            f"Rule {firing.rule_name!r}: the action {action.text!r} failed: {why}"[:2000],
            by=firing.actor,
            at=firing.now,
        )


@sa_event.listens_for(Session, "after_transaction_end")
def _end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost one: a savepoint's release fires after_commit too
        session.info.pop(_FIRINGS, None)
        session.info.pop(_FIRED_IN_PASS, None)


@contextmanager
def one_pass(session: Session) -> Iterator[None]:
    """Around one `after_changes`: a rule fires at most once per ticket in it, however often its rounds
    bring the trigger back (two rules setting a status back and forth cannot loop)."""
    session.info[_FIRED_IN_PASS] = set()
    try:
        yield
    finally:
        session.info.pop(_FIRED_IN_PASS, None)


def take_firings(session: Session) -> list[rule_actions.Firing]:
    """The firings since the last take (maildctl explain, the pipeline's automation stage)."""
    taken: list[rule_actions.Firing] = session.info.pop(_FIRINGS, [])
    return taken


def firing_json(firing: rule_actions.Firing) -> dict[str, Any]:
    return {
        "rule": firing.rule_name,
        "trigger": firing.trigger,
        "ticket": firing.ticket.number,
        "done": list(firing.done),
        "failed": list(firing.failed),
    }


def _aware(now: dt.datetime) -> dt.datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
