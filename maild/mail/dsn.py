"""Delivery reports: what failed for whom, and which of our mails it was.

RFC 3464 reports (multipart/report; report-type=delivery-status) are read field by field: per recipient
Final-Recipient / Original-Recipient, Action, Status and Diagnostic-Code, and the returned message (or its
headers) for the original Message-ID. Bounces in older text formats (qmail, Exim's classic one, Exchange
2003, …) are found with flufl.bounce's detectors, and status and diagnostic read from the paragraph that
names the address.

`read_bounce` also decides what *is* a bounce, since a wrong "yes" marks a customer `bouncing`:
- an RFC 3464 report with a failed or delayed recipient;
- mail to our VERP address that looks like a failure notice (anything from a mail system, or with
  failures or failure wording in it): a vacation responder answering the envelope sender also writes
  there, and is no bounce;
- mail from a mail system (null envelope sender, MAILER-DAEMON / postmaster) in which flufl.bounce finds
  failed addresses, or whose subject says it is one.
Never raises on garbage: whatever cannot be read is not a bounce (None)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

import structlog
from flufl.bounce import all_failures

log = structlog.stdlib.get_logger("maild.dsn")  # as maild.logs.get_logger; mail code imports no maild module

FAILURE_ACTIONS = ("failed", "delayed")
# opensmtpd writes "error" for failed; some MTAs append comments ("failed (bad address)").
_ACTION = re.compile(r"^\s*(failed|failure|error|delayed|delivered|relayed|expanded)", re.I)
# An enhanced status code (RFC 3463), as DSNs and SMTP replies write it: "5.1.1", qmail's "#5.1.1".
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\d)(?!\.\d)")
_SMTP_REPLY = re.compile(r"(?<!\d)[245]\d\d[ -]")
_MESSAGE_ID_LINE = re.compile(r"^[ \t]*Message-ID:[ \t]*(<[^<>\s]+>)", re.I | re.M)
# Where a text bounce starts quoting the returned mail: what follows is the customer's mail, not the report.
_RETURNED_MARK = re.compile(
    r"^[ \t]*-{2,}.*(copy of (the|your) message|original message|message follows|returned (mail|message)"
    r"|header of the original|below this line)",
    re.I | re.M,
)
_DAEMON_LOCALS = ("mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "postmaster")
# Exchange Online's NDR sender: MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@<tenant>.
_DAEMON_PREFIXES = ("microsoftexchange",)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed|failed|problem|report)"
    r"|mail delivery (failed|failure|system)|failure notice|returned mail|returning message"
    r"|could not be delivered|non[- ]?delivery|delayed mail|delivery delayed|warning: could not send"
    r"|unzustellbar|nicht zustellbar|non remis|non recapitabile|no entregado",
    re.I,
)
_TEMPORARY_WORDS = re.compile(
    r"warning only|not yet been delivered|still (being )?retried|will (be )?retr|delivery delayed|delayed"
    r"|temporar|postponed|will continue",
    re.I,
)
DIAGNOSTIC_MAX = 500
_MAX_TEXT = 200_000  # a report's own words are short; the rest is the returned mail


@dataclass(frozen=True)
class Failure:
    """One recipient a report says the mail did not reach (yet)."""

    recipient: str  # Final-Recipient (lower-case), or the address a text bounce names
    original_recipient: str = ""  # Original-Recipient: the address as we sent it, before rewriting
    action: str = "failed"  # failed | delayed
    status: str = ""  # "5.1.1"; "" when the report has none
    diagnostic: str = ""  # the remote server's words, one line

    @property
    def permanent(self) -> bool:
        """5.x.x; without a status, Action failed. A "failed" 4.x.x is a queue that gave up on a temporary
        error (a server down for days): the mail is lost, but the address is not known to be bad."""
        if self.status:
            return self.status.startswith("5")
        return self.action == "failed"

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses this failure may stand for in our outbox (as sent, and as finally rewritten)."""
        return tuple(dict.fromkeys(a for a in (self.original_recipient, self.recipient) if a))


@dataclass(frozen=True)
class Report:
    """What a bounce says. `failures` may be empty: a failure notice that names nobody (VERP still tells)."""

    kind: str  # dsn | text
    failures: tuple[Failure, ...] = ()
    original_message_id: str = ""  # of the returned mail, "" when it is not in the report
    delivered_only: bool = False  # an RFC 3464 report of success (delivered, relayed, expanded): no bounce
    sounds_temporary: bool = False  # a notice naming nobody, with no status: it speaks of a delay

    @property
    def permanent(self) -> bool:
        return any(f.permanent for f in self.failures) if self.failures else not self.sounds_temporary

    @property
    def recipients(self) -> tuple[str, ...]:
        """The failed addresses as we sent them (Original-Recipient where given)."""
        return tuple(dict.fromkeys(f.addresses[0] for f in self.failures if f.addresses))


def read_bounce(raw: bytes, *, to_verp: bool = False, null_sender: bool = False) -> Report | None:
    """The report in `raw` if it is a bounce (see the module doc), else None. `to_verp`: it came to one of
    our VERP return paths; `null_sender`: its envelope sender was `<>`."""
    try:
        return _read_bounce(raw, to_verp=to_verp, null_sender=null_sender)
    except Exception as exc:  # garbage in: not a bounce, and the rest of the pipeline decides
        log.warning("bounce_unreadable", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        return None


def is_daemon_address(address: str) -> bool:
    local = address.rpartition("@")[0].lower() if "@" in address else address.lower()
    return local in _DAEMON_LOCALS or local.startswith(_DAEMON_PREFIXES)


def _read_bounce(raw: bytes, *, to_verp: bool, null_sender: bool) -> Report | None:
    end = re.search(rb"\r?\n\r?\n", raw)
    head = BytesHeaderParser(policy=compat32).parsebytes(raw[: end.end()] if end else raw)
    from_daemon = null_sender or _from_daemon(head)
    # Cheap way out for the mail people write: only reports, daemons and our return path are parsed whole.
    if not (head.get_content_type() == "multipart/report" or from_daemon or to_verp):
        return None
    msg = BytesParser(policy=compat32).parsebytes(raw)
    dsn = _read_dsn(msg)  # also when not on top: some gateways wrap the report in multipart/mixed
    if dsn is not None and (dsn.failures or dsn.delivered_only):
        return dsn  # a success report is returned too: the caller archives it, no customer wrote it
    if not (from_daemon or to_verp):
        return None
    text = _report_text(msg)
    original = _original_message_id(msg)
    failures = _heuristic_failures(msg, text)
    if failures:
        return Report("text", failures, original)
    # Nobody named: a bounce only if a mail system says so, or it came to our return path looking like one
    # (a vacation reply to the return path is not).
    subject = _header(head, "subject")
    status = _STATUS.search(text)
    says_failure = bool(_FAILURE_SUBJECT.search(subject))
    if not ((from_daemon and says_failure) or (to_verp and (from_daemon or says_failure or status))):
        return None
    if status is not None:
        action = "delayed" if status[1] == "4" else "failed"
        failure = Failure(
            "", action=action, status=_status_of(status), diagnostic=_line_at(text, status.start())
        )
        return Report("text", (failure,), original)
    temporary = bool(_TEMPORARY_WORDS.search(subject + "\n" + text[:5000]))
    return Report("text", (), original, sounds_temporary=temporary)


# --- RFC 3464 -------------------------------------------------------------------------------------


def _is_status_part(part: Message) -> bool:
    return part.get_content_type() in ("message/delivery-status", "message/global-delivery-status")


def _status_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part: per-message fields first, then one per recipient."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parsed the blocks already
        return [block for block in payload if isinstance(block, Message)]
    data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload or "")
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [HeaderParser(policy=compat32).parsestr(block) for block in blocks if block.strip()]


def _read_dsn(msg: Message) -> Report | None:
    failures: list[Failure] = []
    original = ""
    seen_recipient = False
    for part in msg.walk():
        if not _is_status_part(part):
            continue
        for block in _status_blocks(part):
            original = original or _first_id(_header(block, "x-original-message-id"))
            final = _address_field(_header(block, "final-recipient"))
            if not final:
                continue  # the per-message block (Reporting-MTA, Arrival-Date, …)
            seen_recipient = True
            action = _ACTION.match(_header(block, "action"))
            verb = action[1].lower() if action else ""
            verb = "failed" if verb in ("failure", "error") else verb
            status = _STATUS.search(_header(block, "status"))
            # Without a Diagnostic-Code (Sendmail's delay warnings), the report's words about the address.
            diagnostic = (
                _diagnostic(_header(block, "diagnostic-code"))
                or _paragraph_details(_report_text(msg), final)[1]
            )
            if verb not in FAILURE_ACTIONS:
                if verb or not status or status[1] == "2":
                    continue  # delivered, relayed, expanded: no failure
                verb = "failed" if status[1] == "5" else "delayed"
            failures.append(
                Failure(
                    recipient=final,
                    original_recipient=_address_field(_header(block, "original-recipient")),
                    action=verb,
                    status=_refined_status(status, diagnostic),
                    diagnostic=diagnostic,
                )
            )
    if not seen_recipient:
        return None
    original = _original_message_id(msg) or original
    return Report("dsn", tuple(failures), original, delivered_only=not failures)


def _address_field(value: str) -> str:
    """`rfc822; carol@example.com` (or `utf-8;`, or a bare `<carol@…>`) → carol@example.com."""
    kind, _, address = value.partition(";")
    if not address:
        address = kind
    address = address.strip().strip("<>").strip()
    return address.lower() if "@" in address else ""


def _diagnostic(value: str) -> str:
    """`smtp; 550 5.1.1 <x>: User unknown` → `550 5.1.1 <x>: User unknown`, unfolded, capped. Gmail's
    multi-line replies repeat the code on each line (`550-5.1.1 …`): written once."""
    kind, sep, text = value.partition(";")
    text = text if sep and " " not in kind.strip() else value
    text = " ".join(text.split())
    lead = re.match(r"(\d{3})[ -](\d\.\d{1,3}\.\d{1,3}) ", text)
    if lead is not None:
        repeated = re.compile(rf" {lead[1]}[ -]{re.escape(lead[2])} ")
        text = f"{lead[1]} {lead[2]} " + repeated.sub(" ", text[lead.end() :])
        text = " ".join(text.split())
    return text[:DIAGNOSTIC_MAX]


def _refined_status(status: re.Match[str] | None, diagnostic: str) -> str:
    """The Status field; when it is only a class (`5.0.0`, as Exim and Courier write) and the remote
    server's reply has a finer code of the same class, that one: `5.1.1` says what `5.0.0` does not."""
    if status is None:
        found = _STATUS.search(diagnostic)
        return _status_of(found) if found else ""
    code = _status_of(status)
    if code.endswith(".0.0"):
        finer = _STATUS.search(diagnostic)
        if finer is not None and finer[1] == status[1]:
            return _status_of(finer)
    return code


def _status_of(match: re.Match[str]) -> str:
    return f"{match[1]}.{int(match[2])}.{int(match[3])}"


# --- the returned message -------------------------------------------------------------------------


def _original_message_id(msg: Message) -> str:
    """The Message-ID of the returned mail: from a message/rfc822 part, text/rfc822-headers, or the copy
    a text bounce quotes below its report. Never the bounce's own Message-ID."""
    for part in msg.walk():
        if part is msg:
            continue
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found = _first_id(_header(inner[0], "message-id"))
            else:
                found = _id_in_text(_text_of(part))
            if found:
                return found
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            found = _id_in_text(_text_of(part))
            if found:
                return found
    for part in _text_parts(msg):
        found = _id_in_text(_text_of(part))
        if found:
            return found
    # Without a copy, the report may still refer to it, as a reply does (Exim's delay warnings).
    for name in ("in-reply-to", "references"):
        ids = re.findall(r"<[^<>\s]+>", _header(msg, name))
        if ids:
            return ids[-1]
    return ""


def _id_in_text(text: str) -> str:
    match = _MESSAGE_ID_LINE.search(text)
    return match[1] if match else ""


def _first_id(value: str) -> str:
    match = re.search(r"<[^<>\s]+>", value)
    return match[0] if match else ""


# --- text bounces ---------------------------------------------------------------------------------


# Exchange 2000/2003's text NDR, which flufl.bounce's Exchange detector (written for 5.5) misses:
# "The following recipient(s) cannot be reached:" then "      henry@example.com on 3/7/2026 10:36 AM".
_EXCHANGE_2003_START = re.compile(r"recipient\(s\) (?:cannot|could not) be reached:", re.I)
_EXCHANGE_2003_ADDRESS = re.compile(r"^[ \t]+<?([^\s@<>]+@[^\s@<>]+?)>? on \d", re.M)


def _heuristic_failures(msg: Message, text: str) -> tuple[Failure, ...]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripped over the mail: no failures found by it
        temporary, permanent = frozenset(), frozenset()
    if not (temporary or permanent) and (start := _EXCHANGE_2003_START.search(text)):
        permanent = frozenset(m[1].encode() for m in _EXCHANGE_2003_ADDRESS.finditer(text, start.end()))
    found: dict[str, bool] = {}
    for addresses, is_permanent in ((permanent, True), (temporary, False)):
        for raw_address in addresses:
            address = raw_address.decode("ascii", "replace").strip().strip("<>").lower()
            if "@" in address and address not in found:
                found[address] = is_permanent
    failures = []
    for address, is_permanent in sorted(found.items()):
        status, diagnostic = _paragraph_details(text, address)
        if status.startswith("4"):
            is_permanent = False
        elif status.startswith("5"):
            is_permanent = True
        failures.append(
            Failure(
                address, action="failed" if is_permanent else "delayed", status=status, diagnostic=diagnostic
            )
        )
    return tuple(failures)


def _paragraph_details(text: str, address: str) -> tuple[str, str]:
    """(status, diagnostic) from the paragraph that names `address` (qmail's `<x>:` block, Exim's
    indented lines, Exchange's `x on date` block), else from the first status code in the report."""
    at = text.lower().find(address)
    paragraph = ""
    if at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = re.compile(r"\n[ \t]*\n").search(text, at)
        paragraph = text[start : end.start() if end else len(text)]
    for scope in (paragraph, text):
        status = _STATUS.search(scope)
        if status is not None:
            return _status_of(status), _best_line(scope, status.start())
    reply = _SMTP_REPLY.search(paragraph)
    if reply is not None:
        return "", _line_at(paragraph, reply.start())
    return "", " ".join(paragraph.split())[:DIAGNOSTIC_MAX]


def _best_line(text: str, position: int) -> str:
    """The line with the status code; when it is only Exchange's `<mx #5.1.1>` tag, the line before it
    says more."""
    line = _line_at(text, position)
    if re.fullmatch(r"<[^>]*#\d\.\d+\.\d+[^>]*>", line):
        start = text.rfind("\n", 0, position)
        before = text[:start].rstrip().rpartition("\n")[2].strip() if start > 0 else ""
        return f"{before} {line}".strip()[:DIAGNOSTIC_MAX] if before else line
    return line


def _line_at(text: str, position: int) -> str:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return " ".join(text[start : end if end >= 0 else len(text)].split())[:DIAGNOSTIC_MAX]


def _report_text(msg: Message) -> str:
    """The report's own words: its text parts, without the returned mail quoted below them."""
    chunks = []
    for part in _text_parts(msg):
        text = _text_of(part)
        mark = _RETURNED_MARK.search(text)
        chunks.append(text[: mark.start()] if mark else text)
    return "\n\n".join(chunks)[:_MAX_TEXT]


def _text_parts(msg: Message) -> Iterator[Message]:
    """text/plain leaves outside any returned message (a message/rfc822 part is the customer's mail)."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        content_type = part.get_content_type()
        if content_type.startswith("message/") and part is not msg:
            continue
        if part.is_multipart():
            payload = part.get_payload()
            stack[:0] = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
        elif content_type == "text/plain":
            yield part


def _text_of(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


# --- headers --------------------------------------------------------------------------------------


def _header(msg: Message, name: str) -> str:
    with contextlib.suppress(Exception):
        value = msg.get(name)
        if value is not None:
            return " ".join(str(value).split())
    return ""


MAX_FROM_CHARS = 16_384


def _from_daemon(head: Message) -> bool:
    """From a mail system: MAILER-DAEMON / postmaster / Exchange's NDR sender, Courier's `<@>`, or a
    Return-Path of `<>` (written by the delivering MTA: an IMAP mailbox keeps it)."""
    if _header(head, "return-path").replace(" ", "") == "<>":
        return True
    # A mail system writes a short From; a megabyte of display name is read no further than this.
    from_value = _header(head, "from")[:MAX_FROM_CHARS]
    if re.search(r"<@?>", from_value):
        return True
    return any(is_daemon_address(address) for _, address in getaddresses([from_value]) if address) or (
        is_daemon_address(parseaddr(from_value)[1]) if from_value else False
    )
