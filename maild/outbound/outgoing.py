"""Compose an outgoing mail from a template and queue it in the outbox (same transaction as the change).

Every mail of a ticket carries one References chain built from the ticket's own history, and the same
Thread-Topic / Thread-Index, so the customer's client (Outlook, Gmail, Apple Mail) shows the ticket as one
conversation whichever of our mails they answer."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email import charset as _charset
from email import encoders
from email.header import Header
from email.message import Message as EmailMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime, formataddr
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from maild.config import Config
from maild.logs import log_event
from maild.mail.addresses import domain_of, normalize
from maild.mail.tokens import load_secret, reply_address
from maild.outbound.blocklist import find_block
from maild.outbound.templating import Rendered, render
from maild.storage import attachments as attachment_store
from maild.storage.models import (
    Agent,
    AutoReplySent,
    Contact,
    Desk,
    Message,
    OutboxMessage,
    Ticket,
    naive_utc,
)
from maild.storage.notes import add_system_note

# RFC 5322 §3.6.4 sets no limit, but MTAs and clients choke on huge headers; trim as news and mail
# clients do (RFC 5537 §3.4.4): keep the first id (the root) and the newest ones.
MAX_REFERENCES = 20
MAX_REFERENCES_CHARS = 2000

# Ids that name nothing on the customer's side: our system notes, and the stand-ins mailparse makes for a
# mail without a Message-ID or with an overlong one.
_SYNTHETIC_ID_SUFFIXES = (
    "@maild.invalid>",
    "@no-message-id.maild>",
    "@long-message-id.maild>",
    "@reused-message-id.maild>",
)
# Never sent to customers as such: notes and system notes stay inside; an agent's mail (and a held one) is
# relayed under a Message-ID of ours, so its client's id would name a mail no customer saw.
_UNSTORED_KINDS = ("system", "note", "agent", "held")
# Mail to agents only: kept out of the References of later ticket mail, which customers get too (the
# ids would name mails they never saw). Notices still thread, on the customer mail they quote.
AGENT_ONLY_TEMPLATES = (
    "new_ticket_notice",
    "customer_reply_notice",
    "assigned_notice",
    "agent_reply_notice",
    "collision_notice",
    "command_errors",
    "escalation_notice",
    "flag_notice",
    "flood_digest_notice",
)

# Reply and forward prefixes of the common clients' languages; Outlook's Thread-Topic has none.
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|aw|fw|fwd|wg|sv|vs|antw|tr|rif)\s*(?:\[\d+\])?\s*:\s*)+", re.I)
_THREAD_NAMESPACE = uuid.UUID("6f1c3d52-8a47-4f1e-9d1b-7c2b5a0e9f31")  # maild's own, for Thread-Index GUIDs
_FILETIME_EPOCH = dt.datetime(1601, 1, 1)


@dataclass(frozen=True)
class OutgoingAttachment:
    """A file to attach to an outgoing mail (e.g. a customer's attachment, forwarded to the agents)."""

    filename: str
    content_type: str
    data: bytes
    sha256: str = ""  # the content's digest when the caller knows it: its name in the attachment store

    @cached_property  # once per file, however many agents' notices carry it
    def digest(self) -> str:
        return self.sha256 or hashlib.sha256(self.data).hexdigest()


def agent_display_name(agent: Agent) -> str:
    """How an agent is named in mail: the display name for tickets, else the name."""
    return agent.display_name.strip() or agent.name


def new_message_id(desk: Desk) -> str:
    return f"<{uuid.uuid4().hex}@{domain_of(desk.primary_address)}>"


# Composed with the compat32 classes: policy.default parses every header it is given, which made
# composing an auto-reply cost ~3 ms against ~0.7 ms here, on the per-message path.
_UTF8_QP = _charset.Charset("utf-8")
_UTF8_QP.body_encoding = _charset.QP


# Text copied into outgoing headers (Subject, Thread-Topic, display names) is cut to these many characters
# before email.header folds it: the stdlib's folding takes time superlinear in a value's length, and a
# sender's subject or name is theirs to make megabytes long (issue 14). References: cap_references.
HEADER_TEXT_MAX = 500
DISPLAY_NAME_MAX = 200


def capped_text(value: str, limit: int = HEADER_TEXT_MAX) -> str:
    """`value` on one line, at most `limit` characters ("…" last when it was cut)."""
    if len(value) > 4 * limit:  # only the start is kept: split() need not see megabytes
        value = value[: 4 * limit]
    value = " ".join(value.split())
    return value if len(value) <= limit else f"{value[: limit - 1].rstrip()}…"


def _address(name: str, addr: str) -> str:
    return formataddr((capped_text(name, DISPLAY_NAME_MAX), addr), charset="utf-8")


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(text, _UTF8_QP)
    return part


def _attachment_part(attachment: OutgoingAttachment, stored: bool) -> MIMEBase:
    """`stored`: the file is in the attachment store, so the part carries a reference to it, which
    `expand_stored` turns into the same base64 when the mail is sent."""
    maintype, _, subtype = attachment.content_type.partition("/")
    if not maintype or not subtype or "/" in subtype:
        maintype, subtype = "application", "octet-stream"
    part = MIMEBase(maintype, subtype)
    if stored:
        part.set_payload(_reference_line(attachment.digest, len(attachment.data)))
        part["Content-Transfer-Encoding"] = "base64"  # where encode_base64 puts it: the same header order
    else:
        part.set_payload(attachment.data)
        encoders.encode_base64(part)  # base64 whatever the type: text attachments keep their exact bytes
    name = attachment.filename or "attachment"
    # RFC 2231 for non-ASCII names, which every current client reads.
    part.add_header(
        "Content-Disposition", "attachment", filename=name if name.isascii() else ("utf-8", "", name)
    )
    return part


# --- stored attachments ---------------------------------------------------------------------------
#
# An outbox row holds the mail as composed, except that the body of an attachment part whose file is in the
# attachment store is one reference line naming the file (a 20 MB PDF to two agents: two rows of a few KB,
# not two of 27 MB each beside the stored file). Only such a body counts: a whole top-level part of a
# multipart/mixed mail, base64 by its header. Nobody else can write one there: text a customer sends us
# sits inside the first part (quoted-printable, under a boundary chosen after it was written), and the
# reference's spaces never occur in base64, so neither text nor an inline attachment is ever taken for one.

_REFERENCE = re.compile(rb"maild-stored-attachment sha256=([0-9a-f]{64}) size=([0-9]+)\n")
_READ_SIZE = 57 * 1024  # whole base64 lines (57 bytes each) per read: each chunk encodes on its own


class StoredAttachmentError(Exception):
    """A referenced attachment is not in the store as composed (gone, or other bytes): the mail is not
    sent without it."""


def _reference_line(digest: str, size: int) -> str:
    return f"maild-stored-attachment sha256={digest} size={size}\n"


def _base64_size(size: int) -> int:
    """Bytes of base64.encodebytes of `size` bytes: 4 per 3 (rounded up), a newline per 76."""
    return 4 * -(-size // 3) + -(-size // 57)


@dataclass(frozen=True)
class _Reference:
    start: int  # where the reference line is in the stored mail
    end: int
    sha256: str
    size: int
    filename: str


def _references(raw: bytes) -> list[_Reference]:
    """The references in a stored mail, in order (see above for what counts as one)."""
    if b"maild-stored-attachment " not in raw:  # most mail: no attachment, or only inline ones
        return []
    head_end = raw.find(b"\n\n")
    if head_end < 0:
        return []
    head = BytesHeaderParser(policy=compat32).parsebytes(raw[: head_end + 1])
    boundary = head.get_boundary()
    if head.get_content_type() != "multipart/mixed" or not boundary:
        return []
    delimiter = b"\n--" + boundary.encode("ascii", "replace")
    found: list[_Reference] = []
    at = raw.find(delimiter + b"\n", head_end)
    while at >= 0:
        part_start = at + len(delimiter) + 1
        end = raw.find(delimiter, part_start)
        if end < 0:
            break
        headers_end = raw.find(b"\n\n", part_start, end)
        if headers_end >= 0:
            body_start = headers_end + 2
            match = _REFERENCE.fullmatch(raw, body_start, end)
            if match is not None:
                part = BytesHeaderParser(policy=compat32).parsebytes(raw[part_start : headers_end + 1])
                if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
                    digest, size = match.group(1).decode(), int(match.group(2))
                    found.append(_Reference(body_start, end, digest, size, _filename(part)))
        at = end if raw.startswith(b"\n", end + len(delimiter)) else -1  # "--boundary--": the end
    return found


def _filename(part: EmailMessage) -> str:
    name = part.get_filename()
    return str(name) if name else "attachment"


def sent_size(raw: bytes) -> int:
    """The size of the stored mail `raw` as sent, its references expanded."""
    return len(raw) + sum(_base64_size(r.size) - (r.end - r.start) for r in _references(raw))


def check_stored(raw: bytes, attachment_dir: Path) -> None:
    """Raise StoredAttachmentError if a file the mail refers to is not in the store at its size (before
    sending anything; `expand_stored` also checks the bytes as it reads them)."""
    for ref in _references(raw):
        path = attachment_store.path_of(attachment_dir, ref.sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StoredAttachmentError(_missing(ref, "is missing from the attachment store")) from None
        if size != ref.size:
            raise StoredAttachmentError(
                _missing(ref, f"has {size} bytes in the attachment store, not {ref.size}")
            )


def _missing(ref: _Reference, what: str) -> str:
    return f"attachment {ref.filename!r} (sha256 {ref.sha256[:16]}…) {what}: the mail is not sent without it"


def expand_stored(raw: bytes, attachment_dir: Path) -> Iterator[bytes]:
    """The stored mail `raw` as sent, in pieces: each reference replaced by its file's base64, as
    email.encoders writes it (76-character lines), read from the attachment store a chunk at a time.
    Raises StoredAttachmentError (before the piece that would be wrong) when a file is gone or is not
    the bytes it was stored as. Every reader of an outbox row's mail goes through here."""
    check_stored(raw, attachment_dir)
    at = 0
    for ref in _references(raw):
        yield raw[at : ref.start]
        digest, size = hashlib.sha256(), 0
        changed = StoredAttachmentError(_missing(ref, "is not the file it was stored as"))
        try:
            # A buffered read returns all it is asked for but at the end of the file: whole base64 lines.
            with attachment_store.path_of(attachment_dir, ref.sha256).open("rb") as fh:
                while chunk := fh.read(_READ_SIZE):
                    size += len(chunk)
                    if size > ref.size:
                        raise changed
                    digest.update(chunk)
                    if size == ref.size and digest.hexdigest() != ref.sha256:
                        raise changed  # before its last piece: a Maildir file or SMTP DATA stays unfinished
                    yield base64.encodebytes(chunk)
        except FileNotFoundError:
            raise StoredAttachmentError(_missing(ref, "is missing from the attachment store")) from None
        if size != ref.size:
            raise changed
        at = ref.end
    yield raw[at:]


def sent_bytes(raw: bytes, attachment_dir: Path) -> bytes | bytearray:
    """The stored mail `raw` as sent, whole (for SMTP, whose client takes bytes): `raw` itself when it
    refers to nothing, else written into one buffer of its final size, so one copy is held, not two."""
    if not _references(raw):
        return raw
    buffer = bytearray(sent_size(raw))
    with memoryview(buffer) as view:
        at = 0
        for piece in expand_stored(raw, attachment_dir):
            view[at : at + len(piece)] = piece
            at += len(piece)
    return buffer


def _header_value(value: str) -> str | Header:
    """Header values stay ASCII on the wire: non-ASCII text goes as RFC 2047 encoded words. At most
    HEADER_TEXT_MAX characters (see capped_text)."""
    value = capped_text(value)
    return value if value.isascii() else Header(value, "utf-8")


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


# --- threading ------------------------------------------------------------------------------------


def _is_real_id(message_id: str) -> bool:
    return bool(message_id) and not message_id.endswith(_SYNTHETIC_ID_SUFFIXES)


def _ticket_history(session: Session, ticket: Ticket) -> list[str]:
    """Message-IDs of the ticket's mail, in and out, oldest first. Inbound and outbound rows interleave by
    time; on a tie the inbound one goes first (an auto-reply carries the time of the mail it answers)."""
    inbound = session.execute(
        select(Message.created_at, Message.id, Message.message_id).where(
            Message.ticket_id == ticket.id, Message.kind.not_in(_UNSTORED_KINDS)
        )
    )
    outbound = session.execute(
        select(OutboxMessage.created_at, OutboxMessage.id, OutboxMessage.message_id).where(
            OutboxMessage.ticket_id == ticket.id, OutboxMessage.template.not_in(AGENT_ONLY_TEMPLATES)
        )
    )
    rows = [(at, 0, row_id, mid) for at, row_id, mid in inbound]
    rows += [(at, 1, row_id, mid) for at, row_id, mid in outbound]
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return [mid for *_, mid in rows]


def _merge(history: Sequence[str], given: Sequence[str]) -> list[str]:
    """The ticket's history with the caller's references woven in, each list keeping its own order: ids
    the ticket does not know go before the first id it knows (they are older, e.g. the thread a new ticket
    was a reply to) or right after the last known id that precedes them."""
    known = set(history)
    before: list[str] = []
    after: dict[str, list[str]] = {}
    anchor: str | None = None
    for mid in given:
        if mid in known:
            anchor = mid
        elif anchor is None:
            before.append(mid)
        else:
            after.setdefault(anchor, []).append(mid)
    return [*before, *(m for known_id in history for m in (known_id, *after.get(known_id, [])))]


def cap_references(chain: Sequence[str]) -> list[str]:
    """The root and as many of the newest ids as fit in MAX_REFERENCES ids / MAX_REFERENCES_CHARS."""
    if len(chain) <= MAX_REFERENCES and len(" ".join(chain)) <= MAX_REFERENCES_CHARS:
        return list(chain)
    root, newest_first = chain[0], list(reversed(chain[1:]))
    kept: list[str] = []
    size = len(root)
    for mid in newest_first:
        if len(kept) + 2 > MAX_REFERENCES or size + 1 + len(mid) > MAX_REFERENCES_CHARS:
            break
        kept.append(mid)
        size += 1 + len(mid)
    return [root, *reversed(kept)]


def _thread(history: Sequence[str], references: Sequence[str], in_reply_to: str) -> tuple[str, list[str]]:
    """(In-Reply-To, References): de-duplicated, oldest first, the answered id last; without an explicit
    one the mail answers the newest id, so Gmail (which needs In-Reply-To or References) still threads it."""
    real_history = [mid for mid in history if _is_real_id(mid)]
    real_references = [mid for mid in references if _is_real_id(mid)]
    in_reply_to = in_reply_to if _is_real_id(in_reply_to) else ""
    chain = [mid for mid in dict.fromkeys(_merge(real_history, real_references)) if mid != in_reply_to]
    if in_reply_to:
        chain.append(in_reply_to)
    chain = cap_references(chain) if chain else []
    return (in_reply_to or (chain[-1] if chain else "")), chain


def thread_topic(ticket: Ticket) -> str:
    """The subject a conversation is known by: the ticket's, without our tag and reply prefixes."""
    topic = ticket.subject.replace(f"[{ticket.number}]", " ")
    return " ".join(_SUBJECT_PREFIX.sub("", topic).split()) or ticket.number


def thread_index(ticket: Ticket, desk: Desk) -> str:
    """Outlook's Thread-Index of a conversation's first mail: 6 bytes of FILETIME (the ticket's creation;
    its top byte is 0x01 from 1829 to 2057) and a GUID, here a uuid5 of the ticket number under the
    desk's domain. Derived, not stored, so it is the same on every mail of the ticket; Outlook groups by
    these 22 bytes."""
    # Integer arithmetic: a float has too few digits for 100-ns ticks since 1601.
    ticks = (ticket.created_at - _FILETIME_EPOCH) // dt.timedelta(microseconds=1) * 10
    header = ticks.to_bytes(8, "big")[:6]
    guid = uuid.uuid5(_THREAD_NAMESPACE, f"{ticket.number}@{domain_of(desk.primary_address)}")
    return base64.b64encode(header + guid.bytes).decode("ascii")


# --- who may get mail -----------------------------------------------------------------------------


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
    `since` (naive UTC). The newest outbox row older than that is found first, walking back by id, so the
    count reads the last hour's rows only, not the whole outbox."""
    boundary = session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.created_at <= since)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    return (
        session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.id > (boundary or 0),
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
    bouncing = set(
        session.scalars(select(Contact.email).where(Contact.email.in_(wanted), Contact.status == "bouncing"))
    )
    for address in wanted:
        if address in bouncing:
            result.dropped[address] = "bouncing"
        elif (block := find_block(session, [address])) is not None:
            result.dropped[address] = f"blocked ({block[1].pattern})"
    left = [a for a in wanted if a not in result.dropped]
    if exempt_agents:
        staff = active_agent_addresses(session, left)
        left = [a for a in left if a not in staff]
    if automatic and left:
        _lock_addresses(session, left)
        at = naive_utc(now)
        hour_ago, day_ago = at - dt.timedelta(hours=1), at - dt.timedelta(hours=24)
        counts = {
            address: (in_hour or 0, in_day or 0)
            for address, in_hour, in_day in session.execute(
                select(
                    AutoReplySent.address,
                    func.count().filter(AutoReplySent.sent_at > hour_ago),
                    func.count(),
                )
                .where(AutoReplySent.address.in_(left), AutoReplySent.sent_at > day_ago)
                .group_by(AutoReplySent.address)
            )
        }
        hygiene = cfg.hygiene
        for address in left:
            in_hour, in_day = counts.get(address, (0, 0))
            if in_hour >= hygiene.autoreply_per_hour:
                result.dropped[address] = f"rate limit: {in_hour} automatic mails in the last hour"
            elif in_day >= hygiene.autoreply_per_day:
                result.dropped[address] = f"rate limit: {in_day} automatic mails in the last 24 hours"
        still = [a for a in left if a not in result.dropped]
        if desk_id is not None and still:
            _lock_addresses(session, [f"desk:{desk_id}"])
            sent = desk_automatic_count(session, desk_id, hour_ago)
            if sent >= hygiene.autoreply_desk_per_hour:
                why = f"{DESK_LIMIT}: {sent} automatic mails from this desk in the last hour"
                result.dropped.update((address, why) for address in still)
    result.kept = {a for a in wanted if a not in result.dropped}
    return result


def _screen(
    session: Session,
    cfg: Config,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]] | None,
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
        [a for _, a in [*to, *(cc or [])]],
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
    kept_cc = [(n, a) for n, a in cc or [] if normalize(a) in screened.kept]
    return (kept_to, kept_cc) if kept_to else (kept_cc, [])


# --- composition ----------------------------------------------------------------------------------


def _is_stored(attachment_dir: Path | None, attachment: OutgoingAttachment) -> bool:
    """Whether the attachment store has this file (a customer's attachment does; generated content and a
    dry run's files do not, and stay inline)."""
    if attachment_dir is None:
        return False
    try:
        size = attachment_store.path_of(attachment_dir, attachment.digest).stat().st_size
    except FileNotFoundError:
        return False
    return size == len(attachment.data)


def _from_name(desk: Desk, from_name: str | None) -> str:
    """The From display name: the given one (an agent's relay), else the desk's sender name, else its name.
    maild.tickets.replies gives the desk's name for a reply without an agent: that is the desk speaking
    too."""
    if from_name is None or from_name == desk.name:
        return desk.sender_name or desk.name
    return from_name


def _queue(
    session: Session,
    desk: Desk,
    template: str,
    rendered: Rendered,
    subject: str,
    *,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]] | None,
    reply_to: str,
    in_reply_to: str,
    references: list[str],
    thread_headers: Sequence[tuple[str, str | Header]],
    automatic: bool,
    now: dt.datetime,
    ticket_id: int | None,
    auto_submitted: str = "auto-replied",
    attachments: Sequence[OutgoingAttachment] = (),
    unlimited: Iterable[str] = (),
    from_name: str | None = None,
    attachment_dir: Path | None = None,
) -> OutboxMessage:
    """Build the mail and add its outbox row, last: a failure before leaves nothing in the session.
    `unlimited`: recipients exempt from the rate limit, whose mails it does not count either.
    `attachment_dir`: attachments whose file is there go into the row as references (see expand_stored)."""
    subject = capped_text(subject)  # the row's subject is the mail's
    message_id = new_message_id(desk)
    body: MIMENonMultipart | MIMEMultipart = _text_part(rendered.text, "plain")
    if rendered.html is not None:
        alternative = MIMEMultipart("alternative")
        alternative.attach(body)
        alternative.attach(_text_part(rendered.html, "html"))
        body = alternative
    if attachments:
        msg: MIMENonMultipart | MIMEMultipart = MIMEMultipart("mixed")
        msg.attach(body)
        for attachment in attachments:
            msg.attach(_attachment_part(attachment, _is_stored(attachment_dir, attachment)))
    else:
        msg = body
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(now)
    msg["From"] = _address(_from_name(desk, from_name), desk.primary_address)
    # The name a customer's reply shows in its To: the desk's friendly name too, not its internal one.
    msg["Reply-To"] = _address(desk.sender_name or desk.name, reply_to)
    msg["To"] = ", ".join(_address(name, addr) for name, addr in to)
    if cc:
        msg["Cc"] = ", ".join(_address(name, addr) for name, addr in cc)
    msg["Subject"] = _header_value(subject)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for name, value in thread_headers:
        msg[name] = value
    if automatic:
        msg["Auto-Submitted"] = auto_submitted
    msg["X-Loop"] = desk.primary_address
    row = OutboxMessage(
        desk_id=desk.id,
        ticket_id=ticket_id,
        template=template,
        message_id=message_id,
        mail_from=desk.primary_address,
        rcpt_to=list(dict.fromkeys(addr for _, addr in [*to, *(cc or [])])),
        subject=subject,
        raw=msg.as_bytes(),
        created_at=naive_utc(now),
        next_attempt_at=naive_utc(now),
    )
    session.add(row)
    if automatic:  # what the rate limit counts, in the transaction that queues the mail
        exempt = {normalize(a) for a in unlimited}
        session.add_all(
            AutoReplySent(address=normalize(address), sent_at=naive_utc(now))
            for address in row.rcpt_to
            if normalize(address) not in exempt
        )
    return row


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
) -> OutboxMessage | None:
    """A mail about `ticket`: `[NUMBER]` in the subject, Reply-To signed for the ticket, threaded on the
    ticket's whole history (`references` and `in_reply_to` are merged into it).

    Recipients who must get no mail (bouncing, blocked, over the automatic-mail rate limit) are left out,
    each with the reason in `dropped` when given; with nobody left nothing is queued and it returns None.

    For mail to agents: `agent_id` binds the Reply-To token to that agent as well, `auto_submitted` is
    the Auto-Submitted value of automatic mail (RFC 3834: `auto-generated` for notices, which answer
    nothing), `exempt_agents` lifts the rate limit for active agents (see screen_recipients).
    `from_name`: the From display name instead of the desk's (an agent's reply: "Anna from Support")."""
    seen: dict[str, str] = {}
    to, cc = _screen(
        session,
        cfg,
        to,
        cc,
        automatic=automatic,
        now=now,
        template=template,
        dropped=seen,
        exempt_agents=exempt_agents,
        desk_id=ticket.desk.id,
    )
    if dropped is not None:
        dropped.update(seen)
    capped = [address for address, why in seen.items() if why.startswith(DESK_LIMIT)]
    if capped:  # the agents must see that the desk's limit held this mail back
        add_system_note(
            session,
            ticket,
            f"{template} not sent to {', '.join(capped)}: {seen[capped[0]]} "
            f"([hygiene] autoreply_desk_per_hour = {cfg.hygiene.autoreply_desk_per_hour})",
            by="outgoing",
            at=now,
        )
    if not to:
        return None
    desk = ticket.desk
    rendered = render(
        cfg.template_dir, desk.name, template, ticket_variables(cfg, ticket, **(variables or {}))
    )
    subject = rendered.subject
    if f"[{ticket.number}]" not in subject:  # threading by subject needs the tag, whatever a template says
        subject = f"[{ticket.number}] {subject}".strip()
    if ticket.id is None:  # a new ticket: its id (token, history) and created_at exist after the flush
        session.flush()
    parent, chain = _thread(_ticket_history(session, ticket), references or [], in_reply_to)
    # Replies come back to an address that names this ticket, whatever the client does to the headers.
    signed = reply_address(load_secret(cfg.data_dir), desk.primary_address, ticket.id, agent_id)
    unlimited = (
        active_agent_addresses(session, [a for _, a in [*to, *(cc or [])]]) if exempt_agents else set()
    )
    return _queue(
        session,
        desk,
        template,
        rendered,
        subject,
        to=to,
        cc=cc,
        reply_to=signed,
        in_reply_to=parent,
        references=chain,
        thread_headers=[
            ("Thread-Topic", _header_value(thread_topic(ticket))),
            ("Thread-Index", thread_index(ticket, desk)),
            ("X-Maild-Ticket", ticket.number),
        ],
        automatic=automatic,
        now=now,
        ticket_id=ticket.id,
        auto_submitted=auto_submitted,
        attachments=attachments,
        unlimited=unlimited,
        from_name=from_name,
        attachment_dir=cfg.attachment_dir,
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
) -> OutboxMessage | None:
    """A mail from the desk that belongs to no ticket (e.g. the refusal of a new mail): no subject tag, and
    Reply-To the desk's plain address, since there is no ticket for a signed one to name. Recipients are
    screened as in `queue_mail`; None when nobody is left."""
    to, _ = _screen(
        session,
        cfg,
        to,
        None,
        automatic=automatic,
        now=now,
        template=template,
        dropped=dropped,
        desk_id=desk.id,
    )
    if not to:
        return None
    rendered = render(cfg.template_dir, desk.name, template, {"desk_name": desk.name, **(variables or {})})
    parent, chain = _thread([], references or [], in_reply_to)
    return _queue(
        session,
        desk,
        template,
        rendered,
        rendered.subject,
        to=to,
        cc=None,
        reply_to=desk.primary_address,
        in_reply_to=parent,
        references=chain,
        thread_headers=(),
        automatic=automatic,
        now=now,
        ticket_id=None,
    )
