"""`maildctl contact forget EMAIL --yes`: a person's data erased or pseudonymised wherever maild holds it.

What stays is what keeps the helpdesk countable: tickets (number, desk, status, priority, times, agent),
messages as rows (kind, time, author agent), ratings' scores, spool and outbox rows (counts, outcomes),
audit entries. What goes (maild.tickets.contact_data lists the columns):
- the contact: address → `forgotten-<contact id>@invalid`, name and bounce reason emptied, status
  `bouncing` (so nothing is ever sent to the pseudonym; `contact list` shows why);
- every message they wrote, and every message on a ticket where they are the customer (agent replies and
  internal notes are about them too): subject, text, visible text, HTML, notes, Message-ID's address;
  attachments' names, and their files unless another message (or a queued mail) uses the same bytes.
  The subject of a ticket where they are the customer is their words: "[forgotten]". Another customer's
  messages on a shared ticket stay theirs: only the person's address, name and the lines they wrote
  (quoted) are replaced;
- the spool's raw files of their mail, of every mail on their tickets and of any mail naming their
  address (a CC), marked `raw_purged_at` as the retention purge does; rows' reasons and traces scrubbed;
- outbox rows to them or about their tickets: a mail already sent or given up keeps its row with the raw
  mail erased; a queued one is cancelled when they were its only recipient, else rewritten without them;
  their copies in the outgoing Maildir are removed;
- their sub-customer rows (no more mail to the pseudonym), links revoked, rating comments, automatic-reply
  counters; addresses and names in audit details (actor too) pseudonymised.
- Kept on purpose: a blocklist entry of their exact address (an admin's decision against abuse would
  otherwise be undone silently: `block remove` it if the erasure must include it) — reported.

One transaction for the database, then the files. The database goes first: a crash in between leaves
orphan files (never rows pointing at files that are gone, which would break an export, a ticket page or a
queued mail), and the `contact_forget` audit entry lists those files, so running the command again (with
the address or the pseudonym) removes them. Files are removed with discard_stale: one stored again after
the command began (the same attachment in a new mail) is kept. Mail still waiting in the spool
(`received`) is left alone and reported: run the command again once it is processed.

Idempotent: the entry keeps an HMAC of the address under the server secret (not reversible without it),
so a second run with the same address says it was forgotten and only finishes the files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import load_secret
from maild.storage import attachments as attachment_store
from maild.storage.db import transaction
from maild.storage.files import content_path, discard_stale
from maild.storage.models import (
    Agent,
    Attachment,
    AuditLog,
    DeskAddress,
    Message,
    OutboxMessage,
    Participant,
    SpoolEntry,
    Ticket,
    TicketFlag,
    naive_utc,
)
from maild.storage.spool import SUFFIX
from maild.tickets.contact_data import Holdings, address_bytes_pattern, find_holdings
from maild.tickets.forget_scrub import Scrubber, scrubber_for
from maild.tickets.ticket_ops import record

ERASED_TEXT = "[erased: contact forgotten]"
ERASED_SUBJECT = "[forgotten]"
ERASED_RAW = b"X-Maild-Erased: contact forgotten\nSubject: [forgotten]\n\n[erased: contact forgotten]\n"
CONTACT_REASON = "forgotten (maildctl contact forget)"


class NothingHeld(Exception):
    """No contact has the address and nothing maild holds names it."""


class NotACustomer(Exception):
    """The address is an agent's or a desk's: forgetting it would erase the helpdesk's own mail."""


@dataclass
class Forgotten:
    pseudonym: str
    already: bool = False  # forgotten before: only the files were finished
    tickets: list[str] = field(default_factory=list)
    messages_erased: int = 0
    messages_scrubbed: int = 0
    spool_rows: int = 0
    outbox_rows: int = 0
    audit_entries: int = 0
    pending: int = 0  # their mail still waiting in the spool: run again once processed
    kept_blocks: list[str] = field(default_factory=list)
    spool_files: list[str] = field(default_factory=list)  # digests to remove after the commit
    attachment_files: list[str] = field(default_factory=list)
    maildir_rows: list[int] = field(default_factory=list)  # outbox ids whose outgoing Maildir copies go
    quoting: set[int] = field(default_factory=set)  # spool ids of others' mails whose text named them
    files_removed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "pseudonym": self.pseudonym,
            "already_forgotten": self.already,
            "tickets": self.tickets,
            "messages_erased": self.messages_erased,
            "messages_scrubbed": self.messages_scrubbed,
            "spool_rows": self.spool_rows,
            "outbox_rows": self.outbox_rows,
            "audit_entries": self.audit_entries,
            "pending_in_spool": self.pending,
            "kept_blocklist_entries": self.kept_blocks,
            "files_removed": self.files_removed,
        }


def address_mac(cfg: Config, address: str) -> str:
    """What the audit entry keeps of the address: it recognises the address again, and names nobody."""
    key = hashlib.sha256(b"maild contact forget\0" + load_secret(cfg.data_dir)).digest()
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:32]


def forget(
    factory: sessionmaker[Session], cfg: Config, address: str, *, actor: str, now: dt.datetime
) -> Forgotten:
    """Erase `address` (normalised): see the module. Raises NothingHeld."""
    naming = spool_rows_naming(factory, cfg, address)
    mac = address_mac(cfg, address)
    with transaction(factory) as session:
        if session.scalars(select(Agent.id).where(Agent.email == address)).first() is not None:
            raise NotACustomer(
                f"{address} is an agent, not a customer (agents are changed with 'maildctl agent set')"
            )
        if session.scalars(select(DeskAddress.id).where(DeskAddress.address == address)).first() is not None:
            raise NotACustomer(f"{address} is a desk address")
        held = find_holdings(session, address)
        earlier = _earlier_entries(session, mac, address)
        if _nothing_to_erase(held):
            if not earlier:
                raise NothingHeld(address)
            result = Forgotten(str(earlier[-1].detail.get("contact", "")), already=True)
        else:
            result = _erase(session, held, naming, now)
            record(session, "contact_forget", _entry_detail(result, mac), actor=actor)
        for entry in earlier:  # a crash after an earlier run's commit left these: finish them
            result.spool_files += entry.detail.get("spool_files", [])
            result.attachment_files += entry.detail.get("attachment_files", [])
            result.maildir_rows += entry.detail.get("outbox_rows", [])
        files = _still_unused(session, result)
    result.files_removed = remove_files(cfg, files, result.maildir_rows, cutoff=now)
    return result


def _nothing_to_erase(held: Holdings) -> bool:
    """Nothing but what forget keeps (blocklist entries), or the pseudonym of a contact forgotten before:
    no mail is ever sent to it, and none comes from it."""
    contact = held.contact
    if contact is not None and contact.status_reason == CONTACT_REASON and contact.email.endswith("@invalid"):
        return True
    return contact is None and not (
        held.authored or held.audits or held.auto_replies or held.spool_rows or held.outbox_rows
    )


def _entry_detail(result: Forgotten, mac: str) -> dict[str, Any]:
    return {
        "contact": result.pseudonym,
        "address_hmac": mac,
        "tickets": result.tickets,
        "messages_erased": result.messages_erased,
        "messages_scrubbed": result.messages_scrubbed,
        "pending_in_spool": result.pending,
        "spool_files": sorted(set(result.spool_files)),
        "attachment_files": sorted(set(result.attachment_files)),
        "outbox_rows": sorted(set(result.maildir_rows)),
    }


def _earlier_entries(session: Session, mac: str, address: str) -> list[AuditLog]:
    """The contact_forget entries of this address (by its HMAC), or of this pseudonym."""
    entries = session.scalars(
        select(AuditLog).where(AuditLog.action == "contact_forget").order_by(AuditLog.id)
    ).all()
    return [e for e in entries if e.detail.get("address_hmac") == mac or e.detail.get("contact") == address]


def spool_rows_naming(factory: sessionmaker[Session], cfg: Config, address: str) -> set[int]:
    """The processed spool rows whose raw mail names `address` anywhere (a CC, a quote): read before the
    writing transaction, since reading every raw file must not hold the database's write lock. The files
    are content-addressed: what one holds cannot change in between."""
    with factory() as session:
        rows = session.execute(
            select(SpoolEntry.id, SpoolEntry.sha256).where(
                SpoolEntry.raw_purged_at.is_(None), SpoolEntry.state == "done"
            )
        ).all()
    pattern = address_bytes_pattern(address)
    found: set[int] = set()
    seen: dict[str, bool] = {}
    for spool_id, digest in rows:
        if digest not in seen:
            try:
                seen[digest] = bool(pattern.search(content_path(cfg.spool_dir, digest, SUFFIX).read_bytes()))
            except FileNotFoundError:
                seen[digest] = False
        if seen[digest]:
            found.add(spool_id)
    return found


def _erase(session: Session, held: Holdings, naming: set[int], now: dt.datetime) -> Forgotten:
    contact = held.contact
    pseudonym = f"forgotten-{contact.id}@invalid" if contact is not None else "forgotten@invalid"
    scrub = scrubber_for(held, pseudonym)
    result = Forgotten(pseudonym, tickets=[t.number for t in held.tickets])
    owned = {t.id for t in held.owned}
    for ticket in held.tickets:
        _erase_ticket(session, ticket, held, owned, scrub, result)
    for message in held.authored:  # on a ticket of theirs too, unless a merge moved it: erase all the same
        if message.text != ERASED_TEXT:
            _erase_message(message, pseudonym, result)
    _erase_spool(session, held, owned, naming, scrub, result, now)
    _erase_outbox(session, held, owned, scrub, result)
    for entry in held.audits:
        entry.actor = scrub.text(entry.actor)
        entry.detail = scrub.json(entry.detail)
    result.audit_entries = len(held.audits)
    for rating in held.ratings:
        rating.comment = ""
    for link in held.links:
        link.revoked_at = link.revoked_at or naive_utc(now)
    for counter in held.auto_replies:
        session.delete(counter)
    result.kept_blocks = [b.pattern for b in held.blocks]
    if contact is not None:
        for row in session.scalars(
            select(Participant).where(Participant.contact_id == contact.id, Participant.role != "customer")
        ):
            session.delete(row)
        contact.email, contact.display_name, contact.attributes = pseudonym, "", {}
        contact.status, contact.status_reason = "bouncing", CONTACT_REASON
    session.flush()
    return result


def _erase_ticket(
    session: Session, ticket: Ticket, held: Holdings, owned: set[int], scrub: Scrubber, result: Forgotten
) -> None:
    theirs = ticket.id in owned
    ticket.subject = ERASED_SUBJECT if theirs else scrub.text(ticket.subject)
    for message in ticket.messages:
        by_them = message.from_address.lower() in (held.address, result.pseudonym)
        # On their ticket only another customer's mail stays (scrubbed): it is that person's data.
        if by_them or (theirs and message.kind != "customer"):
            _erase_message(message, result.pseudonym, result)
        elif _scrub_message(message, scrub):
            result.messages_scrubbed += 1
            if message.spool_id is not None:
                result.quoting.add(message.spool_id)  # its raw mail names them too (a quote, a CC)
    for flag in session.scalars(select(TicketFlag).where(TicketFlag.ticket_id == ticket.id)):
        flag.note = ERASED_TEXT if theirs else scrub.text(flag.note)


def _erase_message(message: Message, pseudonym: str, result: Forgotten) -> None:
    if message.kind == "customer":
        message.from_address, message.from_name = pseudonym, ""
    message.subject = ERASED_SUBJECT
    message.text = message.visible_text = ERASED_TEXT
    message.html, message.notes, message.content_sha256 = None, [], None
    message.message_id = _erased_id(message.message_id, pseudonym)
    message.in_reply_to = ""
    for row in message.attachments:
        if row.sha256 and row.refused_reason is None:
            result.attachment_files.append(row.sha256)
        row.filename, row.content_id, row.sha256 = "erased", None, None
        row.refused_reason = "erased: contact forgotten"
    result.messages_erased += 1


def _erased_id(message_id: str, pseudonym: str) -> str:
    """A Message-ID naming nobody, still unique per desk (it is hashed, not dropped)."""
    if message_id.startswith("<forgotten."):
        return message_id
    return f"<forgotten.{hashlib.sha256(message_id.encode()).hexdigest()[:32]}@invalid>"


def _scrub_message(message: Message, scrub: Scrubber) -> bool:
    """Another person's message, without the person's address, names and lines: whether any was there."""
    before = (message.subject, message.text, message.visible_text, message.html, message.in_reply_to)
    message.subject = scrub.text(message.subject)
    message.text = scrub.text(message.text)
    message.visible_text = scrub.text(message.visible_text)
    message.html = scrub.text(message.html) if message.html is not None else None
    message.notes = scrub.json(message.notes)
    message.in_reply_to = scrub.text(message.in_reply_to)
    for row in message.attachments:
        row.filename = scrub.text(row.filename)
    return before != (message.subject, message.text, message.visible_text, message.html, message.in_reply_to)


def _erase_spool(
    session: Session,
    held: Holdings,
    owned: set[int],
    naming: set[int],
    scrub: Scrubber,
    result: Forgotten,
    now: dt.datetime,
) -> None:
    """Their mail, every mail of their tickets and every mail naming them: raw file to go, row scrubbed."""
    ids = {row.id for row in held.spool_rows} | naming | result.quoting
    ticket_ids = owned
    on_theirs = select(Message.spool_id).where(
        Message.ticket_id.in_(ticket_ids), Message.spool_id.is_not(None)
    )
    ids |= {i for i in session.scalars(on_theirs) if i is not None}
    ids |= set(session.scalars(select(SpoolEntry.id).where(SpoolEntry.ticket_id.in_(ticket_ids))))
    for row in session.scalars(select(SpoolEntry).where(SpoolEntry.id.in_(ids)).order_by(SpoolEntry.id)):
        if row.state == "received":
            result.pending += 1  # the pipeline still needs its bytes
            continue
        row.mail_from = scrub.text(row.mail_from)
        row.reason = scrub.text(row.reason)
        row.header_message_id = scrub.text(row.header_message_id)
        row.trace = scrub.json(row.trace)
        if row.raw_purged_at is None:
            row.raw_purged_at = naive_utc(now)
        result.spool_files.append(row.sha256)
        result.spool_rows += 1


def _erase_outbox(
    session: Session, held: Holdings, owned: set[int], scrub: Scrubber, result: Forgotten
) -> None:
    """Mail to them, and mail about their tickets or naming them: see the module."""
    rows = {row.id: row for row in held.outbox_rows}
    ticket_ids = owned | {t.id for t in held.shared}
    for row in session.scalars(select(OutboxMessage).where(OutboxMessage.ticket_id.in_(ticket_ids))):
        if row.ticket_id in owned or scrub.names_bytes(row.raw):
            rows[row.id] = row
    for row in rows.values():
        mine = {held.address, result.pseudonym}
        row.rcpt_to = [r for r in row.rcpt_to if r not in mine]
        row.failed_to = [r for r in row.failed_to if r not in mine]
        row.delivered_to = [result.pseudonym if r in mine else r for r in row.delivered_to]
        row.mail_from = scrub.text(row.mail_from)
        row.last_error = scrub.text(row.last_error)
        if row.status == "queued" and row.rcpt_to and row.ticket_id not in owned:
            row.raw = scrub.raw(row.raw)  # still going to someone else: without them
            row.subject = scrub.text(row.subject)
        else:
            if row.status == "queued":
                row.status, row.rcpt_to = "failed", []
                row.last_error = "cancelled: its recipient's data was erased (maildctl contact forget)"
            row.raw, row.subject = ERASED_RAW, ERASED_SUBJECT
        result.maildir_rows.append(row.id)
        result.outbox_rows += 1


def _still_unused(session: Session, result: Forgotten) -> tuple[list[str], list[str]]:
    """The spool and attachment files to remove: those no row needs any more (a spool row not purged, an
    attachment of a message that stays, a queued mail's reference to the store)."""
    spool = set(result.spool_files) - set(
        session.scalars(
            select(SpoolEntry.sha256).where(
                SpoolEntry.sha256.in_(set(result.spool_files)), SpoolEntry.raw_purged_at.is_(None)
            )
        )
    )
    attachments = set(result.attachment_files)
    attachments -= set(
        session.scalars(
            select(Attachment.sha256).where(
                Attachment.sha256.in_(attachments), Attachment.refused_reason.is_(None)
            )
        )
    )
    queued = session.scalars(select(OutboxMessage.raw).where(OutboxMessage.status == "queued"))
    for raw in queued:
        attachments = {d for d in attachments if f"sha256={d}".encode() not in raw}
    return sorted(spool), sorted(attachments)


def remove_files(
    cfg: Config, files: tuple[list[str], list[str]], outbox_ids: list[int], *, cutoff: dt.datetime
) -> int:
    """After the commit: the raw spool files, the attachment files and the outgoing Maildir copies. A file
    stored again since `cutoff` is kept (see the module)."""
    moment = cutoff.timestamp() if cutoff.tzinfo is not None else cutoff.replace(tzinfo=dt.UTC).timestamp()
    spool, attachments = files
    paths = [content_path(cfg.spool_dir, d, SUFFIX) for d in spool]
    paths += [attachment_store.path_of(cfg.attachment_dir, d) for d in attachments]
    removed = sum(1 for path in paths if discard_stale(path, moment))
    for outbox_id in sorted(set(outbox_ids)):
        for sub in ("new", "cur"):
            for path in Path(cfg.outgoing_maildir, sub).glob(f"maild-outbox-{outbox_id}-*"):
                path.unlink(missing_ok=True)
                removed += 1
    return removed
