"""maildctl ticket open: an agent (or the desk) opens a ticket to a customer, its first mail sent from the
desk (maild.tickets.agent_open)."""

from __future__ import annotations

import argparse
import mimetypes
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import select

from maild.admin_cli.common import App, UserError, find_desk, print_json, who
from maild.admin_cli.ticket_changes import text_of
from maild.admin_cli.ticket_lookup import find_agent, utc_now
from maild.mail.attachment_policy import Upload
from maild.storage.models import OutboxMessage
from maild.tickets.agent_open import OpenRefused, open_ticket

MAX_FILE_BYTES = 50 * 1024 * 1024  # read at most this much of one --attach file: the desk's limit is lower


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "open",
        help="open a ticket to a customer: the text (stdin or --file) goes to them from the desk",
        description="Open a ticket of DESK for the customer EMAIL, with CCs as sub-customers. The text "
        "(stdin or --file) and the --attach files are its first message, sent to the customer and CCs "
        "from the desk's address as an agent's reply (signed Reply-To: their answer threads into the "
        "ticket). The ticket is then waiting. Prints the ticket number.",
    )
    parser.add_argument("--desk", required=True, metavar="DESK", help="the desk the ticket belongs to")
    parser.add_argument("--to", required=True, metavar="EMAIL", help="the customer's address")
    parser.add_argument(
        "--cc", action="append", default=[], metavar="EMAIL", help="a sub-customer's address (repeatable)"
    )
    parser.add_argument("--subject", required=True, help="the ticket's title and the mail's subject")
    parser.add_argument("--file", help="read the text from this file (UTF-8) instead of stdin")
    parser.add_argument(
        "--attach", action="append", default=[], metavar="PATH", help="attach this file (repeatable)"
    )
    parser.add_argument(
        "--as", dest="as_agent", metavar="AGENT", help="write as this agent (address or name)"
    )
    parser.add_argument("--json", action="store_true", help="print number, desk, customer, cc, message ids")
    parser.set_defaults(handler=open_command)


def _upload(path: str) -> Upload:
    file = Path(path)
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read --attach {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"--attach {path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return Upload(file.name, content_type, data)


def open_command(app: App, args: argparse.Namespace) -> int:
    # Every mistake the command line shows is said before stdin is waited on (and no transaction waits).
    uploads = [_upload(path) for path in args.attach]
    with app.factory() as session:
        find_desk(session, args.desk, "--desk")
        if args.as_agent is not None:
            find_agent(session, args.as_agent)
    text = text_of(args.file, "text")
    with app.session() as session:
        desk = find_desk(session, args.desk, "--desk")
        agent = find_agent(session, args.as_agent) if args.as_agent is not None else None
        try:
            ticket = open_ticket(
                session,
                app.cfg,
                desk=desk,
                customer=args.to,
                cc=args.cc,
                subject=args.subject,
                text=text,
                attachments=uploads,
                agent=agent,
                actor=who(),
                now=utc_now(),
            )
        except OpenRefused as exc:
            raise UserError(str(exc)) from None
        except TemplateError as exc:
            raise UserError(f"cannot compose the mail: {type(exc).__name__}: {exc}") from None
        first = ticket.messages[0]
        sent = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.ticket_id == ticket.id, OutboxMessage.template == "agent_reply"
            )
        )
        data = {
            "number": ticket.number,
            "desk": desk.name,
            "customer": ticket.customer.email,
            "cc": [p.contact.email for p in ticket.participants if p.role == "cc"],
            "status": ticket.status,
            "message": first.id,
            # the Message-ID(s) the customer and CCs got: what their replies name
            "message_ids": sorted({row.message_id for row in sent if row.template == "agent_reply"}),
            "attachments": [a.filename for a in first.attachments],
        }
    if args.json:
        print_json(data)
    else:
        print(data["number"])
    return 0
