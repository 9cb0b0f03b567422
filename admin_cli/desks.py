"""maildctl desk add|list|show."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from admin_cli.common import App, UserError, iso, print_json, print_table
from maild.addresses import is_valid, normalize
from maild.attachment_policy import parse_extensions
from maild.statuses import normalise_status, statuses_of
from numbering.pattern import Pattern, PatternError
from storage.models import TICKET_STATUSES, AuditLog, Desk, DeskAddress


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
    _option_arguments(add)
    add.set_defaults(handler=add_desk)
    change = sub.add_parser("set", help="change a desk's options")
    change.add_argument("name")
    _option_arguments(change)
    change.set_defaults(handler=set_desk)
    lst = sub.add_parser("list", help="list desks")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_desks)
    show = sub.add_parser("show", help="show one desk")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_desk)


# (option, help); each is --option / --no-option on `desk add` and `desk set`.
_SWITCHES = (
    ("auto_reply", "answer new tickets with the ticket_created mail (default on)"),
    ("hijack_guard", "a stranger quoting a ticket's number in the subject gets a new ticket (default on)"),
    ("clients_only", "only known contacts may open tickets by mail; others are refused (default off)"),
    ("replies_only", "new tickets by mail are refused with the replies_only_refusal mail (default off)"),
)


def _option_arguments(parser: argparse.ArgumentParser) -> None:
    for option, text in _SWITCHES:
        parser.add_argument(
            f"--{option.replace('_', '-')}", dest=option, action=argparse.BooleanOptionalAction, help=text
        )
    parser.add_argument(
        "--reopen-days",
        type=int,
        help="a reply to a ticket closed longer ago opens a new linked ticket (default 14)",
    )
    parser.add_argument(
        "--allowed-extensions",
        help="attachments kept, e.g. 'pdf,png,jpg' ('' = any but executables and scripts, the default)",
    )
    parser.add_argument("--max-attachment-mb", type=int, help="larger attachments are refused (default 25)")
    parser.add_argument(
        "--auto-close-hours",
        type=int,
        help="close tickets after this many hours without activity, with the auto_close mail (0 = never, "
        "the default)",
    )
    parser.add_argument(
        "--auto-close-statuses",
        help="only tickets in these statuses are auto-closed (default 'waiting,resolved')",
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, checked; the ones not given are left out."""
    options = {option: getattr(args, option) for option, _ in _SWITCHES if getattr(args, option) is not None}
    if args.reopen_days is not None:
        if args.reopen_days < 0:
            raise UserError(f"--reopen-days must be 0 or more, got {args.reopen_days}")
        options["reopen_days"] = args.reopen_days
    if args.max_attachment_mb is not None:
        if not 1 <= args.max_attachment_mb <= 2048:
            raise UserError(f"--max-attachment-mb must be between 1 and 2048, got {args.max_attachment_mb}")
        options["max_attachment_mb"] = args.max_attachment_mb
    if args.auto_close_hours is not None:
        if not 0 <= args.auto_close_hours <= 24 * 3650:
            raise UserError(
                f"--auto-close-hours must be between 0 (never) and 87600, got {args.auto_close_hours}"
            )
        options["auto_close_hours"] = args.auto_close_hours
    if args.auto_close_statuses is not None:
        # Checked against the desk's statuses (custom ones too) by _check_auto_close once the desk is read.
        statuses = dict.fromkeys(
            normalise_status(s) for s in args.auto_close_statuses.split(",") if s.strip()
        )
        options["auto_close_statuses"] = ",".join(statuses)
    if args.allowed_extensions is not None:
        extensions = parse_extensions(args.allowed_extensions)
        bad = sorted(e for e in extensions if not e.isalnum())
        if bad:
            raise UserError(
                f"invalid --allowed-extensions {args.allowed_extensions!r}: {bad[0]!r} is not an extension; "
                "give a list like 'pdf,png,jpg'"
            )
        options["allowed_extensions"] = ",".join(sorted(extensions))
    return options


def _check_auto_close(options: dict[str, Any], text: str | None, allowed: Sequence[str]) -> None:
    """--auto-close-statuses names statuses the desk has (built-in or its own), never `closed`."""
    if "auto_close_statuses" not in options:
        return
    statuses = [s for s in options["auto_close_statuses"].split(",") if s]
    unknown = [s for s in statuses if s not in allowed or s == "closed"]
    if not statuses or unknown:
        raise UserError(
            f"invalid --auto-close-statuses {text!r}: give a list of "
            f"{', '.join(s for s in allowed if s != 'closed')} (custom ones: 'maildctl status add')"
        )


def desk_json(desk: Desk) -> dict[str, Any]:
    return {
        "name": desk.name,
        "addresses": [a.address for a in desk.addresses],
        "pattern": desk.pattern,
        "timezone": desk.timezone,
        "auto_reply": desk.auto_reply,
        "hijack_guard": desk.hijack_guard,
        "reopen_days": desk.reopen_days,
        "clients_only": desk.clients_only,
        "replies_only": desk.replies_only,
        "allowed_extensions": [e for e in desk.allowed_extensions.split(",") if e],
        "max_attachment_mb": desk.max_attachment_mb,
        "auto_close_hours": desk.auto_close_hours,
        "auto_close_statuses": [s for s in desk.auto_close_statuses.split(",") if s],
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
    options = _options(args)
    _check_auto_close(options, args.auto_close_statuses, TICKET_STATUSES)  # a new desk has no custom ones
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
            **options,
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


def set_desk(app: App, args: argparse.Namespace) -> int:
    options = _options(args)
    if not options:
        raise UserError("nothing to change: give an option such as --replies-only (maildctl desk set --help)")
    with app.session() as session:
        desk = _get_desk(session, args.name)
        _check_auto_close(options, args.auto_close_statuses, statuses_of(session, desk.id))
        before = {key: getattr(desk, key) for key in options}
        for key, value in options.items():
            setattr(desk, key, value)
        session.add(
            AuditLog(
                actor="maildctl",
                action="desk_set",
                detail={"desk": desk.name, "before": before, "after": options},
            )
        )
    print(f"desk {args.name}: " + ", ".join(f"{key} = {value}" for key, value in options.items()))
    return 0


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
