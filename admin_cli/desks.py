"""maildctl desk add|set|rename|remove|address add|address remove|list|show.

Every change is audited (the admin's OS user) and bumps the change counter in its own transaction, so a
running `maild serve` picks it up within about a second (maild/ingress/intake_caches.py), without a restart.
The rules a change must follow are in desk_rules; the address commands in desk_addresses."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.admin_cli import desk_addresses
from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, find_desk, iso, print_json, print_table, who
from maild.admin_cli.desk_rules import (
    NAME_RULE,
    check_auto_close,
    check_name_free,
    check_overlaps,
    desk_address,
    desk_name,
    desk_options,
    option_arguments,
    parse_pattern,
)
from maild.config import Config
from maild.outbound.templating import desk_override_dir
from maild.storage.models import (
    TICKET_STATUSES,
    Desk,
    DeskAddress,
    RetiredPattern,
    Ticket,
)
from maild.tickets import desk_ops
from maild.tickets.statuses import statuses_of


def register(commands: Any) -> None:
    sub = command_group(commands, "desk", "desks (departments) and their addresses")
    add = sub.add_parser("add", help="create a desk")
    add.add_argument("name", help=f"the desk's name: {NAME_RULE}")
    add.add_argument("--address", action="append", required=True, help="desk address (repeatable)")
    add.add_argument(
        "--pattern", required=True, help="ticket number pattern, e.g. 'SUP-{{yy}}-{{mm}}-{{nr-m}}'"
    )
    add.add_argument("--timezone", default="UTC", help="IANA time zone for number periods (default UTC)")
    option_arguments(add)
    add.set_defaults(handler=add_desk)
    change = sub.add_parser("set", help="change a desk's options or its number pattern")
    change.add_argument("name")
    change.add_argument(
        "--pattern",
        help="a new ticket number pattern; the old one is retired (its numbers still thread) and counters "
        "the new one keeps go on counting",
    )
    option_arguments(change)
    change.set_defaults(handler=set_desk)
    rename = sub.add_parser("rename", help="rename a desk (its template overrides directory moves along)")
    rename.add_argument("desk", metavar="OLD")
    rename.add_argument("name", metavar="NEW", help=f"the new name: {NAME_RULE}")
    rename.set_defaults(handler=rename_desk)
    remove = sub.add_parser(
        "remove",
        help="remove a desk with its addresses, categories, statuses, canned replies and escalation rules",
        description="Refused while the desk has tickets, unless --move-to names the desk that takes them "
        "(with their messages and outgoing mail). Agents stay; only their membership of the desk goes.",
    )
    remove.add_argument("desk", metavar="NAME")
    remove.add_argument("--move-to", metavar="DESK", help="move the desk's tickets to this desk first")
    remove.set_defaults(handler=remove_desk)
    desk_addresses.register(sub)
    lst = sub.add_parser("list", help="list desks")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_desks)
    show = sub.add_parser("show", help="show one desk")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_desk)


def desk_json(session: Session, desk: Desk) -> dict[str, Any]:
    retired = session.scalars(
        select(RetiredPattern).where(RetiredPattern.desk_id == desk.id).order_by(RetiredPattern.id)
    )
    return {
        "name": desk.name,
        "sender_name": desk.sender_name,
        "addresses": [a.address for a in desk.addresses],
        "pattern": desk.pattern,
        "retired_patterns": [{"pattern": r.pattern, "retired_at": iso(r.retired_at)} for r in retired],
        "timezone": desk.timezone,
        "business_hours": desk.business_hours,
        "auto_reply": desk.auto_reply,
        "hijack_guard": desk.hijack_guard,
        "reopen_days": desk.reopen_days,
        "clients_only": desk.clients_only,
        "replies_only": desk.replies_only,
        "language": desk.language,
        "web_ratings": desk.web_ratings,
        "web_new_tickets": desk.web_new_tickets,
        "web_confirm_address": desk.web_confirm_address,
        "allowed_extensions": [e for e in desk.allowed_extensions.split(",") if e],
        "max_attachment_mb": desk.max_attachment_mb,
        "auto_close_hours": desk.auto_close_hours,
        "auto_close_statuses": [s for s in desk.auto_close_statuses.split(",") if s],
        "when_nobody_present": desk.when_nobody_present,
        # sorted: the agent_desks relationship has no order, and PostgreSQL returned it differently
        # from SQLite (`agent list` sorts its desks the same way)
        "agents": sorted(agent.email for agent in desk.agents),
        "created_at": iso(desk.created_at),
    }


def add_desk(app: App, args: argparse.Namespace) -> int:
    name = desk_name(args.name)
    pattern = parse_pattern(args.pattern)
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown --timezone {args.timezone!r}: use an IANA name like Europe/Budapest"
        ) from None
    options = desk_options(args)
    check_auto_close(options, args.auto_close_statuses, TICKET_STATUSES)  # a new desk has no custom ones
    addresses = list(dict.fromkeys(desk_address(a) for a in args.address))
    try:
        with app.session() as session:
            check_name_free(session, name)
            taken = session.scalars(select(DeskAddress).where(DeskAddress.address.in_(addresses))).first()
            if taken is not None:
                raise UserError(f"address {taken.address} belongs to desk {taken.desk.name!r} already")
            check_overlaps(session, pattern)
            desk_ops.add_desk(session, name, args.pattern, args.timezone, options, addresses, actor=who())
    except IntegrityError:  # another maildctl took the name or an address between our check and insert
        raise UserError(f"desk {name!r} or one of its addresses was added meanwhile: try again") from None
    desk_addresses.refresh_desk_table(app)
    print(f"desk {name} added: {', '.join(addresses)}, numbers {args.pattern}")
    return 0


def set_desk(app: App, args: argparse.Namespace) -> int:
    options = desk_options(args)
    if not options and args.pattern is None:
        raise UserError("nothing to change: give an option such as --replies-only (maildctl desk set --help)")
    pattern = parse_pattern(args.pattern) if args.pattern is not None else None
    with app.session() as session:
        desk = find_desk(session, args.name)
        check_auto_close(options, args.auto_close_statuses, statuses_of(session, desk.id))
        if pattern is not None and pattern.source != desk.pattern:
            check_overlaps(session, pattern, desk.id)
        after, seeded = desk_ops.set_desk(session, desk, options, pattern, actor=who())
    desk_addresses.refresh_desk_table(app)
    shown = ", ".join(f"{key} = {value}" for key, value in after.items())
    print(f"desk {args.name}: {shown or 'nothing changed'}")
    if seeded:
        print(
            "  counters continue after the existing numbers: "
            + ", ".join(f"{k}: {v}" for k, v in seeded.items())
        )
    return 0


def rename_desk(app: App, args: argparse.Namespace) -> int:
    name = desk_name(args.name)
    with app.session() as session:
        desk = find_desk(session, args.desk)
        old = desk.name
        if old == name:
            raise UserError(f"desk {old!r} has that name already")
        check_name_free(session, name, desk.id)
        desk_ops.rename_desk(session, desk, name, actor=who())
        # The overrides directory follows the name, in the same transaction's lifetime: a failed move
        # raises before the commit, so name and directory never disagree.
        moved = _move_overrides(app.cfg, old, name)
    desk_addresses.refresh_desk_table(app)
    print(f"desk {old} is now {name}" + (f"; its templates moved to {moved}" if moved else ""))
    imap = [account.name for account in app.cfg.imap if account.desk == old]
    if imap:
        print(
            f"  note: [[imap]] {', '.join(imap)} in the config name desk {old!r}: change it to {name!r} "
            "and restart maild serve"
        )
    return 0


def _move_overrides(cfg: Config, old: str, new: str) -> Path | None:
    source = desk_override_dir(cfg.template_dir, old)
    if not source.is_dir():
        return None
    target = desk_override_dir(cfg.template_dir, new)
    if target.exists():
        raise UserError(f"{target} exists already: move or remove it, then rename again")
    try:
        source.rename(target)
    except OSError as exc:
        raise UserError(f"cannot move {source} to {target}: {exc.strerror}") from None
    return target


def remove_desk(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desk = find_desk(session, args.desk)
        name = desk.name
        tickets = session.scalar(select(func.count()).where(Ticket.desk_id == desk.id)) or 0
        target = None
        if args.move_to is not None:
            target = find_desk(session, args.move_to)
            if target.id == desk.id:
                raise UserError("--move-to names the desk being removed: give another desk")
        elif tickets:
            raise UserError(
                f"desk {name!r} has {tickets} ticket(s): give --move-to DESK to move them to another desk"
            )
        # Rules of other desks that send tickets here stop moving them (the FK sets NULL): say which.
        rules = desk_ops.remove_desk(session, desk, target, tickets, actor=who())
    desk_addresses.refresh_desk_table(app)
    moved = f", its {tickets} ticket(s) moved to {target.name}" if target is not None else ""
    print(f"desk {name} removed{moved}")
    if rules:
        print(
            f"  note: escalation rules {', '.join(rules)} moved tickets to {name}; they no longer move them"
        )
    return 0


def list_desks(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desks = [desk_json(session, d) for d in session.scalars(select(Desk).order_by(Desk.name))]
    if args.json:
        print_json(desks)
    else:
        print_table(
            ["NAME", "PATTERN", "ADDRESSES", "AGENTS"],
            [[d["name"], d["pattern"], ", ".join(d["addresses"]), len(d["agents"])] for d in desks],
        )
    return 0


def show_desk(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        data = desk_json(session, find_desk(session, args.name))
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0
