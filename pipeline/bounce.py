"""bounce: delivery reports, correlated to the outgoing mail and recipient they are about.

What a bounce is, and what it says, is maild.mail.dsn's business. Here it is matched to one outbox row and
recipient: by the VERP envelope recipient (`bounces+<row>-<mac>@…`, the MAC tried against each of the
row's recipients, so a report that names nobody or a rewritten address still matches), else by the
returned mail's Message-ID. Then:
- permanent (5.x.x): the contact is marked `bouncing` (never an agent or a desk address), a system note on
  the ticket, and the `bounce_notice` to the desk's agents when the contact was not bouncing yet;
- temporary (4.x.x, delayed): the note only;
- unmatched: archived, `bounce-unmatched: …`, nothing changed.
A bounce never opens a ticket. The same bounce delivered again (same bytes, or the same report
Message-ID for the same address) is a `duplicate` and changes nothing twice."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from maild.mail.addresses import normalize
from maild.mail.automatic import NULL_SENDER, OUT_OF_OFFICE, classify, envelope_sender
from maild.mail.dsn import Failure, Report, read_bounce
from maild.mail.tokens import bounce_matches, load_secret, parse_bounce_address
from maild.pipeline.context import BounceEffect, BounceInfo, BounceVerdict, Context, Stop
from maild.storage.models import Agent, Message, OutboxMessage, SpoolEntry, Ticket
from maild.tickets.lookup import recipient_candidates, survivor_of
from maild.tickets.participants import NotAddable, check_customer_address, find_contact

STATUS_REASON_MAX = 200


@dataclass(frozen=True)
class _Match:
    row: OutboxMessage
    by: str  # verp | message-id
    failed: tuple[tuple[str, Failure | None], ...]  # (address as we sent it, what the report says of it)


def run(ctx: Context) -> Stop | None:
    verp = _verp_address(ctx)
    report = read_bounce(ctx.raw, to_verp=verp is not None, null_sender=_null_sender(ctx))
    if report is None:
        if verp is not None:  # a vacation reply to our return path, say: for no desk, and no bounce
            return _to_return_path(ctx, verp)
        if not ctx.require_mail().from_address:  # parse lets a report without a sender through, for us only
            return Stop("quarantined", "no sender address in From or Sender")
        return None
    if report.delivered_only:
        return Stop("archived", "delivery report without a failure (delivered, relayed or expanded)")
    match, why_not = _correlate(ctx, report, verp)
    if match is None:
        first = report.failures[0] if report.failures else None
        ctx.bounce = BounceInfo(
            permanent=report.permanent,
            recipients=report.recipients,
            status=first.status if first else "",
            diagnostic=first.diagnostic if first else "",
        )
        if _seen_before(ctx):
            return Stop("duplicate", "this bounce was processed before")
        return Stop("archived", f"bounce-unmatched: {why_not}")
    failures = [failure for _, failure in match.failed if failure is not None]
    first = failures[0] if failures else None
    ctx.bounce = BounceInfo(
        permanent=any(_is_permanent(report, f) for _, f in match.failed),
        recipients=tuple(address for address, _ in match.failed),
        status=first.status if first else "",
        diagnostic=first.diagnostic if first else "",
        outbox_id=match.row.id,
        matched_by=match.by,
    )
    ticket = _ticket_of(ctx, match.row)
    if ticket is not None:
        ctx.ticket, ctx.desk = ticket, ticket.desk
    if _seen_before(ctx) or _noted_before(ctx, match):
        return Stop("duplicate", "this bounce was processed before")
    effects = tuple(_effect(ctx, report, match, address, failure) for address, failure in match.failed)
    ctx.bounce_effects = BounceVerdict(match.row, effects)
    return Stop("bounce", "; ".join(e.reason for e in effects)[:2000])


def _to_return_path(ctx: Context, verp: tuple[int, str]) -> Stop:
    """Mail to a VERP return path that is no delivery report: archived. Vacation responders (Sieve,
    vacation(1), Exchange) answer the envelope sender, so an agent's own out-of-office reply to a notice
    comes here rather than to its Reply-To: when the return path verifies for the address the mail is
    from, an active agent's, and the mail is an out-of-office reply, the agent is marked away
    (apply.record_stop, maild.tickets.presence.away_by_out_of_office)."""
    why = "bounce-address: mail to a VERP return path that is no delivery report"
    outbox_id, mac = verp
    row = ctx.session.get(OutboxMessage, outbox_id)
    mail = ctx.require_mail()
    sender = normalize(mail.from_address)
    if row is None or sender not in _recipients_of(row):
        return Stop("archived", why)
    verdict = classify(
        ctx.headers,
        subject=mail.subject,
        sender=mail.from_address,
        envelope=envelope_sender(ctx.spool.mail_from, ctx.headers),
        is_reply=bool(mail.in_reply_to or mail.references),
    )
    ticket = _ticket_of(ctx, row)
    agent = ctx.session.scalars(select(Agent).where(Agent.email == sender, Agent.active.is_(True))).first()
    if (
        verdict is None
        or verdict.kind != OUT_OF_OFFICE
        or ticket is None
        or agent is None
        or not bounce_matches(load_secret(ctx.cfg.data_dir), outbox_id, mac, sender)
    ):
        return Stop("archived", why)
    ctx.ticket, ctx.desk, ctx.away_agent = ticket, ticket.desk, agent
    return Stop("archived", f"{why}: the out-of-office reply of agent {sender} ({verdict.reason})"[:2000])


# --- recognising and matching ---------------------------------------------------------------------


def _verp_address(ctx: Context) -> tuple[int, str] | None:
    """(outbox id, mac) of the VERP return path this came to: the envelope recipient, or without one (IMAP,
    a pipe without --recipient) the address the bounce was delivered to, by its headers."""
    mail = ctx.require_mail()
    for candidate in recipient_candidates(ctx.spool.recipient, mail, envelope_decides=True):
        parsed = parse_bounce_address(candidate)
        if parsed is not None:
            return parsed
    return None


def _null_sender(ctx: Context) -> bool:
    # "" is an ingress that did not say (pipe without --sender, IMAP): only "<>" is known to be null.
    return ctx.spool.mail_from == NULL_SENDER


def _recipients_of(row: OutboxMessage) -> list[str]:
    return list(dict.fromkeys(a.lower() for a in [*row.delivered_to, *row.failed_to, *row.rcpt_to]))


def _failure_for(report: Report, address: str) -> Failure | None:
    for failure in report.failures:
        if address in failure.addresses:
            return failure
    # One recipient per VERP transaction: a report naming another (rewritten) address, or none, is still
    # about this one. Its worst failure speaks for it.
    ranked = sorted(report.failures, key=lambda f: not f.permanent)
    return ranked[0] if ranked else None


def _correlate(ctx: Context, report: Report, verp: tuple[int, str] | None) -> tuple[_Match | None, str]:
    why = "no VERP return path"
    if verp is not None:
        outbox_id, mac = verp
        row = ctx.session.get(OutboxMessage, outbox_id)
        if row is None:
            why = f"VERP return path names outbox row {outbox_id}, which does not exist"
        else:
            secret = load_secret(ctx.cfg.data_dir)
            for address in _recipients_of(row):
                if bounce_matches(secret, outbox_id, mac, address):
                    return _Match(row, "verp", ((address, _failure_for(report, address)),)), ""
            why = f"VERP return path for outbox row {outbox_id} does not verify (forged or stale)"
    original = report.original_message_id
    if not original:
        return None, f"{why}, and no original Message-ID in the report"
    row = ctx.session.scalars(select(OutboxMessage).where(OutboxMessage.message_id == original)).first()
    if row is None:
        return None, f"{why}, and {original} is no mail maild sent"
    sent = _recipients_of(row)
    named = [a for failure in report.failures for a in failure.addresses]
    failed = [a for a in sent if a in named]
    if not failed and not named and len(sent) == 1:
        failed = sent  # the report names nobody, and the mail went to one address
    if not failed:
        return None, f"{original} (outbox row {row.id}) was not sent to {', '.join(named) or 'anyone named'}"
    return _Match(row, "message-id", tuple((a, _failure_for(report, a)) for a in failed)), ""


def _ticket_of(ctx: Context, row: OutboxMessage) -> Ticket | None:
    ticket = ctx.session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    return survivor_of(ticket) if ticket is not None else None


# --- idempotence ----------------------------------------------------------------------------------


def _seen_before(ctx: Context) -> bool:
    """The same bytes already went through as a bounce (archived too: an unmatched one stays unmatched)."""
    query = select(SpoolEntry.id).where(
        SpoolEntry.sha256 == ctx.spool.sha256,
        SpoolEntry.id != ctx.spool.id,
        SpoolEntry.outcome.in_(("bounce", "archived")),
    )
    return ctx.session.scalars(query).first() is not None


def _note_id(ctx: Context, address: str) -> str:
    """The note's Message-ID: derived from the report's own Message-ID and the address, so the same report
    arriving by another path (other Received lines, other bytes) finds its note and is not applied twice."""
    mail = ctx.require_mail()
    if not mail.has_message_id:
        return f"<bounce.{uuid.uuid4().hex}@maild.invalid>"
    digest = hashlib.sha256(f"{mail.message_id}|{address}".encode()).hexdigest()[:32]
    return f"<bounce.{digest}@maild.invalid>"


def _noted_before(ctx: Context, match: _Match) -> bool:
    ids = [_note_id(ctx, address) for address, _ in match.failed]
    return ctx.session.scalars(select(Message.id).where(Message.message_id.in_(ids))).first() is not None


# --- what it changes (apply marks and notes, notify sends the bounce_notice) ------------------------


def _is_permanent(report: Report, failure: Failure | None) -> bool:
    return failure.permanent if failure is not None else report.permanent


def _summary(failure: Failure | None) -> str:
    """`5.1.1 550 5.1.1 <x>: User unknown` says the code twice: the diagnostic alone when it has it."""
    if failure is None or not (failure.status or failure.diagnostic):
        return "no status given"
    if failure.status and failure.status not in failure.diagnostic:
        return f"{failure.status} {failure.diagnostic}".strip()
    return failure.diagnostic


def _effect(
    ctx: Context, report: Report, match: _Match, address: str, failure: Failure | None
) -> BounceEffect:
    """What the writing step does for one failed address: the contact, the note, and the reason for the
    spool row (notify adds what became of the bounce_notice)."""
    permanent = _is_permanent(report, failure)
    summary = _summary(failure)
    row = match.row
    mark = newly = False
    if permanent:
        mark, newly = _bouncing_now(ctx, address)
        if mark:
            after = (
                f"{address} is now marked bouncing: maild sends it nothing until "
                f"`maildctl contact unbounce {address}`."
            )
        else:
            after = f"{address} belongs to the helpdesk (an agent or a desk address): not marked bouncing."
        note = f"Mail to {address} bounced: {summary}\n{after}"
    elif failure is not None and failure.action == "delayed":
        note = (
            f"Mail to {address} is delayed: {summary}\nThe remote mail system is still trying to deliver it."
        )
    else:
        note = (
            f"Mail to {address} was not delivered (the mail system gave up after temporary errors): "
            f"{summary}\n"
            f"The failure was temporary, so {address} is not marked bouncing."
        )
    note += f"\n(The mail: {row.subject!r}, {row.template}; matched by {match.by}.)"
    reason = f"{'permanent' if permanent else 'temporary'} failure for {address}: {summary}"
    if ctx.ticket is None:
        reason = f"{reason} (no ticket to note it on)"
    return BounceEffect(
        address=address,
        mark=mark,
        newly=newly,
        status_reason=summary[:STATUS_REASON_MAX],
        note=note,
        note_id=_note_id(ctx, address),
        reason=reason,
        status=failure.status if failure else "",
        diagnostic=failure.diagnostic if failure else "",
    )


def _bouncing_now(ctx: Context, address: str) -> tuple[bool, bool]:
    """(marked, newly marked). The helpdesk's own addresses are never marked."""
    try:
        check_customer_address(ctx.session, address)
    except NotAddable:
        return False, False
    contact = find_contact(ctx.session, address)
    return True, contact is None or contact.status != "bouncing"


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    if ctx.bounce is not None:
        return _bounce_sentence(ctx.bounce)
    return "not a delivery report"


def _bounce_sentence(info: BounceInfo) -> str:
    kind = "permanent failure" if info.permanent else "temporary failure (noted only)"
    status = f" {info.status}" if info.status else ""
    whom = ", ".join(info.recipients) or "no recipient named"
    matched = f", matched by {info.matched_by}" if info.matched_by else ", matched to no mail we sent"
    said = f": {info.diagnostic}" if info.diagnostic else ""
    return f"delivery report, {kind}{status} for {whom}{matched}{said}"
