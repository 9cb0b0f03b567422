"""maildctl ticket links: each recipient's link to the ticket's web page (maild.tickets.ticket_links)."""

from __future__ import annotations

import argparse
from typing import Any

from maild.admin_cli.common import App, UserError, find_ticket, iso, print_json, print_table, who
from maild.admin_cli.ticket_lookup import utc_now
from maild.mail.tokens import load_secret
from maild.outbound.link_tokens import link_key, link_url
from maild.tickets import ticket_links
from maild.tickets.lookup import survivor_of


def register(sub: Any) -> None:
    links = sub.add_parser(
        "links",
        help="each recipient's link to the ticket's page; one without a link gets one",
    )
    links.add_argument("number")
    links.add_argument(
        "--revoke",
        action="store_true",
        help="revoke every link of the ticket and issue each recipient a new one",
    )
    links.add_argument("--json", action="store_true")
    links.set_defaults(handler=show_links)


def show_links(app: App, args: argparse.Namespace) -> int:
    public_url = app.cfg.web.public_url
    with app.session() as session:
        ticket = survivor_of(find_ticket(session, args.number))  # a merged number's links are the survivor's
        if not public_url:
            raise UserError(
                'no [web] public_url in the config: links need it (public_url = "https://help.example.com")'
            )
        change = ticket_links.revoke_and_reissue if args.revoke else ticket_links.issue_missing
        key = link_key(load_secret(app.cfg.data_dir))
        shown = change(session, key, ticket, actor=who(), now=utc_now())
        rows = [_row(ticket.number, public_url, item) for item in shown]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ("RECIPIENT", "ROLE", "ISSUED", "LINK"),
        [(r["email"], r["role"], r["issued_at"], r["url"]) for r in rows],
    )
    return 0


def _row(number: str, public_url: str, item: ticket_links.RecipientLink) -> dict[str, Any]:
    return {
        "ticket": number,
        "email": item.contact.email,
        "role": item.role,
        "issued_at": iso(item.link.created_at),
        "issued_now": item.issued,
        "url": link_url(public_url, item.token),
    }
