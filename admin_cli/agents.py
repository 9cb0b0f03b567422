"""maildctl agent add|set|list|away|back.

Presence (maild.tickets.presence): an agent marked away gets no notices until `--until` has passed or
`agent back`; `agent list` shows who is away. `--until` takes an ISO date (the day they are back: present
from its start) or date-time; without a UTC offset it is read in the time zone of the agent's desks when
they all share one, else UTC."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, iso, print_json, print_table, who
from maild.admin_cli.ticket_lookup import find_agent
from maild.mail.addresses import is_valid, normalize
from maild.storage.models import Agent, Desk, DeskAddress
from maild.tickets import agent_ops, presence
from maild.tickets.ticket_ops import record

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
    lst = sub.add_parser("list", help="list agents, with their presence")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_agents)
    away = sub.add_parser(
        "away",
        help="mark an agent away: no notices until --until or 'agent back'",
        description="NAME: the agent's address, name or display name. --until: an ISO date (the day they "
        "are back, e.g. 2026-12-14) or date-time (2026-12-14T09:00, 2026-12-14T09:00+01:00); without an "
        "offset in the time zone of the agent's desks when they share one, else UTC.",
    )
    away.add_argument("name", metavar="NAME")
    away.add_argument(
        "--until", metavar="DATE", help="back on this date or at this time (default: open-ended)"
    )
    away.set_defaults(handler=agent_away)
    back = sub.add_parser("back", help="mark an agent present again")
    back.add_argument("name", metavar="NAME")
    back.set_defaults(handler=agent_back)


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
            if changes:
                record(session, "agent_set", {"agent": email, "changes": changes}, actor=who())
            print(f"agent {email}: {'; '.join(changes) if changes else 'nothing changed'}")
            return 0
        agent_ops.add_agent(session, email, name, display_name, desks)
        detail = {"agent": email, "name": name, "desks": [d.name for d in desks]}
        record(session, "agent_add", detail, actor=who())
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
        record(session, "agent_set", {"agent": email, "changes": changes}, actor=who())
    print(f"agent {email}: {'; '.join(changes)}")
    return 0


def list_agents(app: App, args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    with app.session() as session:
        agents: list[dict[str, Any]] = [
            {
                "email": a.email,
                "name": a.name,
                "display_name": a.display_name,
                "active": a.active,
                "desks": sorted(d.name for d in a.desks),
                **_presence_json(a, now),
            }
            for a in session.scalars(select(Agent).order_by(Agent.email))
        ]
    if args.json:
        print_json(agents)
    else:
        print_table(
            ["EMAIL", "NAME", "DESKS", "PRESENCE"],
            [[a["email"], a["name"], ", ".join(a["desks"]), _presence_text(a)] for a in agents],
        )
    return 0


def _presence_json(agent: Agent, now: dt.datetime) -> dict[str, Any]:
    since, until = presence.away_window(agent, now)
    return {"present": presence.is_present(agent, now), "away_since": iso(since), "away_until": iso(until)}


def _presence_text(shown: dict[str, Any]) -> str:
    if not shown["active"]:
        return "inactive"
    if shown["present"]:
        return "present"
    return f"away since {shown['away_since']}" + (
        f" until {shown['away_until']}" if shown["away_until"] else " (until back)"
    )


def parse_until(text: str, agent: Agent, now: dt.datetime) -> dt.datetime:
    """--until as an aware moment: a date is the day they are back (its start), a date-time without an
    offset is read in the agent's time zone; it must lie ahead."""
    try:
        moment = presence.return_moment(text, presence.agent_timezone(agent))
    except ValueError:
        raise UserError(
            f"invalid --until {text!r}: give an ISO date like 2026-12-14 or a date-time like 2026-12-14T09:00"
        ) from None
    if moment <= now:
        raise UserError(
            f"--until {text!r} has passed: give a later date, or use 'maildctl agent back' if they are back"
        )
    return moment


def agent_away(app: App, args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)  # shown as away_since
    with app.session() as session:
        agent = find_agent(session, args.name, active=False)
        if not agent.active:
            raise UserError(f"agent {agent.email} is inactive (gets no notices anyway): nothing to mark")
        until = parse_until(args.until, agent, now) if args.until is not None else None
        presence.mark_away(session, agent, until, actor=who(), now=now)
        email, shown = agent.email, iso(agent.away_until)
    print(
        f"agent {email} is away "
        + (f"until {shown}" if shown else "until marked back ('maildctl agent back')")
    )
    return 0


def agent_back(app: App, args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    with app.session() as session:
        agent = find_agent(session, args.name, active=False)
        was_away = not presence.is_present(agent, now) and agent.away_since is not None
        presence.mark_back(session, agent, actor=who())
        email = agent.email
    print(f"agent {email} is present again" if was_away else f"agent {email} was not away: nothing changed")
    return 0
