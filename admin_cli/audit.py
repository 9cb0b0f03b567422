"""maildctl audit: the audit log of every change (settings and tickets alike), newest first. `ticket log`
shows one ticket's; this shows the rest too (desks, agents' presence, rules, webhooks, API tokens, blocks,
statuses, categories, escalations, canned replies, forgotten contacts …). The query is
maild.tickets.audit_view's."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from maild.admin_cli.common import App, UserError, print_json
from maild.admin_cli.ticket_lookup import utc_now
from maild.admin_cli.tickets import log_line
from maild.tickets.audit_view import DEFAULT_LIMIT, SETTING_ACTIONS, TICKET_ACTIONS, AuditFilters, audit_rows
from maild.tickets.ticket_checks import InvalidValue

_DESCRIPTION = (
    "The audit log, newest first. --desk matches rows whose ticket is on the desk now, or whose detail "
    "names it (the desk's settings, as it was named then); rows of no desk (agents' presence, API tokens, "
    "blocks …) show only without --desk."
)


def _wrapped(title: str, names: tuple[str, ...]) -> str:
    return "\n".join(textwrap.wrap(f"{title}: {', '.join(names)}", 100, subsequent_indent="  "))


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "audit",
        help="the audit log of every change, settings and tickets alike, newest first",
        description="\n".join(textwrap.wrap(_DESCRIPTION, 100)),
        epilog=_wrapped("actions about tickets", TICKET_ACTIONS)
        + "\n"
        + _wrapped("other actions", SETTING_ACTIONS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--action",
        dest="actions",
        action="append",
        default=[],
        metavar="ACTION",
        help="only rows of this action (repeat, or a,b, for several; the names are below)",
    )
    parser.add_argument("--actor", help="only rows by this actor: an address, an OS user, rule:NAME, maild")
    parser.add_argument(
        "--ticket",
        dest="number",
        metavar="NUMBER",
        help="only this ticket's rows (and those of the tickets merged into it, as 'ticket log')",
    )
    parser.add_argument("--desk", help="only rows of this desk: its tickets' and its settings'")
    parser.add_argument(
        "--since",
        metavar="DATE|AGE",
        help="only rows since an ISO date or time (UTC), or this long ago: 30m, 12h, 14d or 2w",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N rows (default {DEFAULT_LIMIT}; 0: all)",
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=show_audit)


def show_audit(app: App, args: argparse.Namespace) -> int:
    given = AuditFilters(
        actions=args.actions,
        actor=args.actor,
        ticket=args.number,
        desk=args.desk,
        since=args.since,
        limit=args.limit,
    )
    with app.session() as session:
        try:
            rows = audit_rows(session, given, utc_now())
        except InvalidValue as exc:
            raise UserError(exc.cli_message) from None
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        print(log_line(row))
    return 0
