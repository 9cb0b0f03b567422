"""maildctl import mbox|maildir (a mailbox backlog through the pipeline) and maildctl ticket export."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from maild.admin_cli.common import App, UserError, find_ticket, print_json
from maild.tickets.import_ops import record_import

KINDS = ("mbox", "maildir")  # as maild.ingress.importer's, which loads the pipeline: only when importing

IMPORT_HELP = (
    "Replay a mailbox backlog through the pipeline in date order, as mail to the desk's primary address: "
    "tickets and replies get the mails' own dates, nothing is sent (no auto-replies, no agent notices). "
    "Mail without a readable Date comes after all dated mail, in file order, dated at the time of the "
    "import; a Date in the future is clamped to now. Importing the same mailbox again adds nothing: its "
    "mail counts as duplicates. Mail the desk sent itself (its old replies) is stored on its ticket as "
    "the desk's answer (not stored when it follows no ticket). The tickets the import creates are left "
    "alone by auto-close, escalations and reminders (they would mail old customers) until something new "
    "happens on them: a customer's or agent's mail, a maildctl change."
)


def register(commands: Any) -> None:
    parser = commands.add_parser("import", help="import a mailbox backlog (mbox or Maildir) into a desk")
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in KINDS:
        what = "an mbox file" if kind == "mbox" else "a Maildir (with cur/ and new/)"
        one = sub.add_parser(kind, help=f"import {what}", description=IMPORT_HELP)
        one.add_argument("path", metavar="PATH", help=what)
        one.add_argument("--desk", required=True, help="the desk the mail was sent to")
        one.add_argument("--json", action="store_true", help="print the summary as JSON")
        one.add_argument(
            "--automate",
            action="store_true",
            help="let auto-close, escalations and reminders treat the imported tickets as live (their "
            "old dates count: an old waiting ticket is auto-closed, with its closing mail)",
        )
        one.set_defaults(handler=import_mailbox)


def register_ticket_commands(ticket_actions: Any) -> None:
    export = ticket_actions.add_parser(
        "export",
        help="write a ticket's conversation as an mbox (stdout by default)",
        description=(
            "Write the ticket's customer and agent messages, oldest first, as an mbox: mail as it came "
            "(raw, with its attachments), messages made without mail (replies sent with maildctl, notes) "
            "as generated mail with their text and attachments. A merged number exports the ticket it "
            "was merged into."
        ),
    )
    export.add_argument("number")
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE (replaced) instead of stdout")
    export.add_argument("--include-notes", action="store_true", help="also internal notes and system notes")
    export.set_defaults(handler=export_ticket)


class ProgressLine:
    """A one-line counter with the rate, redrawn with \\r at most every 0.2 s."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = 0.0

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if done < total and now - self.shown < 0.2:
            return
        self.shown = now
        rate = done / elapsed if elapsed > 0 else 0.0
        self.stream.write(f"\rimporting: {done}/{total} mails, {rate:.1f} mail/s ")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _print_summary(data: dict[str, Any], path: Path, desk: str) -> None:
    print(f"imported {data['mails']} mail(s) from {path} into desk {desk}")
    print(f"  tickets created      {data['created']}")
    print(f"  threaded (replies)   {data['threaded']}")
    print(f"  duplicates           {data['duplicates']}")
    print(f"  desk's replies       {data['desk_replies']}  (stored on their tickets as the desk's answers)")
    print(f"  desk's own mail      {data['desk_own_mail']}  (following no ticket: not stored)")
    for outcome, count in data["other"].items():
        print(f"  {outcome:<20} {count}")
    if data["undated"]:
        print(f"  without a readable Date: {data['undated']} (imported last, dated now)")
    if data["first_date"]:
        print(f"  dates from {data['first_date']} to {data['last_date']}")
    still_open = [f"{n} {status}" for status, n in data["tickets_by_status"].items() if status != "closed"]
    detail = f" ({', '.join(still_open)})" if still_open else ""
    print(f"  created tickets now  {data['tickets_closed']} closed, {data['tickets_open']} open{detail}")
    if data["automated"]:
        print("  automation           on for them (--automate): auto-close, escalations, reminders")
    else:
        print("  automation           off for them until something new happens on them (see --automate)")
    print(f"  {data['elapsed_s']:.1f} s, {data['rate_per_s']:.1f} mail/s")


def import_mailbox(app: App, args: argparse.Namespace) -> int:
    from maild.admin_cli.common import find_desk, who
    from maild.ingress.importer import SourceError, index, open_source, replay

    path = Path(args.path)
    with app.session() as session:
        desk = find_desk(session, args.desk)
        recipient = desk.primary_address
    try:
        box = open_source(args.kind, path)
    except SourceError as exc:
        raise UserError(str(exc)) from None
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    tty = sys.stderr.isatty()
    if tty:
        print(f"indexing {path} ...", end="", file=sys.stderr, flush=True)
    try:
        order = index(box)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as {args.kind}: {exc}") from None
    if tty:
        print(f" {len(order)} mails", file=sys.stderr)
    summary = replay(
        app.factory,
        app.cfg,
        recipient,
        box,
        order,
        progress=ProgressLine(sys.stderr) if tty else None,
        started_at=started_at,
        index_elapsed=time.perf_counter() - clock,
        automate=args.automate,
    )
    box.close()
    data = summary.as_json()
    record_import(app.factory, args.kind, str(path.resolve()), args.desk, data, actor=who())
    if args.json:
        print_json(data)
    else:
        _print_summary(data, path, args.desk)
    return 0


def export_ticket(app: App, args: argparse.Namespace) -> int:
    from maild.tickets.export import export_mbox
    from maild.tickets.lookup import survivor_of

    with app.session() as session:
        ticket = survivor_of(find_ticket(session, args.number))
        if args.output is None:
            try:
                for entry in export_mbox(session, app.cfg, ticket, include_notes=args.include_notes):
                    sys.stdout.buffer.write(entry)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                # The reader stopped early (`| head`): not an error worth a traceback; keep the
                # interpreter's final flush from raising again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        target = Path(args.output)
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as handle:
                count = 0
                for entry in export_mbox(session, app.cfg, ticket, include_notes=args.include_notes):
                    handle.write(entry)
                    count += 1
            partial.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
        number = ticket.number
    print(f"{number}: {count} message(s) written to {target}", file=sys.stderr)
    return 0
