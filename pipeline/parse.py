"""parse: raw bytes → ParsedMail. Input that is not a mail is quarantined with the reason.

The envelope sender goes along: a mail whose From names nobody (`"Doe, John" <>`) is from it. The runner
parses before it opens the write transaction (pipeline.runner); this stage takes that result."""

from __future__ import annotations

from maild.mail.mailparse import NotAMessage, parse_mail
from maild.pipeline.context import Context, Stop


def run(ctx: Context) -> Stop | None:
    preparsed = ctx.preparsed
    if isinstance(preparsed, NotAMessage):
        return Stop("quarantined", str(preparsed))
    try:
        # The runner parsed it before taking the write lock; explain and older callers parse here.
        mail = preparsed if preparsed is not None else parse_mail(ctx.raw, ctx.spool.mail_from)
    except NotAMessage as exc:
        return Stop("quarantined", str(exc))
    ctx.mail = mail
    ctx.spool.header_message_id = mail.message_id if mail.has_message_id else ""
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    mail = ctx.require_mail()
    identity = mail.message_id if mail.has_message_id else "no Message-ID (identified by the bytes' hash)"
    sentence = f"mail from {mail.from_address}, {identity}, subject {mail.subject!r}"
    if mail.attachments:
        sentence += f", {len(mail.attachments)} attachment(s)"
    if mail.defects:
        sentence += f"; defects: {', '.join(mail.defects)}"
    return sentence
