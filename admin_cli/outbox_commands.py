"""maildctl outbox list|show|retry|flush: what went out, and sending it again."""

from __future__ import annotations

import argparse
import sys
from email import message_from_bytes, policy
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import add_show_by_id, command_group
from maild.admin_cli.common import App, UserError, iso, print_json, print_table
from maild.outbound.outgoing import StoredAttachmentError, sent_bytes, sent_size
from maild.outbound.sender import flush
from maild.storage.models import OutboxMessage, Ticket, utcnow
from maild.tickets import queue_ops

OUTBOX_STATUSES = ("queued", "sent", "failed")


def register(commands: Any) -> None:
    sub = command_group(commands, "outbox", "outgoing mail")
    lst = sub.add_parser("list", help="list outgoing mail, newest first")
    lst.add_argument("--status", help=f"only this status ({', '.join(OUTBOX_STATUSES)})")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_outbox)
    add_show_by_id(
        sub,
        "one outgoing mail: recipients, attempts, errors, headers",
        "print the message itself, as sent",
        show_outbox,
    )
    retry = sub.add_parser(
        "retry", help="send again now: a queued mail at once, a failed one to the recipients it failed for"
    )
    retry.add_argument("ids", type=int, nargs="*", metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every failed mail")
    retry.set_defaults(handler=retry_outbox)
    fl = sub.add_parser("flush", help="send what is due now")
    fl.set_defaults(handler=flush_outbox)


def _outbox_fields(row: OutboxMessage, number: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "ticket": number,
        "template": row.template,
        # every recipient, whatever became of them; `pending` are those still to be served
        "to": list(dict.fromkeys([*row.delivered_to, *row.failed_to, *row.rcpt_to])),
        "pending": list(row.rcpt_to),
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "queued" else None,
        "last_error": row.last_error,
        "message_id": row.message_id,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
        "delivered_to": list(row.delivered_to),
        "failed_to": list(row.failed_to),
        "retry_until": iso(row.retry_until),
    }


def list_outbox(app: App, args: argparse.Namespace) -> int:
    if args.status and args.status not in OUTBOX_STATUSES:
        raise UserError(f"unknown --status {args.status!r}: use one of {', '.join(OUTBOX_STATUSES)}")
    query = select(OutboxMessage, Ticket.number).outerjoin(Ticket, OutboxMessage.ticket_id == Ticket.id)
    if args.status:
        query = query.where(OutboxMessage.status == args.status)
    with app.session() as session:
        rows = [
            _outbox_fields(row, number)
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


def _load(session: Session, outbox_id: int) -> tuple[OutboxMessage, str | None]:
    found = session.execute(
        select(OutboxMessage, Ticket.number)
        .outerjoin(Ticket, OutboxMessage.ticket_id == Ticket.id)
        .where(OutboxMessage.id == outbox_id)
    ).first()
    if found is None:
        raise UserError(f"no outgoing mail with id {outbox_id}: see `maildctl outbox list`")
    return found[0], found[1]


def show_outbox(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        row, number = _load(session, args.id)
        fields = _outbox_fields(row, number)
        raw = bytes(row.raw)
    if args.raw:
        # As sent: stored attachments expanded from the attachment store, written as they are read.
        try:  # whole before written: a file with other bytes is found at its end, and nothing is printed
            sys.stdout.buffer.write(sent_bytes(raw, app.cfg.attachment_dir))
        except StoredAttachmentError as exc:
            raise UserError(f"outbox {args.id}: {exc}") from None
        return 0
    # The stored mail has the headers as sent (only attachment bodies are references).
    message = message_from_bytes(raw, policy=policy.default)
    fields["headers"] = {name: str(value) for name, value in message.items()}
    fields["size"] = sent_size(raw)
    fields["stored_size"] = len(raw)  # what the outbox row holds
    if args.json:
        print_json(fields)
        return 0
    for key in ("id", "status", "ticket", "template", "subject", "message_id", "created_at", "sent_at"):
        print(f"{key}: {fields[key] if fields[key] is not None else ''}")
    print(f"pending: {', '.join(fields['pending']) or '-'}")
    print(f"delivered to: {', '.join(fields['delivered_to']) or '-'}")
    print(f"failed for: {', '.join(fields['failed_to']) or '-'}")
    print(f"attempts: {fields['attempts']}, next: {fields['next_attempt_at'] or '-'}")
    if fields["last_error"]:
        print(f"last error: {fields['last_error']}")
    print()
    for name, value in fields["headers"].items():
        print(f"{name}: {value}")
    return 0


def retry_outbox(app: App, args: argparse.Namespace) -> int:
    if bool(args.ids) == args.failed:
        raise UserError("give the outbox ids to retry, or --failed for every failed mail (not both)")
    now = utcnow()
    with app.session() as session:
        if args.failed:
            rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.status == "failed")))
        else:
            rows = [_load(session, outbox_id)[0] for outbox_id in dict.fromkeys(args.ids)]
        try:
            queue_ops.retry_outbox(session, rows, now=now, retry_hours=app.cfg.retry_hours, actor="maildctl")
        except queue_ops.NothingToRetry as exc:
            raise UserError(str(exc)) from None
        ids = [row.id for row in rows]
    result = flush(app.factory, app.cfg, ids)
    print(f"retried {len(ids)}: sent {result.sent}, deferred {result.deferred}, failed {result.failed}")
    return 0


def flush_outbox(app: App, args: argparse.Namespace) -> int:
    result = flush(app.factory, app.cfg)
    print(f"sent {result.sent}, deferred {result.deferred}, failed {result.failed}")
    return 0
