"""maildctl ticket status, priority, assign, tag, untag, close, reopen, note, reply, delete, flag,
unflag: everyday changes to one ticket (issue 7). Each goes through maild.tickets.ticket_ops (or
replies), which audits it; a merged number acts on its survivor."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import TemplateError
from sqlalchemy.orm import Session

from maild.admin_cli.common import App, UserError, find_ticket, who
from maild.admin_cli.ticket_lookup import (
    find_agent,
    number_command,
    target_ticket,
    utc_now,
    whole_conversation,
)
from maild.storage.models import PRIORITIES, TICKET_STATUSES, Ticket
from maild.tickets import ticket_checks, ticket_ops
from maild.tickets.replies import queue_assigned_notice, queue_flag_notice, send_reply
from maild.tickets.ticket_checks import InvalidValue, priority_name

Checked = TypeVar("Checked")


def status_name(session: Session, ticket: Ticket, text: str) -> str:
    """`text` as one of the ticket's desk's statuses ("On Hold" is on_hold), or UserError."""
    return checked(ticket_checks.status_name, session, ticket, text)


def checked(check: Callable[..., Checked], *args: Any) -> Checked:
    """`check(*args)` (maild.tickets.ticket_checks) with its InvalidValue as maildctl's one line."""
    try:
        return check(*args)
    except InvalidValue as exc:
        raise UserError(exc.cli_message) from None


def _change_status(app: App, number: str, wanted: str | None) -> int:
    actor = who()
    with app.session() as session:
        ticket = target_ticket(session, number)
        status = status_name(session, ticket, wanted) if wanted is not None else "closed"
        before = ticket.status
        if before != status:
            ticket_ops.set_status(session, ticket, status, actor=actor, now=utc_now())
        number = ticket.number
    print(f"{number}: status {before} -> {status}" if before != status else f"{number} is {status} already")
    return 0


def set_status(app: App, args: argparse.Namespace) -> int:
    return _change_status(app, args.number, args.status)


def close_ticket(app: App, args: argparse.Namespace) -> int:
    return _change_status(app, args.number, "closed")


def reopen_ticket(app: App, args: argparse.Namespace) -> int:
    return _change_status(app, args.number, "open")


def set_priority(app: App, args: argparse.Namespace) -> int:
    priority = checked(priority_name, args.priority)
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        before, number = ticket.priority, ticket.number
        if before != priority:
            ticket_ops.set_priority(session, ticket, priority, actor=who(), now=utc_now())
    print(
        f"{number}: priority {before} -> {priority}"
        if before != priority
        else f"{number} is {priority} already"
    )
    return 0


def assign_ticket(app: App, args: argparse.Namespace) -> int:
    if args.none == (args.agent is not None):
        raise UserError("give either an agent (address or name) or --none")
    actor, now = who(), utc_now()
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        agent = find_agent(session, args.agent) if args.agent is not None else None
        number = ticket.number
        if ticket.assigned_agent_id == (agent.id if agent is not None else None):
            print(
                f"{number} is assigned to {agent.email} already"
                if agent
                else f"{number} is unassigned already"
            )
            return 0
        ticket_ops.assign(session, ticket, agent, actor=actor, now=now)
        try:
            mailed = (
                agent is not None
                and queue_assigned_notice(session, app.cfg, ticket, agent, assigned_by=actor, now=now)
                is not None
            )
        except TemplateError as exc:
            raise UserError(f"cannot compose assigned_notice: {type(exc).__name__}: {exc}") from None
    if agent is None:
        print(f"{number}: unassigned")
    else:
        print(f"{number}: assigned to {agent.email}" + ("" if mailed else " (no mail: bouncing or blocked)"))
    return 0


def tag_name(text: str) -> str:
    return checked(ticket_checks.tag_name, text)


def tag_ticket(app: App, args: argparse.Namespace) -> int:
    tag = tag_name(args.tag)
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        had = tag in ticket_ops.tags_of(session, ticket)
        ticket_ops.add_tag(session, ticket, tag, actor=who(), now=utc_now())
        number = ticket.number
    print(f"{number} is tagged {tag} already" if had else f"{number}: tagged {tag}")
    return 0


def untag_ticket(app: App, args: argparse.Namespace) -> int:
    tag = tag_name(args.tag)
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        try:
            ticket_ops.remove_tag(session, ticket, tag, actor=who(), now=utc_now())
        except ValueError as exc:
            raise UserError(f"{exc}: see 'maildctl ticket show {ticket.number}'") from None
        number = ticket.number
    print(f"{number}: untagged {tag}")
    return 0


def text_of(path: str | None, what: str) -> str:
    """The text of a note or reply, from `path` or stdin."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
    else:
        text = sys.stdin.read()
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise UserError(f"the {what} is empty: write it on stdin or give --file")
    return text


def add_note(app: App, args: argparse.Namespace) -> int:
    text, actor = text_of(args.file, "note"), who()
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        note = ticket_ops.add_note(session, ticket, text, author=(actor, ""), actor=actor, now=utc_now())
        number, note_id = ticket.number, note.id
    print(f"{number}: note #{note_id} added")
    return 0


def reply_ticket(app: App, args: argparse.Namespace) -> int:
    text, actor = text_of(args.file, "reply"), who()
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        agent = find_agent(session, args.as_agent) if args.as_agent is not None else None
        try:
            sent = send_reply(session, app.cfg, ticket, text, agent=agent, actor=actor, now=utc_now())
        except TemplateError as exc:
            raise UserError(f"cannot compose the reply: {type(exc).__name__}: {exc}") from None
        number = ticket.number
        to = sent.relayed.row.rcpt_to if sent.relayed.row is not None else []
        not_sent, errors = sent.relayed.not_sent, sent.notice_errors
    print(f"{number}: reply sent to {', '.join(to)}" if to else f"{number}: reply stored, sent to nobody")
    if not_sent:
        print(f"not sent to {not_sent}")
    for error in errors:  # the reply went; say what the agents did not get
        print(f"maildctl: warning: notice not queued: {error}", file=sys.stderr)
    return 0


def delete_ticket(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        ticket, merged = whole_conversation(session, find_ticket(session, args.number))
        detail = ticket_ops.delete_tickets(session, ticket, merged, actor=who(), now=utc_now())
    merged_text = f" (with merged {', '.join(detail['merged'])})" if detail["merged"] else ""
    cancelled = len(detail["outbox_cancelled"])
    print(
        f"{detail['number']} deleted{merged_text}, {detail['messages']} message(s), "
        f"{cancelled} queued mail(s) cancelled; the raw mail stays in the spool"
    )
    return 0


def flag_ticket(app: App, args: argparse.Namespace) -> int:
    actor, now = who(), utc_now()
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        agent = find_agent(session, args.agent)
        try:
            ticket_ops.flag(session, ticket, agent, note=args.note.strip(), actor=actor, now=now)
        except ticket_ops.NotFlagged as exc:
            raise UserError(f"{exc}: clear it with 'maildctl ticket unflag' first") from None
        try:
            row = queue_flag_notice(
                session, app.cfg, ticket, agent, flagged_by=actor, note=args.note.strip(), now=now
            )
        except TemplateError as exc:
            raise UserError(f"cannot compose flag_notice: {type(exc).__name__}: {exc}") from None
        number, email = ticket.number, agent.email
    print(f"{number}: flagged for {email}" + ("" if row is not None else " (no mail: bouncing or blocked)"))
    return 0


def unflag_ticket(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        ticket = target_ticket(session, args.number)
        agent = find_agent(session, args.agent, active=False)
        try:
            ticket_ops.unflag(session, ticket, agent, actor=who(), now=utc_now())
        except ticket_ops.NotFlagged as exc:
            raise UserError(f"{exc}: see 'maildctl ticket list --flagged-for {agent.email}'") from None
        number, email = ticket.number, agent.email
    print(f"{number}: flag for {email} cleared")
    return 0


def register(sub: Any) -> None:
    _register_state(sub)
    _register_text(sub)
    _register_flags(sub)


def _register_state(sub: Any) -> None:
    """status, priority, assign, tag, untag, close, reopen."""
    status = number_command(
        sub,
        "status",
        "set a ticket's status",
        set_status,
        f"Set the status: one of {', '.join(TICKET_STATUSES)}, or a custom status of the ticket's desk "
        "('maildctl status list').",
    )
    status.add_argument("status", metavar="STATUS")
    priority = number_command(sub, "priority", "set a ticket's priority", set_priority)
    priority.add_argument("priority", metavar="PRIORITY", help=" | ".join(PRIORITIES))
    assign = number_command(
        sub,
        "assign",
        "assign a ticket to an agent (who gets the assigned_notice mail), or --none",
        assign_ticket,
    )
    assign.add_argument("agent", metavar="AGENT", nargs="?", help="the agent's address or name")
    assign.add_argument("--none", action="store_true", help="unassign")
    for name, handler, what in (("tag", tag_ticket, "add a tag"), ("untag", untag_ticket, "remove a tag")):
        parser = number_command(sub, name, f"{what} (1-100 letters, digits and - _ . : /)", handler)
        parser.add_argument("tag", metavar="TAG")
    number_command(sub, "close", "set the status closed", close_ticket)
    number_command(sub, "reopen", "set the status open", reopen_ticket)


def _register_text(sub: Any) -> None:
    """note, reply, delete."""
    note = number_command(
        sub, "note", "add an internal note (never sent to customers), text from stdin or --file", add_note
    )
    note.add_argument("--file", help="read the note from this file (UTF-8) instead of stdin")
    reply = number_command(
        sub,
        "reply",
        "answer the customer, as an agent's reply by mail: text from stdin or --file",
        reply_ticket,
        "Send the text to the customer and sub-customers with the agent_reply template, From the desk's "
        "address under the desk's name (or, with --as, the agent's display name). The ticket becomes "
        "waiting and the other agents get agent_reply_notice.",
    )
    reply.add_argument("--file", help="read the reply from this file (UTF-8) instead of stdin")
    reply.add_argument(
        "--as", dest="as_agent", metavar="AGENT", help="answer as this agent (address or name)"
    )
    number_command(
        sub,
        "delete",
        "delete a ticket with its messages (the raw mail stays in the spool); its queued mail is cancelled",
        delete_ticket,
    )


def _register_flags(sub: Any) -> None:
    """flag, unflag."""
    flag = number_command(
        sub, "flag", "flag a ticket for an agent, who gets the flag_notice mail", flag_ticket
    )
    flag.add_argument("agent", metavar="AGENT", help="the agent's address or name")
    flag.add_argument("--note", default="", help="why: goes into the mail and the flag")
    unflag = number_command(sub, "unflag", "clear a ticket's flag for an agent", unflag_ticket)
    unflag.add_argument("agent", metavar="AGENT", help="the agent's address or name")
