"""maildctl contact add|list|unbounce|export|forget: the people who write to the desks (customers and
sub-customers).

A desk with clients_only accepts new tickets only from contacts, so admins register their clients here.
A contact whose mail bounced for good is `bouncing` (the bounce stage says why in status_reason) and gets
no mail until `contact unbounce` — after the address was fixed on their side, say.

`contact export` and `contact forget` are a person's GDPR rights by command: what maild holds about them
(maild.tickets.contact_export) and its erasure (maild.tickets.contact_forget)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, iso, print_json, print_table, who
from maild.mail.addresses import is_valid, normalize
from maild.storage.models import Contact, Participant
from maild.tickets import contact_ops
from maild.tickets.participants import NotAddable, check_customer_address, find_contact


def register(commands: Any) -> None:
    sub = command_group(commands, "contact", "customers and sub-customers")
    add = sub.add_parser("add", help="register a contact (lets them open tickets on clients_only desks)")
    add.add_argument("email")
    add.add_argument("--name", default="", help="display name used in mail to them")
    add.set_defaults(handler=add_contact)
    lst = sub.add_parser("list", help="list contacts")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_contacts)
    unbounce = sub.add_parser("unbounce", help="let mail go to a bouncing contact again")
    unbounce.add_argument("email")
    unbounce.set_defaults(handler=unbounce_contact)
    attr = sub.add_parser(
        "attr",
        help="set or remove a contact's custom attributes (rules' 'contact KEY is|within' conditions)",
        description="KEY=VALUE sets, KEY= removes; a date (2026-03-01) serves 'contact KEY within N days'.",
    )
    attr.add_argument("email")
    attr.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    attr.set_defaults(handler=attr_contact)
    export = sub.add_parser(
        "export",
        help="everything maild holds about a person: contact.json and mail.mbox",
        description=(
            "Write what maild holds about EMAIL: with --output DIR, DIR/contact.json (contact, tickets with "
            "their customer-visible messages, ratings, links, audit entries, blocklist entries, mail in and "
            "out) and DIR/mail.mbox (the raw mails from and to them); without it, contact.json on stdout. "
            "Internal notes are withheld."
        ),
    )
    export.add_argument("email")
    export.add_argument("--output", "-o", metavar="DIR", help="write DIR/contact.json and DIR/mail.mbox")
    export.set_defaults(handler=export_contact)
    forget = sub.add_parser(
        "forget",
        help="erase a person's data (pseudonymise address and name, erase their mail and files)",
        description=(
            "Erase or pseudonymise everything maild holds about EMAIL: the contact becomes "
            "forgotten-N@invalid, their messages and those of their tickets are erased, their attachment "
            "and raw mail files removed, mail to them cancelled or erased; tickets, counts and audit entries "
            "stay. Idempotent: run it again to finish what a crash left."
        ),
    )
    forget.add_argument("email")
    forget.add_argument("--yes", action="store_true", help="really erase (nothing is done without it)")
    forget.add_argument("--json", action="store_true")
    forget.set_defaults(handler=forget_contact)


def add_contact(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    if not is_valid(email):
        raise UserError(f"invalid address {args.email!r}: give a plain address like bob@example.com")
    with app.session() as session:
        try:
            check_customer_address(session, email)
        except NotAddable as exc:
            raise UserError(f"{exc}, not a contact") from None
        existed = contact_ops.add_or_name(session, email, args.name, actor=who())
    print(f"contact {email} {'updated' if existed else 'added'}")
    return 0


def list_contacts(app: App, args: argparse.Namespace) -> int:
    tickets = (
        select(Participant.contact_id, func.count(Participant.id).label("n"))
        .group_by(Participant.contact_id)
        .subquery()
    )
    with app.session() as session:
        contacts = [
            {
                "email": c.email,
                "name": c.display_name,
                "status": c.status,
                "status_reason": c.status_reason,
                "attributes": dict(c.attributes or {}),
                "tickets": n,
                "created_at": iso(c.created_at),
            }
            for c, n in session.execute(
                select(Contact, func.coalesce(tickets.c.n, 0))
                .outerjoin(tickets, tickets.c.contact_id == Contact.id)
                .order_by(Contact.email)
            )
        ]
    if args.json:
        print_json(contacts)
    else:
        # REASON last: it is long, and the columns before it keep their places.
        print_table(
            ["EMAIL", "NAME", "STATUS", "TICKETS", "REASON"],
            [[c["email"], c["name"], c["status"], c["tickets"], c["status_reason"]] for c in contacts],
        )
    return 0


def unbounce_contact(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    with app.session() as session:
        contact = find_contact(session, email)
        if contact is None:
            raise UserError(f"no contact {email}")
        if contact.status != "bouncing":
            raise UserError(f"contact {email} is not bouncing (status {contact.status})")
        contact_ops.unbounce(session, contact, actor="maildctl")
    print(f"contact {email}: bouncing -> active")
    return 0


ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ATTRIBUTE = 1000


def _attribute_changes(pairs: list[str]) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not ATTRIBUTE_KEY.fullmatch(key):
            raise UserError(
                f"invalid attribute {pair!r}: write KEY=VALUE to set or KEY= to remove "
                "(KEY: 1-64 letters, digits and _ . -)"
            )
        if len(value) > MAX_ATTRIBUTE:
            raise UserError(f"attribute {key} too long: at most {MAX_ATTRIBUTE} characters")
        changes[key] = value or None
    return changes


def attr_contact(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    changes = _attribute_changes(args.pairs)
    with app.session() as session:
        contact = find_contact(session, email)
        if contact is None:
            raise UserError(f"no contact {email}: add one with 'maildctl contact add {email}'")
        contact_ops.set_attributes(session, contact, changes, actor=who())
        shown = dict(contact.attributes)
    print(f"contact {email}: " + (", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "no attributes"))
    return 0


def export_contact(app: App, args: argparse.Namespace) -> int:
    from maild.tickets.contact_data import find_holdings
    from maild.tickets.contact_export import export_json, export_mbox

    email = normalize(args.email)
    with app.session() as session:
        held = find_holdings(session, email)
        if held.empty:
            raise UserError(
                f"no contact {email} and nothing maild holds names it: see 'maildctl contact list'"
            )
        data = export_json(session, held, now=dt.datetime.now(dt.UTC))
        if args.output is None:
            print_json(data)
            return 0
        target = Path(args.output)
        try:
            target.mkdir(parents=True, exist_ok=True)
            count = _write_mbox(target / "mail.mbox", export_mbox(session, app.cfg, held))
            _write_atomically(
                target / "contact.json", (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
            )
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"{email}: {len(data['tickets'])} ticket(s), {count} mail(s) written to {target}", file=sys.stderr)
    return 0


def _write_mbox(path: Path, entries: Iterator[bytes]) -> int:
    partial = path.with_name(path.name + ".part")
    count = 0
    try:
        with partial.open("wb") as handle:
            for entry in entries:
                handle.write(entry)
                count += 1
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def forget_contact(app: App, args: argparse.Namespace) -> int:
    from maild.tickets.contact_forget import NotACustomer, NothingHeld, forget

    email = normalize(args.email)
    if not args.yes:
        raise UserError(
            f"this erases {email}'s data (address and name pseudonymised, their mail, attachments and raw "
            "files erased; tickets and audit entries stay): add --yes to do it"
        )
    try:
        result = forget(app.factory, app.cfg, email, actor=who(), now=dt.datetime.now(dt.UTC))
    except NotACustomer as exc:
        raise UserError(f"not forgotten: {exc}") from None
    except NothingHeld:
        raise UserError(
            f"no contact {email} and nothing maild holds names it: see 'maildctl contact list'"
        ) from None
    if args.json:
        print_json(result.as_json())
        return 0
    if result.already:
        print(
            f"{email} was forgotten before ({result.pseudonym}); "
            f"{result.files_removed} file(s) left by then removed now"
        )
        return 0
    print(
        f"{email} -> {result.pseudonym}: {len(result.tickets)} ticket(s), "
        f"{result.messages_erased} message(s) erased, {result.messages_scrubbed} scrubbed, "
        f"{result.spool_rows} spool and {result.outbox_rows} outbox row(s), "
        f"{result.files_removed} file(s) removed"
    )
    if result.pending:
        print(f"note: {result.pending} mail(s) of theirs not processed yet: run this again once they are")
    for pattern in result.kept_blocks:
        print(f"note: blocklist entry {pattern} kept ('maildctl block remove {pattern}' to erase it too)")
    return 0
