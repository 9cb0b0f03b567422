"""maildctl spool list|show|release|delete|purge: what came in, with its outcome."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import add_show_by_id, command_group
from maild.admin_cli.common import App, UserError, iso, print_json, print_table, who
from maild.outbound.sender import flush
from maild.storage.files import content_path, discard_stale
from maild.storage.models import SpoolEntry, Ticket
from maild.tickets import queue_ops
from maild.tickets.retention import AWAITING_REVIEW

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
    sub = command_group(commands, "spool", "received mail and what became of it")
    lst = sub.add_parser("list", help="list received messages, newest first")
    lst.add_argument("--outcome", help=f"only this outcome ({', '.join(SPOOL_OUTCOMES)})")
    lst.add_argument("--quarantined", action="store_true", help="only quarantined messages")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_spool)
    add_show_by_id(
        sub,
        "one received mail: state, outcome, reason, trace, ticket, headers",
        "write the raw mail itself, as received",
        show_spool,
    )
    release = sub.add_parser(
        "release",
        help="let a quarantined mail through (the spam verdict no longer holds it) and process it now; "
        "says what became of it (exit 1 when it failed or is quarantined again)",
    )
    release.add_argument("id", type=int, metavar="ID")
    release.set_defaults(handler=release_spool)
    delete = sub.add_parser(
        "delete",
        help="delete a quarantined or held mail: its row and its raw mail (audited; a ticket message made "
        "from it stays)",
    )
    delete.add_argument("id", type=int, metavar="ID")
    delete.set_defaults(handler=delete_spool)
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
            _spool_fields(e, number) for e, number in session.execute(query.order_by(SpoolEntry.id.desc()))
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


def _spool_fields(entry: SpoolEntry, number: str | None) -> dict[str, Any]:
    return {
        "id": entry.id,
        "state": entry.state,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "ticket": number,
        "received_at": iso(entry.received_at),
        "processed_at": iso(entry.processed_at),
        "ingress": entry.ingress,
        "recipient": entry.recipient,
        "mail_from": entry.mail_from,
        "message_id": entry.header_message_id,
        "size": entry.size,
        "sha256": entry.sha256,
        "attempts": entry.attempts,
        "released": entry.released,
        "trace": entry.trace,
        "raw_purged_at": iso(entry.raw_purged_at),
    }


def _load_spool(session: Session, spool_id: int, *, lock: bool = False) -> tuple[SpoolEntry, str | None]:
    entry = session.get(SpoolEntry, spool_id, with_for_update=lock)
    if entry is None:
        raise UserError(f"no spool entry with id {spool_id}: see 'maildctl spool list'")
    ticket = session.get(Ticket, entry.ticket_id) if entry.ticket_id is not None else None
    return entry, ticket.number if ticket is not None else None


def _raw_gone(entry: SpoolEntry) -> str:
    """Why a row's raw mail is not there, in words."""
    if entry.raw_purged_at is not None:
        return f"its raw mail was deleted on {iso(entry.raw_purged_at)} (retention period)"
    return "its raw mail is missing from the spool"


def _header_lines(raw: bytes) -> list[tuple[str, str]]:
    """The raw mail's header fields in their order (Received repeats), unfolded, encoded words decoded.
    Parsed with compat32, which never raises on a malformed header: this is mail as it arrived."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    lines: list[tuple[str, str]] = []
    for name, value in headers.items():
        try:
            text = str(make_header(decode_header(str(value))))
        except Exception:  # a broken encoded word: show it as it came
            text = str(value)
        lines.append((name, " ".join(text.split())))
    return lines


def _describe_trace(trace: list[Any]) -> str:
    steps = []
    for step in trace:
        if isinstance(step, dict):
            stop = f" (stop: {step['stop']})" if step.get("stop") else ""
            steps.append(f"{step.get('stage', '?')}{stop}")
    return " → ".join(steps) or "-"


def show_spool(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        entry, number = _load_spool(session, args.id)
        fields = _spool_fields(entry, number)
        path = content_path(app.cfg.spool_dir, entry.sha256, ".eml")
        gone = _raw_gone(entry)
    try:
        raw: bytes | None = path.read_bytes()
    except FileNotFoundError:
        raw = None
    if args.raw:
        if raw is None:
            raise UserError(f"spool entry {args.id}: {gone}")
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
        return 0
    fields["raw_path"] = str(path) if raw is not None else None
    fields["headers"] = [[name, value] for name, value in _header_lines(raw)] if raw is not None else None
    if args.json:
        print_json(fields)
        return 0
    outcome = f", outcome {fields['outcome']}" if fields["outcome"] else " (not processed yet)"
    released = " (released by an admin)" if fields["released"] else ""
    print(f"spool entry {fields['id']}: {fields['state']}{outcome}{released}")
    print(f"reason: {fields['reason'] or '-'}")
    print(f"ticket: {fields['ticket'] or '-'}")
    print(f"received: {fields['received_at']} by {fields['ingress']}")
    print(f"processed: {fields['processed_at'] or '-'}, attempts: {fields['attempts']}")
    print(f"recipient: {fields['recipient'] or '-'}, envelope sender: {fields['mail_from'] or '-'}")
    print(f"message-id: {fields['message_id'] or '-'}")
    print(f"size: {fields['size']} bytes, sha256: {fields['sha256']}")
    print(f"trace: {_describe_trace(fields['trace'])}")
    print(f"raw mail: {fields['raw_path'] or gone}")
    if fields["headers"] is not None:
        print()
        for name, value in fields["headers"]:
            print(f"{name}: {value}")
    return 0


def release_spool(app: App, args: argparse.Namespace) -> int:
    """Only quarantined rows: spam, unparseable input, or a mail that failed processing MAX_ATTEMPTS times
    (which the release replays). A blocked mail stays blocked: remove the entry, the sender writes again.

    Processed here and now, as before; the message says what became of it, since a release does not make
    a mail pass: unparseable mail is quarantined again, and a failure leaves the row for maild serve."""
    from maild.pipeline.runner import process

    _mark_released(app, args.id)
    # Committed first: if processing is cut short the row is 'received', and maild serve's recovery sweep
    # (or the next start) processes it.
    now = dt.datetime.now(dt.UTC)
    result = process(app.factory, app.cfg, args.id, now)
    if result.outcome == "failed":  # still 'received', one attempt counted
        raise _release_failed(app, args.id, result.reason)
    by = _processed_by(app, args.id, now)
    if result.outcome == "quarantined":
        raise UserError(f"released {args.id} and {by}, but it is quarantined again: {result.reason}")
    sent = _send_queued(app, result.outbox_ids) if result.outbox_ids else ""
    ticket = f" {result.ticket_number}" if result.ticket_number else ""
    reason = f" ({result.reason})" if result.reason else ""
    print(f"released {args.id} and {by}: {result.outcome}{ticket}{reason}{sent}")
    return 0


def _mark_released(app: App, spool_id: int) -> None:
    """Set a quarantined row back to 'received', released (audited), or UserError."""
    with app.session() as session:
        entry, _ = _load_spool(session, spool_id, lock=True)
        if entry.state != "done" or entry.outcome != "quarantined":
            state = entry.outcome or entry.state
            raise UserError(
                f"spool entry {spool_id} is not quarantined ({state}): only quarantined mail is released"
            )
        if not content_path(app.cfg.spool_dir, entry.sha256, ".eml").is_file():
            # Nothing to run through the pipeline: marking it 'received' would only make it fail 3 times.
            raise UserError(f"spool entry {spool_id} cannot be released: {_raw_gone(entry)}")
        queue_ops.release_spool(session, entry, actor=who())


def _release_failed(app: App, spool_id: int, reason: str) -> UserError:
    """What to say when processing a released row failed: who retries it, and when."""
    from maild.ingress.control import ask_status, socket_path
    from maild.pipeline.runner import MAX_ATTEMPTS

    later = (
        f"the running maild serve retries it within {app.cfg.schedule.recovery_seconds:g} s"
        if ask_status(socket_path(app.cfg.data_dir)) is not None
        else "no maild serve is running; it processes the row when it starts"
    )
    return UserError(
        f"released {spool_id}, but processing it failed (attempt 1 of {MAX_ATTEMPTS}: {reason}); "
        f"it stays queued for reprocessing: {later}"
    )


def _processed_by(app: App, spool_id: int, now: dt.datetime) -> str:
    """process() stamps the row with its `now`; another stamp means someone else (the running daemon's
    recovery sweep) took the 'received' row first: the row lock lets only one of them process it."""
    with app.session() as session:
        done = session.get(SpoolEntry, spool_id)
        processed_at = done.processed_at if done is not None else None
    if processed_at == now.replace(tzinfo=None):
        return "processed now"
    return "processed by the running maild serve"


def _send_queued(app: App, outbox_ids: Sequence[int]) -> str:
    """As maild pipe: what processing queued goes out now; a send failure leaves it for the outbox's
    retries. Returns the words for the release's message."""
    try:
        handed = flush(app.factory, app.cfg, outbox_ids)
    except Exception as exc:
        return f"; its mail stays queued in the outbox ({type(exc).__name__})"
    return f"; its mail: {handed.sent} sent, {handed.deferred} deferred, {handed.failed} failed"


def delete_spool(app: App, args: argparse.Namespace) -> int:
    """Only mail waiting for a person (quarantined, held): the rest is the record of what arrived. The raw
    file goes too, unless another row names the same bytes (a second recipient, a re-delivery)."""
    started = time.time()  # a re-delivery that touches the file from now on keeps it (discard_stale)
    with app.session() as session:
        entry, number = _load_spool(session, args.id, lock=True)
        if entry.state != "done" or entry.outcome not in AWAITING_REVIEW:
            state = entry.outcome or entry.state
            raise UserError(
                f"spool entry {args.id} is {state}: only quarantined or held mail is deleted "
                f"({' or '.join(AWAITING_REVIEW)})"
            )
        outcome, digest = entry.outcome, entry.sha256
        sharing, unlinked = queue_ops.delete_spool(session, entry, _spool_fields(entry, number), actor=who())
    # After the commit: a crash in between leaves a file without a row, never a row without its file.
    if sharing:
        raw = f"; its raw mail stays: spool {', '.join(map(str, sharing))} has the same bytes"
    else:
        freed = discard_stale(content_path(app.cfg.spool_dir, digest, ".eml"), started)
        if freed is None:
            raw = "; its raw mail stays: the same bytes were delivered again just now"
        elif freed == 0:
            raw = "; its raw mail was gone already"
        else:
            raw = f" and its raw mail ({freed} bytes)"
    kept = f"; message {', '.join(map(str, unlinked))} on {number} stays" if unlinked else ""
    print(f"deleted spool entry {args.id} ({outcome}){raw}{kept}")
    return 0


def purge_spool(app: App, args: argparse.Namespace) -> int:
    days = app.cfg.spool_retention_days if args.older_than is None else args.older_than
    if args.older_than is not None and args.older_than <= 0:
        raise UserError(f"--older-than must be more than 0 days, got {args.older_than:g}")
    if days <= 0:
        raise UserError("no retention period: give --older-than DAYS, or set [spool] retention_days")
    purged = queue_ops.purge_spool(app.factory, app.cfg, days, dry_run=args.dry_run, actor=who())
    data = queue_ops.purge_json(days, args.dry_run, purged)
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
