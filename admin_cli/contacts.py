"""maildctl contact add|list|unbounce: the people who write to the desks (customers and sub-customers).

A desk with clients_only accepts new tickets only from contacts, so admins register their clients here.
A contact whose mail bounced for good is `bouncing` (the bounce stage says why in status_reason) and gets
no mail until `contact unbounce` — after the address was fixed on their side, say."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import func, select

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, iso, print_json, print_table
from maild.mail.addresses import is_valid, normalize
from maild.storage.models import Contact, Participant
from maild.tickets import contact_ops
from maild.tickets.participants import NotAddable, check_customer_address, find_contact, get_or_create_contact


def register(commands: Any) -> None:
    sub = command_group(commands, "contact", "customers and sub-customers")
    add = sub.add_parser("add", help="register a contact (lets them open tickets on clients_only desks)")
    add.add_argument("email")
    add.add_argument("--name", default="", help="display name used in mail to them")
    add.set_defaults(handler=add_contact)
    lst = sub.add_parser("list", help="list contacts")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_contacts)
    unbounce = sub.add_parser("unbounce", help="let mail go to a bouncing contact again")
    unbounce.add_argument("email")
    unbounce.set_defaults(handler=unbounce_contact)


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
                "status_reason": c.status_reason,
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
        # REASON last: it is long, and the columns before it keep their places.
        print_table(
            ["EMAIL", "NAME", "STATUS", "TICKETS", "REASON"],
            [[c["email"], c["name"], c["status"], c["tickets"], c["status_reason"]] for c in contacts],
        )
    return 0


def unbounce_contact(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    with app.session() as session:
        contact = find_contact(session, email)
        if contact is None:
            raise UserError(f"no contact {email}")
        if contact.status != "bouncing":
            raise UserError(f"contact {email} is not bouncing (status {contact.status})")
        contact_ops.unbounce(session, contact, actor="maildctl")
    print(f"contact {email}: bouncing -> active")
    return 0
