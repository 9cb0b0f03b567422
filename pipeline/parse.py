"""parse: raw bytes → ParsedMail. Input that is not a mail at all (empty, no header field) is quarantined
with the reason.

The envelope sender goes along: a mail whose From names nobody (`"Doe, John" <>`, no From at all) is from
Sender, Reply-To, it, or Return-Path. A mail that names no sender anywhere goes on with from_address "":
a mail system's delivery report is the bounce stage's, which quarantines any other. The runner parses
before it opens the write transaction (pipeline.runner); this stage takes that result. When the parser
repaired the header block (maild.mail.header_repair), the later stages read the repaired bytes too."""

from __future__ import annotations

from maild.mail.header_repair import repair_header_block
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
    if mail.header_repaired:  # bounce and ctx.headers read ctx.raw: the same header block parse read
        ctx.raw = repair_header_block(ctx.raw).raw
    ctx.spool.header_message_id = mail.message_id if mail.has_message_id else ""
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    mail = ctx.require_mail()
    identity = mail.message_id if mail.has_message_id else "no Message-ID (identified by the bytes' hash)"
    sender = mail.from_address or "no sender (no address in From, Sender, Reply-To, envelope, Return-Path)"
    sentence = f"mail from {sender}, {identity}, subject {mail.subject!r}"
    if mail.attachments:
        sentence += f", {len(mail.attachments)} attachment(s)"
    if mail.defects:
        sentence += f"; defects: {', '.join(mail.defects)}"
    return sentence
