"""maildctl escalation add|list|remove|set: per-desk rules "after H hours in status S (and priority P) →
set status / priority / desk, notify the agents, send the customer a reminder", which `maild serve` runs
every `[scheduler] escalation_seconds` (maild/tickets/escalations.py). Each rule fires once per ticket
state."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import add_desk_item, add_list, command_group
from maild.admin_cli.common import App, UserError, find_desk, print_json, print_table, who
from maild.config import Config
from maild.outbound.templating import desk_override_dir
from maild.storage.models import PRIORITIES, Desk, EscalationRule
from maild.templates import DEFAULT_DIR
from maild.tickets import escalation_ops
from maild.tickets.escalation_ops import fired_count, rule_json
from maild.tickets.escalations import DEFAULT_REMINDER, describe_rule
from maild.tickets.statuses import statuses_of

RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,49}")  # a file name part: no '/', no '..'
MAX_HOURS = 24 * 365 * 10


def register(commands: Any) -> None:
    sub = command_group(
        commands, "escalation", "escalation rules and reminders: what happens to tickets left in a status"
    )
    add = sub.add_parser(
        "add",
        help="add an escalation rule to a desk",
        description="After --after-hours in --status (and --priority, if given), the scheduler of "
        "'maild serve' does the rule's actions, once per ticket state: a ticket that leaves the status "
        "and comes back later is escalated again. Give at least one action.",
    )
    add.add_argument("desk", metavar="DESK")
    add.add_argument("name", metavar="NAME", help="the rule's name (letters, digits and . _ -)")
    add.add_argument("--after-hours", required=True, metavar="H", help="hours in the status (e.g. 24, 0.5)")
    add.add_argument("--status", required=True, metavar="S", help="the status the ticket must be in")
    add.add_argument(
        "--priority", metavar="P", help=f"only tickets of this priority ({', '.join(PRIORITIES)})"
    )
    add.add_argument("--set-status", metavar="S2", help="action: set this status")
    add.add_argument("--set-priority", metavar="P2", help="action: set this priority")
    add.add_argument("--set-desk", metavar="D2", help="action: move the ticket to this desk")
    add.add_argument(
        "--notify-agents", action="store_true", help="action: mail the ticket's agents an escalation notice"
    )
    add.add_argument(
        "--remind",
        nargs="?",
        const=DEFAULT_REMINDER,
        metavar="TEMPLATE",
        help=f"action: mail the customer this template (default {DEFAULT_REMINDER}: 'we are waiting for "
        "your answer'); a package template or one of the desk's overrides",
    )
    add.set_defaults(handler=add_rule)
    add_list(sub, "list escalation rules", "only this desk's rules", list_rules)
    add_desk_item(sub, "remove", "remove an escalation rule", remove_rule)
    change = add_desk_item(sub, "set", "switch an escalation rule on or off", set_rule)
    # Not an argparse mutually exclusive group: its complaint is a usage block and exit 2, ours one line.
    change.add_argument("--active", action="store_true", help="the scheduler runs it (the default)")
    change.add_argument("--inactive", action="store_true", help="the scheduler skips it")


def _rule(session: Session, desk: Desk, name: str) -> EscalationRule:
    rule = session.scalars(
        select(EscalationRule).where(EscalationRule.desk_id == desk.id, EscalationRule.name == name)
    ).first()
    if rule is None:
        raise UserError(
            f"no escalation rule {name!r} on desk {desk.name}: "
            f"see 'maildctl escalation list --desk {desk.name}'"
        )
    return rule


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not (0 < hours <= MAX_HOURS):  # also NaN
        raise UserError(f"invalid --after-hours {text!r}: give a number of hours above 0, e.g. 24 or 0.5")
    return hours


def _status(session: Session, desk: Desk, status: str, option: str) -> str:
    known = statuses_of(session, desk.id)
    if status not in known:
        raise UserError(
            f"invalid {option} {status!r}: desk {desk.name} has {', '.join(known)} "
            f"(add one with 'maildctl status add {desk.name} NAME')"
        )
    return status


def _priority(priority: str | None, option: str) -> str | None:
    if priority is not None and priority not in PRIORITIES:
        raise UserError(f"invalid {option} {priority!r}: use one of {', '.join(PRIORITIES)}")
    return priority


def template_exists(cfg: Config, desk: Desk, name: str) -> bool:
    """A mail template the desk can render: a subject and a body, each from the desk's overrides or the
    package (maild.outbound.templating.render looks in that order)."""
    dirs = (desk_override_dir(cfg.template_dir, desk.name), DEFAULT_DIR)
    has = {
        part: any((d / f"{name}.{part}.j2").is_file() for d in dirs) for part in ("subject", "txt", "html")
    }
    return has["subject"] and (has["txt"] or has["html"])


def _template(cfg: Config, desk: Desk, name: str) -> str:
    if not TEMPLATE_NAME.fullmatch(name) or not template_exists(cfg, desk, name):
        where = desk_override_dir(cfg.template_dir, desk.name)
        raise UserError(
            f"no mail template {name!r} for desk {desk.name}: put {name}.subject.j2 and {name}.txt.j2 in "
            f"{where}, or use a package one such as {DEFAULT_REMINDER}"
        )
    return name


def add_rule(app: App, args: argparse.Namespace) -> int:
    if not RULE_NAME.fullmatch(args.name):
        raise UserError(f"invalid rule name {args.name!r}: use 1-100 letters, digits and . _ -")
    hours = _hours(args.after_hours)
    if not (args.set_status or args.set_priority or args.set_desk or args.notify_agents or args.remind):
        raise UserError(
            "the rule does nothing: give at least one of --set-status, --set-priority, --set-desk, "
            "--notify-agents, --remind [TEMPLATE]"
        )
    actor = who()
    try:
        with app.session() as session:
            desk = find_desk(session, args.desk)
            status = _status(session, desk, args.status, "--status")
            priority = _priority(args.priority, "--priority")
            target = _set_desk(session, desk, args.set_desk) if args.set_desk else None
            set_status = (
                _set_status(session, desk, target, args.set_status, status) if args.set_status else None
            )
            set_priority = _priority(args.set_priority, "--set-priority")
            # The reminder is sent after the move, so from the desk the ticket ends on, with its templates.
            remind = _template(app.cfg, target or desk, args.remind) if args.remind else None
            if _exists(session, desk, args.name):
                raise UserError(
                    f"desk {desk.name} already has an escalation rule {args.name!r}: "
                    f"'maildctl escalation remove {desk.name} {args.name}' first"
                )
            actions = {
                "set_status": set_status,
                "set_priority": set_priority,
                "set_desk": target,
                "notify_agents": args.notify_agents,
                "remind_template": remind,
            }
            rule = escalation_ops.add_rule(
                session,
                desk,
                args.name,
                after_hours=hours,
                in_status=status,
                with_priority=priority,
                actions=actions,
                actor=actor,
            )
            summary = describe_rule(rule)
    except IntegrityError:  # another maildctl added the same name meanwhile
        raise UserError(
            f"escalation rule {args.name!r} was added meanwhile: see 'maildctl escalation list'"
        ) from None
    print(f"escalation rule {args.name} added to desk {args.desk}: {summary}")
    return 0


def _set_desk(session: Session, desk: Desk, name: str) -> Desk:
    """--set-desk: another desk than the rule's own."""
    target = find_desk(session, name, "--set-desk")
    if target.id == desk.id:
        raise UserError(f"--set-desk {target.name} is the rule's own desk: give another desk or leave it out")
    return target


def _set_status(session: Session, desk: Desk, target: Desk | None, wanted: str, status: str) -> str:
    """--set-status: a status both the rule's desk and the --set-desk know (it is set before the move),
    other than the one the rule waits in."""
    for where in (desk, target) if target is not None else (desk,):
        _status(session, where, wanted, "--set-status")
    if wanted == status:
        raise UserError(f"--set-status {status} is the status the rule waits in: give another one")
    return wanted


def _exists(session: Session, desk: Desk, name: str) -> bool:
    query = select(EscalationRule.id).where(EscalationRule.desk_id == desk.id, EscalationRule.name == name)
    return session.scalars(query).first() is not None


def list_rules(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        query = select(EscalationRule).join(Desk, EscalationRule.desk_id == Desk.id)
        if args.desk:
            query = query.where(EscalationRule.desk_id == find_desk(session, args.desk).id)
        rules = list(session.scalars(query.order_by(Desk.name, EscalationRule.name)))
        entries = [(rule_json(rule, fired_count(session, rule)), describe_rule(rule)) for rule in rules]
    if args.json:
        print_json([entry for entry, _ in entries])
    else:
        print_table(
            ["DESK", "NAME", "ACTIVE", "FIRED", "RULE"],
            [[e["desk"], e["name"], "yes" if e["active"] else "no", e["fired"], text] for e, text in entries],
        )
    return 0


def remove_rule(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desk = find_desk(session, args.desk)
        rule = _rule(session, desk, args.name)
        escalation_ops.remove_rule(session, rule, actor=who())
    print(f"escalation rule {args.name} removed from desk {args.desk}")
    return 0


def set_rule(app: App, args: argparse.Namespace) -> int:
    if args.active == args.inactive:
        raise UserError("give either --active or --inactive")
    with app.session() as session:
        desk = find_desk(session, args.desk)
        rule = _rule(session, desk, args.name)
        escalation_ops.set_active(session, desk, rule, args.active, actor=who())
    print(f"escalation rule {args.name} of desk {args.desk} is now {'active' if args.active else 'inactive'}")
    return 0
