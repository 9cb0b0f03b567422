"""maildctl ticket: list, show, cc, merge, split, block-and-delete, delete, status, priority, assign, tag,
untag, close, reopen, note, reply, flag, unflag, log.

This module builds the `ticket` command and holds what reads tickets (list, show, log); the changes are
in ticket_changes (status … unflag), ticket_merges (merge, split, block-and-delete) and
ticket_participants (cc), ticket_link_commands (links); shared look-ups in ticket_lookup."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import unicodedata
from typing import Any

from maild.admin_cli import (
    importing,
    ticket_bulk,
    ticket_changes,
    ticket_link_commands,
    ticket_merges,
    ticket_open,
    ticket_participants,
)
from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, find_ticket, print_json, print_table
from maild.admin_cli.ticket_filters import add_filter_arguments, list_filtered
from maild.admin_cli.ticket_lookup import number_command, utc_now
from maild.tickets.ticket_views import show_json, ticket_log


def register(commands: Any) -> None:
    sub = command_group(commands, "ticket", "tickets")
    lst = sub.add_parser("list", help="list tickets, newest first")
    add_filter_arguments(lst)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_tickets)
    show = sub.add_parser("show", help="one ticket with its participants and messages")
    show.add_argument("number")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_ticket)
    ticket_participants.register(sub)
    ticket_link_commands.register(sub)
    ticket_merges.register_merge(sub)
    ticket_changes.register(sub)
    ticket_bulk.register(sub)
    ticket_open.register(sub)
    log = number_command(
        sub,
        "log",
        "a ticket's audit log, oldest first (with the tickets merged into it)",
        show_log,
    )
    log.add_argument("--json", action="store_true")
    ticket_merges.register_split(sub)
    importing.register_ticket_commands(sub)  # ticket export lives with import


def list_tickets(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        tickets = list_filtered(session, args, utc_now())
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
        data = show_json(session, find_ticket(session, args.number))
    if args.json:
        print_json(data)
    else:
        _print_ticket(data)
    return 0


def _print_ticket(data: dict[str, Any]) -> None:
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
        for rating in m["ratings"]:
            said = f": {rating['comment']}" if rating["comment"] else ""
            print(f"  [rating] {rating['score']}/5 by {rating['contact']}{said}")


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def show_log(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        ticket, data = ticket_log(session, find_ticket(session, args.number))
    if args.json:
        print_json(data)
        return 0
    for e in data:
        print(log_line(e, ticket.number))
    return 0


def log_line(e: dict[str, Any], shown: str | None = None) -> str:
    """One audit row (log_json's fields) as `ticket log` prints it; its ticket named unless it is `shown`
    (the one the log is of). Also `maildctl audit`'s lines."""
    change = ""
    if e["before"] is not None or e["after"] is not None:
        change = f"{_short(e['before'])} -> {_short(e['after'])}"
    detail = " ".join(f"{k}={_short(v)}" for k, v in e["detail"].items())
    where = f" [{e['ticket']}]" if e["ticket"] is not None and e["ticket"] != shown else ""
    return "  ".join(part for part in (e["at"], e["actor"], e["action"] + where, change, detail) if part)
