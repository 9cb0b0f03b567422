"""maildctl desk add|list|show."""

from __future__ import annotations

import argparse
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from admin_cli.common import App, UserError, iso, print_json, print_table
from maild.addresses import is_valid, normalize
from numbering.pattern import Pattern, PatternError
from storage.models import Desk, DeskAddress


def register(commands: Any) -> None:
    desk = commands.add_parser("desk", help="desks (departments) and their addresses")
    sub = desk.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create a desk")
    add.add_argument("name")
    add.add_argument("--address", action="append", required=True, help="desk address (repeatable)")
    add.add_argument(
        "--pattern", required=True, help="ticket number pattern, e.g. 'SUP-{{yy}}-{{mm}}-{{nr-m}}'"
    )
    add.add_argument("--timezone", default="UTC", help="IANA time zone for number periods (default UTC)")
    add.add_argument("--no-auto-reply", action="store_true", help="do not send ticket_created auto-replies")
    add.add_argument(
        "--no-hijack-guard",
        action="store_true",
        help="let anyone join a ticket by quoting its number in the subject",
    )
    add.add_argument(
        "--reopen-days",
        type=int,
        default=14,
        help="a reply to a ticket closed longer ago opens a new linked ticket (default 14)",
    )
    add.set_defaults(handler=add_desk)
    lst = sub.add_parser("list", help="list desks")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_desks)
    show = sub.add_parser("show", help="show one desk")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_desk)


def desk_json(desk: Desk) -> dict[str, Any]:
    return {
        "name": desk.name,
        "addresses": [a.address for a in desk.addresses],
        "pattern": desk.pattern,
        "timezone": desk.timezone,
        "auto_reply": desk.auto_reply,
        "hijack_guard": desk.hijack_guard,
        "reopen_days": desk.reopen_days,
        # sorted: the agent_desks relationship has no order, and PostgreSQL returned it differently
        # from SQLite (`agent list` sorts its desks the same way)
        "agents": sorted(agent.email for agent in desk.agents),
        "created_at": iso(desk.created_at),
    }


def add_desk(app: App, args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"invalid desk name {args.name!r}: use letters, digits, '-' or '_'")
    try:
        pattern = Pattern(args.pattern)
    except PatternError as exc:
        raise UserError(f"invalid --pattern {args.pattern!r}: {exc}") from None
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown --timezone {args.timezone!r}: use an IANA name like Europe/Budapest"
        ) from None
    if args.reopen_days < 0:
        raise UserError(f"--reopen-days must be 0 or more, got {args.reopen_days}")
    addresses = [normalize(a) for a in args.address]
    for address in addresses:
        if not is_valid(address) or "+" in address.partition("@")[0]:
            raise UserError(f"invalid --address {address!r}: give a plain address like support@example.com")
    with app.session() as session:
        if session.scalars(select(Desk).where(Desk.name == name)).first():
            raise UserError(f"desk {name!r} exists already: pick another name")
        taken = session.scalars(select(DeskAddress).where(DeskAddress.address.in_(addresses))).first()
        if taken is not None:
            raise UserError(f"address {taken.address} belongs to desk {taken.desk.name!r} already")
        for other in session.scalars(select(Desk)):
            if pattern.overlaps(Pattern(other.pattern)):
                raise UserError(
                    f"pattern {args.pattern!r} could produce numbers of desk {other.name!r} "
                    f"({other.pattern}): give it a distinct prefix"
                )
        desk = Desk(
            name=name,
            pattern=args.pattern,
            timezone=args.timezone,
            auto_reply=not args.no_auto_reply,
            hijack_guard=not args.no_hijack_guard,
            reopen_days=args.reopen_days,
        )
        desk.addresses = [DeskAddress(address=a) for a in dict.fromkeys(addresses)]
        session.add(desk)
    print(f"desk {name} added: {', '.join(addresses)}, numbers {args.pattern}")
    return 0


def _get_desk(session: Any, name: str) -> Desk:
    desk = session.scalars(select(Desk).where(Desk.name == name)).first()
    if desk is None:
        raise UserError(f"no desk named {name!r}: see 'maildctl desk list'")
    return desk


def list_desks(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desks = [desk_json(d) for d in session.scalars(select(Desk).order_by(Desk.name))]
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
        data = desk_json(_get_desk(session, args.name))
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0
