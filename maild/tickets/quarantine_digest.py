"""Quarantine digests (scheduler job `quarantine_digest`): a quarantined mail (input that is not a mail at
all, an upstream spam verdict, a mail over its processing budget or one whose processing failed three
times) makes no ticket and tells nobody; it waits in the spool for an admin. So that no customer waits on
a silent queue, each active agent of the desk the mail was sent to gets one `quarantine_digest_notice`
listing the desk's mails quarantined since its last digest (when, envelope sender, From, subject, size,
reason, and the admin commands `maildctl spool show|release|delete ID`): at most one digest per desk per
`[scheduler] quarantine_digest_seconds` (15 minutes), never one about nothing. The job looks every
minute, so a desk's first quarantine after a quiet spell is told within a minute, and a burst after it
waits for the next interval.

Each row is reported once: its `quarantine_reports` row (the desk, when, how many agents were told) is
written in the transaction that queues the digests, and a desk's latest one is when its last digest
went, so neither a restart nor a second instance repeats or loses one. Each desk is its own transaction:
on PostgreSQL it takes the desk's advisory lock (another instance working on the desk skips it) and
re-reads its rows `FOR NO KEY UPDATE SKIP LOCKED`; SQLite's BEGIN IMMEDIATE serialises writers. A digest
that cannot be composed (a broken desk template) is logged and its rows marked all the same, as in the
flood digest: it must not fail every run.

The desk of a row is the one route would pick: the desk address that is its envelope recipient, else
(a pipe without --recipient) the first desk address in Delivered-To, X-Original-To, To or Cc; else,
when maild serves a single desk, that desk (the mail can only have been for it). Failing all of these,
or for a desk without active agents, nobody can be told without showing one desk's mail to another's
agents: the row is logged (`quarantine_not_told`) and marked; `maildctl health` lists it as it lists
every quarantined mail. Rows received more than REPORT_WITHIN ago are not reported: they are history
(the backlog of a database upgraded to this version), not news.

A hostile sender's words reach agents only as plain text: the package template has no HTML part (a desk
that adds one gets the same escaped values) and no attachment; subject, names, addresses and reason are
cut short, on one line, without control, format (bidi) or line-separator characters, with `://`
defanged so that a client does not offer a link."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message as HeaderBlock
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.logs import log_event
from maild.mail.addresses import base_address
from maild.mail.automatic import HEADER_SCAN_BYTES, NULL_SENDER, read_headers
from maild.mail.charsets import decode_raw
from maild.mail.headers import envelope_address, mailboxes, raw_values
from maild.outbound.composing import capped_text
from maild.outbound.outgoing import agent_display_name, queue_desk_mail
from maild.storage.db import transaction
from maild.storage.files import content_path
from maild.storage.models import Agent, Desk, DeskAddress, OutboxMessage, QuarantineReport, SpoolEntry
from maild.tickets.notices import desk_recipients, queue_courtesy

TEMPLATE = "quarantine_digest_notice"
INTERVAL_SECONDS = 60.0  # how often `maild serve` runs the job; a desk's digests: [scheduler]
REPORT_WITHIN = dt.timedelta(days=7)  # older quarantined rows are history, not reported
MAX_LISTED = 50  # mails listed per digest (the others first, then spam); the rest are counted
BATCH = 10_000  # unreported rows read per run, oldest first; the next run takes the rest
SPAM_PREFIX = "spam:"  # pipeline.spam's reasons: listed after the rest, which are likelier a customer's
# How much of a sender's text a digest shows (characters).
SUBJECT_SHOWN = 120
NAME_SHOWN = 80
ADDRESS_SHOWN = 120
REASON_SHOWN = 300
# Where a recipient-less mail says it was sent to, in the order route reads them.
ADDRESSEE_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")

LOGGER = "maild.quarantine_digest"


@dataclass
class QuarantineDigestResult:
    # (desk id, or None for rows nobody could be told of; mails reported; digests queued)
    digests: list[tuple[int | None, int, int]] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Spooled:
    """What the job reads of a quarantined spool row (plain columns: thousands of rows cost milliseconds)."""

    id: int
    recipient: str
    sha256: str
    mail_from: str
    received_at: dt.datetime
    size: int
    reason: str


@dataclass
class _Row:
    """A quarantined spool row not reported yet, with its header block once it was read (None: not read,
    or no readable header block)."""

    entry: _Spooled
    headers: HeaderBlock | None = None
    read: bool = False

    def header_block(self, cfg: Config) -> HeaderBlock | None:
        if not self.read:
            self.headers, self.read = _read_headers(cfg, self.entry.sha256), True
        return self.headers


# --- what a row says, shown safely -------------------------------------------------------------------


def _read_headers(cfg: Config, sha256: str) -> HeaderBlock | None:
    """The raw mail's top header block (at most HEADER_SCAN_BYTES read: a 30 MB mail costs nothing), or
    None when there is none: no header field, or the file is gone or unreadable."""
    try:
        with content_path(cfg.spool_dir, sha256, ".eml").open("rb") as file:
            start = file.read(HEADER_SCAN_BYTES)
        headers = read_headers(start)
    except Exception:  # a missing file, or bytes the stdlib trips over: the row is listed without them
        return None
    return headers if headers.keys() else None


def _mailboxes(headers: HeaderBlock, name: str) -> list[tuple[str, str]]:
    """(name, address) of the header's mailboxes, or none: a quarantined mail is the one whose headers
    may break any parser, and the digest must go out all the same."""
    try:
        return mailboxes(headers, name)
    except Exception:
        return []


def _plain(value: str, limit: int) -> str:
    """`value` safe to show in a plain-text mail: one line, no control, format (bidi overrides, zero
    width), private-use or separator characters that could fake lines or reorder what is shown, `://`
    defanged, at most `limit` characters."""
    value = value[: 4 * limit]
    kept = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in value)
    return capped_text(kept.replace("://", "[:]//"), limit)


def _from(headers: HeaderBlock | None) -> str:
    if headers is None:
        return "(no header fields)"
    boxes = _mailboxes(headers, "From")
    if not boxes:
        return "(no From)"
    name, address = boxes[0]
    shown = f"<{_plain(address, ADDRESS_SHOWN)}>" if address else "<>"
    return f'"{_plain(name, NAME_SHOWN)}" {shown}' if name.strip() else shown


def _subject(headers: HeaderBlock | None) -> str:
    values = raw_values(headers, "Subject") if headers is not None else []
    if not values:
        return "(no subject)"
    try:
        subject = decode_raw(values[0])
    except Exception:  # as written, then
        subject = values[0]
    return _plain(subject, SUBJECT_SHOWN) or "(empty subject)"


def _envelope(mail_from: str, headers: HeaderBlock | None) -> str:
    """MAIL FROM as the ingress recorded it; without one, the Return-Path the delivering MTA wrote."""
    if mail_from == NULL_SENDER:
        return "<> (null sender: a delivery report or automatic mail)"
    if mail_from:
        return _plain(mail_from, ADDRESS_SHOWN)
    found = envelope_address(headers, "") if headers is not None else ""  # never raises
    return f"{_plain(found, ADDRESS_SHOWN)} (Return-Path)" if found else "not known"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def _is_spam(entry: _Spooled) -> bool:
    return entry.reason.startswith(SPAM_PREFIX)


def _listed(cfg: Config, row: _Row) -> dict[str, Any]:
    """What the digest shows of a row (its header block read now)."""
    entry, headers = row.entry, row.header_block(cfg)
    return {
        "spool_id": entry.id,
        "at": entry.received_at.strftime("%Y-%m-%d %H:%M UTC"),
        "recipient": _plain(entry.recipient, ADDRESS_SHOWN) or "(not given)",
        "envelope_sender": _envelope(entry.mail_from, headers),
        "sender": _from(headers),
        "subject": _subject(headers),
        "size": _size(entry.size),
        "reason": _plain(entry.reason, REASON_SHOWN) or "(none recorded)",
        "spam": _is_spam(entry),
        "shown": True,
    }


def _items(cfg: Config, rows: Sequence[_Row]) -> list[dict[str, Any]]:
    """The desk's rows as the digest orders them: the mails likelier a customer's first, then spam. Only
    the first MAX_LISTED are read and shown; the others are counted (a spam wave of thousands costs
    no thousands of file reads)."""
    ordered = sorted(rows, key=lambda row: (_is_spam(row.entry), row.entry.id))
    return [
        _listed(cfg, row) if n < MAX_LISTED else {"spool_id": row.entry.id, "spam": _is_spam(row.entry)}
        for n, row in enumerate(ordered)
    ]


# --- which rows, which desk -------------------------------------------------------------------------


def _unreported(session: Session, now: dt.datetime) -> list[_Spooled]:
    """Quarantined rows of the last REPORT_WITHIN nobody was told of, oldest first (at most BATCH)."""
    reported = select(QuarantineReport.spool_id).where(QuarantineReport.spool_id == SpoolEntry.id)
    query = (
        select(
            SpoolEntry.id,
            SpoolEntry.recipient,
            SpoolEntry.sha256,
            SpoolEntry.mail_from,
            SpoolEntry.received_at,
            SpoolEntry.size,
            SpoolEntry.reason,
        )
        .where(
            SpoolEntry.state == "done",
            SpoolEntry.outcome == "quarantined",
            SpoolEntry.received_at >= now - REPORT_WITHIN,
            ~reported.exists(),
        )
        .order_by(SpoolEntry.id)
        .limit(BATCH)
    )
    return [_Spooled(*row) for row in session.execute(query)]


def _addressed_desk(cfg: Config, row: _Row, desks: dict[str, int]) -> int | None:
    """The desk route would pick: the envelope recipient's, else the first desk address in the headers."""
    if row.entry.recipient:
        return desks.get(base_address(row.entry.recipient))
    headers = row.header_block(cfg)
    if headers is None:
        return None
    for name in ADDRESSEE_HEADERS:
        for _, address in _mailboxes(headers, name):
            if address and (desk_id := desks.get(base_address(address))) is not None:
                return desk_id
    return None


def _by_desk(session: Session, cfg: Config, entries: Sequence[_Spooled]) -> dict[int | None, list[_Row]]:
    """The rows per desk (None: no desk could be found), in the order given."""
    desks = {
        address: desk_id
        for address, desk_id in session.execute(select(DeskAddress.address, DeskAddress.desk_id))
    }
    all_desks = list(session.scalars(select(Desk.id).limit(2)))
    only_desk = all_desks[0] if len(all_desks) == 1 else None
    grouped: dict[int | None, list[_Row]] = {}
    for entry in entries:
        row = _Row(entry)
        desk_id = _addressed_desk(cfg, row, desks)
        grouped.setdefault(desk_id if desk_id is not None else only_desk, []).append(row)
    return grouped


def _last_reports(session: Session, desk_ids: Sequence[int]) -> dict[int, dt.datetime]:
    """When each desk's last digest went (its latest report)."""
    if not desk_ids:
        return {}
    query = (
        select(QuarantineReport.desk_id, func.max(QuarantineReport.reported_at))
        .where(QuarantineReport.desk_id.in_(desk_ids))
        .group_by(QuarantineReport.desk_id)
    )
    return {desk_id: last for desk_id, last in session.execute(query) if desk_id is not None}


def _due(last: dt.datetime | None, spacing: dt.timedelta, now: dt.datetime) -> bool:
    return last is None or last <= now - spacing


# --- one desk, one transaction ----------------------------------------------------------------------


def _desk_lock(session: Session, desk_id: int | None) -> bool:
    """PostgreSQL: this transaction works on the desk's digest, or (False) another instance does right
    now. SQLite's BEGIN IMMEDIATE already lets one writer in at a time."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    name = f"maild-quarantine-digest:{desk_id if desk_id is not None else 'none'}"
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key}))


def _still_unreported(session: Session, spool_ids: Sequence[int]) -> set[int]:
    """Of `spool_ids`, the rows still quarantined and unreported, locked (another instance's skipped)."""
    reported = select(QuarantineReport.spool_id).where(QuarantineReport.spool_id == SpoolEntry.id)
    query = (
        select(SpoolEntry.id)
        .where(SpoolEntry.id.in_(spool_ids), SpoolEntry.outcome == "quarantined", ~reported.exists())
        .with_for_update(skip_locked=True, key_share=True)
    )
    return set(session.scalars(query))


def _report_desk(
    session: Session,
    cfg: Config,
    desk_id: int | None,
    listed: Sequence[dict[str, Any]],
    now: dt.datetime,
) -> tuple[int, list[int]] | None:
    """Queue the desk's digests of the `listed` rows still unreported and mark them: (rows, outbox ids);
    None when another instance has them or the desk's last digest is too recent by now."""
    if not _desk_lock(session, desk_id):
        return None
    since = _last_reports(session, [desk_id]).get(desk_id) if desk_id is not None else None
    if not _due(since, dt.timedelta(seconds=cfg.schedule.quarantine_digest_seconds), now):
        return None
    still = _still_unreported(session, [item["spool_id"] for item in listed])
    listed = [item for item in listed if item["spool_id"] in still]
    if not listed:
        return None
    desk = session.get(Desk, desk_id) if desk_id is not None else None
    agents = desk_recipients(desk, now=now) if desk is not None else []
    outbox_ids: list[int] = []
    for agent in agents:
        assert desk is not None
        row_id = _queue_courtesy(session, cfg, desk, agent, _variables(desk, agent, listed, since, cfg), now)
        if row_id is not None:
            outbox_ids.append(row_id)
    if not agents:
        _log_not_told(desk, listed)
    session.flush()  # the digests first: a row's mark and its digest are one transaction either way
    session.execute(
        insert(QuarantineReport),
        [
            {"spool_id": item["spool_id"], "desk_id": desk_id, "reported_at": now, "agents": len(outbox_ids)}
            for item in listed
        ],
    )
    return len(listed), outbox_ids


def _queue_courtesy(
    session: Session, cfg: Config, desk: Desk, agent: Agent, variables: dict[str, Any], now: dt.datetime
) -> int | None:
    """The digest to one agent; what kept it from going is logged, never raised (but database trouble)."""
    problems: list[str] = []
    row_id = queue_courtesy(
        session,
        lambda dropped: _queue_digest(session, cfg, desk, agent, variables, now, dropped),
        f"quarantine digest of desk {desk.name} to {agent.email}",
        problems,
    )
    for problem in problems:
        log_event(LOGGER, logging.WARNING, "quarantine_digest_not_sent", problem=problem)
    return row_id


def _log_not_told(desk: Desk | None, listed: Sequence[dict[str, Any]]) -> None:
    why = (
        f"desk {desk.name} has no active agent"
        if desk is not None
        else "no desk: neither its recipient nor its headers name a desk address"
    )
    log_event(
        LOGGER,
        logging.WARNING,
        "quarantine_not_told",
        why=why,
        spool_ids=[item["spool_id"] for item in listed],
        reasons=sorted({item["reason"] for item in listed if "reason" in item})[:10],  # of those read
    )


# --- the mail ---------------------------------------------------------------------------------------


def _variables(
    desk: Desk, agent: Agent, listed: Sequence[dict[str, Any]], since: dt.datetime | None, cfg: Config
) -> dict[str, Any]:
    """The template's variables: the mails that are likelier a customer's first, then spam, MAX_LISTED
    in all; the rest counted."""
    # (a row shown, released meanwhile, leaves a gap: a counted one is not shown in its place)
    others = [item for item in listed if not item["spam"]]
    spam = [item for item in listed if item["spam"]]
    shown_others = [item for item in others if item.get("shown")][:MAX_LISTED]
    shown_spam = [item for item in spam if item.get("shown")][: MAX_LISTED - len(shown_others)]
    return {
        "desk_name": desk.name,
        "agent_name": agent_display_name(agent),
        "quarantined_count": len(listed),
        "mails": shown_others,
        "mails_more": len(others) - len(shown_others),
        "spam_mails": shown_spam,
        "spam_count": len(spam),
        "spam_more": len(spam) - len(shown_spam),
        "since": since.strftime("%Y-%m-%d %H:%M UTC") if since is not None else "",
        "interval_minutes": max(1, round(cfg.schedule.quarantine_digest_seconds / 60)),
    }


def _queue_digest(
    session: Session,
    cfg: Config,
    desk: Desk,
    agent: Agent,
    variables: dict[str, Any],
    now: dt.datetime,
    dropped: dict[str, str],
) -> OutboxMessage | None:
    """One digest from the desk to `agent`: a desk's mail of no ticket, sent as a notice to agents
    (`Auto-Submitted: auto-generated`, RFC 3834) and exempt from the per-address limit of automatic mail
    as the agents' notices are (5 an hour, 20 a day would drop digests on a busy day). Bouncing or
    blocked agents are still dropped. Reply-To the desk's plain address: an agent's answer is held (an
    agent's From without an agent token) and never answered."""
    return queue_desk_mail(
        session,
        cfg,
        desk,
        TEMPLATE,
        [(agent_display_name(agent), agent.email)],
        automatic=True,
        auto_submitted="auto-generated",
        exempt_agents=True,
        now=now.replace(tzinfo=dt.UTC),
        variables=variables,
        dropped=dropped,
    )


# --- the job ----------------------------------------------------------------------------------------


def send_quarantine_digests(
    factory: sessionmaker[Session], cfg: Config, now: dt.datetime | None = None
) -> QuarantineDigestResult:
    """One run. `now` is naive UTC (tests pass their own). Headers are read from the spool files before
    any write transaction, and only for the rows of desks that are due."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    spacing = dt.timedelta(seconds=cfg.schedule.quarantine_digest_seconds)
    with factory() as session:
        grouped = _by_desk(session, cfg, _unreported(session, now))
        last = _last_reports(session, [d for d in grouped if d is not None])
    result = QuarantineDigestResult()
    for desk_id, rows in grouped.items():
        if desk_id is not None and not _due(last.get(desk_id), spacing, now):
            continue  # the next interval's digest takes them
        listed = _items(cfg, rows)
        with transaction(factory) as session:
            done = _report_desk(session, cfg, desk_id, listed, now)
        if done is not None:
            result.digests.append((desk_id, done[0], len(done[1])))
            result.outbox_ids += done[1]
    return result
