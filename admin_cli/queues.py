"""maildctl outbox list|show|retry|flush and spool list|release|purge: what went out, and what came in
with its outcome."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from email import message_from_bytes, policy
from typing import Any

from sqlalchemy import select

from admin_cli.common import App, UserError, iso, print_json, print_table, who
from maild.retention import purge_raw_mail
from maild.sender import flush
from storage.models import AuditLog, OutboxMessage, SpoolEntry, Ticket, utcnow

OUTBOX_STATUSES = ("queued", "sent", "failed")
SPOOL_OUTCOMES = (
    "created",
    "replied",
    "duplicate",
    "quarantined",
    "unknown_recipient",
    "rejected",
    "looped",
    "bounce",
    "archived",
    "blocked",
    "refused",
    "held",
    "noted",
    "desk_reply",
)


def register(commands: Any) -> None:
    outbox = commands.add_parser("outbox", help="outgoing mail")
    sub = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list outgoing mail, newest first")
    lst.add_argument("--status", help=f"only this status ({', '.join(OUTBOX_STATUSES)})")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_outbox)
    show = sub.add_parser("show", help="one outgoing mail: recipients, attempts, errors, headers")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true")
    show.add_argument("--raw", action="store_true", help="print the message itself, as sent")
    show.set_defaults(handler=show_outbox)
    retry = sub.add_parser(
        "retry", help="send again now: a queued mail at once, a failed one to the recipients it failed for"
    )
    retry.add_argument("ids", type=int, nargs="*", metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every failed mail")
    retry.set_defaults(handler=retry_outbox)
    fl = sub.add_parser("flush", help="send what is due now")
    fl.set_defaults(handler=flush_outbox)

    spool = commands.add_parser("spool", help="received mail and what became of it")
    sub = spool.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="list received messages, newest first")
    lst.add_argument("--outcome", help=f"only this outcome ({', '.join(SPOOL_OUTCOMES)})")
    lst.add_argument("--quarantined", action="store_true", help="only quarantined messages")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_spool)
    release = sub.add_parser(
        "release",
        help="let a quarantined mail through (the spam verdict no longer holds it) and process it now",
    )
    release.add_argument("id", type=int, metavar="ID")
    release.set_defaults(handler=release_spool)
    purge = sub.add_parser(
        "purge",
        help="delete raw mail older than the retention period from disk (the rows, tickets and attachments "
        "stay; quarantined and held mail is kept)",
    )
    purge.add_argument(
        "--older-than", type=float, metavar="DAYS", help="default: [spool] retention_days of the config"
    )
    purge.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(handler=purge_spool)


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


def _load(session: Any, outbox_id: int) -> tuple[OutboxMessage, str | None]:
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
        sys.stdout.buffer.write(raw)
        return 0
    message = message_from_bytes(raw, policy=policy.default)
    fields["headers"] = {name: str(value) for name, value in message.items()}
    fields["size"] = len(raw)
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
        for row in rows:
            if row.status == "sent" and not row.failed_to:
                raise UserError(f"outbox {row.id} was delivered to every recipient: nothing to retry")
            before = {"status": row.status, "to": list(row.rcpt_to), "failed_to": list(row.failed_to)}
            row.rcpt_to = list(dict.fromkeys([*row.rcpt_to, *row.failed_to]))
            row.failed_to = []
            row.status, row.next_attempt_at = "queued", now
            row.retry_until = now + dt.timedelta(hours=app.cfg.retry_hours)
            session.add(
                AuditLog(
                    actor="maildctl",
                    action="outbox_retry",
                    ticket_id=row.ticket_id,
                    detail={"outbox_id": row.id, "before": before, "to": list(row.rcpt_to)},
                )
            )
        ids = [row.id for row in rows]
    result = flush(app.factory, app.cfg, ids)
    print(f"retried {len(ids)}: sent {result.sent}, deferred {result.deferred}, failed {result.failed}")
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
                "raw_purged_at": iso(e.raw_purged_at),
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


def release_spool(app: App, args: argparse.Namespace) -> int:
    """Only quarantined rows: spam, unparseable input, or a mail that failed processing MAX_ATTEMPTS times
    (which the release replays). A blocked mail stays blocked: remove the entry, the sender writes again."""
    from pipeline.runner import process

    with app.session() as session:
        entry = session.get(SpoolEntry, args.id, with_for_update=True)
        if entry is None:
            raise UserError(f"no spool entry with id {args.id}: see 'maildctl spool list'")
        if entry.state != "done" or entry.outcome != "quarantined":
            now = entry.outcome or entry.state
            raise UserError(
                f"spool entry {args.id} is not quarantined ({now}): only quarantined mail is released"
            )
        before = {"outcome": entry.outcome, "reason": entry.reason, "attempts": entry.attempts}
        entry.released = True
        entry.state, entry.outcome, entry.reason = "received", None, ""
        entry.attempts = 0  # a mail quarantined after failed attempts gets its full count again
        session.add(
            AuditLog(
                actor="maildctl", action="spool_release", detail={"spool_id": entry.id, "before": before}
            )
        )
    # Committed first: if processing is cut short the row is 'received', and maild serve's recovery sweep
    # (or the next start) processes it.
    result = process(app.factory, app.cfg, args.id)
    if result.outcome == "failed":  # still 'received': the recovery sweep retries it
        raise UserError(f"released {args.id}, but processing failed ({result.reason}); it will be retried")
    if result.outbox_ids:
        # As maild pipe: what it queued goes out now; a send failure leaves it for the outbox's retries.
        try:
            flush(app.factory, app.cfg, result.outbox_ids)
        except Exception as exc:
            print(
                f"maildctl: queued mail not sent yet ({type(exc).__name__}); it stays in the outbox",
                file=sys.stderr,
            )
    ticket = f" {result.ticket_number}" if result.ticket_number else ""
    reason = f" ({result.reason})" if result.reason else ""
    print(f"released {args.id}: {result.outcome}{ticket}{reason}")
    return 0


def purge_spool(app: App, args: argparse.Namespace) -> int:
    days = app.cfg.spool_retention_days if args.older_than is None else args.older_than
    if args.older_than is not None and args.older_than <= 0:
        raise UserError(f"--older-than must be more than 0 days, got {args.older_than:g}")
    if days <= 0:
        raise UserError("no retention period: give --older-than DAYS, or set [spool] retention_days")
    purged = purge_raw_mail(app.factory, app.cfg, dt.timedelta(days=days), dry_run=args.dry_run)
    data = {
        "older_than_days": days,
        "dry_run": args.dry_run,
        "rows": purged.rows,
        "files": purged.files,
        "bytes": purged.bytes,
        "kept": purged.kept,
    }
    if not args.dry_run and purged.rows:
        with app.session() as session:
            session.add(AuditLog(actor=who(), action="spool_purge", detail=data))
    if args.json:
        print_json(data)
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    kept = f"; {purged.kept} old row(s) kept: newer or held mail has the same bytes" if purged.kept else ""
    print(
        f"{verb} the raw mail of {purged.rows} spool row(s) older than {days:g} days: "
        f"{purged.files} file(s), {purged.bytes / 1024 / 1024:.1f} MiB{kept}"
    )
    return 0
