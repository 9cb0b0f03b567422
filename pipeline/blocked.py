"""blocked: a sender on the blocklist → outcome `blocked`: no ticket, nothing sent back.

Both senders count: the From header (what the desk would answer) and the envelope sender (what an MTA
would bounce to). A null envelope sender (`<>`, a bounce) has no address and is not looked up."""

from __future__ import annotations

from maild.outbound.blocklist import find_block
from maild.pipeline.context import Context, Stop


def senders(ctx: Context) -> list[str]:
    """The addresses the stage looks up, From first (explain names them too)."""
    mail = ctx.require_mail()
    return [a for a in (mail.from_address, ctx.spool.mail_from) if a and "@" in a]


def run(ctx: Context) -> Stop | None:
    found = find_block(ctx.session, senders(ctx))
    if found is None:
        return None
    address, entry = found
    why = f": {entry.reason}" if entry.reason else ""
    scope = " (and subdomains)" if entry.subdomains else ""
    return Stop("blocked", f"sender {address} matches blocklist entry {entry.pattern}{scope}{why}")


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    return f"sender {_who(ctx)} not on the blocklist"


def _who(ctx: Context) -> str:
    mail = ctx.require_mail()
    envelope = ctx.spool.mail_from if "@" in ctx.spool.mail_from else ""
    if envelope and envelope.lower() != mail.from_address.lower():
        return f"{mail.from_address or '(no From)'} (envelope {envelope})"
    return mail.from_address or "(no From)"
