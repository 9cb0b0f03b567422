"""maildctl api-token add|list|remove: the JSON API's bearer tokens (issue 19), through
maild.tickets.api_tokens, which audits adding and removing.

    maildctl api-token add NAME --scope read|write   prints the token, once: only its sha256 is kept
    maildctl api-token list [--json]                 name, scope, created, last used, revoked
    maildctl api-token remove NAME                   revokes it (its name stays taken)"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, print_json, print_table, who
from maild.admin_cli.ticket_lookup import utc_now
from maild.tickets import api_tokens
from maild.tickets.api_tokens import SCOPES, TokenRefused


def register(commands: Any) -> None:
    sub = command_group(commands, "api-token", "the JSON API's bearer tokens")
    add = sub.add_parser(
        "add",
        help="make a token and print it (once: only its sha256 is stored)",
        description="Make a bearer token for the JSON API (/api/v1 on the [web] listener) and print it. "
        "It is shown only now: maild keeps only its sha256. read: GET only; write: changes too.",
    )
    add.add_argument("name", metavar="NAME", help="who or what uses it (audited as api:NAME)")
    add.add_argument("--scope", required=True, choices=SCOPES, help="read (GET only) or write")
    add.set_defaults(handler=add_token)
    lst = sub.add_parser("list", help="the tokens: name, scope, created, last used, revoked")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_tokens)
    remove = sub.add_parser("remove", help="revoke a token (its name stays taken)")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=remove_token)


def add_token(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        try:
            token = api_tokens.add_token(session, args.name, args.scope, actor=who(), now=utc_now())
        except TokenRefused as exc:
            raise UserError(exc.cli_message) from None
    print(token)
    if sys.stdout.isatty():
        print(f"(the {args.scope} token {args.name}: copy it now, it is not shown again)", file=sys.stderr)
    return 0


def list_tokens(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        rows = api_tokens.list_tokens(session)
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED"],
        [
            [r["name"], r["scope"], r["created_at"], r["last_used_at"] or "never", r["revoked_at"] or "-"]
            for r in rows
        ],
    )
    return 0


def remove_token(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        try:
            revoked = api_tokens.revoke_token(session, args.name, actor=who(), now=utc_now())
        except TokenRefused as exc:
            raise UserError(exc.cli_message) from None
    print(f"token {args.name} revoked" if revoked else f"token {args.name} was revoked already")
    return 0
