"""maildctl outbox list|flush and spool list: what went out, and what came in with its outcome."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from admin_cli.common import App, UserError, iso, print_json, print_table
from maild.sender import flush
from storage.models import OutboxMessage, SpoolEntry, Ticket

OUTBOX_STATUSES = ("queued", "sent", "failed")
SPOOL_OUTCOMES = ("created", "replied", "duplicate", "quarantined", "unknown_recipient", "rejected")


def register(commands: Any) -> None:
    outbox = commands.add_parser("outbox", help="outgoing mail")
    sub = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list outgoing mail, newest first")
    lst.add_argument("--status", help=f"only this status ({', '.join(OUTBOX_STATUSES)})")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_outbox)
    fl = sub.add_parser("flush", help="send what is due now")
    fl.set_defaults(handler=flush_outbox)

    spool = commands.add_parser("spool", help="received mail and what became of it")
    sub = spool.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list received messages, newest first")
    lst.add_argument("--outcome", help=f"only this outcome ({', '.join(SPOOL_OUTCOMES)})")
    lst.add_argument("--quarantined", action="store_true", help="only quarantined messages")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_spool)


def list_outbox(app: App, args: argparse.Namespace) -> int:
    if args.status and args.status not in OUTBOX_STATUSES:
        raise UserError(f"unknown --status {args.status!r}: use one of {', '.join(OUTBOX_STATUSES)}")
    query = select(OutboxMessage, Ticket.number).outerjoin(Ticket, OutboxMessage.ticket_id == Ticket.id)
    if args.status:
        query = query.where(OutboxMessage.status == args.status)
    with app.session() as session:
        rows = [
            {
                "id": row.id,
                "ticket": number,
                "template": row.template,
                "to": list(row.rcpt_to),
                "subject": row.subject,
                "status": row.status,
                "attempts": row.attempts,
                "next_attempt_at": iso(row.next_attempt_at) if row.status == "queued" else None,
                "last_error": row.last_error,
                "message_id": row.message_id,
                "created_at": iso(row.created_at),
                "sent_at": iso(row.sent_at),
            }
            for row, number in session.execute(query.order_by(OutboxMessage.id.desc()))
        ]
    if args.json:
        print_json(rows)
    else:
        print_table(
            ["ID", "STATUS", "TICKET", "TEMPLATE", "TO", "ATTEMPTS", "ERROR"],
            [
                [
                    r["id"],
                    r["status"],
                    r["ticket"],
                    r["template"],
                    ", ".join(r["to"]),
                    r["attempts"],
                    r["last_error"],
                ]
                for r in rows
            ],
        )
    return 0


def flush_outbox(app: App, args: argparse.Namespace) -> int:
    result = flush(app.factory, app.cfg)
    print(f"sent {result.sent}, deferred {result.deferred}, failed {result.failed}")
    return 0


def list_spool(app: App, args: argparse.Namespace) -> int:
    outcome = "quarantined" if args.quarantined else args.outcome
    if args.quarantined and args.outcome and args.outcome != "quarantined":
        raise UserError("--quarantined and --outcome disagree: give one of them")
    if outcome and outcome not in SPOOL_OUTCOMES:
        raise UserError(f"unknown --outcome {outcome!r}: use one of {', '.join(SPOOL_OUTCOMES)}")
    query = select(SpoolEntry, Ticket.number).outerjoin(Ticket, SpoolEntry.ticket_id == Ticket.id)
    if outcome:
        query = query.where(SpoolEntry.outcome == outcome)
    with app.session() as session:
        rows = [
            {
                "id": e.id,
                "received_at": iso(e.received_at),
                "ingress": e.ingress,
                "recipient": e.recipient,
                "message_id": e.header_message_id,
                "size": e.size,
                "sha256": e.sha256,
                "state": e.state,
                "outcome": e.outcome,
                "reason": e.reason,
                "ticket": number,
                "attempts": e.attempts,
                "trace": e.trace,
            }
            for e, number in session.execute(query.order_by(SpoolEntry.id.desc()))
        ]
    if args.json:
        print_json(rows)
    else:
        print_table(
            ["ID", "RECEIVED", "OUTCOME", "TICKET", "RECIPIENT", "REASON"],
            [
                [
                    r["id"],
                    r["received_at"],
                    r["outcome"] or r["state"],
                    r["ticket"],
                    r["recipient"],
                    r["reason"],
                ]
                for r in rows
            ],
        )
    return 0
