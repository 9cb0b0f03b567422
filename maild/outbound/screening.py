"""Who may get mail from us: bouncing contacts, blocked addresses and the automatic-mail rate limits
(per address and per desk) drop recipients before a mail is queued."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from maild.config import Config, Hygiene
from maild.logs import log_event
from maild.mail.addresses import normalize
from maild.outbound.blocklist import find_block
from maild.outbound.thread_headers import AGENT_ONLY_TEMPLATES
from maild.storage.models import Agent, AutoReplySent, Contact, OutboxMessage, naive_utc


@dataclass
class Screened:
    """The recipients a mail may go to, and those dropped with the reason (address → why)."""

    kept: set[str] = field(default_factory=set)
    dropped: dict[str, str] = field(default_factory=dict)


def _lock_addresses(session: Session, addresses: Iterable[str]) -> None:
    """PostgreSQL: serialise the count-then-insert of the rate limit per address, so two workers
    answering the same robot at once cannot both see 4 and send 6. (SQLite's writer lock does it.)"""
    if session.get_bind().dialect.name != "postgresql":
        return
    for address in sorted(addresses):  # one order everywhere: no deadlock between two transactions
        key = int.from_bytes(
            hashlib.sha256(f"maild-autoreply:{address}".encode()).digest()[:8], "big", signed=True
        )
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


# The reason a recipient is dropped for the desk-wide limit (`[hygiene] autoreply_desk_per_hour`) starts so.
DESK_LIMIT = "desk rate limit"
# Templates of mail a person writes: all others a desk sends to customers are automatic.
_PERSONAL_TEMPLATES = ("agent_reply",)


def desk_automatic_count(session: Session, desk_id: int, since: dt.datetime) -> int:
    """Automatic mails to customers (not agents' notices, not agents' replies) that the desk queued after
    `since` (naive UTC): counted in the index on (desk_id, created_at, template) alone."""
    return (
        session.scalar(
            select(func.count()).where(
                OutboxMessage.desk_id == desk_id,
                OutboxMessage.created_at > since,
                OutboxMessage.template.not_in((*AGENT_ONLY_TEMPLATES, *_PERSONAL_TEMPLATES)),
            )
        )
        or 0
    )


def active_agent_addresses(session: Session, addresses: Iterable[str]) -> set[str]:
    wanted = [normalize(a) for a in addresses if a]
    if not wanted:
        return set()
    return set(session.scalars(select(Agent.email).where(Agent.email.in_(wanted), Agent.active.is_(True))))


def screen_recipients(
    session: Session,
    cfg: Config,
    addresses: Iterable[str],
    *,
    automatic: bool,
    now: dt.datetime,
    exempt_agents: bool = False,
    desk_id: int | None = None,
) -> Screened:
    """Drop recipients who must get no mail from us: a contact marked `bouncing`, a blocked address,
    and for automatic mail one that had `autoreply_per_hour` automatic mails in the last hour or
    `autoreply_per_day` in the last 24 hours (two robots answering each other stop there).
    `desk_id`: automatic mail of that desk also stops, for everyone but active agents, once the desk has
    queued `autoreply_desk_per_hour` automatic mails to customers in the last hour (whatever addresses:
    strangers rotating addresses or Cc lists cannot make the desk mail the world).

    `exempt_agents`: active agents are not rate-limited. Notifications are our own staff's work queue (a
    busy desk sends an agent dozens an hour), and an agent's vacation responder cannot ping-pong with us:
    the notices say Auto-Submitted and automatic mail is never answered."""
    wanted = list(dict.fromkeys(normalize(a) for a in addresses if a))
    result = Screened()
    if not wanted:
        return result
    result.dropped.update(_unreachable(session, wanted))
    left = [a for a in wanted if a not in result.dropped]
    if exempt_agents:
        staff = active_agent_addresses(session, left)
        left = [a for a in left if a not in staff]
    if automatic and left:
        _lock_addresses(session, left)
        at = naive_utc(now)
        result.dropped.update(_over_address_limits(session, cfg.hygiene, left, at))
        still = [a for a in left if a not in result.dropped]
        if desk_id is not None and still:
            result.dropped.update(_over_desk_limit(session, cfg.hygiene, desk_id, still, at))
    result.kept = {a for a in wanted if a not in result.dropped}
    return result


def _unreachable(session: Session, wanted: list[str]) -> dict[str, str]:
    """The addresses of `wanted` that get no mail at all (address → why): bouncing contacts, blocked ones."""
    bouncing = set(
        session.scalars(select(Contact.email).where(Contact.email.in_(wanted), Contact.status == "bouncing"))
    )
    dropped: dict[str, str] = {}
    for address in wanted:
        if address in bouncing:
            dropped[address] = "bouncing"
        elif (block := find_block(session, [address])) is not None:
            dropped[address] = f"blocked ({block[1].pattern})"
    return dropped


def _over_address_limits(
    session: Session, hygiene: Hygiene, addresses: list[str], at: dt.datetime
) -> dict[str, str]:
    """The addresses that had their hour's or their day's automatic mails by `at` (naive UTC), and why."""
    hour_ago, day_ago = at - dt.timedelta(hours=1), at - dt.timedelta(hours=24)
    counts = {
        address: (in_hour or 0, in_day or 0)
        for address, in_hour, in_day in session.execute(
            select(
                AutoReplySent.address,
                func.count().filter(AutoReplySent.sent_at > hour_ago),
                func.count(),
            )
            .where(AutoReplySent.address.in_(addresses), AutoReplySent.sent_at > day_ago)
            .group_by(AutoReplySent.address)
        )
    }
    dropped: dict[str, str] = {}
    for address in addresses:
        in_hour, in_day = counts.get(address, (0, 0))
        if in_hour >= hygiene.autoreply_per_hour:
            dropped[address] = f"rate limit: {in_hour} automatic mails in the last hour"
        elif in_day >= hygiene.autoreply_per_day:
            dropped[address] = f"rate limit: {in_day} automatic mails in the last 24 hours"
    return dropped


def _over_desk_limit(
    session: Session, hygiene: Hygiene, desk_id: int, addresses: list[str], at: dt.datetime
) -> dict[str, str]:
    """All of `addresses` when the desk has sent its hour's automatic mails by `at` (naive UTC), else none."""
    _lock_addresses(session, [f"desk:{desk_id}"])
    sent = desk_automatic_count(session, desk_id, at - dt.timedelta(hours=1))
    if sent < hygiene.autoreply_desk_per_hour:
        return {}
    why = f"{DESK_LIMIT}: {sent} automatic mails from this desk in the last hour"
    return dict.fromkeys(addresses, why)


def screen_to_cc(
    session: Session,
    cfg: Config,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]],
    *,
    automatic: bool,
    now: dt.datetime,
    template: str,
    dropped: dict[str, str] | None,
    exempt_agents: bool = False,
    desk_id: int | None = None,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(to, cc) without the dropped recipients; with no To left, the remaining Cc become the To."""
    screened = screen_recipients(
        session,
        cfg,
        [a for _, a in [*to, *cc]],
        automatic=automatic,
        now=now,
        exempt_agents=exempt_agents,
        desk_id=desk_id,
    )
    if screened.dropped:
        log_event(
            "maild.outgoing", logging.INFO, "recipients_dropped", template=template, dropped=screened.dropped
        )
        if dropped is not None:
            dropped.update(screened.dropped)
    kept_to = [(n, a) for n, a in to if normalize(a) in screened.kept]
    kept_cc = [(n, a) for n, a in cc if normalize(a) in screened.kept]
    return (kept_to, kept_cc) if kept_to else (kept_cc, [])
