"""maildctl ticket cc: add or remove a ticket's sub-customers."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from maild.admin_cli.common import App, UserError, find_ticket
from maild.mail.addresses import is_valid, normalize
from maild.tickets import ticket_ops
from maild.tickets.participants import NotAddable


def register(sub: Any) -> None:
    cc = sub.add_parser("cc", help="add or remove a sub-customer (gets the ticket's customer-visible mail)")
    cc.add_argument("number")
    cc.add_argument("change", choices=("add", "remove"))
    cc.add_argument("email")
    cc.set_defaults(handler=change_cc)


def change_cc(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    if not is_valid(email):
        raise UserError(f"invalid address {args.email!r}: give a plain address like bob@example.com")
    with app.session() as session:
        ticket = find_ticket(session, args.number)
        change = ticket_ops.add_sub_customer if args.change == "add" else ticket_ops.remove_sub_customer
        try:
            change(session, ticket, email, actor="maildctl", now=dt.datetime.now(dt.UTC))
        except NotAddable as exc:
            raise UserError(f"cannot {args.change} {email}: {exc}") from None
        number = ticket.number
    print(f"{number}: {email} {'added as sub-customer' if args.change == 'add' else 'removed'}")
    return 0
