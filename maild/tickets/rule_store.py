"""The desks' rules as rows: reading them parsed (cached by row and version, so a mail does not parse
fifty rules again), checking them against the desk, and adding, changing, moving and removing them, each
audited (maildctl rule)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from maild.storage.models import Category, Desk, Rule, RuleFiring, Webhook
from maild.tickets.lookup import matching_agents
from maild.tickets.rule_grammar import Condition, ParsedRule, RuleSyntaxError, evaluation_order, parse_rule
from maild.tickets.statuses import statuses_of
from maild.tickets.ticket_ops import iso, record


@dataclass(frozen=True)
class LoadedRule:
    id: int
    name: str
    position: int
    parsed: ParsedRule
    checks: tuple[Condition, ...]  # the conditions in the order the engine checks them (cheap first)


_CACHE: dict[tuple[int, dt.datetime], ParsedRule] = {}
_CACHE_SIZE = 4096


def _parsed(row: Any) -> ParsedRule:
    key = (row.id, row.updated_at)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        found = _CACHE[key] = parse_rule(row.name, row.trigger, list(row.conditions), list(row.actions))
    return found


# Each desk's active rules, parsed, by (database, desk) with the desk's rules_version they were read at:
# a mail whose desk is loaded costs no query for them.
_DESKS: dict[tuple[str, int], tuple[int, list[LoadedRule]]] = {}


def _read_desk(session: Session, desk_id: int) -> list[LoadedRule]:
    """A stored rule that no longer parses (written by a newer maild) is left out."""
    rows = session.execute(
        select(
            Rule.id, Rule.name, Rule.position, Rule.trigger, Rule.conditions, Rule.actions, Rule.updated_at
        )
        .where(Rule.desk_id == desk_id, Rule.active)
        .order_by(Rule.position, Rule.id)
    )
    found = []
    for row in rows:
        try:
            parsed = _parsed(row)
            found.append(
                LoadedRule(row.id, row.name, row.position, parsed, evaluation_order(parsed.conditions))
            )
        except RuleSyntaxError:
            continue
    return found


def active_rules(
    session: Session, desk_ids: set[int], kinds: set[str] | None = None
) -> dict[int, list[LoadedRule]]:
    """Each desk's active rules in order (only those of trigger `kinds`, when given)."""
    database = str(session.get_bind().engine.url)
    found: dict[int, list[LoadedRule]] = {}
    for desk_id in desk_ids:
        desk = session.get(Desk, desk_id)
        if desk is None:
            continue
        cached = _DESKS.get((database, desk_id))
        if cached is None or cached[0] != desk.rules_version:
            if len(_DESKS) >= _CACHE_SIZE:
                _DESKS.clear()
            cached = _DESKS[(database, desk_id)] = (desk.rules_version, _read_desk(session, desk_id))
        rules = [r for r in cached[1] if kinds is None or r.parsed.trigger.kind in kinds]
        if rules:
            found[desk_id] = rules
    return found


def rule_by_name(session: Session, desk: Desk, name: str) -> Rule | None:
    return session.scalars(select(Rule).where(Rule.desk_id == desk.id, Rule.name == name)).first()


def desk_problems(session: Session, desk: Desk, parsed: ParsedRule) -> list[str]:
    """What the desk lacks for the rule: statuses, categories, agents, webhooks (templates: maildctl checks
    them)."""
    statuses = statuses_of(session, desk.id)
    categories = {
        n.lower() for n in session.scalars(select(Category.name).where(Category.desk_id == desk.id))
    }
    problems = []
    wanted = [c.value for c in parsed.conditions if c.subject == "status"]
    wanted += [a.value for a in parsed.actions if a.verb == "status"]
    if parsed.trigger.status:
        wanted.append(parsed.trigger.status)
    problems += [
        f"desk {desk.name} has no status {s!r} (it has {', '.join(statuses)})"
        for s in wanted
        if s not in statuses
    ]
    named = [c.value for c in parsed.conditions if c.subject == "category"]
    named += [a.value for a in parsed.actions if a.verb == "category"]
    problems += [
        f"desk {desk.name} has no category {c!r} (see 'maildctl category list --desk {desk.name}')"
        for c in named
        if c.lower() != "none" and " ".join(c.split()).lower() not in categories
    ]
    for action in parsed.actions:
        if action.verb == "assign" and action.value.lower() != "round-robin":
            agents = [
                a
                for a in matching_agents(session, action.value, active_only=True, desk=desk)
                if desk in a.desks
            ]
            if len(agents) != 1:
                problems.append(
                    f"no single active agent {action.value!r} on desk {desk.name} (or use round-robin)"
                )
    return problems + _webhook_problems(session, parsed)


def _webhook_problems(session: Session, parsed: ParsedRule) -> list[str]:
    """The rule's `webhook NAME` actions that name no webhook, or an inactive one."""
    named = {a.value for a in parsed.actions if a.verb == "webhook"}
    if not named:
        return []
    rows = session.execute(select(Webhook.name, Webhook.active).where(Webhook.name.in_(named)))
    active = {webhook: is_active for webhook, is_active in rows}  # (a Result has keys(): no dict(rows))
    problems = []
    for name in sorted(named):
        if name not in active:
            problems.append(f"no webhook {name!r} (see 'maildctl webhook list')")
        elif not active[name]:
            problems.append(f"webhook {name!r} is inactive ('maildctl webhook set {name} --active')")
    return problems


def stored_rule_problems(session: Session, desk: Desk, rule: Rule) -> tuple[ParsedRule | None, list[str]]:
    """What is wrong with a stored rule now (maildctl health): its text no longer parses (the engine skips
    it), or it names what the desk no longer has (desk_problems) or a webhook that was removed or made
    inactive (its action would only leave a note). The parsed rule, None when it does not parse, so that
    the caller can check what the database does not know (templates)."""
    try:
        parsed = parse_rule(rule.name, rule.trigger, list(rule.conditions), list(rule.actions))
    except RuleSyntaxError as exc:
        return None, [f"does not parse any more: {exc}"]
    return parsed, desk_problems(session, desk, parsed)


def rule_json(session: Session, rule: Rule) -> dict[str, Any]:
    fired = session.scalar(select(func.count()).where(RuleFiring.rule_id == rule.id)) or 0
    desk = session.get(Desk, rule.desk_id)
    return {
        "desk": desk.name if desk is not None else None,
        "name": rule.name,
        "position": rule.position,
        "trigger": rule.trigger,
        "conditions": list(rule.conditions),
        "actions": list(rule.actions),
        "active": rule.active,
        "fired": fired,
        "created_at": iso(rule.created_at),
        "updated_at": iso(rule.updated_at),
    }


def _audit(session: Session, action: str, rule: Rule, actor: str, **extra: Any) -> None:
    """The audit row of a change to `rule`, which also bumps its desk's rules_version (the engine's cache)."""
    session.execute(update(Desk).where(Desk.id == rule.desk_id).values(rules_version=Desk.rules_version + 1))
    desk = session.get(Desk, rule.desk_id)
    detail: dict[str, Any] = {"desk": desk.name if desk else None, "name": rule.name, "trigger": rule.trigger}
    detail |= {"conditions": list(rule.conditions), "actions": list(rule.actions), "position": rule.position}
    record(session, action, detail | extra, actor=actor)


def _renumber(session: Session, desk: Desk, ordered: list[Rule], now: dt.datetime) -> None:
    for index, rule in enumerate(ordered, start=1):
        if rule.position != index:
            # updated_at too: the engine's cache of the desk's rules sees the new order
            rule.position, rule.updated_at = index, now
    session.flush()


def ordered_rules(session: Session, desk: Desk) -> list[Rule]:
    return list(session.scalars(select(Rule).where(Rule.desk_id == desk.id).order_by(Rule.position, Rule.id)))


def add_rule(
    session: Session,
    desk: Desk,
    parsed: ParsedRule,
    texts: dict[str, Any],
    position: int | None,
    *,
    actor: str,
    now: dt.datetime,
) -> Rule:
    """A new active rule at `position` (1 = first; None: last); `texts`: trigger, conditions, actions as
    given (stored as written)."""
    others = ordered_rules(session, desk)
    at = len(others) + 1 if position is None else max(1, min(position, len(others) + 1))
    rule = Rule(
        desk_id=desk.id, name=parsed.name, position=at, created_at=now, updated_at=now, active=True, **texts
    )
    others.insert(at - 1, rule)
    session.add(rule)
    _renumber(session, desk, others, now)
    _audit(session, "rule_add", rule, actor)
    return rule


def change_rule(
    session: Session, rule: Rule, changes: dict[str, Any], *, actor: str, now: dt.datetime
) -> None:
    before = {key: getattr(rule, key) for key in changes}
    for key, value in changes.items():
        setattr(rule, key, value)
    rule.updated_at = now
    _audit(session, "rule_set", rule, actor, before=before)


def move_rule(session: Session, desk: Desk, rule: Rule, to: int, *, actor: str, now: dt.datetime) -> int:
    others = [r for r in ordered_rules(session, desk) if r.id != rule.id]
    at = max(1, min(to, len(others) + 1))
    before = rule.position
    others.insert(at - 1, rule)
    # Positions are not unique: no constraint trips while they are rewritten one by one.
    _renumber(session, desk, others, now)
    _audit(session, "rule_move", rule, actor, before=before, after=at)
    return at


def remove_rule(session: Session, desk: Desk, rule: Rule, *, actor: str, now: dt.datetime) -> None:
    _audit(session, "rule_remove", rule, actor)
    session.delete(rule)  # its firings go with it (ON DELETE CASCADE)
    session.flush()
    _renumber(session, desk, ordered_rules(session, desk), now)


def desks_with_rules(session: Session) -> list[Desk]:
    query = select(Desk).where(Desk.id.in_(select(Rule.desk_id))).order_by(Desk.name)
    return list(session.scalars(query))
