"""apply: the ticket change. A new ticket (numbered, the sender as customer), or a reply on the found
ticket: a customer reply sets the status `open`, an agent's sets `waiting`. Addresses in Cc of a mail
from a participant become sub-customers (never desk addresses, agents or the sender; capped).

Automatic mail (the autoreply stage's class: out-of-office, auto-generated, list, challenge-response)
joining a ticket is stored, but it is no activity: the status (a closed ticket stays closed) and
`updated_at` stay as they were, so a vacation responder neither reopens a ticket nor keeps it from being
auto-closed.

Imported mail (`maildctl import`, dated with its own Date): a ticket it creates gets `imported_at`, the
real time of the import, and stays quiet for automation until something live happens on it
(maild.tickets.quiet). On such a quiet ticket later imported mail moves the status and `updated_at` as usual
(never back in time) and renews `imported_at`; a live ticket it threads into only gains the message as
history: its status and `updated_at` are the live conversation's."""

from __future__ import annotations

import re

from sqlalchemy import select

from maild.mail.automatic import OUT_OF_OFFICE
from maild.mail.quotes import visible_text
from maild.numbering.allocate import allocate_number
from maild.pipeline import agent_mail_apply
from maild.pipeline.context import IMPORT_INGRESS, AgentAnswer, BounceVerdict, Context, Stop
from maild.pipeline.dry_run import is_new
from maild.storage import attachments
from maild.storage.models import Agent, Attachment, AuditLog, Message, Participant, Ticket, utcnow
from maild.storage.notes import add_system_note
from maild.tickets import ticket_ops
from maild.tickets.command_effects import CommandFailed, carry_out
from maild.tickets.commands import CommandError, describe_errors
from maild.tickets.participants import NotAddable, add_cc, get_or_create_contact, is_participant
from maild.tickets.presence import away_by_out_of_office
from maild.tickets.quiet import is_quiet_import

# The ticket's subject, a title to list and to copy into outgoing Subject/Thread-Topic: the mail's own
# subject (maild.mail.mailparse.SUBJECT_MAX) cut to this, the whole one stays in the message and the raw mail.
TICKET_SUBJECT_MAX = 255


def ticket_subject(subject: str) -> str:
    """The title of a ticket opened by a mail with `subject`: at most TICKET_SUBJECT_MAX characters,
    cut at a word with "…" when longer."""
    subject = " ".join(subject.split())
    if len(subject) <= TICKET_SUBJECT_MAX:
        return subject or "(no subject)"
    cut = subject[: TICKET_SUBJECT_MAX - 1]
    if " " in cut[TICKET_SUBJECT_MAX // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return f"{cut.rstrip()}…"


def _imported(ctx: Context) -> bool:
    return ctx.spool.ingress == IMPORT_INGRESS


def _change_status(ctx: Context, ticket: Ticket, status: str) -> None:
    """A customer's (`open`) or the desk's imported (`waiting`) mail on the ticket: the new status and
    activity time, unless the mail is automatic or imported history (see the module's docstring)."""
    if ctx.automatic is not None:
        return
    if not _imported(ctx):
        ticket.status, ticket.updated_at = status, ctx.now_naive
        return
    if not is_quiet_import(ticket):
        return  # a live ticket: an old mail joins its history without rewriting its state
    if ctx.now_naive >= ticket.updated_at:  # an older mail imported later does not undo a newer state
        ticket.status, ticket.updated_at = status, ctx.now_naive
    assert ticket.imported_at is not None
    ticket.imported_at = max(ticket.imported_at, utcnow())


def _new_ticket(ctx: Context) -> Ticket:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    assert ctx.contact is not None, "apply makes the contact of a non-agent sender first"
    ticket = Ticket(
        number=allocate_number(ctx.session, desk, ctx.now),
        desk=desk,
        subject=ticket_subject(mail.subject),
        status="open",
        priority="normal",
        customer=ctx.contact,
        created_at=ctx.now_naive,
        updated_at=ctx.now_naive,
        # the wall clock, not ctx.now: the mail's own (old) date is what later live activity must pass
        imported_at=utcnow() if _imported(ctx) else None,
    )
    ticket.linked_ticket = ctx.linked_ticket
    ctx.session.add(ticket)
    ctx.session.add(Participant(ticket=ticket, contact=ctx.contact, role="customer"))
    for note in ctx.notes:
        add_system_note(ctx.session, ticket, note, by="policy", at=ctx.now)
    return ticket


# A forwarded mail that opens a ticket *is* its quoted part: its visible text is the whole text.
_FORWARD_PREFIX = re.compile(r"^\s*(?:fwd?|wg|tr|rv|vs|vb|doorst|pd|enc|i|rif|továbbítás)\s*:", re.IGNORECASE)


def _visible_text(ctx: Context, opens_ticket: bool) -> str:
    mail = ctx.require_mail()
    if opens_ticket and _FORWARD_PREFIX.match(mail.subject):
        return mail.text.strip()
    return mail.visible_text


def _attachment_rows(ctx: Context) -> tuple[list[Attachment], list[str]]:
    """The mail's attachments as rows: kept ones stored (deduplicated by content), refused ones recorded
    with the reason. Also what a reader should be told about them."""
    mail, desk = ctx.require_mail(), ctx.require_desk()
    rows: list[Attachment] = []
    notes: list[str] = []
    cap = ctx.cfg.hygiene.max_attachments_per_mail  # the rest: recorded refused, neither stored nor sent
    over_cap = f"more than {cap} attachments in one mail"
    if len(mail.attachments) > cap:
        notes.append(f"{len(mail.attachments) - cap} attachment(s) refused: {over_cap}")
    for index, part in enumerate(mail.attachments):
        reason: str | None = over_cap  # past the cap: not even looked at (bounded work per mail)
        if index < cap:
            found = ticket_ops.refused_by_desk(desk, part.filename, part.content_type, part.data)
            reason = found.text if found is not None else None
        if reason is None and not ctx.dry_run:
            attachments.store(ctx.cfg.attachment_dir, part.data, part.sha256)
        if reason is not None and index < cap:
            notes.append(f"attachment {part.filename} refused: {reason}")
        if part.content_type == "application/ms-tnef" or part.filename.lower() == "winmail.dat":
            notes.append(
                f"{part.filename} is Outlook's TNEF wrapper: the files inside it are not unpacked; "
                "ask the sender to send attachments as plain files"
            )
        rows.append(ticket_ops.attachment_row(part, reason))
    return rows, notes


def store_message(
    ctx: Context, ticket: Ticket, kind: str, *, opens_ticket: bool = False, visible: str | None = None
) -> Message:
    """The mail as a message of `ticket`, with its attachments. `visible`: what readers see, when the
    caller decided it (an agent's reply without its command lines); else the mail's visible text."""
    mail, desk = ctx.require_mail(), ctx.require_desk()
    rows, attachment_notes = _attachment_rows(ctx)
    message = Message(
        ticket=ticket,
        desk_id=desk.id,
        spool_id=ctx.spool.id,
        kind=kind,
        from_address=mail.from_address,
        from_name=mail.from_name,
        subject=mail.subject,
        message_id=mail.message_id,
        content_sha256=ctx.content_sha256 or None,
        in_reply_to=mail.in_reply_to[0] if mail.in_reply_to else "",
        text=mail.text,
        visible_text=_visible_text(ctx, opens_ticket) if visible is None else visible,
        html=mail.html,
        notes=[*(f"MIME defect: {d}" for d in mail.defects), *attachment_notes],
        threaded_by=ctx.threaded_by,
        automatic=ctx.automatic,  # autoreply's class: shown to agents, and why nothing answered it
        created_at=ctx.now_naive,
    )
    message.attachments.extend(rows)
    ctx.session.add(message)
    return message


def _add_cc_participants(ctx: Context, ticket: Ticket) -> None:
    mail = ctx.require_mail()
    if ctx.agent is not None or not is_participant(ticket, mail.from_address):
        return  # a stranger cannot put people on someone else's ticket
    for name, address in mail.cc:
        if address == mail.from_address:
            continue
        try:
            add_cc(ctx.session, ticket, address, name)
        except NotAddable:
            continue  # desk address, agent, already on it, or the cap: nothing to add


def _apply_agent_reply(ctx: Context, ticket: Ticket) -> str:
    """Store an authenticated agent's mail as the commands stage saw it; the audit action."""
    reply = ctx.agent_reply
    assert reply is not None, "commands runs before apply for an agent reply"
    if reply.released is not None:  # `#send`: the held reply is what goes out, dated now
        held = reply.released
        since = f"{held.created_at:%Y-%m-%d %H:%M} UTC"
        held.kind, held.visible_text, held.created_at = "agent", reply.text, ctx.now_naive
        store_message(ctx, ticket, "note", visible=f"#send: released the reply held since {since}")
        ctx.message = held
    else:
        visible = reply.text or "commands: " + "; ".join(reply.command_lines)
        ctx.message = store_message(ctx, ticket, reply.kind if reply.text else "note", visible=visible)
    if reply.relayed and not reply.status_set:
        ticket.status = "waiting"
    if ctx.automatic is None:  # the agent's vacation responder is no activity on the ticket
        ticket.updated_at = ctx.now_naive
    elif ctx.automatic == OUT_OF_OFFICE:  # ... but says the agent is away (maild.tickets.presence)
        _mark_away(ctx, ctx.require_agent(), ticket)
    ctx.outcome = "replied" if reply.relayed else "noted"
    return "agent_reply" if reply.relayed else "agent_note"


def _carry_out_commands(ctx: Context) -> Stop | None:
    """The agent's commands, checked by the commands stage, merge first: later ones act on the survivor."""
    reply, ticket = ctx.agent_reply, ctx.ticket
    if reply is None or ticket is None or not reply.plan:
        return None
    for step in reply.plan:
        try:
            ticket = carry_out(
                ctx.session, ctx.cfg, ticket, step, agent=ctx.require_agent(), now=ctx.now, queued=ctx.queued
            )
        except CommandFailed as exc:
            ctx.agent_answer = AgentAnswer(
                "command_errors",
                {"errors_text": describe_errors([CommandError(step.command.line_number, "", str(exc))])},
            )
            return Stop(
                "refused", f"agent reply not carried out: line {step.command.line_number}: {exc}"[:2000]
            )
        ctx.ticket = ticket
    return None


def _record_contact(ctx: Context) -> None:
    """The customer's (or stranger's) contact identify looked up: created when new, its empty display
    name filled from this mail."""
    if ctx.customer_sender:
        mail = ctx.require_mail()
        ctx.contact = get_or_create_contact(ctx.session, mail.from_address, mail.from_name)


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    if ctx.agent_mail is not None:  # an agent's desk command (#to, #customer, #away, #back)
        return agent_mail_apply.run(ctx, ctx.agent_mail)
    _record_contact(ctx)
    stopped = _carry_out_commands(ctx)
    if stopped is not None:
        return stopped
    if ctx.ticket is None:
        if ctx.agent is not None:
            return Stop("rejected", "agents open tickets by replying to a notification, not by new mail")
        ticket = _new_ticket(ctx)
        ctx.outcome, action = "created", "ticket_created"
    else:
        ticket = ctx.ticket
        if ctx.session.scalars(
            select(Message.id).where(Message.ticket_id == ticket.id, Message.message_id == mail.message_id)
        ).first():
            return Stop("duplicate", f"{mail.message_id} already stored on {ticket.number}")
        if ctx.agent is None and not ctx.desk_reply:
            _change_status(ctx, ticket, "open")
            ctx.outcome, action = "replied", "message_added"
    ctx.ticket = ticket
    if ctx.desk_reply:  # an imported old answer of the desk: as an agent's reply, without an agent
        ctx.message = store_message(ctx, ticket, "agent")
        _change_status(ctx, ticket, "waiting")
        ctx.outcome, action = "desk_reply", "desk_reply"
    elif ctx.agent is not None:
        action = _apply_agent_reply(ctx, ticket)
    else:
        _add_cc_participants(ctx, ticket)
        ctx.message = store_message(ctx, ticket, "customer", opens_ticket=ctx.outcome == "created")
    ctx.session.flush()
    ctx.session.add(
        AuditLog(
            at=ctx.now_naive,
            actor=mail.from_address,
            action=action,
            ticket_id=ticket.id,
            detail={"message_id": mail.message_id, "threaded_by": ctx.threaded_by, "spool_id": ctx.spool.id},
        )
    )
    return None


# --- what a stopped mail changes --------------------------------------------------------------------------


def record_stop(ctx: Context) -> None:
    """The effects of a mail a stage stopped, as that stage decided them (the runner calls this after any
    Stop, apply's own included): a held mail's note, a bounce's notes and contacts, a refused mail's
    contact, a reply the collision guard holds, an agent's out-of-office reply to a notice's return path."""
    if ctx.held_note is not None and ctx.ticket is not None:
        add_system_note(ctx.session, ctx.ticket, ctx.held_note, by="identify", at=ctx.now)
        ctx.held_note = None
    if ctx.bounce_effects is not None:
        _record_bounce(ctx, ctx.bounce_effects)
    if ctx.away_agent is not None and ctx.ticket is not None:
        _mark_away(ctx, ctx.away_agent, ctx.ticket)
        ctx.away_agent = None
    if ctx.refusal is not None and ctx.known_sender:
        # A refused mail leaves no new contact behind, only its spool record; a known one gets its empty
        # display name filled, as by any mail.
        _record_contact(ctx)
    if ctx.held_reply is not None and ctx.ticket is not None:
        ctx.message = store_message(ctx, ctx.ticket, "held", visible=ctx.held_reply)
        ctx.held_reply = None


def _mark_away(ctx: Context, agent: Agent, ticket: Ticket) -> None:
    """An agent's own out-of-office reply to a notice (to its Reply-To, or to its return path: bounce)."""
    mail = ctx.require_mail()
    # "Automatic reply: [SUP-…] <the ticket's subject>": the customer's words, whatever dates they hold
    quoted = bool(ticket.subject) and mail.subject.endswith(ticket.subject)
    subject = mail.subject[: -len(ticket.subject)] if quoted else mail.subject
    text = f"{subject}\n\n{visible_text(mail.text, whole_when_empty=False)}"  # two paragraphs
    done = away_by_out_of_office(ctx.session, agent, ticket, text, now=ctx.now)
    ctx.reason = f"{ctx.reason}; {done}"[:2000] if ctx.reason else done


def _record_bounce(ctx: Context, verdict: BounceVerdict) -> None:
    """Per failed address: the contact marked bouncing (with its audit row), the note on the ticket."""
    row, ticket = verdict.row, ctx.ticket
    for effect in verdict.effects:
        if effect.mark:
            contact = get_or_create_contact(ctx.session, effect.address)
            contact.status = "bouncing"
            contact.status_reason = effect.status_reason
            ctx.session.add(
                AuditLog(
                    at=ctx.now_naive,
                    actor="maild",
                    action="contact_bouncing",
                    ticket_id=ticket.id if ticket is not None else None,
                    detail={
                        "email": effect.address,
                        "reason": contact.status_reason,
                        "outbox_id": row.id,
                        "spool_id": ctx.spool.id,
                    },
                )
            )
        if ticket is not None:
            add_system_note(
                ctx.session,
                ticket,
                effect.note,
                by="bounce",
                at=ctx.now,
                subject=row.subject,
                message_id=effect.note_id,
                spool_id=ctx.spool.id,
            )


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    ticket, message = ctx.ticket, ctx.message
    if ticket is None:
        return "no ticket change"
    extras: list[str] = []
    added_cc = [p.contact.email for p in ticket.participants if p.role == "cc" and is_new(ctx.session, p)]
    if added_cc:
        extras.append(f"sub-customers added: {', '.join(added_cc)}")
    if message is not None and message.attachments:
        extras.append(f"{len(message.attachments)} attachment(s)")
    tail = f"; {'; '.join(extras)}" if extras else ""
    if ctx.outcome == "created":
        linked = f", linked to {ctx.linked_ticket.number}" if ctx.linked_ticket is not None else ""
        return f"would create {ticket.number} for {ticket.customer.email}{linked}{tail}"
    kind = message.kind if message is not None else "message"
    return f"would add the {kind} mail to {ticket.number}, status becomes {ticket.status}{tail}"
