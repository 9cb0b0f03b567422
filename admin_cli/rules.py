"""maildctl rule add|list|show|set|remove|move|test: a desk's workflow rules (maild.tickets.rules_engine).
A rule is a trigger (--on), conditions (--if, all must hold) and actions (--then, in order), each a short
text expression; `rule test` runs one rule's conditions against a mail file and says what it would do,
storing nothing."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import add_desk_item, command_group
from maild.admin_cli.common import App, UserError, find_desk, print_json, print_table, who
from maild.admin_cli.escalations import template_exists
from maild.config import Config
from maild.mail.mailparse import parse_mail
from maild.mail.parsed import NotAMessage, ParsedMail
from maild.storage.models import Desk, Rule
from maild.tickets import rule_store
from maild.tickets.rule_actions import describe
from maild.tickets.rule_conditions import Facts, holds
from maild.tickets.rule_grammar import (
    ACTIONS_HELP,
    CONDITIONS_HELP,
    TRIGGERS_HELP,
    ParsedRule,
    RuleSyntaxError,
    parse_rule,
)

RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_MAIL = 50 * 1024 * 1024


def _rule_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--on", required=required, metavar="TRIGGER", help=f"when: {TRIGGERS_HELP}")
    parser.add_argument(
        "--if",
        dest="conditions",
        action="append",
        metavar="COND",
        help=f"a condition (repeatable): {CONDITIONS_HELP}",
    )
    parser.add_argument(
        "--then",
        dest="actions",
        nargs="+",
        action="extend",
        metavar="ACTION",
        help=f"actions in order: {ACTIONS_HELP}",
    )
    parser.add_argument(
        "--position", type=int, metavar="N", help="its place among the desk's rules (1 = first)"
    )


def register(commands: Any) -> None:
    sub = command_group(commands, "rule", "workflow rules: on a trigger, if conditions hold, do actions")
    add = add_desk_item(
        sub,
        "add",
        "add a rule to a desk",
        add_rule,
        "Each expression is one argument: quote it, e.g. --if 'subject contains refund' "
        "--then 'priority high' 'tag refund'. Rules run in their order; 'stop' ends the desk's rules "
        "for that event. Each rule fires once per event (and once per ticket state for time triggers).",
    )
    _rule_options(add, required=True)
    # DESK NAME first: after --then, argparse would take them for actions.
    add.usage = "%(prog)s DESK NAME --on TRIGGER [--if COND]... --then ACTION... [--position N]"
    lst = sub.add_parser("list", help="list rules in their order")
    lst.add_argument("desk", nargs="?", metavar="DESK", help="only this desk's rules")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_rules)
    show = add_desk_item(sub, "show", "show one rule", show_rule)
    show.add_argument("--json", action="store_true")
    change = add_desk_item(
        sub,
        "set",
        "change a rule: what is given replaces what it had (--if replaces all conditions)",
        set_rule,
    )
    _rule_options(change, required=False)
    change.usage = (
        "%(prog)s DESK NAME [--on TRIGGER] [--if COND]... [--no-conditions] [--then ACTION...] "
        "[--position N] [--active|--inactive]"
    )
    change.add_argument("--no-conditions", action="store_true", help="remove all its conditions")
    change.add_argument("--active", action="store_true", help="the rule runs (the default)")
    change.add_argument("--inactive", action="store_true", help="the rule is kept but does not run")
    add_desk_item(sub, "remove", "remove a rule", remove_rule)
    move = add_desk_item(sub, "move", "move a rule to another place in the desk's order", move_rule)
    move.add_argument("--to", type=int, required=True, metavar="N", help="its new place (1 = first)")
    test = sub.add_parser(
        "test",
        help="dry run: which of the rule's conditions a mail meets and what it would do (nothing is stored)",
        description="DESK may be left out when no other desk has a rule of that NAME.",
    )
    test.add_argument(
        "names", nargs="+", metavar="[DESK] NAME FILE", help="the rule, and the mail (RFC 5322; '-': stdin)"
    )
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=test_rule)


def _parse(name: str, trigger: str, conditions: list[str], actions: list[str]) -> ParsedRule:
    if not RULE_NAME.fullmatch(name):
        raise UserError(f"invalid rule name {name!r}: use 1-100 letters, digits and . _ -")
    try:
        return parse_rule(name, trigger, conditions, actions)
    except RuleSyntaxError as exc:
        raise UserError(str(exc)) from None


def _check(session: Session, cfg: Config, desk: Desk, parsed: ParsedRule) -> None:
    problems = rule_store.desk_problems(session, desk, parsed)
    for action in parsed.actions:
        if action.verb == "send" and not template_exists(cfg, desk, action.value):
            problems.append(
                f"no mail template {action.value!r} for desk {desk.name} (see 'maildctl template list')"
            )
    if problems:
        raise UserError(problems[0])


def _position(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UserError(f"invalid --position {value}: give 1 (first) or more")
    return value


def _find(session: Session, desk: Desk, name: str) -> Rule:
    rule = rule_store.rule_by_name(session, desk, name)
    if rule is None:
        raise UserError(f"no rule {name!r} on desk {desk.name}: see 'maildctl rule list {desk.name}'")
    return rule


def add_rule(app: App, args: argparse.Namespace) -> int:
    conditions, actions = args.conditions or [], args.actions or []
    parsed = _parse(args.name, args.on, conditions, actions)
    position = _position(args.position)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    texts = {"trigger": parsed.trigger.text, "conditions": conditions, "actions": actions}
    try:
        with app.session() as session:
            desk = find_desk(session, args.desk)
            _check(session, app.cfg, desk, parsed)
            if rule_store.rule_by_name(session, desk, args.name) is not None:
                raise UserError(f"desk {desk.name} already has a rule {args.name!r}: use 'maildctl rule set'")
            rule = rule_store.add_rule(session, desk, parsed, texts, position, actor=who(), now=now)
            at = rule.position
    except IntegrityError:
        raise UserError(f"rule {args.name!r} was added meanwhile: see 'maildctl rule list'") from None
    print(f"rule {args.name} added to desk {args.desk} at position {at}")
    return 0


def _line(entry: dict[str, Any]) -> str:
    conditions = " and ".join(entry["conditions"]) or "always"
    return f"on {entry['trigger']} if {conditions} → {'; '.join(entry['actions'])}"


def list_rules(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desks = [find_desk(session, args.desk)] if args.desk else rule_store.desks_with_rules(session)
        entries = [
            rule_store.rule_json(session, r) for d in desks for r in rule_store.ordered_rules(session, d)
        ]
    if args.json:
        print_json(entries)
        return 0
    rows = [
        [e["desk"], e["position"], e["name"], "yes" if e["active"] else "no", e["fired"], _line(e)]
        for e in entries
    ]
    print_table(["DESK", "#", "NAME", "ACTIVE", "FIRED", "RULE"], rows)
    return 0


def show_rule(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        entry = rule_store.rule_json(session, _find(session, find_desk(session, args.desk), args.name))
    if args.json:
        print_json(entry)
        return 0
    print(
        f"rule {entry['name']} of desk {entry['desk']} (position {entry['position']}, "
        f"{'active' if entry['active'] else 'inactive'}, fired {entry['fired']} times)"
    )
    print(f"  on: {entry['trigger']}")
    for condition in entry["conditions"]:
        print(f"  if: {condition}")
    for action in entry["actions"]:
        print(f"  then: {action}")
    return 0


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    if args.active and args.inactive:
        raise UserError("give either --active or --inactive, not both")
    if args.conditions and args.no_conditions:
        raise UserError("give either --if or --no-conditions, not both")
    changes: dict[str, Any] = {}
    if args.on is not None:
        changes["trigger"] = args.on
    if args.conditions or args.no_conditions:
        changes["conditions"] = args.conditions or []
    if args.actions:
        changes["actions"] = args.actions
    if args.active or args.inactive:
        changes["active"] = bool(args.active)
    if not changes and args.position is None:
        raise UserError(
            "nothing to change: give --on, --if, --no-conditions, --then, --position, --active or --inactive"
        )
    return changes


def set_rule(app: App, args: argparse.Namespace) -> int:
    position = _position(args.position)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with app.session() as session:
        desk = find_desk(session, args.desk)
        rule = _find(session, desk, args.name)
        changes = _changes(args)
        merged: dict[str, Any] = {
            "trigger": rule.trigger,
            "conditions": list(rule.conditions),
            "actions": list(rule.actions),
        }
        merged |= {k: v for k, v in changes.items() if k != "active"}
        parsed = _parse(rule.name, merged["trigger"], merged["conditions"], merged["actions"])
        _check(session, app.cfg, desk, parsed)
        if "trigger" in changes:
            changes["trigger"] = parsed.trigger.text
        if changes:
            rule_store.change_rule(session, rule, changes, actor=who(), now=now)
        if position is not None:
            rule_store.move_rule(session, desk, rule, position, actor=who(), now=now)
    print(f"rule {args.name} of desk {args.desk} changed")
    return 0


def remove_rule(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desk = find_desk(session, args.desk)
        rule_store.remove_rule(
            session,
            desk,
            _find(session, desk, args.name),
            actor=who(),
            now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        )
    print(f"rule {args.name} removed from desk {args.desk}")
    return 0


def move_rule(app: App, args: argparse.Namespace) -> int:
    to = _position(args.to)
    assert to is not None
    with app.session() as session:
        desk = find_desk(session, args.desk)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        at = rule_store.move_rule(session, desk, _find(session, desk, args.name), to, actor=who(), now=now)
    print(f"rule {args.name} of desk {args.desk} is now at position {at}")
    return 0


def _read_mail(name: str) -> bytes:
    try:
        data = sys.stdin.buffer.read(MAX_MAIL + 1) if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_MAIL:
        raise UserError(f"{name} is larger than {MAX_MAIL // (1024 * 1024)} MB")
    return data


def _mail(name: str) -> ParsedMail:
    try:
        return parse_mail(_read_mail(name))
    except NotAMessage as exc:
        raise UserError(f"{name} is not a mail: {exc}") from None


def _rule_to_test(session: Session, names: list[str]) -> tuple[Desk, Rule, str]:
    """`rule test DESK NAME FILE`, or `rule test NAME FILE` (the issue's form) when NAME is one desk's."""
    if len(names) == 3:
        desk = find_desk(session, names[0])
        return desk, _find(session, desk, names[1]), names[2]
    if len(names) != 2:
        raise UserError("give the rule and the mail: maildctl rule test [DESK] NAME FILE")
    name, file = names
    found = list(session.scalars(select(Rule).where(Rule.name == name)))
    if not found:
        raise UserError(f"no rule {name!r} on any desk: see 'maildctl rule list'")
    desks = sorted(session.get_one(Desk, r.desk_id).name for r in found)
    if len(found) > 1:
        raise UserError(
            f"desks {', '.join(desks)} each have a rule {name!r}: maildctl rule test DESK {name} FILE"
        )
    return session.get_one(Desk, found[0].desk_id), found[0], file


def test_rule(app: App, args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    with app.factory() as session:  # read only: nothing is stored, nothing to commit
        desk, rule, file = _rule_to_test(session, args.names)
        parsed = _parse(rule.name, rule.trigger, list(rule.conditions), list(rule.actions))
        facts = Facts(session, desk, now, mail=_mail(file))
        checks = [{"condition": c.text, "holds": holds(facts, c)} for c in parsed.conditions]
        result: dict[str, Any] = {
            "rule": rule.name,
            "desk": desk.name,
            "trigger": parsed.trigger.text,
            "as": f"a new ticket on desk {desk.name} from {facts.sender or 'nobody'}",
            "conditions": checks,
            "fires": all(c["holds"] for c in checks),
            "would_do": [describe(a) for a in parsed.actions],
        }
        session.rollback()
    if args.json:
        print_json(result)
        return 0
    print(f"rule {result['rule']} of desk {result['desk']} (on {result['trigger']}), for {result['as']}:")
    for check in checks:
        print(f"  {'yes' if check['holds'] else 'no '}  {check['condition']}")
    if not checks:
        print("  (no conditions)")
    verdict = "fires, and would" if result["fires"] else "does not fire; it would"
    print(f"  → {verdict}: {'; '.join(result['would_do'])}")
    return 0
