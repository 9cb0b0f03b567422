"""Is an agent's new mail to a desk (no token of ours: it answers nothing we sent) really theirs?

A reply to a notice proves itself with its signed reply address; a new mail has nothing of ours, and a
From header is forged in a line. So a desk command by mail (#to, #customer, #away, #back) is carried out
only when all of these hold: the From header names exactly one address, an active agent's; a Sender
header, if any, names that address alone; no MTA trusted by `[agents] trusted_authserv_ids` recorded a
DKIM, SPF or DMARC failure; and one of them recorded a DKIM pass (header.d) or a DMARC pass (header.from)
for the agent's domain. Without a trusted MTA nothing can show that, and such mail is held as before
(the `#to` of a forged From would make the desk mail anyone in its own name)."""

from __future__ import annotations

from maild.mail.addresses import domain_of, normalize
from maild.mail.authresults import auth_failures, authenticated_domains
from maild.pipeline.context import Context
from maild.storage.models import Agent


def refusal(ctx: Context, agent: Agent) -> str | None:
    """Why `agent`'s new mail is not accepted as theirs, or None when it is."""
    mail, trusted = ctx.require_mail(), ctx.cfg.agents.trusted_authserv_ids
    authors = list(dict.fromkeys(normalize(a) for a in mail.from_addresses))
    if authors != [agent.email]:
        named = ", ".join(authors) or "none"
        return f"From names {len(authors)} addresses ({named}), an agent's mail exactly one"
    senders = set(map(normalize, mail.sender_addresses))
    if senders and senders != {agent.email}:
        return f"Sender ({', '.join(sorted(senders))}) is not the From address {agent.email}"
    failures = auth_failures(ctx.headers, trusted)
    if failures:
        return "authentication failed: " + "; ".join(failures)
    if not trusted:
        return (
            "no MTA is trusted to authenticate agents' new mail: list yours in [agents] trusted_authserv_ids "
            "(meanwhile agents answer notices)"
        )
    if domain_of(agent.email) not in authenticated_domains(ctx.headers, trusted):
        return f"no DKIM or DMARC pass for {domain_of(agent.email)} from {', '.join(trusted)}"
    return None
