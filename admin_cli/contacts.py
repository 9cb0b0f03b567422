"""maildctl contact add|list: the people who write to the desks (customers and sub-customers).

A desk with clients_only accepts new tickets only from contacts, so admins register their clients here."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import func, select

from admin_cli.common import App, UserError, iso, print_json, print_table
from maild.addresses import is_valid, normalize
from maild.participants import NotAddable, check_customer_address, find_contact, get_or_create_contact
from storage.models import Contact, Participant


def register(commands: Any) -> None:
    contact = commands.add_parser("contact", help="customers and sub-customers")
    sub = contact.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="register a contact (lets them open tickets on clients_only desks)")
    add.add_argument("email")
    add.add_argument("--name", default="", help="display name used in mail to them")
    add.set_defaults(handler=add_contact)
    lst = sub.add_parser("list", help="list contacts")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_contacts)


def add_contact(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    if not is_valid(email):
        raise UserError(f"invalid address {args.email!r}: give a plain address like bob@example.com")
    with app.session() as session:
        try:
            check_customer_address(session, email)
        except NotAddable as exc:
            raise UserError(f"{exc}, not a contact") from None
        existed = find_contact(session, email) is not None
        contact = get_or_create_contact(session, email)
        if args.name.strip():
            contact.display_name = args.name.strip()[:200]  # the admin's word is the preferred name
    print(f"contact {email} {'updated' if existed else 'added'}")
    return 0


def list_contacts(app: App, args: argparse.Namespace) -> int:
    tickets = (
        select(Participant.contact_id, func.count(Participant.id).label("n"))
        .group_by(Participant.contact_id)
        .subquery()
    )
    with app.session() as session:
        contacts = [
            {
                "email": c.email,
                "name": c.display_name,
                "status": c.status,
                "tickets": n,
                "created_at": iso(c.created_at),
            }
            for c, n in session.execute(
                select(Contact, func.coalesce(tickets.c.n, 0))
                .outerjoin(tickets, tickets.c.contact_id == Contact.id)
                .order_by(Contact.email)
            )
        ]
    if args.json:
        print_json(contacts)
    else:
        print_table(
            ["EMAIL", "NAME", "STATUS", "TICKETS"],
            [[c["email"], c["name"], c["status"], c["tickets"]] for c in contacts],
        )
    return 0
