"""maildctl desk add|set|rename|remove|address add|address remove|list|show.

Every change is audited (the admin's OS user) and bumps the change counter in its own transaction, so a
running `maild serve` picks it up within about a second (maild/ingress/listeners.py), without a restart."""

from __future__ import annotations

import argparse
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.admin_cli.common import App, UserError, iso, print_json, print_table, who
from maild.config import Config
from maild.mail.addresses import is_valid, normalize
from maild.mail.attachment_policy import parse_extensions
from maild.numbering.allocate import seed_counters
from maild.numbering.pattern import Pattern, PatternError
from maild.outbound.templating import desk_override_dir
from maild.storage.changes import bump_changes
from maild.storage.models import (
    TICKET_STATUSES,
    AuditLog,
    Desk,
    DeskAddress,
    EscalationRule,
    Message,
    OutboxMessage,
    RetiredPattern,
    Ticket,
)
from maild.tickets.statuses import normalise_status, statuses_of

MAX_NAME = 100  # desks.name is VARCHAR(100)
# ASCII only: the name is a directory under templates/ and an argument people type; a leading '-' would
# read as an option, a leading '.' would hide the directory.
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_NAME - 1}}}")
NAME_RULE = f"use 1-{MAX_NAME} letters (A-Z, a-z), digits, '-' or '_', starting with a letter or digit"
MAX_SENDER_NAME = 200  # desks.sender_name is VARCHAR(200)


def register(commands: Any) -> None:
    desk = commands.add_parser("desk", help="desks (departments) and their addresses")
    sub = desk.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create a desk")
    add.add_argument("name", help=f"the desk's name: {NAME_RULE}")
    add.add_argument("--address", action="append", required=True, help="desk address (repeatable)")
    add.add_argument(
        "--pattern", required=True, help="ticket number pattern, e.g. 'SUP-{{yy}}-{{mm}}-{{nr-m}}'"
    )
    add.add_argument("--timezone", default="UTC", help="IANA time zone for number periods (default UTC)")
    _option_arguments(add)
    add.set_defaults(handler=add_desk)
    change = sub.add_parser("set", help="change a desk's options or its number pattern")
    change.add_argument("name")
    change.add_argument(
        "--pattern",
        help="a new ticket number pattern; the old one is retired (its numbers still thread) and counters "
        "the new one keeps go on counting",
    )
    _option_arguments(change)
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
    address = sub.add_parser("address", help="add or remove one of a desk's addresses")
    address_sub = address.add_subparsers(dest="address_action", required=True, metavar="ACTION")
    address_add = address_sub.add_parser("add", help="add an address to a desk")
    address_add.add_argument("desk", metavar="NAME")
    address_add.add_argument("address", metavar="ADDR", help="a plain address like help@example.com")
    address_add.set_defaults(handler=add_address)
    address_remove = address_sub.add_parser(
        "remove", help="remove an address from a desk (mail to it is refused from then on)"
    )
    address_remove.add_argument("desk", metavar="NAME")
    address_remove.add_argument("address", metavar="ADDR")
    address_remove.set_defaults(handler=remove_address)
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
    (
        "hijack_guard",
        "a stranger quoting a ticket's number in the subject, or answering one of its mails by "
        "In-Reply-To/References, gets a new ticket linked to it (default on)",
    ),
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
    parser.add_argument(
        "--sender-name",
        metavar="TEXT",
        help="the name on the desk's mail, e.g. 'ACME Support' (default: the desk's name)",
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
    if args.sender_name is not None:
        options["sender_name"] = _sender_name(args.sender_name)
    return options


def _sender_name(text: str) -> str:
    """One line for the From header: line breaks or control characters would break (or forge) headers."""
    name = text.strip()
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in name):
        raise UserError(f"invalid --sender-name {text!r}: give one line without control characters")
    if len(name) > MAX_SENDER_NAME:
        raise UserError(f"--sender-name is longer than {MAX_SENDER_NAME} characters")
    return name


def desk_name(text: str) -> str:
    """The one rule for desk names, used by `desk add` and `desk rename`."""
    name = text.strip()
    if not _NAME.fullmatch(name):
        raise UserError(f"invalid desk name {text!r}: {NAME_RULE}")
    return name


def _name_taken(session: Session, name: str, desk_id: int | None = None) -> None:
    """Names differing only in case would be one template directory on a case-insensitive file system."""
    query = select(Desk.name).where(func.lower(Desk.name) == name.lower())
    if desk_id is not None:
        query = query.where(Desk.id != desk_id)
    taken = session.scalars(query).first()
    if taken is not None:
        raise UserError(f"desk {taken!r} exists already: pick another name")


def _pattern(text: str) -> Pattern:
    try:
        return Pattern(text)
    except PatternError as exc:
        raise UserError(f"invalid --pattern {text!r}: {exc}") from None


def _check_overlaps(session: Session, pattern: Pattern, desk_id: int | None = None) -> None:
    """No other desk's current or retired pattern may share a number with `pattern` (the desk's own
    retired ones may: allocation skips numbers that exist)."""
    others = select(Desk)
    retired = select(RetiredPattern.pattern, Desk.name).join(Desk, Desk.id == RetiredPattern.desk_id)
    if desk_id is not None:
        others = others.where(Desk.id != desk_id)
        retired = retired.where(RetiredPattern.desk_id != desk_id)
    for other in session.scalars(others.order_by(Desk.name)):
        if pattern.overlaps(Pattern(other.pattern)):
            raise UserError(
                f"pattern {pattern.source!r} could produce numbers of desk {other.name!r} "
                f"({other.pattern}): give it a distinct prefix"
            )
    for source, name in session.execute(retired.order_by(RetiredPattern.id)):
        if pattern.overlaps(Pattern(source)):
            raise UserError(
                f"pattern {pattern.source!r} could produce numbers of desk {name!r} "
                f"(its retired pattern {source}, whose numbers still thread): give it a distinct prefix"
            )


def _address(text: str, option: str = "--address") -> str:
    address = normalize(text)
    if not is_valid(address) or "+" in address.partition("@")[0]:
        raise UserError(f"invalid {option} {address!r}: give a plain address like support@example.com")
    return address


def _audit(session: Session, action: str, detail: dict[str, Any]) -> None:
    session.add(AuditLog(actor=who(), action=action, detail=detail))
    bump_changes(session)  # every desk change is one a running maild serve caches


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
    name = desk_name(args.name)
    pattern = _pattern(args.pattern)
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown --timezone {args.timezone!r}: use an IANA name like Europe/Budapest"
        ) from None
    options = _options(args)
    _check_auto_close(options, args.auto_close_statuses, TICKET_STATUSES)  # a new desk has no custom ones
    addresses = list(dict.fromkeys(_address(a) for a in args.address))
    try:
        with app.session() as session:
            _name_taken(session, name)
            taken = session.scalars(select(DeskAddress).where(DeskAddress.address.in_(addresses))).first()
            if taken is not None:
                raise UserError(f"address {taken.address} belongs to desk {taken.desk.name!r} already")
            _check_overlaps(session, pattern)
            desk = Desk(name=name, pattern=args.pattern, timezone=args.timezone, **options)
            desk.addresses = [DeskAddress(address=a) for a in addresses]
            session.add(desk)
            detail = {"desk": name, "addresses": addresses, "pattern": args.pattern, **options}
            _audit(session, "desk_add", {**detail, "timezone": args.timezone})
    except IntegrityError:  # another maildctl took the name or an address between our check and insert
        raise UserError(f"desk {name!r} or one of its addresses was added meanwhile: try again") from None
    print(f"desk {name} added: {', '.join(addresses)}, numbers {args.pattern}")
    return 0


def _get_desk(session: Any, name: str) -> Desk:
    desk = session.scalars(select(Desk).where(Desk.name == name)).first()
    if desk is None:
        raise UserError(f"no desk named {name!r}: see 'maildctl desk list'")
    return desk


def set_desk(app: App, args: argparse.Namespace) -> int:
    options = _options(args)
    if not options and args.pattern is None:
        raise UserError("nothing to change: give an option such as --replies-only (maildctl desk set --help)")
    pattern = _pattern(args.pattern) if args.pattern is not None else None
    seeded: dict[str, int] = {}
    with app.session() as session:
        desk = _get_desk(session, args.name)
        _check_auto_close(options, args.auto_close_statuses, statuses_of(session, desk.id))
        before: dict[str, Any] = {key: getattr(desk, key) for key in options}
        after: dict[str, Any] = dict(options)
        if pattern is not None and pattern.source != desk.pattern:
            _check_overlaps(session, pattern, desk.id)
            # The old pattern is retired, not forgotten: its numbers keep threading (pipeline/thread.py).
            session.add(RetiredPattern(desk_id=desk.id, pattern=desk.pattern))
            before["pattern"], after["pattern"] = desk.pattern, pattern.source
            desk.pattern = pattern.source
            session.flush()
            seeded = seed_counters(session, desk.id, pattern)
        for key, value in options.items():
            setattr(desk, key, value)
        _audit(session, "desk_set", {"desk": desk.name, "before": before, "after": after})
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
        desk = _get_desk(session, args.desk)
        old = desk.name
        if old == name:
            raise UserError(f"desk {old!r} has that name already")
        _name_taken(session, name, desk.id)
        desk.name = name
        _audit(session, "desk_rename", {"desk": name, "before": old, "after": name})
        # The overrides directory follows the name, in the same transaction's lifetime: a failed move
        # raises before the commit, so name and directory never disagree.
        moved = _move_overrides(app.cfg, old, name)
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
        desk = _get_desk(session, args.desk)
        name = desk.name
        tickets = session.scalar(select(func.count()).where(Ticket.desk_id == desk.id)) or 0
        target = None
        if args.move_to is not None:
            target = _get_desk(session, args.move_to)
            if target.id == desk.id:
                raise UserError("--move-to names the desk being removed: give another desk")
        elif tickets:
            raise UserError(
                f"desk {name!r} has {tickets} ticket(s): give --move-to DESK to move them to another desk"
            )
        detail: dict[str, Any] = {
            "desk": name,
            "tickets": tickets,
            "addresses": [a.address for a in desk.addresses],
        }
        if target is not None:
            detail["moved_to"] = target.name
            detail["statuses_reset"] = _move_tickets(session, desk, target)
        # Rules of other desks that send tickets here stop moving them (the FK sets NULL): say which.
        rules = session.scalars(
            select(EscalationRule.name).where(
                EscalationRule.set_desk_id == desk.id, EscalationRule.desk_id != desk.id
            )
        ).all()
        if rules:
            detail["escalation_rules_no_longer_moving"] = list(rules)
        _audit(session, "desk_remove", detail)
        session.delete(desk)  # addresses, categories, statuses, canned replies, rules, counters cascade
    moved = f", its {tickets} ticket(s) moved to {target.name}" if target is not None else ""
    print(f"desk {name} removed{moved}")
    if rules:
        print(
            f"  note: escalation rules {', '.join(rules)} moved tickets to {name}; they no longer move them"
        )
    return 0


def _move_tickets(session: Session, desk: Desk, target: Desk) -> int:
    """Move every ticket of `desk` (with its messages and outgoing mail) to `target`; its patterns become
    `target`'s retired ones, so the moved numbers keep threading. Returns how many tickets had a custom
    status `target` does not have, and are `open` now."""
    known = statuses_of(session, target.id)
    reset = session.execute(
        update(Ticket)
        .where(Ticket.desk_id == desk.id, Ticket.status.not_in(known))
        .values(status="open")
        .execution_options(synchronize_session=False)
    ).rowcount
    # Categories are the desk's own and go with it: the moved tickets have none on the target.
    session.execute(
        update(Ticket)
        .where(Ticket.desk_id == desk.id)
        .values(desk_id=target.id, category_id=None)
        .execution_options(synchronize_session=False)
    )
    for model in (Message, OutboxMessage):
        session.execute(
            update(model)
            .where(model.desk_id == desk.id)
            .values(desk_id=target.id)
            .execution_options(synchronize_session=False)
        )
    retired = [
        desk.pattern,
        *session.scalars(select(RetiredPattern.pattern).where(RetiredPattern.desk_id == desk.id)),
    ]
    for source in retired:
        session.add(RetiredPattern(desk_id=target.id, pattern=source))
    session.flush()
    return int(reset or 0)


def add_address(app: App, args: argparse.Namespace) -> int:
    address = _address(args.address, "address")
    try:
        with app.session() as session:
            desk = _get_desk(session, args.desk)
            taken = session.scalars(select(DeskAddress).where(DeskAddress.address == address)).first()
            if taken is not None:
                raise UserError(f"address {address} belongs to desk {taken.desk.name!r} already")
            desk.addresses.append(DeskAddress(address=address))
            _audit(session, "desk_address_add", {"desk": desk.name, "address": address})
            name = desk.name
    except IntegrityError:
        raise UserError(f"address {address} was added meanwhile: see 'maildctl desk list'") from None
    print(f"desk {name}: {address} added")
    return 0


def remove_address(app: App, args: argparse.Namespace) -> int:
    address = normalize(args.address)
    with app.session() as session:
        desk = _get_desk(session, args.desk)
        row = next((a for a in desk.addresses if a.address == address), None)
        if row is None:
            have = ", ".join(a.address for a in desk.addresses)
            raise UserError(f"desk {desk.name!r} has no address {address} (it has {have})")
        if len(desk.addresses) == 1:
            raise UserError(
                f"{address} is desk {desk.name!r}'s only address: add another first, or remove the desk"
            )
        was_primary = desk.addresses[0] is row
        desk.addresses.remove(row)
        _audit(session, "desk_address_remove", {"desk": desk.name, "address": address})
        name, primary = desk.name, desk.addresses[0].address
    print(f"desk {name}: {address} removed; mail to it is refused from now on")
    if was_primary:
        print(f"  the desk's mail now comes from {primary}")
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
        data = desk_json(session, _get_desk(session, args.name))
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0
