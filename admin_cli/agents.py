"""maildctl agent add|set|list."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, print_json, print_table
from maild.mail.addresses import is_valid, normalize
from maild.storage.models import Agent, Desk, DeskAddress
from maild.tickets import agent_ops

MAX_NAME = 200  # agents.name / agents.display_name column size


def register(commands: Any) -> None:
    sub = command_group(commands, "agent", "agents who answer tickets from their mail client")
    add = sub.add_parser("add", help="add an agent to one or more desks")
    add.add_argument("email")
    add.add_argument("--name", required=True)
    add.add_argument("--desk", action="append", required=True, help="desk name (repeatable)")
    add.add_argument("--display-name", help="how tickets' mail names the agent (default: --name)")
    add.add_argument(
        "--update",
        action="store_true",
        help="the agent may exist already: take this name (and display name), add these desks",
    )
    add.set_defaults(handler=add_agent)
    change = sub.add_parser("set", help="change an agent's name, display name, state or desks")
    change.add_argument("email")
    change.add_argument("--name")
    change.add_argument("--display-name", help='"" clears it (mail then uses the name)')
    state = change.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_const", const=True)
    state.add_argument("--inactive", dest="active", action="store_const", const=False)
    change.add_argument(
        "--desk", action="append", help="desk name (repeatable): the agent's desks become exactly these"
    )
    change.set_defaults(handler=set_agent)
    lst = sub.add_parser("list", help="list agents")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_agents)


def _name(value: str, option: str) -> str:
    value = value.strip()
    if not value:
        raise UserError(f"{option} must not be empty")
    if len(value) > MAX_NAME:
        raise UserError(f"{option} is longer than {MAX_NAME} characters")
    return value


def _display_name(value: str) -> str:
    # Empty is allowed: it clears the display name, and mail uses the name again.
    value = " ".join(value.split())
    if len(value) > MAX_NAME:
        raise UserError(f"--display-name is longer than {MAX_NAME} characters")
    return value


def _desks(session: Session, names: list[str]) -> list[Desk]:
    desks = []
    for name in names:
        desk = session.scalars(select(Desk).where(Desk.name == name)).first()
        if desk is None:
            raise UserError(f"no desk named {name!r}: see 'maildctl desk list'")
        if desk not in desks:
            desks.append(desk)
    return desks


def add_agent(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    if not is_valid(email):
        raise UserError(f"invalid agent address {args.email!r}: give a plain address like alice@example.com")
    name = _name(args.name, "--name")
    display_name = _display_name(args.display_name) if args.display_name is not None else None
    with app.session() as session:
        if session.scalars(select(DeskAddress).where(DeskAddress.address == email)).first():
            raise UserError(f"{email} is a desk address; an agent needs a personal address")
        desks = _desks(session, args.desk)
        agent = session.scalars(select(Agent).where(Agent.email == email)).first()
        if agent is not None:
            # Adding someone who exists would silently rename them: only when asked for.
            if not args.update:
                raise UserError(
                    f"agent {email} exists already (as {agent.name!r}): add --update to change them, "
                    "or use 'maildctl agent set'"
                )
            changes = agent_ops.update_agent(agent, name, display_name, desks)
            print(f"agent {email}: {'; '.join(changes) if changes else 'nothing changed'}")
            return 0
        agent_ops.add_agent(session, email, name, display_name, desks)
    print(f"agent {email} on {', '.join(d.name for d in desks)}")
    return 0


def set_agent(app: App, args: argparse.Namespace) -> int:
    email = normalize(args.email)
    if args.name is None and args.display_name is None and args.active is None and args.desk is None:
        raise UserError("nothing to change: give --name, --display-name, --active/--inactive or --desk")
    name = _name(args.name, "--name") if args.name is not None else None
    display_name = _display_name(args.display_name) if args.display_name is not None else None
    with app.session() as session:
        agent = session.scalars(select(Agent).where(Agent.email == email)).first()
        if agent is None:
            raise UserError(f"no agent {email}: see 'maildctl agent list'")
        desks = _desks(session, args.desk) if args.desk is not None else None
        changes = agent_ops.set_agent(
            agent, name=name, display_name=display_name, active=args.active, desks=desks
        )
    print(f"agent {email}: {'; '.join(changes)}")
    return 0


def list_agents(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        agents: list[dict[str, Any]] = [
            {
                "email": a.email,
                "name": a.name,
                "display_name": a.display_name,
                "active": a.active,
                "desks": sorted(d.name for d in a.desks),
            }
            for a in session.scalars(select(Agent).order_by(Agent.email))
        ]
    if args.json:
        print_json(agents)
    else:
        print_table(
            ["EMAIL", "NAME", "DESKS"], [[a["email"], a["name"], ", ".join(a["desks"])] for a in agents]
        )
    return 0
