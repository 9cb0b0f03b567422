"""maildctl desk address add|remove: one of a desk's addresses at a time; and the desk-address table
`maild pipe` reads (maild.ingress.desk_table), rewritten after every desk change."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from maild.admin_cli.common import App, UserError, find_desk, who
from maild.admin_cli.desk_rules import desk_address
from maild.ingress.desk_table import table_path, write_table
from maild.mail.addresses import normalize
from maild.storage.models import DeskAddress
from maild.tickets import desk_ops


def register(sub: Any) -> None:
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


def refresh_desk_table(app: App) -> None:
    """After a committed desk change: the table lists the desks' addresses as the database has them now.
    When it cannot be written, it is removed (the pipe then asks the daemon or the database instead of
    trusting a stale one) and the admin is told."""
    with app.session() as session:
        addresses = list(session.scalars(select(DeskAddress.address)))
    try:
        write_table(app.cfg.data_dir, addresses)
    except OSError as exc:
        with contextlib.suppress(OSError):
            table_path(app.cfg.data_dir).unlink(missing_ok=True)
        print(
            f"maildctl: warning: cannot write {table_path(app.cfg.data_dir)}: {exc.strerror or exc}; "
            "maild pipe checks recipients the slow way until a desk change or maild serve writes it",
            file=sys.stderr,
        )


def add_address(app: App, args: argparse.Namespace) -> int:
    address = desk_address(args.address, "address")
    try:
        with app.session() as session:
            desk = find_desk(session, args.desk)
            taken = session.scalars(select(DeskAddress).where(DeskAddress.address == address)).first()
            if taken is not None:
                raise UserError(f"address {address} belongs to desk {taken.desk.name!r} already")
            desk_ops.add_address(session, desk, address, actor=who())
            name = desk.name
    except IntegrityError:
        raise UserError(f"address {address} was added meanwhile: see 'maildctl desk list'") from None
    refresh_desk_table(app)
    print(f"desk {name}: {address} added")
    return 0


def remove_address(app: App, args: argparse.Namespace) -> int:
    address = normalize(args.address)
    with app.session() as session:
        desk = find_desk(session, args.desk)
        row = next((a for a in desk.addresses if a.address == address), None)
        if row is None:
            have = ", ".join(a.address for a in desk.addresses)
            raise UserError(f"desk {desk.name!r} has no address {address} (it has {have})")
        if len(desk.addresses) == 1:
            raise UserError(
                f"{address} is desk {desk.name!r}'s only address: add another first, or remove the desk"
            )
        was_primary = desk.addresses[0] is row
        desk_ops.remove_address(session, desk, row, actor=who())
        name, primary = desk.name, desk.addresses[0].address
    refresh_desk_table(app)
    print(f"desk {name}: {address} removed; mail to it is refused from now on")
    if was_primary:
        print(f"  the desk's mail now comes from {primary}")
    return 0
