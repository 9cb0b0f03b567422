"""autoreply: automatic mail (out-of-office, auto-generated, list/bulk, challenge-response) is flagged
here — it may still open or join a ticket (apply stores the class on the message), but notify never
answers it. The rules are in maild.mail.automatic; a mail with any X-Loop header (one of ours stopped in
the loop stage already) is flagged too."""

from __future__ import annotations

from maild.mail.automatic import classify, envelope_sender, loop_marked
from maild.pipeline.context import Context, Stop


def run(ctx: Context) -> Stop | None:
    mail = ctx.require_mail()
    headers = ctx.headers
    verdict = classify(
        headers,
        subject=mail.subject,
        sender=mail.from_address,
        envelope=envelope_sender(ctx.spool.mail_from, headers),
        is_reply=bool(mail.in_reply_to or mail.references),
    )
    verdict = verdict or loop_marked(headers)  # an X-Loop of someone else's: answering could start a loop
    if verdict is not None:
        ctx.automatic, ctx.automatic_reason = verdict.kind, verdict.reason
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    if ctx.automatic is not None:
        why = f" ({ctx.automatic_reason})" if ctx.automatic_reason else ""
        return f"automatic mail, {ctx.automatic}{why}: may join a ticket, never answered automatically"
    return "written by a person: no sign of automatic mail"
