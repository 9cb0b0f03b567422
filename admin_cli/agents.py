"""maildctl agent add|list."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from admin_cli.common import App, UserError, print_json, print_table
from maild.addresses import is_valid, normalize
from storage.models import Agent, Desk, DeskAddress


def register(commands: Any) -> None:
    agent = commands.add_parser("agent", help="agents who answer tickets from their mail client")
    sub = agent.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add an agent to one or more desks")
    add.add_argument("email")
    add.add_argument("--name", required=True)
    add.add_argument("--desk", action="append", required=True, help="desk name (repeatable)")
    add.set_defaults(handler=add_agent)
    lst = sub.add_parser("list", help="list agents")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_agents)


def add_agent(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    if not is_valid(email):
        raise UserError(f"invalid agent address {args.email!r}: give a plain address like alice@example.com")
    if not args.name.strip():
        raise UserError("--name must not be empty")
    with app.session() as session:
        if session.scalars(select(DeskAddress).where(DeskAddress.address == email)).first():
            raise UserError(f"{email} is a desk address; an agent needs a personal address")
        desks = []
        for name in args.desk:
            desk = session.scalars(select(Desk).where(Desk.name == name)).first()
            if desk is None:
                raise UserError(f"no desk named {name!r}: see 'maildctl desk list'")
            desks.append(desk)
        agent = session.scalars(select(Agent).where(Agent.email == email)).first()
        if agent is None:
            agent = Agent(email=email, name=args.name.strip())
            session.add(agent)
        else:
            agent.name = args.name.strip()
        for desk in desks:
            if desk not in agent.desks:
                agent.desks.append(desk)
    print(f"agent {email} on {', '.join(args.desk)}")
    return 0


def list_agents(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        agents = [
            {"email": a.email, "name": a.name, "active": a.active, "desks": sorted(d.name for d in a.desks)}
            for a in session.scalars(select(Agent).order_by(Agent.email))
        ]
    if args.json:
        print_json(agents)
    else:
        print_table(
            ["EMAIL", "NAME", "DESKS"], [[a["email"], a["name"], ", ".join(a["desks"])] for a in agents]
        )
    return 0
