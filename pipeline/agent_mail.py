"""agent_mail: an agent's NEW mail to a desk whose first line is a desk command (maild.tickets.desk_commands):

- `#to customer@example.com` (and `#cc` lines): a ticket for that customer, opened by the agent with the
  rest of the text and the mail's attachments (maild.tickets.agent_open), subject from the mail;
- `#customer` on a forwarded customer mail (attached, or inline as mail clients write it:
  maild.mail.forwards): a ticket on behalf of the original sender, the forwarded mail its first
  (customer) message, the agent's words above it an internal note;
- `#away [until DATE]` / `#back`: the agent's presence (maild.tickets.presence); no ticket.

Before this stage an agent's mail without a token of ours was held by identify ("agents answer by replying
to a notification"), and one without a command still is. A mail with a command is the agent's only when
agent_mail_auth says so (else held, as before). Errors (an unknown command, a bad address, a date in the
past, a refused attachment) are answered to the agent, with nothing done and never a ticket for the agent.

This stage decides (ctx.agent_mail); apply writes (pipeline/agent_mail_apply.py), notify sends
(pipeline/agent_mail_notify.py). identify, thread, policy and commands pass such mail by."""

from __future__ import annotations

from sqlalchemy import select

from maild.mail.addresses import normalize
from maild.mail.attachment_policy import Upload
from maild.mail.forwards import forwarded_mail
from maild.mail.quotes import visible_text
from maild.mail.tokens import load_secret, read_reply_address
from maild.pipeline import agent_mail_auth
from maild.pipeline.context import IMPORT_INGRESS, AgentMail, Context, Stop
from maild.storage.models import Agent, Message, Ticket
from maild.tickets.agent_open import OpenRefused, check_request
from maild.tickets.commands import CommandError
from maild.tickets.desk_commands import Away, OnBehalf, OpenFor, describe_desk_errors, parse_desk_command
from maild.tickets.lookup import recipient_candidates
from maild.tickets.participants import NotAddable, check_customer_address
from maild.tickets.presence import agent_timezone


def _has_token(ctx: Context) -> bool:
    """A signed address of ours among the recipients: a reply to a ticket (identify's and commands')."""
    secret = load_secret(ctx.cfg.data_dir)
    candidates = recipient_candidates(ctx.spool.recipient, ctx.require_mail(), envelope_decides=False)
    return any(read_reply_address(secret, address) is not None for address in candidates)


def _errors(ctx: Context, agent: Agent, errors: list[CommandError]) -> Stop:
    ctx.agent_mail = AgentMail(agent, None, errors_text=describe_desk_errors(errors))
    summary = "; ".join(f"line {e.line_number}: {e.problem}" if e.line_number else e.problem for e in errors)
    return Stop("refused", f"agent's desk command not carried out: {summary}"[:2000])


def _check_open(ctx: Context, agent: Agent, command: OpenFor) -> AgentMail:
    """#to: open_ticket's own checks (OpenRefused) on what the mail says."""
    mail, desk = ctx.require_mail(), ctx.require_desk()
    text = visible_text(command.body, whole_when_empty=False).strip()
    uploads = [Upload(p.filename, p.content_type, p.data) for p in mail.attachments if not p.inline]
    checked = check_request(
        ctx.session,
        desk,
        customer=command.customer,
        cc=command.ccs,
        subject=mail.subject,
        text=text,
        attachments=uploads,
        agent=agent,
    )
    return AgentMail(agent, command, opened=checked, text=text)


def _check_on_behalf(ctx: Context, agent: Agent, command: OnBehalf) -> AgentMail:
    """#customer: the forwarded mail found, its sender a customer's address, the agent on the desk."""
    desk = ctx.require_desk()
    if desk not in agent.desks:
        raise OpenRefused(f"agent {agent.email} is not an agent of desk {desk.name}")
    found = forwarded_mail(ctx.require_mail(), command.rest)
    if found is None:
        raise OpenRefused(
            "#customer: no forwarded mail found: forward the customer's mail (inline or as an attachment) "
            "with #customer as the first line"
        )
    note, forwarded = found
    if forwarded.message_id and (stored := _stored_number(ctx, forwarded.message_id)) is not None:
        raise OpenRefused(f"#customer: the forwarded mail is on {stored} already")
    try:
        check_customer_address(ctx.session, forwarded.sender_address)
    except NotAddable as exc:
        raise OpenRefused(f"#customer: the forwarded mail's sender {exc}, not a customer") from None
    return AgentMail(agent, command, text=note, forwarded=forwarded)


def _stored_number(ctx: Context, message_id: str) -> str | None:
    """The ticket of this desk that holds a message with `message_id`, if any."""
    return ctx.session.scalars(
        select(Ticket.number)
        .join(Message, Message.ticket_id == Ticket.id)
        .where(Message.message_id == message_id, Message.desk_id == ctx.require_desk().id)
    ).first()


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    if ctx.desk_reply or ctx.spool.ingress == IMPORT_INGRESS:
        return None  # an imported mailbox is history: its commands were not ours to carry out then
    if not mail.text.lstrip().startswith("#") or _has_token(ctx):
        return None  # the usual mail: its first line is no command (checked before any parsing)
    agent = ctx.session.scalars(
        select(Agent).where(Agent.email == normalize(mail.from_address), Agent.active.is_(True))
    ).first()
    if agent is None:
        return None  # a customer's "#to" line is text like any other
    parsed = parse_desk_command(mail.text, ctx.now, agent_timezone(agent))
    if parsed is None:
        return None
    reason = agent_mail_auth.refusal(ctx, agent)
    if reason is not None:
        return Stop("held", f"not accepted as an agent's desk command: {reason}")
    if isinstance(parsed, list):
        return _errors(ctx, agent, parsed)
    try:
        if isinstance(parsed, OpenFor):
            ctx.agent_mail = _check_open(ctx, agent, parsed)
        elif isinstance(parsed, OnBehalf):
            ctx.agent_mail = _check_on_behalf(ctx, agent, parsed)
        else:
            ctx.agent_mail = AgentMail(agent, parsed)
    except OpenRefused as exc:
        return _errors(ctx, agent, [CommandError(0, "", str(exc))])
    ctx.agent = agent
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    found = ctx.agent_mail
    if found is None:
        return "no desk command in an agent's new mail"
    who, command = found.agent.email, found.command
    if isinstance(command, OpenFor):
        cc = f" (cc {', '.join(command.ccs)})" if command.ccs else ""
        return f"{who}'s #to: a ticket for {command.customer}{cc}, their mail its first message"
    if isinstance(command, OnBehalf) and found.forwarded is not None:
        return f"{who}'s #customer: a ticket on behalf of {found.forwarded.sender_address}"
    if isinstance(command, Away):
        until = f" until {command.until:%Y-%m-%d %H:%M} ({command.until.tzinfo})" if command.until else ""
        return f"{who}'s #away: marked away{until}"
    return f"{who}'s #back: marked present"
