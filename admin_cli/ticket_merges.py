"""maildctl ticket merge, split and block-and-delete: the commands that change which tickets exist."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import select

from maild.admin_cli.common import App, UserError, find_desk, find_ticket, print_json, who
from maild.admin_cli.ticket_lookup import number_command, utc_now, whole_conversation
from maild.storage.models import PRIORITIES, OutboxMessage
from maild.tickets import block_ops
from maild.tickets.merge import MergeRefused, merge_tickets, queue_merge_notices
from maild.tickets.split import SplitRefused, split_ticket


def register_merge(sub: Any) -> None:
    """`ticket merge` and `ticket block-and-delete`."""
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
    merge.add_argument(
        "--notify",
        action="store_true",
        help="send the customer of each merged ticket the ticket_merged mail (old numbers, the new one)",
    )
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


def register_split(sub: Any) -> None:
    split = number_command(
        sub,
        "split",
        "move messages (with their attachments) into a new ticket linked to this one",
        split_messages,
        "Move the messages with the given ids (see 'ticket show --json') into a new ticket, numbered from "
        "its desk's pattern, status open, linked to this one. Its customer is whoever wrote the earliest "
        "moved customer mail (if a contact), else this ticket's customer. Replies to the moved mails "
        "thread to the new ticket.",
    )
    split.add_argument("--messages", required=True, metavar="ID,ID…", help="message ids, comma-separated")
    split.add_argument("--desk", help="the new ticket's desk (default: this ticket's)")
    split.add_argument(
        "--priority", help=f"the new ticket's priority ({', '.join(PRIORITIES)}; default: this one's)"
    )
    split.add_argument("--subject", help="the new ticket's subject (default: this one's)")
    split.add_argument(
        "--notify", action="store_true", help="send the new ticket's customer the ticket_created mail"
    )
    split.add_argument("--json", action="store_true")


def merge_numbers(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        found = [find_ticket(session, number) for number in args.numbers]
        try:
            now = dt.datetime.now(dt.UTC)
            survivor = merge_tickets(session, found, actor=who(), now=now, force=args.force)
        except MergeRefused as exc:
            raise UserError(f"cannot merge: {exc}") from None
        merged = sorted({t.id: t.number for t in found if t.id != survivor.id}.items())
        notified = queue_merge_notices(session, app.cfg, survivor, found, now=now) if args.notify else 0
        data: dict[str, Any] = {
            "survivor": survivor.number,
            "merged": [number for _, number in merged],
            "status": survivor.status,
            "subject": survivor.subject,
            "notified": notified,
        }
    if args.json:
        print_json(data)
    else:
        told = f"; {notified} customer(s) told" if args.notify else ""
        print(f"merged {', '.join(data['merged'])} into {data['survivor']} (status {data['status']}){told}")
    return 0


def block_and_delete(app: App, args: argparse.Namespace) -> int:
    from maild.admin_cli.blocks import valid_pattern

    actor = who()
    with app.session() as session:
        ticket, merged = whole_conversation(session, find_ticket(session, args.number))
        number, customer = ticket.number, ticket.customer.email
        reason = (args.reason or "").strip() or f"ticket {number} deleted as spam"
        pattern = valid_pattern(customer)
        detail = block_ops.block_and_delete(
            session, ticket, merged, pattern=pattern, reason=reason, actor=actor, now=utc_now()
        )
        merged_numbers = detail["merged"]
    merged_text = f" (with merged {', '.join(merged_numbers)})" if merged_numbers else ""
    blocked_text = "was blocked already" if detail["already_blocked"] else "blocked"
    print(f"{number} deleted{merged_text}, {detail['messages']} message(s); {customer} {blocked_text}")
    return 0


def _message_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UserError(
            f"--messages {text!r}: give message ids like 12,15 (see 'ticket show --json')"
        ) from None
    if not ids:
        raise UserError("--messages: give at least one message id (see 'ticket show --json')")
    return ids


def split_messages(app: App, args: argparse.Namespace) -> int:
    ids, actor = _message_ids(args.messages), who()
    with app.session() as session:
        ticket = find_ticket(session, args.number)
        desk = find_desk(session, args.desk) if args.desk else None
        priority = args.priority.strip().lower() if args.priority else None
        try:
            new = split_ticket(
                session,
                app.cfg,
                ticket,
                ids,
                desk=desk,
                priority=priority,
                subject=args.subject,
                actor=actor,
                now=utc_now(),
                notify=args.notify,
            )
        except SplitRefused as exc:
            raise UserError(f"cannot split {ticket.number}: {exc}") from None
        except TemplateError as exc:
            raise UserError(f"cannot compose ticket_created: {type(exc).__name__}: {exc}") from None
        notified = session.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.ticket_id == new.id, OutboxMessage.template == "ticket_created"
            )
        ).first()
        data = {
            "number": new.number,
            "from": ticket.number,
            "desk": new.desk.name,
            "subject": new.subject,
            "priority": new.priority,
            "customer": new.customer.email,
            "messages": sorted(ids),
            "notified": notified is not None,
        }
    if args.json:
        print_json(data)
    else:
        told = ""
        if args.notify:
            told = (
                f"; {data['customer']} told"
                if data["notified"]
                else f"; {data['customer']} not told (bouncing or blocked)"
            )
        print(
            f"split {len(ids)} message(s) of {data['from']} into {data['number']} (desk {data['desk']}){told}"
        )
    return 0
