"""maildctl ticket list|show|cc|merge|block-and-delete."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin_cli import importing
from admin_cli.common import App, UserError, iso, print_json, print_table
from maild.addresses import is_valid, normalize
from maild.merge import MergeRefused, merge_tickets
from maild.participants import NotAddable, add_cc, remove_cc
from storage.models import TICKET_STATUSES, Attachment, AuditLog, Desk, Message, OutboxMessage, Ticket

MAX_MERGE_HOPS = 50  # as the thread stage: a merge chain longer than this is a bug, not a conversation


def register(commands: Any) -> None:
    ticket = commands.add_parser("ticket", help="tickets")
    sub = ticket.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list tickets, newest first")
    lst.add_argument("--status", help=f"only this status ({', '.join(TICKET_STATUSES)})")
    lst.add_argument("--desk", help="only this desk")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_tickets)
    show = sub.add_parser("show", help="one ticket with its participants and messages")
    show.add_argument("number")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_ticket)
    cc = sub.add_parser("cc", help="add or remove a sub-customer (gets the ticket's customer-visible mail)")
    cc.add_argument("number")
    cc.add_argument("change", choices=("add", "remove"))
    cc.add_argument("email")
    cc.set_defaults(handler=change_cc)
    merge = sub.add_parser(
        "merge",
        help="merge tickets into the oldest one (lowest id), which keeps its number and customer",
        description=(
            "Merge tickets into the oldest of them: its subject gets ' [MERGED]', its status becomes that of "
            "the ticket with the latest reply, and it takes over the others' messages, participants (their "
            "customers become sub-customers), tags, time entries and mail. The others are closed; their "
            "numbers, mails and reply addresses lead to the survivor."
        ),
    )
    merge.add_argument("numbers", nargs="+", metavar="NUMBER", help="two or more ticket numbers")
    merge.add_argument("--force", action="store_true", help="merge tickets of different desks")
    merge.add_argument("--json", action="store_true")
    merge.set_defaults(handler=merge_numbers)
    spam = sub.add_parser(
        "block-and-delete",
        help="spam: block the ticket's customer and delete the ticket (the raw mail stays in the spool)",
    )
    spam.add_argument("number")
    spam.add_argument(
        "--reason", help="the blocklist entry's reason (default: 'ticket NUMBER deleted as spam')"
    )
    spam.set_defaults(handler=block_and_delete)
    importing.register_ticket_commands(sub)  # ticket export lives with import


def ticket_json(ticket: Ticket, message_count: int) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "desk": ticket.desk.name,
        "customer": ticket.customer.email,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "message_count": message_count,
    }


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {
        "name": attachment.filename,
        "size": attachment.size,
        "type": attachment.content_type,
        "sha256": attachment.sha256,
        "stored": attachment.refused_reason is None,
        "refused_reason": attachment.refused_reason,
        "inline": attachment.inline,
        "content_id": attachment.content_id,
    }


def find_ticket(session: Session, number: str) -> Ticket:
    ticket = session.scalars(
        select(Ticket).where(func.lower(Ticket.number) == number.strip().lower())
    ).first()
    if ticket is None:
        raise UserError(f"no ticket {number!r}: see 'maildctl ticket list'")
    return ticket


def list_tickets(app: App, args: argparse.Namespace) -> int:
    if args.status and args.status not in TICKET_STATUSES:
        raise UserError(f"unknown --status {args.status!r}: use one of {', '.join(TICKET_STATUSES)}")
    counts = (
        select(Message.ticket_id, func.count(Message.id).label("n")).group_by(Message.ticket_id).subquery()
    )
    query = (
        select(Ticket, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.ticket_id == Ticket.id)
        .order_by(Ticket.id.desc())
    )
    with app.session() as session:
        if args.desk:
            desk = session.scalars(select(Desk).where(Desk.name == args.desk)).first()
            if desk is None:
                raise UserError(f"no desk named {args.desk!r}: see 'maildctl desk list'")
            query = query.where(Ticket.desk_id == desk.id)
        if args.status:
            query = query.where(Ticket.status == args.status)
        tickets = [ticket_json(t, n) for t, n in session.execute(query)]
    if args.json:
        print_json(tickets)
    else:
        print_table(
            ["NUMBER", "STATUS", "PRIORITY", "DESK", "CUSTOMER", "MSGS", "SUBJECT"],
            [
                [
                    t["number"],
                    t["status"],
                    t["priority"],
                    t["desk"],
                    t["customer"],
                    t["message_count"],
                    t["subject"],
                ]
                for t in tickets
            ],
        )
    return 0


def show_ticket(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        asked = find_ticket(session, args.number)
        # A merged number shows the survivor, as mail to it lands there.
        ticket, merged = _whole_conversation(session, asked)
        data = ticket_json(ticket, len(ticket.messages))
        data["merged_from"] = asked.number if asked.id != ticket.id else None  # set: redirected from it
        data["merged_tickets"] = [t.number for t in merged]  # merged into this one, directly or not
        data["participants"] = [p.contact.email for p in ticket.participants]
        data["linked_ticket"] = ticket.linked_ticket.number if ticket.linked_ticket else None
        data["messages"] = [
            {
                "id": m.id,
                "from": m.from_address,
                "kind": m.kind,
                "subject": m.subject,
                "text": m.text,
                "visible_text": m.visible_text,
                "has_html": m.html is not None,
                "message_id": m.message_id,
                "threaded_by": m.threaded_by,
                "automatic": m.automatic,  # out-of-office, auto-generated, list, challenge-response, or null
                "attachments": [attachment_json(a) for a in m.attachments],
                "notes": m.notes,
                "created_at": iso(m.created_at),
            }
            for m in ticket.messages
        ]
    if args.json:
        print_json(data)
        return 0
    if data["merged_from"]:
        print(f"({data['merged_from']} is merged into {data['number']}: showing {data['number']})")
    print(f"{data['number']}  {data['subject']}")
    if data["merged_tickets"]:
        print(f"merged: {', '.join(data['merged_tickets'])}")
    print(f"status {data['status']}, priority {data['priority']}, desk {data['desk']}")
    print(f"customer {data['customer']}")
    print(f"participants: {', '.join(data['participants'])}")
    for m in data["messages"]:
        print(f"\n--- #{m['id']} {m['kind']} from {m['from']} at {m['created_at']} ({m['threaded_by']})")
        print((m["visible_text"] or m["text"]).rstrip())
        for a in m["attachments"]:
            state = "stored" if a["stored"] else f"refused: {a['refused_reason']}"
            print(f"  [attachment] {a['name']} ({a['type']}, {a['size']} bytes, {state})")
        for note in m["notes"]:
            print(f"  [note] {note}")
    return 0


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


def merge_numbers(app: App, args: argparse.Namespace) -> int:
    from admin_cli.blocks import who

    with app.session() as session:
        found = [find_ticket(session, number) for number in args.numbers]
        try:
            now = dt.datetime.now(dt.UTC)
            survivor = merge_tickets(session, found, actor=who(), now=now, force=args.force)
        except MergeRefused as exc:
            raise UserError(f"cannot merge: {exc}") from None
        merged = sorted({t.id: t.number for t in found if t.id != survivor.id}.items())
        data = {
            "survivor": survivor.number,
            "merged": [number for _, number in merged],
            "status": survivor.status,
            "subject": survivor.subject,
        }
    if args.json:
        print_json(data)
    else:
        print(f"merged {', '.join(data['merged'])} into {data['survivor']} (status {data['status']})")
    return 0


def _whole_conversation(session: Session, ticket: Ticket) -> tuple[Ticket, list[Ticket]]:
    """The survivor a merged number leads to, and the tickets merged into it (directly or not)."""
    hops = 0
    while ticket.merged_into is not None and hops < MAX_MERGE_HOPS:
        ticket, hops = ticket.merged_into, hops + 1
    merged: list[Ticket] = []
    seen, frontier = {ticket.id}, [ticket.id]
    while frontier:
        found = [
            t
            for t in session.scalars(select(Ticket).where(Ticket.merged_into_id.in_(frontier)))
            if t.id not in seen
        ]
        merged += found
        seen.update(t.id for t in found)
        frontier = [t.id for t in found]
    return ticket, merged


def block_and_delete(app: App, args: argparse.Namespace) -> int:
    from admin_cli.blocks import add_entry, find_entry, valid_pattern, who

    actor = who()
    with app.session() as session:
        ticket, merged = _whole_conversation(session, find_ticket(session, args.number))
        number, customer = ticket.number, ticket.customer.email
        reason = (args.reason or "").strip() or f"ticket {number} deleted as spam"
        pattern = valid_pattern(customer)
        already = find_entry(session, pattern) is not None
        if not already:
            add_entry(session, pattern, False, reason, actor)
        doomed = [ticket, *merged]
        ids = [t.id for t in doomed]
        message_count = session.scalar(select(func.count(Message.id)).where(Message.ticket_id.in_(ids))) or 0
        # Mail still queued for the ticket would go out after it is gone (outbox.ticket_id is SET NULL),
        # the customer's auto-reply included: give it up instead.
        queued = session.scalars(
            select(OutboxMessage).where(OutboxMessage.ticket_id.in_(ids), OutboxMessage.status == "queued")
        )
        cancelled = []
        for row in queued:
            row.failed_to = list(dict.fromkeys([*row.failed_to, *row.rcpt_to]))
            row.rcpt_to, row.status = [], "failed"
            row.last_error = f"cancelled: ticket {number} deleted as spam (maildctl ticket block-and-delete)"
            cancelled.append(row.id)
        session.add(
            AuditLog(
                actor=actor,
                action="ticket_block_and_delete",
                detail={
                    "number": number,
                    "customer": customer,
                    "subject": ticket.subject,
                    "desk": ticket.desk.name,
                    "pattern": pattern,
                    "reason": reason,
                    "already_blocked": already,
                    "messages": message_count,
                    "merged": [t.number for t in merged],
                    "outbox_cancelled": cancelled,
                },
            )
        )
        # Messages, their attachment rows and the participants go with the ticket (ORM cascades); spool,
        # outbox and audit rows keep their history with ticket_id set to NULL by the database.
        for doomed_ticket in doomed:
            session.delete(doomed_ticket)
    merged_text = f" (with merged {', '.join(t.number for t in merged)})" if merged else ""
    blocked_text = "was blocked already" if already else "blocked"
    print(f"{number} deleted{merged_text}, {message_count} message(s); {customer} {blocked_text}")
    return 0
