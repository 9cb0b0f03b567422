"""Adding, removing and switching escalation rules, each with its audit entry (maildctl escalation)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.storage.models import Desk, EscalationFired, EscalationRule
from maild.tickets.ticket_ops import iso, record


def rule_json(rule: EscalationRule, fired: int) -> dict[str, Any]:
    """What maildctl shows of a rule, and its audit rows say."""
    return {
        "desk": rule.desk.name,
        "name": rule.name,
        "active": rule.active,
        "after_hours": rule.after_hours,
        "status": rule.in_status,
        "priority": rule.with_priority,
        "set_status": rule.set_status,
        "set_priority": rule.set_priority,
        "set_desk": rule.set_desk.name if rule.set_desk is not None else None,
        "notify_agents": rule.notify_agents,
        "remind": rule.remind_template,
        "fired": fired,
        "created_at": iso(rule.created_at),
    }


def fired_count(session: Session, rule: EscalationRule) -> int:
    count = session.scalar(select(func.count()).where(EscalationFired.rule_id == rule.id))
    return count or 0


def add_rule(
    session: Session,
    desk: Desk,
    name: str,
    *,
    after_hours: float,
    in_status: str,
    with_priority: str | None,
    actions: dict[str, Any],
    actor: str,
) -> EscalationRule:
    """A new active rule; `actions`: set_status, set_priority, set_desk, notify_agents, remind_template."""
    rule = EscalationRule(
        desk=desk,
        name=name,
        after_hours=after_hours,
        in_status=in_status,
        with_priority=with_priority,
        active=True,
        **actions,
    )
    session.add(rule)
    session.flush()
    record(session, "escalation_add", rule_json(rule, 0), actor=actor)
    return rule


def remove_rule(session: Session, rule: EscalationRule, *, actor: str) -> None:
    record(session, "escalation_remove", rule_json(rule, fired_count(session, rule)), actor=actor)
    session.delete(rule)  # its firings go with it (ON DELETE CASCADE)


def set_active(session: Session, desk: Desk, rule: EscalationRule, active: bool, *, actor: str) -> None:
    before, rule.active = rule.active, active
    detail = {"desk": desk.name, "name": rule.name, "before": {"active": before}, "after": {"active": active}}
    record(session, "escalation_set", detail, actor=actor)
