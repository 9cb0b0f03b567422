"""dedupe: the same mail delivered to the same desk again (MTA retry, IMAP re-fetch) → duplicate.

The identity is the Message-ID plus what the mail says (`content_digest`): a re-delivery through another
MX (one more Received line) is a duplicate; a device that reuses its Message-ID for a new mail (scanners,
some ticket systems) is not, and that mail is stored under a stand-in id derived from its content. Mail
without a Message-ID has one derived from the raw bytes' hash. A mail cross-posted to two desks is new for
each; the same mail threading into a ticket that already holds it is caught again in apply."""

from __future__ import annotations

import hashlib

from sqlalchemy import or_, select

from maild.mail.mailparse import ParsedMail
from maild.pipeline.context import Context, Stop
from maild.storage.models import Message, Ticket


def content_digest(mail: ParsedMail) -> str:
    digest = hashlib.sha256()
    for value in (mail.from_address, mail.subject, mail.text, mail.html or ""):
        digest.update(value.encode("utf-8", "surrogatepass") + b"\x00")
    for part in mail.attachments:
        digest.update(bytes.fromhex(part.sha256))
    return digest.hexdigest()


def _stored(ctx: Context, message_id: str) -> Message | None:
    desk = ctx.require_desk()
    return ctx.session.scalars(
        select(Message)
        .join(Ticket, Message.ticket_id == Ticket.id)
        .where(Message.message_id == message_id, or_(Message.desk_id == desk.id, Ticket.desk_id == desk.id))
    ).first()


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    ctx.content_sha256 = content_digest(mail)
    existing = _stored(ctx, mail.message_id)
    if existing is not None and existing.content_sha256 not in (None, ctx.content_sha256):
        mail.message_id = f"<{ctx.content_sha256}@reused-message-id.maild>"
        existing = _stored(ctx, mail.message_id)
    if existing is None:
        return None
    ctx.ticket = existing.ticket
    return Stop("duplicate", f"{mail.message_id} already stored on {existing.ticket.number}")


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    mail, desk = ctx.require_mail(), ctx.require_desk()
    if mail.has_message_id:
        return f"{mail.message_id} not seen on desk {desk.name} before"
    return f"no Message-ID; these bytes not seen on desk {desk.name} before"
