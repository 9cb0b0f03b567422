"""notify: queue what this mail calls for: the `ticket_created` auto-reply to the customer (and
sub-customers) of a new ticket, threaded to their mail, unless the desk has auto-replies off; it names the
attachments of their mail the desk refused, and why (`refused_attachments`). For a mail a stage stopped
(answer_stop, called by the runner): the answer to a refused mail (policy), maild's answer to an agent's
mail (commands: command_errors, collision_notice) and the bounce_notice (bounce). A reply that cannot be
rendered is noted on the spool row, never a reason to lose the ticket.

Automatic mail (the autoreply stage's ctx.automatic) is never answered automatically: two robots would
answer each other forever. maild.outbound.outgoing drops bouncing, blocked and rate-limited recipients; what
was
left out, and why, goes into the spool row's reason.

Agents are told of customer mail: `new_ticket_notice` for a new ticket, `customer_reply_notice` for a
customer's (or sub-customer's) mail on an existing one; one mail per agent, each with a Reply-To token
bound to that agent and the ticket, the customer's visible text, the status line and the attachments.
Who: maild.tickets.notices.notice_targets (the present agents: the assigned one, else the category's,
else the desk's); with nobody present a `desk-unavailable` desk tells no agent and sends the customer its
`desk_unavailable` mail once per ticket, whether or not it sends auto-replies. Automatic mail: a new ticket
opened by one (an out-of-office, a monitoring alert) is still announced, flagged as automatic, since
nobody else would ever see it; an automatic follow-up on an existing ticket (the customer's vacation
responder answering us) is not, as it needs no one's attention and would only be noise. The notices go
whether or not the desk sends auto-replies to customers: that switch is about customers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select

from maild.mail.addresses import normalize
from maild.mail.attachment_policy import for_customer
from maild.mail.authresults import forged_sender
from maild.outbound.outgoing import OutgoingAttachment, agent_display_name, queue_desk_mail, queue_mail
from maild.pipeline import agent_mail_notify, bounce_notice
from maild.pipeline.context import (
    IMPORT_INGRESS,
    AgentAnswer,
    Context,
    Stop,
)
from maild.pipeline.dry_run import would_send
from maild.storage.db import is_transient
from maild.storage.models import Agent, Message, OutboxMessage, Ticket, naive_utc
from maild.storage.notes import add_system_note
from maild.tickets import replies, ticket_ops
from maild.tickets.notices import (
    CUSTOMER_REPLY_NOTICE,
    DESK_UNAVAILABLE_TEMPLATE,
    NEW_TICKET_NOTICE,
    NOTICE_BURST,
    NOTICE_BURST_WINDOW,
    message_attachments,
    notice_targets,
)
from maild.tickets.participants import automatic_recipients, customer_recipients


def _note(ctx: Context, note: str) -> None:
    ctx.reason = f"{ctx.reason}; {note}"[:2000] if ctx.reason else note[:2000]


def _queue_courtesy(
    ctx: Context, queue: Callable[[dict[str, str]], OutboxMessage | None], what: str = "auto-reply"
) -> None:
    dropped: dict[str, str] = {}
    try:
        row = queue(dropped)
    except Exception as exc:
        if is_transient(exc):
            raise
        # The ticket is the customer's mail and the auto-reply a courtesy: a broken desk template must not
        # roll the ticket back (and fail every new mail). queue_mail adds its rows last, so nothing half-made
        # is left in the session; the spool row's reason says why nothing was sent.
        _note(ctx, f"{what} not queued: {type(exc).__name__}: {exc}")
        return
    if dropped:
        who = ", ".join(f"{address} ({why})" for address, why in dropped.items())
        _note(ctx, f"{what} {'not queued' if row is None else 'not sent'} to {who}")
    if row is not None:
        ctx.queued.append(row)


def _automatic(ctx: Context) -> bool:
    """Automatic mail gets no automatic answer; the spool row says why none was sent. Nor does mail whose
    From a trusted MTA found forged (SPF or DMARC failed for its domain): the answer would be backscatter
    to whoever's address was used."""
    if ctx.automatic is not None:
        _note(ctx, f"not answered: automatic mail ({ctx.automatic}: {ctx.automatic_reason})")
        return True
    mail = ctx.require_mail()
    forged = forged_sender(ctx.headers, ctx.cfg.agents.trusted_authserv_ids, mail.from_address)
    if forged:
        _note(ctx, "not answered: sender authentication failed: " + "; ".join(forged))
        return True
    return False


def _answer_refused(ctx: Context, template: str) -> None:
    """Tell the sender of a refused mail why (policy's replies_only), unless the desk answers nothing or
    the sender is a robot."""
    mail, desk = ctx.require_mail(), ctx.require_desk()
    if ctx.spool.ingress == IMPORT_INGRESS or not desk.auto_reply or _automatic(ctx):
        return
    _queue_courtesy(
        ctx,
        lambda dropped: queue_desk_mail(
            ctx.session,
            ctx.cfg,
            desk,
            template,
            [(mail.from_name, mail.from_address)],
            in_reply_to=mail.message_id if mail.has_message_id else "",
            references=mail.references,
            automatic=True,
            now=ctx.now,
            variables={
                "customer_name": mail.from_name or mail.from_address,
                "original_subject": mail.subject or "(no subject)",
            },
            dropped=dropped,
        ),
    )


# --- agent notifications --------------------------------------------------------------------------


def _queue_notices(
    ctx: Context,
    ticket: Ticket,
    template: str,
    agents: Sequence[Agent],
    variables: dict[str, Any],
    files: Sequence[OutgoingAttachment],
    *,
    in_reply_to: str = "",
    references: Sequence[str] = (),
) -> None:
    for agent in agents:
        _queue_courtesy(
            ctx,
            lambda dropped, agent=agent: replies.queue_agent_notice(  # type: ignore[misc]
                ctx.session,
                ctx.cfg,
                ticket,
                template,
                agent,
                now=ctx.now,
                variables=variables,
                attachments=files,
                in_reply_to=in_reply_to,
                references=references,
                dropped=dropped,
            ),
            what=template,
        )


def _notify_agents(ctx: Context, ticket: Ticket) -> None:
    mail = ctx.require_mail()
    if ctx.agent is not None or ctx.message is None or ctx.message.kind != "customer":
        return
    if ctx.outcome == "created":
        template = NEW_TICKET_NOTICE
    elif ctx.outcome == "replied":
        if ctx.automatic is not None:
            _note(ctx, "agents not notified: automatic follow-up")
            return
        template = CUSTOMER_REPLY_NOTICE
    else:
        return
    sender = normalize(mail.from_address)
    targets = notice_targets(ctx.session, ticket, now=ctx.now)
    if targets.desk_unavailable:
        _note(ctx, "agents not notified: none of the desk's agents is present")
        _tell_desk_unavailable(ctx, ticket)
        return
    agents = [a for a in targets.agents if a.email != sender]
    if not agents or _notices_paused(ctx, ticket, sender):
        return
    in_memory = {part.sha256: part.data for part in mail.attachments}
    listed, files = message_attachments(ctx.cfg, ctx.message, in_memory)
    variables = {
        **replies.status_variables(ctx.session, ticket),
        "sender_name": mail.from_name or mail.from_address,
        "sender_email": mail.from_address,
        "comment_content": ctx.message.visible_text,
        "attachments": listed,
        "automatic": ctx.automatic or "",
    }
    _queue_notices(
        ctx,
        ticket,
        template,
        agents,
        variables,
        files,
        in_reply_to=mail.message_id if mail.has_message_id else "",
        references=mail.references,
    )


def _tell_desk_unavailable(ctx: Context, ticket: Ticket) -> None:
    """Nobody present and the desk is `desk-unavailable`: the customer gets the desk_unavailable mail,
    once per ticket (tickets.desk_unavailable_sent_at; the ticket's log says so); never to a robot."""
    if ticket.desk_unavailable_sent_at is not None or _automatic(ctx):
        return
    mail = ctx.require_mail()
    customer, sub_customers = automatic_recipients(ticket)
    before = len(ctx.queued)
    _queue_courtesy(
        ctx,
        lambda dropped: queue_mail(
            ctx.session,
            ctx.cfg,
            ticket,
            DESK_UNAVAILABLE_TEMPLATE,
            [customer],
            cc=sub_customers,
            in_reply_to=mail.message_id if mail.has_message_id else "",
            references=mail.references,
            automatic=True,
            now=ctx.now,
            dropped=dropped,
        ),
        what=DESK_UNAVAILABLE_TEMPLATE,
    )
    if len(ctx.queued) > before:  # not sent (a bouncing customer, a broken template): the next mail tries
        ticket.desk_unavailable_sent_at = naive_utc(ctx.now)
        ticket_ops.audit(ctx.session, ticket, "desk_unavailable", actor="maild", now=ctx.now, to=customer[1])


def _notices_paused(ctx: Context, ticket: Ticket, sender: str) -> bool:
    """True when `sender` sent the desk more than NOTICE_BURST customer mails (this one included) within
    NOTICE_BURST_WINDOW: the agents were told of the first ones, and get no notice per mail after that
    (a flood of 100 mails must not become 100 notices per agent). The ticket says so, once per window;
    every mail is still stored on its ticket, and marked held for the flood digest
    (maild.tickets.flood_digest),
    which lists it to the agents once the flood is over (or every NOTICE_BURST_WINDOW while it lasts)."""
    at = naive_utc(ctx.now)
    since = at - NOTICE_BURST_WINDOW
    recent = ctx.session.scalar(
        select(func.count(Message.id)).where(
            Message.desk_id == ticket.desk.id,
            Message.kind == "customer",
            func.lower(Message.from_address) == sender,
            Message.created_at > since,
            Message.created_at <= at,
        )
    )
    if (recent or 0) <= NOTICE_BURST:
        return False
    if ctx.message is not None:
        ctx.message.notice_held_at = at
    note = (
        f"Notices to agents about mail from {sender} are paused: more than {NOTICE_BURST} mails from this "
        f"address in {NOTICE_BURST_WINDOW.seconds // 60} minutes. Its mail is still added to its tickets; "
        "the agents get one digest of it."
    )
    _note(
        ctx,
        f"agents not notified: {sender} sent more than {NOTICE_BURST} mails in the last minutes "
        "(held for the flood digest)",
    )
    noted = ctx.session.scalars(
        select(Message.id).where(
            Message.ticket_id == ticket.id,
            Message.kind == "system",
            Message.text == note,
            Message.created_at > since,
        )
    ).first()
    if noted is None:
        add_system_note(ctx.session, ticket, note, by="notify", at=ctx.now)
    return True


def _relay_agent_reply(ctx: Context, ticket: Ticket) -> None:
    """The agent's reply to the customer and sub-customers, From the desk under the agent's display name
    (maild.tickets.replies, as `maildctl ticket reply` sends it). Not a courtesy: if it cannot be composed
    the mail
    fails (and is retried, then quarantined with the reason) rather than being stored as answered when
    nobody got it."""
    reply, agent, message = ctx.agent_reply, ctx.agent, ctx.message
    if reply is None or agent is None or message is None or not reply.relayed:
        return
    in_memory = {part.sha256: part.data for part in ctx.require_mail().attachments}
    _, files = message_attachments(ctx.cfg, message, in_memory, capped=False)
    relayed = replies.relay_reply(
        ctx.session,
        ctx.cfg,
        ticket,
        reply.text,
        writer=agent,
        writer_label=agent.email,
        now=ctx.now,
        files=files,
        reply=message,
    )
    if relayed.row is not None:
        ctx.queued.append(relayed.row)
    if relayed.dropped:  # the agent must be able to see that (some) customers did not get it
        _note(ctx, f"reply not sent to {relayed.not_sent}")


def _tell_other_agents(ctx: Context, ticket: Ticket) -> None:
    """A short notice of an agent's reply or note to the agents who would be told of the ticket's mail,
    but not to the one who wrote it (maild.tickets.replies, as for `maildctl ticket reply`)."""
    reply, agent, message = ctx.agent_reply, ctx.agent, ctx.message
    if reply is None or agent is None or message is None or not reply.text:
        return
    if ctx.automatic is not None:  # two agents' vacation responders must not answer each other via us
        _note(ctx, "agents not notified: automatic mail")
        return
    listed, files = message_attachments(
        ctx.cfg, message, {p.sha256: p.data for p in ctx.require_mail().attachments}
    )
    replies.tell_other_agents(
        ctx.session,
        ctx.cfg,
        ticket,
        reply.text,
        writer=agent,
        sender=(agent_display_name(agent), agent.email),
        is_note=reply.kind == "note",
        now=ctx.now,
        courtesy=lambda queue, what: _queue_courtesy(ctx, queue, what),
        listed=listed,
        files=files,
    )


def run(ctx: Context) -> Stop | None:
    ticket = ctx.ticket
    if ctx.spool.ingress == IMPORT_INGRESS:
        _note(ctx, "imported backlog: nothing sent")
        return None  # a replayed mailbox is history: nobody is answered or told again
    if ctx.agent_mail is not None:  # an agent's desk command (#to, #customer, #away, #back)
        agent_mail_notify.run(ctx, ctx.agent_mail)
        return None
    _answer_customer(ctx)  # first: the customer's mail is the one that matters most
    if ticket is None:
        return None
    if ctx.agent is not None:
        _relay_agent_reply(ctx, ticket)
        _tell_other_agents(ctx, ticket)
    elif ctx.outcome in ("created", "replied"):
        _notify_agents(ctx, ticket)
    return None


def _answer_customer(ctx: Context) -> None:
    mail, desk, ticket = ctx.require_mail(), ctx.require_desk(), ctx.ticket
    if ctx.outcome != "created" or not desk.auto_reply or ticket is None or _automatic(ctx):
        return
    customer, sub_customers = automatic_recipients(ticket)  # until an agent answers: the sender only
    left_out = len(customer_recipients(ticket)[1]) - len(sub_customers)
    if left_out:
        _note(
            ctx, f"auto-reply to the customer only, not to {left_out} Cc address(es), until an agent answers"
        )
    # The customer must learn which of their files the desk did not take, and why (not only the agents).
    refused = for_customer(ctx.message.attachments) if ctx.message is not None else []
    _queue_courtesy(
        ctx,
        lambda dropped: queue_mail(
            ctx.session,
            ctx.cfg,
            ticket,
            "ticket_created",
            [customer],
            cc=sub_customers,
            in_reply_to=mail.message_id if mail.has_message_id else "",
            references=mail.references,
            automatic=True,
            now=ctx.now,
            variables={"refused_attachments": refused},
            dropped=dropped,
        ),
    )


# --- mail for a stopped mail ------------------------------------------------------------------------------


def answer_stop(ctx: Context) -> None:
    """What a stage that stopped the mail decided to send (the runner calls this after apply.record_stop):
    the answer to a refused mail, maild's answer to an agent's mail, the bounce_notice."""
    if ctx.refusal is not None and ctx.refusal.template is not None:
        # The refusal is the verdict: what the courtesy answer met is not added to its reason.
        verdict = ctx.reason
        _answer_refused(ctx, ctx.refusal.template)
        ctx.reason = verdict
    if ctx.agent_mail is not None:  # a refused desk command: the agent hears why
        agent_mail_notify.answer_agent(ctx, ctx.agent_mail, None)
    if ctx.agent_answer is not None and ctx.ticket is not None:
        _answer_agent(ctx, ctx.ticket, ctx.agent_answer)
        ctx.agent_answer = None
    if ctx.bounce_effects is not None:
        bounce_notice.tell_of_bounce(ctx, ctx.bounce_effects)


def _answer_agent(ctx: Context, ticket: Ticket, answer: AgentAnswer) -> None:
    """maild's answer to the agent's mail (RFC 3834 auto-replied, so their client's rules stay quiet),
    Reply-To their token for the ticket."""
    mail, agent = ctx.require_mail(), ctx.require_agent()
    row = queue_mail(
        ctx.session,
        ctx.cfg,
        ticket,
        answer.template,
        [(agent_display_name(agent), agent.email)],
        in_reply_to=mail.message_id if mail.has_message_id else "",
        automatic=True,
        exempt_agents=True,
        agent_id=agent.id,
        now=ctx.now,
        variables={"agent_name": agent_display_name(agent), **answer.variables},
    )
    if row is not None:
        ctx.queued.append(row)


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    if ctx.queued:
        return "; ".join(_send_sentence(mail) for mail in would_send(ctx))
    if "auto-reply not queued" in ctx.reason:
        return ctx.reason
    if ctx.outcome == "created" and ctx.desk is not None and not ctx.desk.auto_reply:
        return f"nothing to send: auto-replies are off on desk {ctx.desk.name}"
    return "nothing to send"


def _send_sentence(mail: dict[str, Any]) -> str:
    cc = f" (cc {', '.join(mail['cc'])})" if mail["cc"] else ""
    return f"would queue {mail['template']} to {', '.join(mail['to'])}{cc}"
