"""maildctl ticket cc: add or remove a ticket's sub-customers."""

from __future__ import annotations

import argparse
from typing import Any

from maild.admin_cli.common import App, UserError, find_ticket
from maild.mail.addresses import is_valid, normalize
from maild.storage.models import AuditLog
from maild.tickets.participants import NotAddable, add_cc, remove_cc


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
        try:
            if args.change == "add":
                add_cc(session, ticket, email)
            else:
                remove_cc(session, ticket, email)
        except NotAddable as exc:
            raise UserError(f"cannot {args.change} {email}: {exc}") from None
        session.add(
            AuditLog(
                actor="maildctl", action=f"cc_{args.change}", ticket_id=ticket.id, detail={"email": email}
            )
        )
        number = ticket.number
    print(f"{number}: {email} {'added as sub-customer' if args.change == 'add' else 'removed'}")
    return 0
