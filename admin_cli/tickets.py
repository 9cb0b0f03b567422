"""maildctl ticket: list, show, cc, merge, split, block-and-delete, delete, status, priority, assign, tag,
untag, close, reopen, note, reply, flag, unflag, log."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.admin_cli import importing
from maild.admin_cli.common import App, UserError, find_ticket, iso, print_json, print_table, who
from maild.mail.addresses import is_valid, normalize
from maild.storage.models import (
    PRIORITIES,
    TICKET_STATUSES,
    Agent,
    Attachment,
    AuditLog,
    Desk,
    DeskStatus,
    Message,
    OutboxMessage,
    Ticket,
    TicketFlag,
)
from maild.tickets import ticket_ops
from maild.tickets.merge import MergeRefused, merge_tickets, queue_merge_notices
from maild.tickets.participants import NotAddable, add_cc, remove_cc
from maild.tickets.replies import queue_assigned_notice, queue_flag_notice, send_reply
from maild.tickets.split import SplitRefused, split_ticket
from maild.tickets.statuses import normalise_status, statuses_of

MAX_MERGE_HOPS = 50  # as the thread stage: a merge chain longer than this is a bug, not a conversation


def register(commands: Any) -> None:
    ticket = commands.add_parser("ticket", help="tickets")
    sub = ticket.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list tickets, newest first")
    lst.add_argument(
        "--status", help=f"only this status ({', '.join(TICKET_STATUSES)}, or a desk's custom status)"
    )
    lst.add_argument("--desk", help="only this desk")
    lst.add_argument(
        "--flagged-for", metavar="AGENT", help="only tickets flagged for this agent (address or name)"
    )
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
    _register_operations(sub)
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


def _list_status(session: Session, status: str, desk: Desk | None) -> str:
    """--status as a built-in status or a custom one (of --desk, else of any desk)."""
    if desk is not None:
        allowed = list(statuses_of(session, desk.id))
    else:
        custom = session.scalars(select(DeskStatus.name).distinct().order_by(DeskStatus.name))
        allowed = list(dict.fromkeys([*TICKET_STATUSES, *custom]))
    found = next((s for s in allowed if s == normalise_status(status)), None)
    if found is None:
        where = f" for desk {desk.name}" if desk is not None else ""
        raise UserError(f"unknown --status {status!r}{where}: use one of {', '.join(allowed)}")
    return found


def list_tickets(app: App, args: argparse.Namespace) -> int:
    counts = (
        select(Message.ticket_id, func.count(Message.id).label("n")).group_by(Message.ticket_id).subquery()
    )
    query = (
        select(Ticket, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.ticket_id == Ticket.id)
        .order_by(Ticket.id.desc())
    )
    with app.session() as session:
        desk = None
        if args.desk:
            desk = session.scalars(select(Desk).where(Desk.name == args.desk)).first()
            if desk is None:
                raise UserError(f"no desk named {args.desk!r}: see 'maildctl desk list'")
            query = query.where(Ticket.desk_id == desk.id)
        if args.status:
            query = query.where(Ticket.status == _list_status(session, args.status, desk))
        if args.flagged_for:
            agent = find_agent(session, args.flagged_for, active=False)
            flagged = select(TicketFlag.ticket_id).where(
                TicketFlag.agent_id == agent.id, TicketFlag.cleared_at.is_(None)
            )
            query = query.where(Ticket.id.in_(flagged))
        tickets = [ticket_json(t, n) for t, n in session.execute(query)]
    if args.json:
        print_json(tickets)
        return 0
    headers = ["NUMBER", "STATUS", "PRIORITY", "DESK", "CUSTOMER", "MSGS", "SUBJECT"]
    rows: list[list[Any]] = [
        [t["number"], t["status"], t["priority"], t["desk"], t["customer"], t["message_count"], t["subject"]]
        for t in tickets
    ]
    if sys.stdout.isatty():  # a person reading: one line per ticket; a pipe or file gets every character
        rows = fit_last_column(headers, rows, shutil.get_terminal_size().columns)
    print_table(headers, rows)
    return 0


MIN_LAST_COLUMN = 10  # a subject is never cut shorter than this, however narrow the terminal


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide (East Asian) characters two, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        for c in text
    )


def shorten(text: str, columns: int) -> str:
    """`text` cut to at most `columns` terminal columns, ending with "…" when cut."""
    text = " ".join(text.split())  # a tab or line break in a subject would break the line anyway
    if display_width(text) <= columns:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        width = display_width(char)
        if used + width > columns - 1:
            break
        kept.append(char)
        used += width
    return "".join(kept).rstrip() + "…"


def fit_last_column(headers: list[str], rows: list[list[Any]], columns: int) -> list[list[Any]]:
    """The rows with their last cell cut so that each line print_table writes fits in `columns` terminal
    columns (the last cell never below MIN_LAST_COLUMN). Mirrors print_table's layout: each other column
    as wide as its longest cell or header, two spaces between columns."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    fitted = []
    for row in cells[1:]:
        before = "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  "
        room = max(columns - display_width(before), MIN_LAST_COLUMN)
        fitted.append([*row[:-1], shorten(row[-1], room)])
    return fitted


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
        assignee = session.get(Agent, ticket.assigned_agent_id) if ticket.assigned_agent_id else None
        data["assigned_agent"] = assignee.email if assignee is not None else None
        data["tags"] = ticket_ops.tags_of(session, ticket)
        data["flags"] = [
            {"agent": agent.email, "note": flag.note, "by": flag.flagged_by, "at": iso(flag.created_at)}
            for flag, agent in session.execute(
                select(TicketFlag, Agent)
                .join(Agent, Agent.id == TicketFlag.agent_id)
                .where(TicketFlag.ticket_id == ticket.id, TicketFlag.cleared_at.is_(None))
                .order_by(TicketFlag.id)
            )
        ]
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
    if data["assigned_agent"]:
        print(f"assigned to {data['assigned_agent']}")
    if data["tags"]:
        print(f"tags: {', '.join(data['tags'])}")
    for flag in data["flags"]:
        print(f"flagged for {flag['agent']} by {flag['by']}" + (f": {flag['note']}" if flag["note"] else ""))
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
    with app.session() as session:
        found = [find_ticket(session, number) for number in args.numbers]
        try:
            now = dt.datetime.now(dt.UTC)
            survivor = merge_tickets(session, found, actor=who(), now=now, force=args.force)
        except MergeRefused as exc:
            raise UserError(f"cannot merge: {exc}") from None
        merged = sorted({t.id: t.number for t in found if t.id != survivor.id}.items())
        notified = queue_merge_notices(session, app.cfg, survivor, found, now=now) if args.notify else 0
        data = {
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
    from maild.admin_cli.blocks import add_entry, find_entry, valid_pattern

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
        message_count = ticket_ops.message_count(session, ids)
        # The customer's auto-reply included: it would go out after the ticket is gone.
        cancelled = ticket_ops.cancel_queued_mail(
            session, ids, f"ticket {number} deleted as spam (maildctl ticket block-and-delete)"
        )
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


# --- everyday operations (issue 7): status, priority, assign, tags, close/reopen, note, reply, delete,
# flags, log, split. Each change goes through maild.tickets.ticket_ops (or replies, split), which audits it.

TAG_PATTERN = re.compile(r"[\w.:/-]{1,100}")  # as `#tag` by mail (maild.tickets.commands)


def _register_operations(sub: Any) -> None:
    def number_command(name: str, help_text: str, handler: Any, description: str | None = None) -> Any:
        parser = sub.add_parser(name, help=help_text, description=description or help_text)
        parser.add_argument("number", metavar="NUMBER")
        parser.set_defaults(handler=handler)
        return parser

    status = number_command(
        "status",
        "set a ticket's status",
        set_status,
        f"Set the status: one of {', '.join(TICKET_STATUSES)}, or a custom status of the ticket's desk "
        "('maildctl status list').",
    )
    status.add_argument("status", metavar="STATUS")
    priority = number_command("priority", "set a ticket's priority", set_priority)
    priority.add_argument("priority", metavar="PRIORITY", help=" | ".join(PRIORITIES))
    assign = number_command(
        "assign",
        "assign a ticket to an agent (who gets the assigned_notice mail), or --none",
        assign_ticket,
    )
    assign.add_argument("agent", metavar="AGENT", nargs="?", help="the agent's address or name")
    assign.add_argument("--none", action="store_true", help="unassign")
    for name, handler, what in (("tag", tag_ticket, "add a tag"), ("untag", untag_ticket, "remove a tag")):
        parser = number_command(name, f"{what} (1-100 letters, digits and - _ . : /)", handler)
        parser.add_argument("tag", metavar="TAG")
    number_command("close", "set the status closed", close_ticket)
    number_command("reopen", "set the status open", reopen_ticket)
    note = number_command(
        "note", "add an internal note (never sent to customers), text from stdin or --file", add_note
    )
    note.add_argument("--file", help="read the note from this file (UTF-8) instead of stdin")
    reply = number_command(
        "reply",
        "answer the customer, as an agent's reply by mail: text from stdin or --file",
        reply_ticket,
        "Send the text to the customer and sub-customers with the agent_reply template, From the desk's "
        "address under the desk's name (or, with --as, the agent's display name). The ticket becomes "
        "waiting and the other agents get agent_reply_notice.",
    )
    reply.add_argument("--file", help="read the reply from this file (UTF-8) instead of stdin")
    reply.add_argument(
        "--as", dest="as_agent", metavar="AGENT", help="answer as this agent (address or name)"
    )
    number_command(
        "delete",
        "delete a ticket with its messages (the raw mail stays in the spool); its queued mail is cancelled",
        delete_ticket,
    )
    flag = number_command("flag", "flag a ticket for an agent, who gets the flag_notice mail", flag_ticket)
    flag.add_argument("agent", metavar="AGENT", help="the agent's address or name")
    flag.add_argument("--note", default="", help="why: goes into the mail and the flag")
    unflag = number_command("unflag", "clear a ticket's flag for an agent", unflag_ticket)
    unflag.add_argument("agent", metavar="AGENT", help="the agent's address or name")
    log = number_command(
        "log",
        "a ticket's audit log, oldest first (with the tickets merged into it)",
        show_log,
    )
    log.add_argument("--json", action="store_true")
    split = number_command(
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _target(session: Session, number: str) -> Ticket:
    """The ticket a change acts on: a merged number's survivor, as mail to that number lands there."""
    asked = find_ticket(session, number)
    ticket, _ = _whole_conversation(session, asked)
    if ticket.id != asked.id:
        print(f"({asked.number} is merged into {ticket.number}: changing {ticket.number})")
    return ticket


def find_agent(session: Session, who: str, *, active: bool = True) -> Agent:
    """An agent by address, or by name or display name (case-insensitive); `active`: refuse an inactive
    one (they get no mail)."""
    agents = list(session.scalars(select(Agent).order_by(Agent.id)))
    if "@" in who:
        found = [a for a in agents if a.email == normalize(who)]
    else:
        wanted = who.strip().lower()
        found = [a for a in agents if wanted in (a.name.strip().lower(), a.display_name.strip().lower())]
    if not found:
        raise UserError(f"no agent {who!r}: give an agent's address or name (see 'maildctl agent list')")
    if len(found) > 1:
        raise UserError(
            f"{who!r} names {len(found)} agents ({', '.join(a.email for a in found)}): give the address"
        )
    agent = found[0]
    if active and not agent.active:
        raise UserError(
            f"agent {agent.email} is inactive: activate them with 'maildctl agent set {agent.email} --active'"
        )
    return agent


def _status_name(session: Session, ticket: Ticket, text: str) -> str:
    """`text` as one of the ticket's desk's statuses ("On Hold" is on_hold), or UserError."""
    allowed = statuses_of(session, ticket.desk_id)
    found = next((s for s in allowed if s == normalise_status(text)), None)
    if found is None:
        raise UserError(
            f"unknown status {text!r} for desk {ticket.desk.name}: use one of {', '.join(allowed)} "
            "(custom ones: 'maildctl status add')"
        )
    return found


def _change_status(app: App, number: str, wanted: str | None) -> int:
    actor = who()
    with app.session() as session:
        ticket = _target(session, number)
        status = _status_name(session, ticket, wanted) if wanted is not None else "closed"
        before = ticket.status
        if before != status:
            ticket_ops.set_status(session, ticket, status, actor=actor, now=_now())
        number = ticket.number
    print(f"{number}: status {before} -> {status}" if before != status else f"{number} is {status} already")
    return 0


def set_status(app: App, args: argparse.Namespace) -> int:
    return _change_status(app, args.number, args.status)


def close_ticket(app: App, args: argparse.Namespace) -> int:
    return _change_status(app, args.number, "closed")


def reopen_ticket(app: App, args: argparse.Namespace) -> int:
    return _change_status(app, args.number, "open")


def set_priority(app: App, args: argparse.Namespace) -> int:
    priority = args.priority.strip().lower()
    if priority not in PRIORITIES:
        raise UserError(f"unknown priority {args.priority!r}: use one of {', '.join(PRIORITIES)}")
    with app.session() as session:
        ticket = _target(session, args.number)
        before, number = ticket.priority, ticket.number
        if before != priority:
            ticket_ops.set_priority(session, ticket, priority, actor=who(), now=_now())
    print(
        f"{number}: priority {before} -> {priority}"
        if before != priority
        else f"{number} is {priority} already"
    )
    return 0


def assign_ticket(app: App, args: argparse.Namespace) -> int:
    if args.none == (args.agent is not None):
        raise UserError("give either an agent (address or name) or --none")
    actor, now = who(), _now()
    with app.session() as session:
        ticket = _target(session, args.number)
        agent = find_agent(session, args.agent) if args.agent is not None else None
        number = ticket.number
        if ticket.assigned_agent_id == (agent.id if agent is not None else None):
            print(
                f"{number} is assigned to {agent.email} already"
                if agent
                else f"{number} is unassigned already"
            )
            return 0
        ticket_ops.assign(session, ticket, agent, actor=actor, now=now)
        try:
            mailed = (
                agent is not None
                and queue_assigned_notice(session, app.cfg, ticket, agent, assigned_by=actor, now=now)
                is not None
            )
        except TemplateError as exc:
            raise UserError(f"cannot compose assigned_notice: {type(exc).__name__}: {exc}") from None
    if agent is None:
        print(f"{number}: unassigned")
    else:
        print(f"{number}: assigned to {agent.email}" + ("" if mailed else " (no mail: bouncing or blocked)"))
    return 0


def _tag(text: str) -> str:
    tag = text.strip().lower()
    if not TAG_PATTERN.fullmatch(tag):
        raise UserError(f"{text!r} is not a tag: use 1-100 letters, digits and - _ . : /")
    return tag


def tag_ticket(app: App, args: argparse.Namespace) -> int:
    tag = _tag(args.tag)
    with app.session() as session:
        ticket = _target(session, args.number)
        had = tag in ticket_ops.tags_of(session, ticket)
        ticket_ops.add_tag(session, ticket, tag, actor=who(), now=_now())
        number = ticket.number
    print(f"{number} is tagged {tag} already" if had else f"{number}: tagged {tag}")
    return 0


def untag_ticket(app: App, args: argparse.Namespace) -> int:
    tag = _tag(args.tag)
    with app.session() as session:
        ticket = _target(session, args.number)
        try:
            ticket_ops.remove_tag(session, ticket, tag, actor=who(), now=_now())
        except ValueError as exc:
            raise UserError(f"{exc}: see 'maildctl ticket show {ticket.number}'") from None
        number = ticket.number
    print(f"{number}: untagged {tag}")
    return 0


def _text(path: str | None, what: str) -> str:
    """The text of a note or reply, from `path` or stdin."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
    else:
        text = sys.stdin.read()
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise UserError(f"the {what} is empty: write it on stdin or give --file")
    return text


def add_note(app: App, args: argparse.Namespace) -> int:
    text, actor = _text(args.file, "note"), who()
    with app.session() as session:
        ticket = _target(session, args.number)
        note = ticket_ops.add_note(session, ticket, text, author=(actor, ""), actor=actor, now=_now())
        number, note_id = ticket.number, note.id
    print(f"{number}: note #{note_id} added")
    return 0


def reply_ticket(app: App, args: argparse.Namespace) -> int:
    text, actor = _text(args.file, "reply"), who()
    with app.session() as session:
        ticket = _target(session, args.number)
        agent = find_agent(session, args.as_agent) if args.as_agent is not None else None
        try:
            sent = send_reply(session, app.cfg, ticket, text, agent=agent, actor=actor, now=_now())
        except TemplateError as exc:
            raise UserError(f"cannot compose the reply: {type(exc).__name__}: {exc}") from None
        number = ticket.number
        to = sent.relayed.row.rcpt_to if sent.relayed.row is not None else []
        not_sent, errors = sent.relayed.not_sent, sent.notice_errors
    print(f"{number}: reply sent to {', '.join(to)}" if to else f"{number}: reply stored, sent to nobody")
    if not_sent:
        print(f"not sent to {not_sent}")
    for error in errors:  # the reply went; say what the agents did not get
        print(f"maildctl: warning: notice not queued: {error}", file=sys.stderr)
    return 0


def delete_ticket(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        ticket, merged = _whole_conversation(session, find_ticket(session, args.number))
        detail = ticket_ops.delete_tickets(session, ticket, merged, actor=who(), now=_now())
    merged_text = f" (with merged {', '.join(detail['merged'])})" if detail["merged"] else ""
    cancelled = len(detail["outbox_cancelled"])
    print(
        f"{detail['number']} deleted{merged_text}, {detail['messages']} message(s), "
        f"{cancelled} queued mail(s) cancelled; the raw mail stays in the spool"
    )
    return 0


def flag_ticket(app: App, args: argparse.Namespace) -> int:
    actor, now = who(), _now()
    with app.session() as session:
        ticket = _target(session, args.number)
        agent = find_agent(session, args.agent)
        try:
            ticket_ops.flag(session, ticket, agent, note=args.note.strip(), actor=actor, now=now)
        except ticket_ops.NotFlagged as exc:
            raise UserError(f"{exc}: clear it with 'maildctl ticket unflag' first") from None
        try:
            row = queue_flag_notice(
                session, app.cfg, ticket, agent, flagged_by=actor, note=args.note.strip(), now=now
            )
        except TemplateError as exc:
            raise UserError(f"cannot compose flag_notice: {type(exc).__name__}: {exc}") from None
        number, email = ticket.number, agent.email
    print(f"{number}: flagged for {email}" + ("" if row is not None else " (no mail: bouncing or blocked)"))
    return 0


def unflag_ticket(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        ticket = _target(session, args.number)
        agent = find_agent(session, args.agent, active=False)
        try:
            ticket_ops.unflag(session, ticket, agent, actor=who(), now=_now())
        except ticket_ops.NotFlagged as exc:
            raise UserError(f"{exc}: see 'maildctl ticket list --flagged-for {agent.email}'") from None
        number, email = ticket.number, agent.email
    print(f"{number}: flag for {email} cleared")
    return 0


def log_json(entry: AuditLog, numbers: dict[int, str]) -> dict[str, Any]:
    detail = dict(entry.detail or {})
    return {
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "ticket": numbers.get(entry.ticket_id) if entry.ticket_id is not None else None,
        "before": detail.pop("before", None),
        "after": detail.pop("after", None),
        "detail": detail,
    }


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def show_log(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        ticket, merged = _whole_conversation(session, find_ticket(session, args.number))
        numbers = {t.id: t.number for t in [ticket, *merged]}
        entries = session.scalars(
            select(AuditLog).where(AuditLog.ticket_id.in_(list(numbers))).order_by(AuditLog.at, AuditLog.id)
        )
        data = [log_json(e, numbers) for e in entries]
    if args.json:
        print_json(data)
        return 0
    for e in data:
        change = ""
        if e["before"] is not None or e["after"] is not None:
            change = f"{_short(e['before'])} -> {_short(e['after'])}"
        detail = " ".join(f"{k}={_short(v)}" for k, v in e["detail"].items())
        where = f" [{e['ticket']}]" if e["ticket"] != ticket.number else ""
        print("  ".join(part for part in (e["at"], e["actor"], e["action"] + where, change, detail) if part))
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
        desk = None
        if args.desk:
            desk = session.scalars(select(Desk).where(Desk.name == args.desk)).first()
            if desk is None:
                raise UserError(f"no desk named {args.desk!r}: see 'maildctl desk list'")
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
                now=_now(),
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
