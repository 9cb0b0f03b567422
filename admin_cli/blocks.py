"""maildctl block add|remove|list: senders that get no ticket and no mail from us.

What a match does is `[hygiene] blocked`: "archive" (accept, keep the mail with outcome `blocked`) or
"reject" (550 5.7.1 at SMTP/LMTP time). Every change is in the audit log, with the OS user who made it."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, print_json, print_table, who
from maild.outbound.blocklist import InvalidPattern, check_pattern, is_domain_pattern
from maild.storage.models import BlockEntry
from maild.tickets import block_ops


def register(commands: Any) -> None:
    sub = command_group(commands, "block", "the blocklist: senders that get no ticket and no reply")
    add = sub.add_parser(
        "add",
        help="block an address (alice@example.com), a domain (@example.com) or a wildcard (*@*.spam.test)",
    )
    add.add_argument("pattern", metavar="PATTERN")
    add.add_argument(
        "--subdomains", action="store_true", help="an @domain pattern also blocks its subdomains"
    )
    add.add_argument("--reason", default="", help="why (shown in the blocked mail's reason)")
    add.set_defaults(handler=add_block)
    remove = sub.add_parser("remove", help="unblock: remove the entry with exactly this pattern")
    remove.add_argument("pattern", metavar="PATTERN")
    remove.set_defaults(handler=remove_block)
    lst = sub.add_parser("list", help="list the blocklist")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_blocks)


def valid_pattern(text: str) -> str:
    try:
        return check_pattern(text)
    except InvalidPattern as exc:
        raise UserError(str(exc)) from None


def add_block(app: App, args: argparse.Namespace) -> int:
    pattern = valid_pattern(args.pattern)
    if args.subdomains and not is_domain_pattern(pattern):
        raise UserError(f"--subdomains applies to a domain pattern like @example.com, not {pattern}")
    actor = who()
    try:
        with app.session() as session:
            block_ops.block(session, pattern, args.subdomains, args.reason.strip(), actor=actor)
    except block_ops.BlockExists as exc:
        raise UserError(str(exc)) from None
    except IntegrityError:  # another maildctl added it between our check and our insert
        raise UserError(f"{pattern} is blocked already: see 'maildctl block list'") from None
    scope = " and its subdomains" if args.subdomains else ""
    print(f"blocked {pattern}{scope}")
    return 0


def remove_block(app: App, args: argparse.Namespace) -> int:
    pattern = args.pattern.strip().lower()  # as check_pattern stores it
    actor = who()
    with app.session() as session:
        entry = block_ops.find_entry(session, pattern)
        if entry is None:
            raise UserError(f"no blocklist entry {args.pattern!r}: see 'maildctl block list'")
        block_ops.unblock(session, entry, actor=actor)
    print(f"unblocked {pattern}")
    return 0


def list_blocks(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        entries = [
            block_ops.entry_json(e) for e in session.scalars(select(BlockEntry).order_by(BlockEntry.pattern))
        ]
    if args.json:
        print_json(entries)
    else:
        print_table(
            ["PATTERN", "SUBDOMAINS", "ADDED BY", "CREATED", "REASON"],
            [
                [
                    e["pattern"],
                    "yes" if e["subdomains"] else "no",
                    e["added_by"],
                    e["created_at"],
                    e["reason"],
                ]
                for e in entries
            ],
        )
    return 0
