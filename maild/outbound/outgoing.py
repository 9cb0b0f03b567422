"""Compose an outgoing mail from a template and queue it in the outbox (same transaction as the change).

Every mail of a ticket carries one References chain built from the ticket's own history, and the same
Thread-Topic / Thread-Index, so the customer's client (Outlook, Gmail, Apple Mail) shows the ticket as one
conversation whichever of our mails they answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.addresses import normalize
from maild.mail.tokens import load_secret, reply_address
from maild.outbound.composing import DISPLAY_NAME_MAX as DISPLAY_NAME_MAX
from maild.outbound.composing import HEADER_TEXT_MAX as HEADER_TEXT_MAX
from maild.outbound.composing import Addressing, capped_text, compose, header_value, new_message_id
from maild.outbound.composing import OutgoingAttachment as OutgoingAttachment
from maild.outbound.composing import agent_display_name as agent_display_name
from maild.outbound.link_tokens import link_key, link_url, recipients, token_for
from maild.outbound.screening import DESK_LIMIT, active_agent_addresses, screen_to_cc
from maild.outbound.stored_attachments import StoredAttachmentError as StoredAttachmentError
from maild.outbound.stored_attachments import expand_stored as expand_stored
from maild.outbound.stored_attachments import sent_bytes as sent_bytes
from maild.outbound.stored_attachments import sent_size as sent_size
from maild.outbound.templating import Rendered, render
from maild.outbound.thread_headers import AGENT_ONLY_TEMPLATES as AGENT_ONLY_TEMPLATES
from maild.outbound.thread_headers import MAX_REFERENCES as MAX_REFERENCES
from maild.outbound.thread_headers import MAX_REFERENCES_CHARS as MAX_REFERENCES_CHARS
from maild.outbound.thread_headers import thread_chain, thread_index, thread_topic, ticket_history
from maild.storage.models import AutoReplySent, Desk, OutboxMessage, Ticket, naive_utc
from maild.storage.notes import add_system_note

# What this module is for: queue_mail, queue_desk_mail (and ticket_variables). The other modules of
# maild.outbound hold the parts: composing (the MIME mail), screening (who may get it), thread_headers
# (References, Thread-Topic, Thread-Index), stored_attachments (outbox rows' attachment references). The
# names imported "as" themselves above stay importable from here, where callers import them.


def ticket_variables(cfg: Config, ticket: Ticket, **extra: Any) -> dict[str, Any]:
    customer = ticket.customer
    return {
        "ticket_title": ticket.subject,
        "ticket_number": ticket.number,
        "ticket_url": cfg.ticket_url.replace("{number}", ticket.number) if cfg.ticket_url else "",
        "desk_name": ticket.desk.name,
        "customer_name": customer.display_name or customer.email,
        **extra,
    }


@dataclass(frozen=True)
class _Draft:
    """A desk's rendered mail before it has headers: what _queue composes and files in the outbox."""

    desk: Desk
    ticket_id: int | None
    template: str
    rendered: Rendered
    subject: str
    attachments: Sequence[OutgoingAttachment] = ()


def _queue(
    session: Session,
    cfg: Config,
    draft: _Draft,
    addressing: Addressing,
    *,
    now: dt.datetime,
    auto_submitted: str | None,
    exempt_agents: bool = False,
) -> OutboxMessage:
    """Build the mail and add its outbox row, last: a failure before leaves nothing in the session.
    `auto_submitted`: the Auto-Submitted value of automatic mail, None for mail a person wrote.
    `exempt_agents`: active agents are exempt from the rate limit, whose mails it does not count either.
    Attachments whose file is in the attachment store go into the row as references (see expand_stored)."""
    unlimited = active_agent_addresses(session, addressing.recipients) if exempt_agents else set()
    subject = capped_text(draft.subject)  # the row's subject is the mail's
    message_id = new_message_id(draft.desk)
    msg = compose(
        draft.desk,
        draft.rendered,
        subject,
        addressing,
        message_id=message_id,
        now=now,
        auto_submitted=auto_submitted,
        attachments=draft.attachments,
        attachment_dir=cfg.attachment_dir,
    )
    row = OutboxMessage(
        desk_id=draft.desk.id,
        ticket_id=draft.ticket_id,
        template=draft.template,
        message_id=message_id,
        mail_from=draft.desk.primary_address,
        rcpt_to=addressing.recipients,
        subject=subject,
        raw=msg.as_bytes(),
        created_at=naive_utc(now),
        next_attempt_at=naive_utc(now),
    )
    session.add(row)
    if auto_submitted is not None:  # what the rate limit counts, in the transaction that queues the mail
        _count_automatic(session, row.rcpt_to, unlimited, now)
    return row


def _count_automatic(
    session: Session, recipients: list[str], unlimited: Iterable[str], now: dt.datetime
) -> None:
    """One AutoReplySent row per recipient the rate limit counts (all but the `unlimited` ones)."""
    exempt = {normalize(a) for a in unlimited}
    session.add_all(
        AutoReplySent(address=normalize(address), sent_at=naive_utc(now))
        for address in recipients
        if normalize(address) not in exempt
    )


def queue_mail(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    template: str,
    to: list[tuple[str, str]],
    *,
    cc: list[tuple[str, str]] | None = None,
    in_reply_to: str = "",
    references: list[str] | None = None,
    automatic: bool,
    now: dt.datetime,
    variables: dict[str, Any] | None = None,
    dropped: dict[str, str] | None = None,
    agent_id: int | None = None,
    auto_submitted: str = "auto-replied",
    exempt_agents: bool = False,
    attachments: Sequence[OutgoingAttachment] = (),
    from_name: str | None = None,
    rated_reply: int | None = None,
) -> OutboxMessage | None:
    """A mail about `ticket`: `[NUMBER]` in the subject, Reply-To signed for the ticket, threaded on the
    ticket's whole history (`references` and `in_reply_to` are merged into it).

    Recipients who must get no mail (bouncing, blocked, over the automatic-mail rate limit) are left out,
    each with the reason in `dropped` when given; with nobody left nothing is queued and it returns None.

    For mail to agents: `agent_id` binds the Reply-To token to that agent as well, `auto_submitted` is
    the Auto-Submitted value of automatic mail (RFC 3834: `auto-generated` for notices, which answer
    nothing), `exempt_agents` lifts the rate limit for active agents (see screen_recipients).
    `from_name`: the From display name instead of the desk's (an agent's reply: "Anna from Support").
    `rated_reply`: the agent reply (message id) each recipient with their own ticket page link gets
    `rating_url` for (`<their link>/rate/<id>`; "" for the others)."""
    seen: dict[str, str] = {}
    to, cc = screen_to_cc(
        session,
        cfg,
        to,
        cc or [],
        automatic=automatic,
        now=now,
        template=template,
        dropped=seen,
        exempt_agents=exempt_agents,
        desk_id=ticket.desk.id,
    )
    _record_dropped(session, cfg, ticket, template, seen, dropped, now)
    if not to:
        return None
    addressing = _ticket_addressing(
        session, cfg, ticket, to, cc, references or [], in_reply_to, agent_id=agent_id, from_name=from_name
    )
    submitted = auto_submitted if automatic else None
    links = _links_by_recipient(session, cfg, ticket, template, addressing.recipients, now)
    if not links:
        draft = _ticket_draft(cfg, ticket, template, variables or {}, attachments)
        return _queue(
            session, cfg, draft, addressing, now=now, auto_submitted=submitted, exempt_agents=exempt_agents
        )
    # Each recipient their own copy (same headers, own envelope and Message-ID) with their own link.
    rows = [
        _queue(
            session,
            cfg,
            _ticket_draft(
                cfg,
                ticket,
                template,
                {**(variables or {}), "ticket_url": url, **_rating_url(cfg, url, rated_reply)},
                attachments,
            ),
            replace(addressing, envelope=(address,)),
            now=now,
            auto_submitted=submitted,
            exempt_agents=exempt_agents,
        )
        for address, url in links.items()
    ]
    return rows[0]


def _links_by_recipient(
    session: Session, cfg: Config, ticket: Ticket, template: str, addresses: list[str], now: dt.datetime
) -> dict[str, str]:
    """Each address's own ticket page link (`[web] public_url` set, a mail the customers see); an
    address that is not one of the ticket's recipients gets the config's `ticket_url`. Empty: no links."""
    if not cfg.web.public_url or template in AGENT_ONLY_TEMPLATES:
        return {}
    key = link_key(load_secret(cfg.data_dir))
    contacts = {normalize(contact.email): contact for contact, _ in recipients(ticket)}
    fallback = ticket_variables(cfg, ticket)["ticket_url"]
    links = {}
    for address in addresses:
        contact = contacts.get(normalize(address))
        token = token_for(session, key, ticket, contact, now=now) if contact is not None else None
        links[address] = link_url(cfg.web.public_url, token) if token is not None else fallback
    return links


def _rating_url(cfg: Config, url: str, rated_reply: int | None) -> dict[str, str]:
    """`rating_url` for a recipient whose `url` is their own ticket page link (not the config's)."""
    if rated_reply is None:
        return {}
    own = bool(cfg.web.public_url) and url.startswith(link_url(cfg.web.public_url, ""))
    return {"rating_url": f"{url}/rate/{rated_reply}" if own else ""}


def _record_dropped(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    template: str,
    seen: dict[str, str],
    dropped: dict[str, str] | None,
    now: dt.datetime,
) -> None:
    """The recipients screening dropped from a ticket's mail (`seen`) go into the caller's `dropped`; those
    the desk's limit held back get a system note on the ticket, so that the agents see it."""
    if dropped is not None:
        dropped.update(seen)
    capped = [address for address, why in seen.items() if why.startswith(DESK_LIMIT)]
    if capped:
        add_system_note(
            session,
            ticket,
            f"{template} not sent to {', '.join(capped)}: {seen[capped[0]]} "
            f"([hygiene] autoreply_desk_per_hour = {cfg.hygiene.autoreply_desk_per_hour})",
            by="outgoing",
            at=now,
        )


def _ticket_draft(
    cfg: Config,
    ticket: Ticket,
    template: str,
    variables: dict[str, Any],
    attachments: Sequence[OutgoingAttachment],
) -> _Draft:
    """The ticket's mail rendered with the ticket's variables, `[NUMBER]` in its subject: threading by
    subject needs the tag, whatever a template says."""
    rendered = render(
        cfg.template_dir,
        ticket.desk.name,
        template,
        ticket_variables(cfg, ticket, **variables),
        ticket.desk.language,
    )
    subject = rendered.subject
    if f"[{ticket.number}]" not in subject:
        subject = f"[{ticket.number}] {subject}".strip()
    return _Draft(ticket.desk, ticket.id, template, rendered, subject, attachments)


def _ticket_addressing(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]],
    references: list[str],
    in_reply_to: str,
    *,
    agent_id: int | None,
    from_name: str | None,
) -> Addressing:
    """A ticket's mail: threaded on the ticket's whole history, Reply-To signed for the ticket."""
    if ticket.id is None:  # a new ticket: its id (token, history) and created_at exist after the flush
        session.flush()
    desk = ticket.desk
    parent, chain = thread_chain(ticket_history(session, ticket), references, in_reply_to)
    # Replies come back to an address that names this ticket, whatever the client does to the headers.
    signed = reply_address(load_secret(cfg.data_dir), desk.primary_address, ticket.id, agent_id)
    return Addressing(
        to=to,
        cc=cc,
        reply_to=signed,
        in_reply_to=parent,
        references=chain,
        thread_headers=[
            ("Thread-Topic", header_value(thread_topic(ticket))),
            ("Thread-Index", thread_index(ticket, desk)),
            ("X-Maild-Ticket", ticket.number),
        ],
        from_name=from_name,
    )


def queue_desk_mail(
    session: Session,
    cfg: Config,
    desk: Desk,
    template: str,
    to: list[tuple[str, str]],
    *,
    in_reply_to: str = "",
    references: list[str] | None = None,
    automatic: bool,
    now: dt.datetime,
    variables: dict[str, Any] | None = None,
    dropped: dict[str, str] | None = None,
    auto_submitted: str = "auto-replied",
    exempt_agents: bool = False,
) -> OutboxMessage | None:
    """A mail from the desk that belongs to no ticket (e.g. the refusal of a new mail): no subject tag, and
    Reply-To the desk's plain address, since there is no ticket for a signed one to name. Recipients are
    screened as in `queue_mail`; None when nobody is left. `auto_submitted` (automatic mail only) and
    `exempt_agents` as in `queue_mail` (a notice to agents: "auto-generated", not rate-limited)."""
    to, _ = screen_to_cc(
        session,
        cfg,
        to,
        [],
        automatic=automatic,
        now=now,
        template=template,
        dropped=dropped,
        exempt_agents=exempt_agents,
        desk_id=desk.id,
    )
    if not to:
        return None
    variables = {"desk_name": desk.name, **(variables or {})}
    rendered = render(cfg.template_dir, desk.name, template, variables, desk.language)
    parent, chain = thread_chain([], references or [], in_reply_to)
    addressing = Addressing(to=to, cc=[], reply_to=desk.primary_address, in_reply_to=parent, references=chain)
    return _queue(
        session,
        cfg,
        _Draft(desk, None, template, rendered, rendered.subject),
        addressing,
        now=now,
        auto_submitted=auto_submitted if automatic else None,
        exempt_agents=exempt_agents,
    )
