"""commands: an authenticated agent's reply — its command lines, what the customer will read, and the
collision guard. Runs only for mail identify accepted as an agent reply.

All or nothing: the command lines are parsed (maild.tickets.commands) and resolved against the database (the
agent to assign, the canned reply, the ticket to merge, the sub-customer to add) before anything changes;
with any problem nothing is carried out, nothing is stored or sent to the customer, and the agent gets
one `command_errors` naming every bad line, in line order: the lines that parse are resolved even when
another line does not, so a typo on one line does not hide an unknown agent on the next.

What the customer reads: the text after the command block without the quoted history and the signature,
a `#canned` reply first. `#note`, or mail to the note address, makes it an internal note; a reply of
commands only changes the ticket and sends nothing.

Collision guard: a reply that would go to the customer, written to one of our mails older than the
ticket's latest customer-visible message from someone else (the customer wrote again, another agent
answered), is held — stored as a `held` message — and the agent gets `collision_notice` with what they
missed. `#send` (alone) in a reply lets the held reply go as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from maild.mail.quotes import visible_text
from maild.outbound.outgoing import agent_display_name, queue_mail, ticket_variables
from maild.pipeline.apply import store_message
from maild.pipeline.context import AgentReply, Context, Stop
from maild.storage.models import Agent, Message, OutboxMessage, Ticket, TicketTag
from maild.tickets import ticket_ops
from maild.tickets.canned import find_canned, firstname_of, render_canned
from maild.tickets.commands import (
    AssignCommand,
    CannedCommand,
    CcCommand,
    CloseCommand,
    Command,
    CommandError,
    MergeCommand,
    ParsedReply,
    PriorityCommand,
    SendCommand,
    StatusCommand,
    TagCommand,
    TimeCommand,
    UntagCommand,
    describe_errors,
    parse_commands,
)
from maild.tickets.lookup import matching_agents
from maild.tickets.merge import MergeRefused, merge_tickets
from maild.tickets.participants import MAX_CC, NotAddable, check_customer_address, is_participant
from maild.tickets.replies import queue_assigned_notice
from maild.tickets.statuses import custom_statuses

Action = Callable[[Ticket], None]


class _Bad(Exception):
    """A command that parses but cannot be carried out on this ticket."""


def _find_agent(ctx: Context, ticket: Ticket, who: str) -> Agent:
    """An active agent by address, or by name / display name (case-insensitive); the ticket's desk's
    agents first, so two desks' "Anna"s do not make `#assign anna` ambiguous on either."""
    found = matching_agents(ctx.session, who, active_only=True, desk=ticket.desk)
    if not found:
        raise _Bad(f"#assign: no active agent {who!r} (give an agent's address or name)")
    if len(found) > 1:
        names = ", ".join(a.email for a in found)
        raise _Bad(f"#assign: {who!r} names {len(found)} agents ({names}): give the address")
    return found[0]


def _resolve(ctx: Context, ticket: Ticket, command: Command, actor: str) -> Action | None:
    """What `command` will do, checked now; None for commands that change nothing on their own."""
    session, now = ctx.session, ctx.now
    match command:
        case StatusCommand(status=status):
            return lambda t: ticket_ops.set_status(session, t, status, actor=actor, now=now)
        case CloseCommand():
            return lambda t: ticket_ops.set_status(session, t, "closed", actor=actor, now=now)
        case PriorityCommand(priority=priority):
            return lambda t: ticket_ops.set_priority(session, t, priority, actor=actor, now=now)
        case AssignCommand(agent=who):
            return _assign(ctx, ticket, who, actor)
        case TagCommand(tag=tag):
            return lambda t: ticket_ops.add_tag(session, t, tag, actor=actor, now=now)
        case UntagCommand(tag=tag):
            if session.get(TicketTag, (ticket.id, tag)) is None:
                raise _Bad(f"#untag: {ticket.number} is not tagged {tag!r}")
            return lambda t: ticket_ops.remove_tag(session, t, tag, actor=actor, now=now)
        case CcCommand(action="add", address=address):
            _check_cc_add(ctx, ticket, address)
            return lambda t: ticket_ops.add_sub_customer(session, t, address, actor=actor, now=now)
        case CcCommand(address=address):
            if not any(p.contact.email == address and p.role == "cc" for p in ticket.participants):
                raise _Bad(f"#cc remove: {address} is not a sub-customer of {ticket.number}")
            return lambda t: ticket_ops.remove_sub_customer(session, t, address, actor=actor, now=now)
        case MergeCommand(number=number):
            return _merge(ctx, ticket, number, actor)
        case TimeCommand(minutes=minutes):
            agent = ctx.require_agent()
            return lambda t: ticket_ops.log_time(session, t, agent, minutes, actor=actor, now=now)
    return None  # #note, #canned (text), #send (handled before)


def _assign(ctx: Context, ticket: Ticket, who: str, actor: str) -> Action:
    """#assign: the agent `who` names; assigning someone else queues them the assigned notice."""
    session, now, agent = ctx.session, ctx.now, ctx.require_agent()
    assignee = _find_agent(ctx, ticket, who)

    def assign(t: Ticket) -> None:
        ticket_ops.assign(session, t, assignee, actor=actor, now=now)
        if assignee is not agent:  # assigning oneself needs no mail
            row = queue_assigned_notice(
                session, ctx.cfg, t, assignee, assigned_by=agent_display_name(agent), now=now
            )
            if row is not None:
                ctx.queued.append(row)

    return assign


def _check_cc_add(ctx: Context, ticket: Ticket, address: str) -> None:
    """#cc add: _Bad unless `address` may become a sub-customer of the ticket."""
    try:
        check_customer_address(ctx.session, address)
    except NotAddable as exc:
        raise _Bad(f"#cc add: {exc}") from None
    if is_participant(ticket, address):
        raise _Bad(f"#cc add: {address} is on {ticket.number} already")
    if sum(1 for p in ticket.participants if p.role == "cc") >= MAX_CC:
        raise _Bad(f"#cc add: {ticket.number} has the most sub-customers allowed ({MAX_CC})")


def _merge(ctx: Context, ticket: Ticket, number: str, actor: str) -> Action:
    """#merge: the other ticket, checked now; merging sets ctx.ticket to the survivor."""
    session, now = ctx.session, ctx.now
    other = ticket_ops.ticket_by_number(session, number)
    if other is None:
        raise _Bad(f"#merge: no ticket {number}")
    if other.id == ticket.id:
        raise _Bad(f"#merge: {number} is this ticket")
    if other.merged_into_id is not None:
        raise _Bad(f"#merge: {other.number} was merged into another ticket already")
    if other.desk_id != ticket.desk_id:
        raise _Bad(
            f"#merge: {other.number} is on desk {other.desk.name}; merging across desks is for "
            "admins (maildctl ticket merge --force)"
        )

    def merge(t: Ticket) -> None:
        try:
            ctx.ticket = merge_tickets(session, [t, other], actor=actor, now=now)
        except MergeRefused as exc:  # checked above; a race with an admin's merge lands here
            raise _Bad(f"#merge: {exc}") from None

    return merge


def _canned_text(
    ctx: Context, ticket: Ticket, commands: list[Command], source: str
) -> tuple[str, list[CommandError]]:
    """The canned replies' text, or an error for each `#canned` line naming no canned reply."""
    parts: list[str] = []
    errors: list[CommandError] = []
    for command in commands:
        if isinstance(command, CannedCommand):
            row = find_canned(ctx.session, ticket.desk_id, command.name)
            if row is None:
                problem = f"#canned: no canned reply {command.name!r} for desk {ticket.desk.name}"
                errors.append(
                    CommandError(command.line_number, _command_lines(source, [command])[0], problem)
                )
                continue
            customer = ticket.customer
            parts.append(
                render_canned(
                    row.body,
                    firstname=firstname_of(customer.display_name, customer.email),
                    name=customer.display_name or customer.email,
                    email=customer.email,
                    variables=ticket_variables(ctx.cfg, ticket),
                ).strip()
            )
    return "\n\n".join(parts), errors


def _command_lines(text: str, commands: list[Command]) -> list[str]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [lines[c.line_number - 1].strip() for c in commands]


def _answer_agent(ctx: Context, ticket: Ticket, template: str, variables: dict[str, Any]) -> None:
    """maild's answer to the agent's mail (RFC 3834 auto-replied, so their client's rules stay quiet),
    Reply-To their token for the ticket."""
    mail, agent = ctx.require_mail(), ctx.require_agent()
    row = queue_mail(
        ctx.session,
        ctx.cfg,
        ticket,
        template,
        [(agent_display_name(agent), agent.email)],
        in_reply_to=mail.message_id if mail.has_message_id else "",
        automatic=True,
        exempt_agents=True,
        agent_id=agent.id,
        now=ctx.now,
        variables={"agent_name": agent_display_name(agent), **variables},
    )
    if row is not None:
        ctx.queued.append(row)


def _answer_errors(ctx: Context, ticket: Ticket, errors: list[CommandError]) -> Stop:
    _answer_agent(ctx, ticket, "command_errors", {"errors_text": describe_errors(errors)})
    ctx.ticket = ticket
    summary = "; ".join(f"line {e.line_number}: {e.problem}" for e in errors)
    return Stop("refused", f"agent reply not carried out: {summary}"[:2000])


def _missed(ctx: Context, ticket: Ticket) -> list[Message]:
    """Customer-visible messages from others newer than the newest of our mails this reply answers."""
    mail, agent = ctx.require_mail(), ctx.require_agent()
    ids = mail.thread_ids
    if not ids:
        return []
    seen_at = ctx.session.scalars(
        select(OutboxMessage.created_at)
        .where(OutboxMessage.message_id.in_(ids))
        .order_by(OutboxMessage.created_at.desc())
    ).first()
    if seen_at is None:
        return []  # not a reply to one of our mails: nothing tells what the agent had seen
    return [
        m
        for m in ticket.messages
        if m.created_at > seen_at
        and m.kind in ("customer", "agent")
        and m.automatic is None  # a vacation responder is nothing to have missed
        and not (m.kind == "agent" and m.from_address == agent.email)
    ]


def _hold_collision(ctx: Context, ticket: Ticket, text: str, missed: list[Message]) -> Stop:
    held = store_message(ctx, ticket, "held", visible=text)
    _answer_agent(
        ctx,
        ticket,
        "collision_notice",
        {
            "held_text": text,
            "missed": [
                {
                    "sender_name": m.from_name or m.from_address,
                    "sender_email": m.from_address,
                    "kind": m.kind,
                    "at": m.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                    "text": m.visible_text,
                }
                for m in missed
            ],
        },
    )
    ctx.ticket, ctx.message = ticket, held
    who = ", ".join(dict.fromkeys(m.from_address for m in missed))
    return Stop(
        "held", f"collision: {len(missed)} newer message(s) on {ticket.number} from {who}; #send releases it"
    )


def _release(ctx: Context, ticket: Ticket, parsed: ParsedReply) -> tuple[Message | None, list[CommandError]]:
    """The held reply `#send` lets go, or the error saying why not."""
    agent = ctx.require_agent()
    send = next(c for c in parsed.commands if isinstance(c, SendCommand))
    line = _command_lines(ctx.require_mail().text, [send])[0]
    if len(parsed.commands) > 1:
        problem = "#send goes alone: it sends your held reply as it was; put other commands in a new reply"
        return None, [CommandError(send.line_number, line, problem)]
    held = ctx.session.scalars(
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.kind == "held", Message.from_address == agent.email)
        .order_by(Message.created_at.desc(), Message.id.desc())
    ).first()
    if held is None:
        return None, [
            CommandError(send.line_number, line, f"#send: no reply of yours is held on {ticket.number}")
        ]
    return held, []


def run(ctx: Context) -> Stop | None:
    agent, ticket, mail = ctx.agent, ctx.ticket, ctx.require_mail()
    if agent is None or ticket is None:
        return None  # apply refuses an agent's mail that names no ticket
    if ctx.automatic is not None:
        # The agent's vacation responder answering a notice: kept for the other agents, never relayed to
        # the customer, and no "command" in it is carried out.
        text = f"[automatic mail: {ctx.automatic}] {visible_text(mail.text, whole_when_empty=False)}"
        ctx.agent_reply = AgentReply(text=text.strip(), kind="note", command_lines=[])
        return None
    statuses = custom_statuses(ctx.session, ticket.desk_id)
    parsed = parse_commands(mail.text, statuses)
    errors, released = list(parsed.errors), None
    if any(isinstance(c, SendCommand) for c in parsed.commands):
        released, send_errors = _release(ctx, ticket, parsed)
        errors += send_errors
        if errors:
            released = None  # nothing is released from a reply with bad lines
        elif released is not None:
            # the held reply's own commands, checked again now
            parsed = parse_commands(released.text, statuses)
            errors = list(parsed.errors)
    # Every line that parsed is resolved even when another did not: the agent learns of all bad lines
    # in one answer. Resolving only looks things up; nothing changes before all of them are good.
    source = released.text if released is not None else mail.text
    actions: list[tuple[Command, Action]] = []
    for command in parsed.commands:
        try:
            action = _resolve(ctx, ticket, command, agent.email)
        except _Bad as exc:
            errors.append(CommandError(command.line_number, _command_lines(source, [command])[0], str(exc)))
            continue
        if action is not None:
            actions.append((command, action))
    canned, canned_errors = _canned_text(ctx, ticket, parsed.commands, source)
    errors += canned_errors
    if errors:
        return _answer_errors(ctx, ticket, sorted(errors, key=lambda e: e.line_number))
    own = visible_text(parsed.body, whole_when_empty=False)
    text = "\n\n".join(part for part in (canned, own) if part)
    kind = "note" if parsed.is_note or ctx.to_note_address else "agent"
    reply = AgentReply(
        text=text,
        kind=kind,
        command_lines=_command_lines(released.text if released is not None else mail.text, parsed.commands),
        status_set=any(isinstance(c, (StatusCommand, CloseCommand)) for c in parsed.commands),
        released=released,
    )
    if reply.relayed and released is None and (missed := _missed(ctx, ticket)):
        return _hold_collision(ctx, ticket, text, missed)
    # Merge first: the other commands then act on the surviving ticket.
    actions.sort(key=lambda pair: not isinstance(pair[0], MergeCommand))
    for command, action in actions:
        try:
            action(ctx.ticket or ticket)
        except _Bad as exc:
            return _answer_errors(ctx, ticket, [CommandError(command.line_number, "", str(exc))])
    ctx.agent_reply = reply
    return None
