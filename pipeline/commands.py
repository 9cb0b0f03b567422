"""commands: an authenticated agent's reply — its command lines, what the customer will read, and the
collision guard. Runs only for mail identify accepted as an agent reply.

All or nothing: the command lines are parsed (maild.tickets.commands) and resolved against the database (the
agent to assign, the canned reply, the ticket to merge, the sub-customer to add) into a plan that apply
carries out (maild.tickets.command_effects); this stage changes nothing;
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

from sqlalchemy import select

from maild.mail.quotes import visible_text
from maild.outbound.outgoing import ticket_variables
from maild.pipeline.context import AgentAnswer, AgentReply, Context, Stop
from maild.storage.models import Agent, Message, OutboxMessage, Ticket, TicketTag
from maild.tickets import ticket_ops
from maild.tickets.canned import find_canned, firstname_of, render_canned
from maild.tickets.command_effects import PlannedCommand
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
from maild.tickets.participants import MAX_CC, NotAddable, check_customer_address, is_participant
from maild.tickets.statuses import custom_statuses


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


def _resolve(ctx: Context, ticket: Ticket, command: Command) -> PlannedCommand | None:
    """What `command` will do, checked now; None for commands that change nothing on their own."""
    session = ctx.session
    match command:
        case StatusCommand() | CloseCommand() | PriorityCommand() | TagCommand() | TimeCommand():
            return PlannedCommand(command)
        case AssignCommand(agent=who):
            return PlannedCommand(command, assignee=_find_agent(ctx, ticket, who))
        case UntagCommand(tag=tag):
            if session.get(TicketTag, (ticket.id, tag)) is None:
                raise _Bad(f"#untag: {ticket.number} is not tagged {tag!r}")
            return PlannedCommand(command)
        case CcCommand(action="add", address=address):
            _check_cc_add(ctx, ticket, address)
            return PlannedCommand(command)
        case CcCommand(address=address):
            if not any(p.contact.email == address and p.role == "cc" for p in ticket.participants):
                raise _Bad(f"#cc remove: {address} is not a sub-customer of {ticket.number}")
            return PlannedCommand(command)
        case MergeCommand(number=number):
            return PlannedCommand(command, other=_merge_with(ctx, ticket, number))
    return None  # #note, #canned (text), #send (handled before)


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


def _merge_with(ctx: Context, ticket: Ticket, number: str) -> Ticket:
    """#merge: the other ticket, checked now (apply merges; the survivor is the ticket then)."""
    other = ticket_ops.ticket_by_number(ctx.session, number)
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
    return other


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


def _answer_errors(ctx: Context, errors: list[CommandError]) -> Stop:
    """Refuse the whole reply: the agent gets one command_errors (queued by notify) naming every bad line."""
    ctx.agent_answer = AgentAnswer("command_errors", {"errors_text": describe_errors(errors)})
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
    """Hold the reply: apply stores it as a `held` message, notify sends the agent collision_notice."""
    ctx.held_reply = text
    ctx.agent_answer = AgentAnswer(
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
    if ctx.agent_mail is not None:
        return None  # an agent's desk command: pipeline/agent_mail.py
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
    plan: list[PlannedCommand] = []
    for command in parsed.commands:
        try:
            step = _resolve(ctx, ticket, command)
        except _Bad as exc:
            errors.append(CommandError(command.line_number, _command_lines(source, [command])[0], str(exc)))
            continue
        if step is not None:
            plan.append(step)
    canned, canned_errors = _canned_text(ctx, ticket, parsed.commands, source)
    errors += canned_errors
    if errors:
        return _answer_errors(ctx, sorted(errors, key=lambda e: e.line_number))
    own = visible_text(parsed.body, whole_when_empty=False)
    text = "\n\n".join(part for part in (canned, own) if part)
    kind = "note" if parsed.is_note or ctx.to_note_address else "agent"
    reply = AgentReply(
        text=text,
        kind=kind,
        command_lines=_command_lines(released.text if released is not None else mail.text, parsed.commands),
        status_set=any(isinstance(c, (StatusCommand, CloseCommand)) for c in parsed.commands),
        released=released,
        # Merge first: the other commands then act on the surviving ticket.
        plan=tuple(sorted(plan, key=lambda step: not isinstance(step.command, MergeCommand))),
    )
    if reply.relayed and released is None and (missed := _missed(ctx, ticket)):
        return _hold_collision(ctx, ticket, text, missed)
    ctx.agent_reply = reply
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    reply = ctx.agent_reply
    if reply is None:
        return "no agent reply: no commands"
    done = f"carried out: {'; '.join(reply.command_lines)}" if reply.command_lines else "no commands"
    if reply.released is not None:
        return f"#send releases the held reply; {done}"
    if reply.relayed:
        return f"{done}; the reply goes to the customer"
    return f"{done}; {'an internal note' if reply.text else 'nothing goes to the customer'}"
