"""maildctl status add|list|remove and category add|list|remove|agents|assign: how a desk sorts its tickets.

A custom status belongs to one desk, beside the built-in ones every desk has; agents set it with
`#status NAME`, `desk set --auto-close-statuses` may list it. A category belongs to one desk; when it has
present agents, the notices of its tickets go only to them (maild.tickets.notices.notice_targets)."""

from __future__ import annotations

import argparse
import datetime as dt
import unicodedata
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import add_desk_item, add_list, command_group
from maild.admin_cli.common import App, UserError, find_desk, find_ticket, iso, print_json, print_table, who
from maild.mail.addresses import normalize
from maild.storage.models import TICKET_STATUSES, Agent, Category, Desk, DeskStatus, Ticket
from maild.tickets import status_ops
from maild.tickets.lookup import survivor_of
from maild.tickets.statuses import (
    BUILTIN_DESCRIPTIONS,
    InvalidStatus,
    custom_status_name,
    find_custom,
    ticket_counts,
    uses_of,
)

MAX_DESCRIPTION = 500
MAX_CATEGORY = 100  # categories.name is VARCHAR(100)


def register(commands: Any) -> None:
    _register_statuses(commands)
    _register_categories(commands)


def _register_statuses(commands: Any) -> None:
    sub = command_group(commands, "status", "ticket statuses: the built-in ones and each desk's own")
    add = add_desk_item(
        sub,
        "add",
        "add a custom status to a desk",
        add_status,
        "Add a status that the desk's agents can set with '#status NAME'. The name is "
        "lower-cased, spaces and '-' become '_' ('On Vacation' is on_vacation).",
    )
    add.add_argument("--description", default="", help="what the status means (shown by status list)")
    add_list(
        sub,
        "list the built-in statuses, then each desk's custom ones",
        "only the statuses of this desk",
        list_statuses,
    )
    add_desk_item(
        sub,
        "remove",
        "remove a desk's custom status (refused while tickets or settings use it)",
        remove_status,
    )


def _register_categories(commands: Any) -> None:
    sub = command_group(commands, "category", "ticket categories of a desk, and the agents of each")
    add = add_desk_item(
        sub,
        "add",
        "add a category to a desk",
        add_category,
        "Add a category. When it has active agents, the notices of its tickets go only to "
        "them (an assigned agent still gets them alone); without, to all the desk's agents.",
    )
    add.add_argument(
        "--agent", action="extend", nargs="+", default=[], metavar="EMAIL", help="an agent of the desk"
    )
    add_list(sub, "list categories with their agents", "only this desk's categories", list_categories)
    add_desk_item(sub, "remove", "remove a category (its tickets are left without one)", remove_category)
    agents = add_desk_item(
        sub, "agents", "add agents to or remove agents from a category", change_category_agents
    )
    agents.add_argument("--add", action="extend", nargs="+", default=[], metavar="EMAIL")
    agents.add_argument("--remove", action="extend", nargs="+", default=[], metavar="EMAIL")
    assign = sub.add_parser("assign", help="set a ticket's category, or take it away with --none")
    assign.add_argument("number", metavar="NUMBER")
    assign.add_argument("name", metavar="NAME", nargs="?", help="a category of the ticket's desk")
    assign.add_argument("--none", action="store_true", help="leave the ticket without a category")
    assign.set_defaults(handler=assign_category)


# --- shared look-ups ------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- statuses -------------------------------------------------------------------------------------


def _custom_name(text: str) -> str:
    try:
        return custom_status_name(text)
    except InvalidStatus as exc:
        raise UserError(str(exc)) from None


def add_status(app: App, args: argparse.Namespace) -> int:
    name = _custom_name(args.name)
    description = " ".join(args.description.split())
    if len(description) > MAX_DESCRIPTION:
        raise UserError(f"--description is longer than {MAX_DESCRIPTION} characters")
    exists = f"desk {args.desk} has a status {name!r} already: see 'maildctl status list --desk {args.desk}'"
    try:
        with app.session() as session:
            desk = find_desk(session, args.desk)
            if find_custom(session, desk.id, name) is not None:
                raise UserError(exists)
            status_ops.add_status(session, desk, name, description, actor=who())
    except IntegrityError:  # another maildctl added it between our check and our insert
        raise UserError(exists) from None
    print(f"status {name} added to desk {args.desk}")
    return 0


def list_statuses(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desk = find_desk(session, args.desk) if args.desk else None
        counts = ticket_counts(session, desk.id if desk else None)
        entries: list[dict[str, Any]] = [
            {
                "name": name,
                "desk": None,
                "builtin": True,
                "description": BUILTIN_DESCRIPTIONS[name],
                "tickets": sum(n for (_, status), n in counts.items() if status == name),
                "created_at": None,
            }
            for name in TICKET_STATUSES
        ]
        query = select(DeskStatus, Desk.name).join(Desk, DeskStatus.desk_id == Desk.id)
        if desk is not None:
            query = query.where(DeskStatus.desk_id == desk.id)
        for row, desk_name in session.execute(query.order_by(Desk.name, DeskStatus.id)):
            entries.append(
                {
                    "name": row.name,
                    "desk": desk_name,
                    "builtin": False,
                    "description": row.description,
                    "tickets": counts.get((row.desk_id, row.name), 0),
                    "created_at": iso(row.created_at),
                }
            )
    if args.json:
        print_json(entries)
    else:
        print_table(
            ["STATUS", "DESK", "TICKETS", "DESCRIPTION"],
            [
                [e["name"], "(built-in)" if e["builtin"] else e["desk"], e["tickets"], e["description"]]
                for e in entries
            ],
        )
    return 0


def remove_status(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desk = find_desk(session, args.desk)
        row = find_custom(session, desk.id, args.name)
        if row is None:
            builtin = args.name.strip().lower() in TICKET_STATUSES
            raise UserError(
                f"{args.name!r} is a built-in status and cannot be removed"
                if builtin
                else f"desk {desk.name} has no custom status {args.name!r}: "
                f"see 'maildctl status list --desk {desk.name}'"
            )
        _refuse_if_used(session, desk, row.name)
        status_ops.remove_status(session, desk, row, actor=who())
    print(f"status {row.name} removed from desk {desk.name}")
    return 0


def _refuse_if_used(session: Session, desk: Desk, name: str) -> None:
    """A removed status must not strand tickets, the auto-close list or escalation rules on a name
    `#status` and maildctl no longer accept."""
    uses = uses_of(session, desk, name)
    if uses.tickets:
        some = "1 ticket has" if uses.tickets == 1 else f"{uses.tickets} tickets have"
        raise UserError(
            f"{some} status {name} on desk {desk.name}: move them first, e.g. "
            f"'maildctl ticket status NUMBER open' (find them with "
            f"'maildctl ticket list --desk {desk.name} --status {name}')"
        )
    if uses.auto_close:
        rest = ",".join(s for s in desk.auto_close_statuses.split(",") if s and s != name) or "waiting"
        raise UserError(
            f"status {name} is one of desk {desk.name}'s auto-close statuses: first run "
            f"'maildctl desk set {desk.name} --auto-close-statuses {rest}'"
        )
    if uses.escalation_rules:
        raise UserError(
            f"status {name} is used by escalation rule(s) {', '.join(uses.escalation_rules)} of desk "
            f"{desk.name}: change or remove them first"
        )


# --- categories -----------------------------------------------------------------------------------


def _category_name(text: str) -> str:
    name = " ".join(text.split())
    if not name or len(name) > MAX_CATEGORY or any(unicodedata.category(c).startswith("C") for c in name):
        raise UserError(f"invalid category name {text!r}: use 1-{MAX_CATEGORY} printable characters")
    return name


def _category(session: Session, desk: Desk, name: str) -> Category:
    category = status_ops.category_named(session, desk.id, name)
    if category is None:
        raise UserError(
            f"desk {desk.name} has no category {name!r}: see 'maildctl category list --desk {desk.name}'"
        )
    return category


def _desk_agents(session: Session, desk: Desk, emails: list[str]) -> list[Agent]:
    """The agents of these addresses, each of them an agent of `desk`, in the order given."""
    found: dict[int, Agent] = {}
    for email in emails:
        address = normalize(email)
        agent = session.scalars(select(Agent).where(Agent.email == address)).first()
        if agent is None:
            raise UserError(f"no agent {address}: see 'maildctl agent list'")
        if desk not in agent.desks:
            raise UserError(
                f"{address} is not an agent of desk {desk.name}: add the desk with "
                f"'maildctl agent set {address} --desk {desk.name}' (and the agent's other desks)"
            )
        found.setdefault(agent.id, agent)
    return list(found.values())


def category_json(category: Category, desk_name: str, tickets: int) -> dict[str, Any]:
    return {
        "desk": desk_name,
        "name": category.name,
        "agents": [a.email for a in category.agents],
        "inactive_agents": [a.email for a in category.agents if not a.active],
        "tickets": tickets,
        "created_at": iso(category.created_at),
    }


def add_category(app: App, args: argparse.Namespace) -> int:
    name = _category_name(args.name)
    exists = f"desk {args.desk} has a category {name!r} already: see 'maildctl category list'"
    try:
        with app.session() as session:
            desk = find_desk(session, args.desk)
            same = status_ops.category_named(session, desk.id, name)
            if same is not None:
                raise UserError(exists.replace(repr(name), repr(same.name)))
            agents = sorted(_desk_agents(session, desk, args.agent), key=lambda a: a.id)
            status_ops.add_category(session, desk, name, agents, actor=who())
    except IntegrityError:  # another maildctl added it meanwhile
        raise UserError(exists) from None
    who_gets = f"notices go to {', '.join(a.email for a in agents)}" if agents else "no agents of its own"
    print(f"category {name} added to desk {args.desk} ({who_gets})")
    return 0


def list_categories(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        query = select(Category, Desk.name).join(Desk, Category.desk_id == Desk.id)
        if args.desk:
            query = query.where(Category.desk_id == find_desk(session, args.desk).id)
        counts = dict(
            session.execute(
                select(Ticket.category_id, func.count())
                .where(Ticket.category_id.is_not(None), Ticket.merged_into_id.is_(None))
                .group_by(Ticket.category_id)
            ).all()
        )
        entries = [
            category_json(category, desk_name, counts.get(category.id, 0))
            for category, desk_name in session.execute(query.order_by(Desk.name, Category.name))
        ]
    if args.json:
        print_json(entries)
    else:
        print_table(
            ["DESK", "CATEGORY", "TICKETS", "AGENTS"],
            [
                [
                    e["desk"],
                    e["name"],
                    e["tickets"],
                    ", ".join(a + (" (inactive)" if a in e["inactive_agents"] else "") for a in e["agents"])
                    or "(all desk agents)",
                ]
                for e in entries
            ],
        )
    return 0


def remove_category(app: App, args: argparse.Namespace) -> int:
    actor, now = who(), _now()
    with app.session() as session:
        desk = find_desk(session, args.desk)
        category = _category(session, desk, args.name)
        tickets = status_ops.remove_category(session, desk, category, actor=actor, now=now)
        name = category.name
    left = f"; {len(tickets)} ticket(s) left without a category" if tickets else ""
    print(f"category {name} removed from desk {desk.name}{left}")
    return 0


def change_category_agents(app: App, args: argparse.Namespace) -> int:
    if not args.add and not args.remove:
        raise UserError("nothing to change: give --add EMAIL… and/or --remove EMAIL…")
    with app.session() as session:
        desk = find_desk(session, args.desk)
        category = _category(session, desk, args.name)
        added = _desk_agents(session, desk, args.add)
        removed: list[Agent] = []
        for email in args.remove:
            address = normalize(email)
            agent = next((a for a in category.agents if a.email == address), None)
            if agent is None:
                raise UserError(
                    f"{address} is not an agent of category {category.name}: "
                    f"see 'maildctl category list --desk {desk.name}'"
                )
            removed.append(agent)
        if {a.id for a in added} & {a.id for a in removed}:
            raise UserError("an agent is both in --add and in --remove: give each once")
        agents = [a for a in category.agents if a not in removed]
        agents += [a for a in added if a not in agents]
        status_ops.set_category_agents(session, desk, category, agents, actor=who())
        after = [a.email for a in category.agents]
        name = category.name
    print(f"category {name} of desk {desk.name}: agents {', '.join(after) or '(none: all desk agents)'}")
    return 0


def _ticket_category(session: Session, ticket: Ticket, name: str) -> Category:
    category = status_ops.category_named(session, ticket.desk_id, name)
    if category is not None:
        return category
    wanted = " ".join(name.split()).lower()
    elsewhere = sorted(
        session.scalars(
            select(Desk.name)
            .join(Category, Category.desk_id == Desk.id)
            .where(func.lower(Category.name) == wanted)
        )
    )
    where = f" (desk {', '.join(elsewhere)} has one)" if elsewhere else ""
    raise UserError(
        f"desk {ticket.desk.name} of {ticket.number} has no category {name!r}{where}: "
        f"see 'maildctl category list --desk {ticket.desk.name}'"
    )


def assign_category(app: App, args: argparse.Namespace) -> int:
    if (args.name is None) == (not args.none):
        raise UserError("give either a category NAME or --none")
    actor, now = who(), _now()
    with app.session() as session:
        ticket = survivor_of(find_ticket(session, args.number))
        category = _ticket_category(session, ticket, args.name) if args.name is not None else None
        before, after = status_ops.set_category(session, ticket, category, actor=actor, now=now)
        number = ticket.number
    print(f"{number}: category {after or '(none)'}" + ("" if before != after else " (unchanged)"))
    return 0
