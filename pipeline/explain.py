"""maildctl explain: what each stage decided about a mail, and why, as one sentence per stage.

The runner (`pipeline.runner.explain`) runs the real stages as a dry run and calls `describe` after each
one, while the transaction is still open; `summarize` then copies what an admin wants to see into plain
data before the transaction is rolled back. Each describer reads only the context (and the database, to
name the evidence a rule matched on); a stage without a describer, such as one a later issue adds, gets a
generic sentence instead of a crash."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.utils import getaddresses
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from maild.mail.addresses import base_address
from maild.mail.tokens import load_secret, read_reply_address
from maild.pipeline.context import BounceInfo, Context, Stop
from maild.pipeline.spam import verdict as spam_verdict
from maild.storage.models import Message, OutboxMessage
from maild.tickets.lookup import addressed_to, recipient_candidates

_INSERTED = "maild.explain.inserted"


@dataclass
class Explanation:
    """What a dry run decided, as plain data that outlives the rolled-back transaction."""

    outcome: str
    reason: str
    stages: list[dict[str, str]]
    desk: str | None = None
    ticket: str | None = None  # for a new ticket, the number it would get
    threaded_by: str | None = None  # token | references | subject | new
    linked_ticket: str | None = None
    visible_text: str | None = None
    text: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    would_send: list[dict[str, Any]] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    bounce: dict[str, Any] | None = None  # a delivery report: see bounce_json
    automatic: dict[str, Any] | None = None  # automatic mail: {"class": …, "reason": …}

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "stages": self.stages,
            "desk": self.desk,
            "ticket": self.ticket,
            "threaded_by": self.threaded_by,
            "linked_ticket": self.linked_ticket,
            "visible_text": self.visible_text,
            "text": self.text,
            "attachments": self.attachments,
            "would_send": self.would_send,
            "defects": self.defects,
            "bounce": self.bounce,
            "automatic": self.automatic,
        }


# --- what the dry run created --------------------------------------------------------------------------


def track_inserts(session: Session) -> None:
    """Remember every row the dry run inserts, so a verdict can say which sub-customers are new: inside
    the transaction a row inserted a moment ago looks like any other."""
    # The objects themselves, not their ids: the identity map holds rows weakly, and a collected object's
    # id can be reused by another.
    inserted: list[object] = session.info.setdefault(_INSERTED, [])

    @event.listens_for(session, "pending_to_persistent")
    def _remember(_session: Session, instance: object) -> None:
        inserted.append(instance)


def _is_new(session: Session, instance: object) -> bool:
    return instance in session.new or any(row is instance for row in session.info.get(_INSERTED, []))


# --- one describer per stage ---------------------------------------------------------------------------


def _senders(ctx: Context) -> str:
    mail = ctx.require_mail()
    envelope = ctx.spool.mail_from if "@" in ctx.spool.mail_from else ""
    if envelope and envelope.lower() != mail.from_address.lower():
        return f"{mail.from_address or '(no From)'} (envelope {envelope})"
    return mail.from_address or "(no From)"


def _loop(ctx: Context) -> str:
    return (
        "not our own mail coming back (no X-Loop of ours, no Message-ID we sent, sender is no desk address)"
    )


def _bounce_sentence(info: BounceInfo) -> str:
    kind = "permanent failure" if info.permanent else "temporary failure (noted only)"
    status = f" {info.status}" if info.status else ""
    whom = ", ".join(info.recipients) or "no recipient named"
    matched = f", matched by {info.matched_by}" if info.matched_by else ", matched to no mail we sent"
    said = f": {info.diagnostic}" if info.diagnostic else ""
    return f"delivery report, {kind}{status} for {whom}{matched}{said}"


def _bounce(ctx: Context) -> str:
    if ctx.bounce is not None:
        return _bounce_sentence(ctx.bounce)
    return "not a delivery report"


def _spam(ctx: Context) -> str:
    _spam_found, headers = spam_verdict(ctx.raw)
    if ctx.spool.released:
        said = f" ({'; '.join(headers)})" if headers else ""
        return f"released by an admin: an upstream spam verdict no longer holds it{said}"
    if headers:  # not spam, but a filter looked at it: say what it said
        return f"upstream filter says not spam: {'; '.join(headers)}"
    return "no spam verdict from an upstream filter (X-Spam-Flag, X-Spam-Status, X-Spam)"


def _blocked(ctx: Context) -> str:
    return f"sender {_senders(ctx)} not on the blocklist"


def _autoreply(ctx: Context) -> str:
    if ctx.automatic is not None:
        why = f" ({ctx.automatic_reason})" if ctx.automatic_reason else ""
        return f"automatic mail, {ctx.automatic}{why}: may join a ticket, never answered automatically"
    return "written by a person: no sign of automatic mail"


def _parse(ctx: Context) -> str:
    mail = ctx.require_mail()
    identity = mail.message_id if mail.has_message_id else "no Message-ID (identified by the bytes' hash)"
    sentence = f"mail from {mail.from_address}, {identity}, subject {mail.subject!r}"
    if mail.attachments:
        sentence += f", {len(mail.attachments)} attachment(s)"
    if mail.defects:
        sentence += f"; defects: {', '.join(mail.defects)}"
    return sentence


def _route(ctx: Context) -> str:
    desk, mail = ctx.require_desk(), ctx.require_mail()
    if ctx.spool.recipient:
        return f"desk {desk.name} (envelope recipient {ctx.spool.recipient})"
    own = {a.address for a in desk.addresses}
    # route's own order: the first candidate that is any desk's address is this desk's.
    for header, address in addressed_to("", mail):
        if base_address(address) in own:
            return f"desk {desk.name} ({header} {address})"
    return f"desk {desk.name}"


def _dedupe(ctx: Context) -> str:
    mail, desk = ctx.require_mail(), ctx.require_desk()
    if mail.has_message_id:
        return f"{mail.message_id} not seen on desk {desk.name} before"
    return f"no Message-ID; these bytes not seen on desk {desk.name} before"


def _identify(ctx: Context) -> str:
    mail = ctx.require_mail()
    if ctx.agent is not None:
        where = "note address" if ctx.to_note_address else "reply address"
        return f"sender {mail.from_address} is agent {ctx.agent.name}, writing to their {where}"
    if ctx.contact is not None:
        return f"sender {mail.from_address} is a contact ({'known' if ctx.known_sender else 'new'})"
    return f"sender {mail.from_address} not identified"


def _token_address(ctx: Context) -> str:
    """The address whose token thread verified: the first candidate that verifies, as in thread."""
    mail = ctx.require_mail()
    secret = load_secret(ctx.cfg.data_dir)
    for address in recipient_candidates(ctx.spool.recipient, mail, envelope_decides=False):
        if read_reply_address(secret, address) is not None:
            return address
    return "?"


def _reference(ctx: Context) -> str:
    """The Message-ID that tied the mail to its ticket: thread takes the first of thread_ids that a
    stored or a sent mail has."""
    for mid in ctx.require_mail().thread_ids:
        if ctx.session.scalars(select(Message.id).where(Message.message_id == mid)).first() is not None:
            return f"{mid} (a mail we received)"
        sent = select(OutboxMessage.id).where(
            OutboxMessage.message_id == mid, OutboxMessage.ticket_id.is_not(None)
        )
        if ctx.session.scalars(sent).first() is not None:
            return f"{mid} (a mail we sent)"
    return "?"


def _thread(ctx: Context) -> str:
    ticket = ctx.ticket
    if ticket is None or ctx.threaded_by == "new":
        return (
            "new ticket: no signed reply address, no known In-Reply-To/References, "
            "no [NUMBER] of an existing ticket in the subject"
        )
    # A rule found a ticket that was merged: the number it matched is the first one passed on the way.
    matched = ctx.redirected_from[0] if ctx.redirected_from else ticket.number
    merged = f" ({' → '.join([*ctx.redirected_from, ticket.number])}: merged)" if ctx.redirected_from else ""
    if ctx.threaded_by == "token":
        return (
            f"threaded by token to {ticket.number} via the signed reply address {_token_address(ctx)}{merged}"
        )
    if ctx.threaded_by == "references":
        return f"threaded by references to {ticket.number} via {_reference(ctx)}{merged}"
    if ctx.threaded_by == "subject":
        return f"threaded by subject to {ticket.number} ([{matched}] in the subject){merged}"
    return f"threaded by {ctx.threaded_by} to {ticket.number}{merged}"


def _policy(ctx: Context) -> str:
    if ctx.linked_ticket is not None:
        notes = "; ".join(ctx.notes) or "policy refused the follow-up"
        return f"{notes}: would open a new ticket linked to {ctx.linked_ticket.number}"
    ticket = ctx.ticket
    if ticket is None:
        return "new ticket: no rule applies"
    if ctx.agent is not None:
        return f"agent mail joins {ticket.number}: the customer rules do not apply"
    if ticket.status == "closed":
        return (
            f"{ticket.number} is closed but within the desk's {ticket.desk.reopen_days}-day reopen window: "
            "the reply reopens it"
        )
    return f"joins {ticket.number} (status {ticket.status})"


def _commands(ctx: Context) -> str:
    reply = ctx.agent_reply
    if reply is None:
        return "no agent reply: no commands"
    done = f"carried out: {'; '.join(reply.command_lines)}" if reply.command_lines else "no commands"
    if reply.released is not None:
        return f"#send releases the held reply; {done}"
    if reply.relayed:
        return f"{done}; the reply goes to the customer"
    return f"{done}; {'an internal note' if reply.text else 'nothing goes to the customer'}"


def _apply(ctx: Context) -> str:
    ticket, message = ctx.ticket, ctx.message
    if ticket is None:
        return "no ticket change"
    extras: list[str] = []
    added_cc = [p.contact.email for p in ticket.participants if p.role == "cc" and _is_new(ctx.session, p)]
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


def _recipients(raw: bytes, header: str) -> list[str]:
    # Only the header block is parsed: the body of a queued mail says nothing about who gets it.
    values = message_from_bytes(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]).get_all(header) or []
    return [address for _, address in getaddresses([str(v) for v in values]) if address]


def _would_send(ctx: Context) -> list[dict[str, Any]]:
    return [
        {
            "template": row.template,
            "to": _recipients(row.raw, "To"),
            "cc": _recipients(row.raw, "Cc"),
            "subject": row.subject,
        }
        for row in ctx.queued
    ]


def _send_sentence(mail: dict[str, Any]) -> str:
    cc = f" (cc {', '.join(mail['cc'])})" if mail["cc"] else ""
    return f"would queue {mail['template']} to {', '.join(mail['to'])}{cc}"


def _notify(ctx: Context) -> str:
    if ctx.queued:
        return "; ".join(_send_sentence(mail) for mail in _would_send(ctx))
    if "auto-reply not queued" in ctx.reason:
        return ctx.reason
    if ctx.outcome == "created" and ctx.desk is not None and not ctx.desk.auto_reply:
        return f"nothing to send: auto-replies are off on desk {ctx.desk.name}"
    return "nothing to send"


def _generic(ctx: Context) -> str:
    """A stage this module does not know yet: what the context says, without guessing its rule."""
    facts = []
    if ctx.ticket is not None:
        facts.append(f"ticket {ctx.ticket.number}")
    if ctx.notes:
        facts.append(f"notes: {'; '.join(ctx.notes)}")
    return "passed" + (f" ({', '.join(facts)})" if facts else "")


DESCRIBERS: dict[str, Callable[[Context], str]] = {
    "parse": _parse,
    "loop": _loop,
    "bounce": _bounce,
    "spam": _spam,
    "blocked": _blocked,
    "autoreply": _autoreply,
    "route": _route,
    "dedupe": _dedupe,
    "identify": _identify,
    "thread": _thread,
    "policy": _policy,
    "commands": _commands,
    "apply": _apply,
    "notify": _notify,
}


def describe(name: str, ctx: Context, stop: Stop | None) -> dict[str, str]:
    """The trace entry of one stage: its name, a sentence, and the outcome if processing stopped there."""
    if stop is not None:
        return {
            "stage": name,
            "verdict": f"{stop.outcome}: {stop.reason}" if stop.reason else stop.outcome,
            "stop": stop.outcome,
        }
    try:
        verdict = DESCRIBERS.get(name, _generic)(ctx)
    except Exception as exc:  # an explanation must not fail where the stage itself did not
        verdict = f"passed (not described: {type(exc).__name__}: {exc})"
    return {"stage": name, "verdict": verdict}


# --- the whole dry run -----------------------------------------------------------------------------------


def _attachments(ctx: Context) -> list[dict[str, Any]]:
    if ctx.message is not None:  # what apply decided, refusals included
        return [
            {
                "name": a.filename,
                "size": a.size,
                "type": a.content_type,
                "sha256": a.sha256,
                "refused": a.refused_reason,
            }
            for a in ctx.message.attachments
        ]
    mail = ctx.mail
    return [
        {
            "name": part.filename,
            "size": len(part.data),
            "type": part.content_type,
            "sha256": hashlib.sha256(part.data).hexdigest(),
            "refused": None,
        }
        for part in (mail.attachments if mail is not None else [])
    ]


def _visible_text(ctx: Context) -> str | None:
    if ctx.mail is None:
        return None
    # apply's decision when it ran (a forward opening a ticket keeps its quoted part), else the parser's.
    stored = ctx.message.visible_text if ctx.message is not None else None
    return stored or ctx.mail.visible_text


def bounce_json(info: BounceInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "permanent": info.permanent,
        "recipients": list(info.recipients),
        "status": info.status,
        "diagnostic": info.diagnostic,
        "matched_by": info.matched_by,
    }


def automatic_json(ctx: Context) -> dict[str, Any] | None:
    if ctx.automatic is None:
        return None
    return {"class": ctx.automatic, "reason": ctx.automatic_reason}


def summarize(ctx: Context, stages: list[dict[str, str]]) -> Explanation:
    mail = ctx.mail
    return Explanation(
        outcome=ctx.outcome,
        reason=ctx.reason,
        stages=stages,
        desk=ctx.desk.name if ctx.desk is not None else None,
        ticket=ctx.ticket.number if ctx.ticket is not None else None,
        threaded_by=ctx.threaded_by or None,
        linked_ticket=ctx.linked_ticket.number if ctx.linked_ticket is not None else None,
        visible_text=_visible_text(ctx),
        text=mail.text if mail is not None else None,
        attachments=_attachments(ctx),
        would_send=_would_send(ctx),
        defects=list(mail.defects) if mail is not None else [],
        bounce=bounce_json(ctx.bounce),
        automatic=automatic_json(ctx),
    )


def failed(ctx: Context, stages: list[dict[str, str]], stage: str, error: Exception) -> Explanation:
    """A stage raised: the stages before it, the error, and whatever the context still tells. The session
    may be unusable now (a failed flush), so anything that needs it is left out rather than risked."""
    reason = f"{type(error).__name__}: {error}"[:2000]
    stages = [*stages, {"stage": stage, "verdict": f"error: {reason}", "stop": "error"}]
    try:
        explanation = summarize(ctx, stages)
    except Exception:
        mail = ctx.mail
        explanation = Explanation(
            outcome="error",
            reason=reason,
            stages=stages,
            threaded_by=ctx.threaded_by or None,
            text=mail.text if mail is not None else None,
            defects=list(mail.defects) if mail is not None else [],
            bounce=bounce_json(ctx.bounce),  # plain fields of the context: no session needed
            automatic=automatic_json(ctx),
        )
    explanation.outcome, explanation.reason = "error", reason
    return explanation
