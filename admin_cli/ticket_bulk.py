"""maildctl ticket bulk: one change to every ticket `ticket list` shows with the same filters (issue 19).

    maildctl ticket bulk [FILTERS] (--set-status S | --set-priority P | --assign AGENT | --add-tag T |
                                    --close | --reply-file FILE) [--dry-run] [--json]

The filters are list's (maild.admin_cli.ticket_filters). The actions are the issue's `--status`,
`--priority` and `--tag` under a `set-`/`add-` prefix, because those three names are filters already.
Every ticket changes through the same services as the one-ticket commands (maild.tickets.ticket_ops,
replies), so each gets its own audit entry; all of it is one transaction: a failure changes nothing.
`--dry-run` lists what would change and changes nothing. Tickets merged into another are left out (their
survivor is listed itself)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.admin_cli.common import App, UserError, print_json, print_table, who
from maild.admin_cli.ticket_changes import checked, status_name, tag_name, text_of
from maild.admin_cli.ticket_filters import add_filter_arguments, filtered
from maild.admin_cli.ticket_lookup import find_agent, utc_now
from maild.config import Config
from maild.storage.models import PRIORITIES, Agent, Ticket
from maild.tickets import ticket_ops
from maild.tickets.replies import queue_assigned_notice, send_reply
from maild.tickets.ticket_checks import priority_name


@dataclass(frozen=True)
class Change:
    """One ticket's change: what it is now, what it becomes (`before == after`: left as it is)."""

    ticket: str
    action: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def register(sub: Any) -> None:
    bulk = sub.add_parser(
        "bulk",
        help="one change to every ticket the filters (those of 'ticket list') select; --dry-run first",
    )
    add_filter_arguments(bulk)
    action = bulk.add_mutually_exclusive_group()  # none given: a one-line error naming them
    action.add_argument("--set-status", metavar="STATUS", help="give each ticket this status")
    action.add_argument("--set-priority", metavar="PRIORITY", help=f"one of {', '.join(PRIORITIES)}")
    action.add_argument(
        "--assign", metavar="AGENT", help="assign each ticket to this agent (address or name)"
    )
    action.add_argument("--add-tag", metavar="TAG", help="tag each ticket")
    action.add_argument("--close", action="store_true", help="close each ticket")
    action.add_argument("--reply-file", metavar="FILE", help="send each ticket's customer this reply")
    bulk.add_argument("--as", dest="as_agent", metavar="AGENT", help="with --reply-file: reply as this agent")
    bulk.add_argument("--dry-run", action="store_true", help="list what would change; change nothing")
    bulk.add_argument("--json", action="store_true")
    bulk.set_defaults(handler=bulk_change)


Apply = Callable[[Session, Ticket], Change]
ACTIONS = ("set_status", "set_priority", "assign", "add_tag", "close", "reply_file")


def _action(app: App, args: argparse.Namespace, session: Session, now: dt.datetime) -> Apply:
    """The change the options ask for, checked before any ticket is touched; with `args.dry_run` it
    only says what it would do."""
    actor, dry = who(), args.dry_run
    if not any(getattr(args, name) for name in ACTIONS):
        raise UserError("give one action: " + ", ".join("--" + name.replace("_", "-") for name in ACTIONS))
    if args.set_status is not None or args.close:
        wanted = "closed" if args.close else args.set_status

        def status(s: Session, t: Ticket) -> Change:
            new, before = status_name(s, t, wanted), t.status
            if not dry and before != new:
                ticket_ops.set_status(s, t, new, actor=actor, now=now)
            return Change(t.number, "status", before, new)

        return status
    if args.set_priority is not None:
        priority = checked(priority_name, args.set_priority, "--set-priority")

        def set_priority(s: Session, t: Ticket) -> Change:
            before = t.priority
            if not dry and before != priority:
                ticket_ops.set_priority(s, t, priority, actor=actor, now=now)
            return Change(t.number, "priority", before, priority)

        return set_priority
    if args.assign is not None:
        return _assign(app.cfg, find_agent(session, args.assign), actor, now, dry)
    if args.add_tag is not None:
        tag = tag_name(args.add_tag)

        def add_tag(s: Session, t: Ticket) -> Change:
            had = tag in ticket_ops.tags_of(s, t)
            if not dry and not had:
                ticket_ops.add_tag(s, t, tag, actor=actor, now=now)
            return Change(t.number, "tag", tag if had else "", tag)

        return add_tag
    text = text_of(args.reply_file, "reply")
    agent = find_agent(session, args.as_agent) if args.as_agent is not None else None
    return _reply(app.cfg, text, agent, actor, now, dry)


def _assign(cfg: Config, agent: Agent, actor: str, now: dt.datetime, dry: bool) -> Apply:
    def assign(s: Session, t: Ticket) -> Change:
        current = s.get(Agent, t.assigned_agent_id) if t.assigned_agent_id is not None else None
        before = current.email if current is not None else ""
        if not dry and t.assigned_agent_id != agent.id:
            ticket_ops.assign(s, t, agent, actor=actor, now=now)
            try:
                queue_assigned_notice(s, cfg, t, agent, assigned_by=actor, now=now)
            except TemplateError as exc:
                raise UserError(f"cannot compose assigned_notice: {type(exc).__name__}: {exc}") from None
        return Change(t.number, "assign", before, agent.email)

    return assign


def _reply(cfg: Config, text: str, agent: Agent | None, actor: str, now: dt.datetime, dry: bool) -> Apply:
    def reply(s: Session, t: Ticket) -> Change:
        if not dry:
            try:
                send_reply(s, cfg, t, text, agent=agent, actor=actor, now=now)
            except TemplateError as exc:
                raise UserError(f"cannot compose the reply: {type(exc).__name__}: {exc}") from None
        return Change(t.number, "reply", "", "sent" if not dry else "would send")

    return reply


def bulk_change(app: App, args: argparse.Namespace) -> int:
    now = utc_now()
    with app.session() as session:
        query = filtered(session, select(Ticket).where(Ticket.merged_into_id.is_(None)), args, now)
        apply = _action(app, args, session, now)
        tickets = list(session.scalars(query.order_by(Ticket.id)))
        changes = [apply(session, ticket) for ticket in tickets]
    rows = [{**vars(c), "changed": c.changed} for c in changes]
    if args.json:
        print_json({"dry_run": args.dry_run, "tickets": rows})
        return 0
    verb = "would change" if args.dry_run else "changed"
    print_table(
        ("TICKET", "ACTION", "BEFORE", "AFTER"),
        [(c.ticket, c.action, c.before or "-", c.after) for c in changes],
    )
    print(f"{sum(c.changed for c in changes)} of {len(changes)} ticket(s) {verb}")
    return 0
