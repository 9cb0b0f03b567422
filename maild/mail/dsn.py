"""Delivery reports: what failed for whom, and which of our mails it was.

RFC 3464 reports (multipart/report; report-type=delivery-status) are read field by field: per recipient
Final-Recipient / Original-Recipient, Action, Status and Diagnostic-Code, and the returned message (or its
headers) for the original Message-ID. Bounces in text formats (qmail, Exim, Sendmail, Exchange 2003,
Domino, GroupWise, MDaemon, Yahoo, Japanese carriers, …) are read with flufl.bounce's detectors and the
ways reports list addresses (maild.mail.bounce_text), status and diagnostic from the paragraph that names
the address. Line ends do not matter (CR-only and CRLF read as LF).

`read_bounce` also decides what *is* a bounce, since a wrong "yes" marks a customer `bouncing` and a
customer's mail taken for one is archived unread:
- an RFC 3464 report with a failed or delayed recipient (a success report is returned as such);
- a mail system's mail (null envelope sender, MAILER-DAEMON / postmaster / no sender address, report
  headers such as X-Failed-Recipients, or to our VERP address) naming failed addresses, or saying it is
  one by its subject or opening words; a vacation reply to the return path is no bounce;
- mail that no mail client or reply marks as a person's and that opens with the words only mail systems
  write, or whose sender calls itself a mail system ("Mail Delivery System") and whose subject or opening
  says failure ("Undeliverable:", "Unzustellbar:", "Mail System Error - Returned Mail", …).
Never a bounce: a challenge-response or whitelisting notice, a read receipt, a forwarded report (a
message/rfc822 part is a customer's attachment). A delay warning is a temporary failure; a failure after
"retry timeout exceeded" a permanent one (5.4.7). Recipients are addresses only (never a pipe command, a
Message-ID or the original sender). Never raises on garbage: whatever cannot be read is not a bounce."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser, HeaderParser
from email.policy import compat32

import structlog
from flufl.bounce import all_failures

from maild.mail import bounce_text
from maild.mail.report_parts import (
    first_text,
    for_detectors,
    from_daemon,
    header,
    not_recipients,
    outside_returned,
    report_text,
    system_named,
    text_of,
    text_parts,
)

log = structlog.stdlib.get_logger("maild.dsn")  # as maild.logs.get_logger; mail code imports no maild module

FAILURE_ACTIONS = ("failed", "delayed")
# opensmtpd writes "error" for failed; some MTAs append comments ("failed (bad address)").
_ACTION = re.compile(r"^\s*(failed|failure|error|delayed|delivered|relayed|expanded)", re.I)
# An enhanced status code (RFC 3463), as DSNs and SMTP replies write it: "5.1.1", qmail's "#5.1.1".
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\d)(?!\.\d)")
_SMTP_REPLY = re.compile(r"(?<!\d)[245]\d\d[ -]")
_MESSAGE_ID_LINE = re.compile(r"^[ \t]*Message-ID:[ \t]*(<[^<>\s]+>)", re.I | re.M)
_TEMPORARY_WORDS = re.compile(
    r"warning only|not yet been delivered|still (being )?retried|will (be )?retr|delivery delayed|delayed"
    r"|temporar|postponed|will continue",
    re.I,
)
DIAGNOSTIC_MAX = 500


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


def _unified_line_ends(raw: bytes) -> bytes:
    """CRLF and CR-only (old Mac exports) as LF: every rule below then reads the same lines."""
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in raw else raw


@dataclass(frozen=True)
class _Signs:
    """What the header block and the report's first lines say about the mail."""

    machine: bool  # a mail system wrote it: null sender, daemon or no sender, report headers, our VERP
    says_failure: bool  # a failure subject, or text that opens as reports do
    examine: bool  # worth reading as a report: a mail system's, or one that opens as only reports do
    subject: str


def _signs(head: Message, msg: Message | None, *, to_verp: bool, null_sender: bool) -> _Signs:
    subject = header(head, "subject")
    report_type = str(head.get_param("report-type", "", header="content-type") or "").lower()
    machine = (
        null_sender
        or to_verp
        or from_daemon(head)
        or (head.get_content_type() == "multipart/report" and report_type in ("delivery-status", ""))
        or any(head.get(name) is not None for name in _REPORT_HEADERS)
    )
    first = first_text(msg) if msg is not None else ""
    says_failure = bounce_text.failure_subject(subject) or bounce_text.opens_like_a_report(first)
    if machine:
        return _Signs(True, says_failure, True, subject)
    # Without a mail system's mark, a person may be asking about a bounce or quoting one: examined only
    # when no mail client or reply says a person wrote it, and the text opens as reports do.
    mailer = header(head, "x-mailer") + " " + header(head, "user-agent")
    person = bool(
        bounce_text.REPLY_PREFIX.match(subject)
        or bounce_text.PERSON_MAILER.search(mailer)
        or head.get("thread-index")
        or head.get("in-reply-to")
    )
    named = system_named(head)
    examine = not person and (bounce_text.opens_like_a_report(first, strict=True) or (named and says_failure))
    return _Signs(named, says_failure, examine, subject)


_REPORT_HEADERS = ("x-failed-recipients", "x-ms-exchange-message-is-ndr", "x-mimecast-bounce")


def _read_bounce(raw: bytes, *, to_verp: bool, null_sender: bool) -> Report | None:
    raw = _unified_line_ends(raw)
    end = raw.find(b"\n\n")
    head = BytesHeaderParser(policy=compat32).parsebytes(raw[: end + 2] if end >= 0 else raw)
    quick = _signs(head, None, to_verp=to_verp, null_sender=null_sender)
    # Cheap way out for the mail people write: only what a mail system or a failure subject marks, or what
    # opens as reports open, is parsed whole.
    if not (
        quick.machine or quick.says_failure or _opening_in(raw[end + 2 : end + 4096] if end >= 0 else b"")
    ):
        return None
    msg = BytesParser(policy=compat32).parsebytes(raw)
    signs = _signs(head, msg, to_verp=to_verp, null_sender=null_sender)
    dsn = _read_dsn(msg)  # also when not on top: some gateways wrap the report in multipart/mixed
    if dsn is not None and (dsn.failures or dsn.delivered_only):
        return dsn  # a success report is returned too: the caller archives it, no customer wrote it
    if not signs.examine:
        return None  # a person asking about a bounce, or quoting one, is a customer
    text = report_text(msg)
    if bounce_text.CHALLENGE.search(signs.subject + "\n" + text[:3000]):
        return None  # "confirm you are a person": a challenge, answered by nobody, and no bounce
    original = _original_message_id(msg)
    failures = _heuristic_failures(msg, text, signs)
    if failures:
        return Report("text", failures, original)
    return _nobody_named(signs, text, original, to_verp=to_verp)


def _opening_in(body: bytes) -> bool:
    return bounce_text.opens_like_a_report(body.decode("utf-8", "replace"))


def _nobody_named(signs: _Signs, text: str, original: str, *, to_verp: bool) -> Report | None:
    """A report that names nobody: a bounce only if a mail system says so, or it came to our return path
    looking like one (a vacation reply to the return path is not)."""
    status = _STATUS.search(text)
    if bounce_text.SUCCESS.search(signs.subject):
        return Report("text", (), original, delivered_only=True) if signs.machine else None
    if not ((signs.machine and signs.says_failure) or (to_verp and (signs.says_failure or status))):
        return None
    if status is not None:
        action = "delayed" if status[1] == "4" else "failed"
        failure = Failure(
            "", action=action, status=_status_of(status), diagnostic=_line_at(text, status.start())
        )
        return Report("text", (failure,), original)
    words = signs.subject + "\n" + text[:5000]
    temporary = bool(_TEMPORARY_WORDS.search(words) or bounce_text.DELAY.search(words))
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
    for part in outside_returned(msg):
        if not _is_status_part(part):
            continue
        for block in _status_blocks(part):
            original = original or _first_id(header(block, "x-original-message-id"))
            # A pipe or a program (`|/usr/bin/procmail`) is no address: the address that led to it is.
            final = _address_field(header(block, "final-recipient")) or _address_field(
                header(block, "original-recipient")
            )
            if not final:
                continue  # the per-message block (Reporting-MTA, Arrival-Date, …)
            seen_recipient = True
            action = _ACTION.match(header(block, "action"))
            verb = action[1].lower() if action else ""
            verb = "failed" if verb in ("failure", "error") else verb
            status = _STATUS.search(header(block, "status"))
            # Without a Diagnostic-Code (Sendmail's delay warnings), the report's words about the address.
            diagnostic = (
                _diagnostic(header(block, "diagnostic-code"))
                or _paragraph_details(report_text(msg), final)[1]
            )
            if verb not in FAILURE_ACTIONS:
                if verb or not status or status[1] == "2":
                    continue  # delivered, relayed, expanded: no failure
                verb = "failed" if status[1] == "5" else "delayed"
            code = _refined_status(status, diagnostic)
            if verb == "failed" and bounce_text.RETRY_TIMEOUT.search(diagnostic) and code[:1] != "5":
                code = "5.4.7"  # given up after days of temporary errors (see _text_failure)
            failures.append(
                Failure(
                    recipient=final,
                    original_recipient=_address_field(header(block, "original-recipient")),
                    action=verb,
                    status=code,
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
    address = address.strip().strip("<>").strip().lower()
    return address if bounce_text.is_address(address) else ""


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
                found = _first_id(header(inner[0], "message-id"))
            else:
                found = _id_in_text(text_of(part))
            if found:
                return found
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            found = _id_in_text(text_of(part))
            if found:
                return found
    for part in text_parts(msg):
        found = _id_in_text(text_of(part))
        if found:
            return found
    # Without a copy, the report may still refer to it, as a reply does (Exim's delay warnings).
    for name in ("in-reply-to", "references"):
        ids = re.findall(r"<[^<>\s]+>", header(msg, name))
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


def _heuristic_failures(msg: Message, text: str, signs: _Signs) -> tuple[Failure, ...]:
    """The failed addresses of a report without RFC 3464 fields: flufl.bounce's detectors, and the lines
    that list addresses as reports list them (or, from a mail system naming nobody so, any address in its
    own words); never the sender, a Message-ID, a pipe or a mail system."""
    try:
        temporary, permanent = all_failures(for_detectors(msg))
    except Exception:  # a detector tripped over the mail: no failures found by it
        temporary, permanent = frozenset(), frozenset()
    if not (temporary or permanent) and (start := _EXCHANGE_2003_START.search(text)):
        permanent = frozenset(m[1].encode() for m in _EXCHANGE_2003_ADDRESS.finditer(text, start.end()))
    not_these = not_recipients(msg, text)
    by_detector = [(a.decode("ascii", "replace"), True) for a in sorted(permanent)]
    by_detector += [(a.decode("ascii", "replace"), False) for a in sorted(temporary)]
    found: dict[str, bool | None] = {}
    for address, is_permanent in by_detector:
        for kept in bounce_text.recipients_only([address], not_these):
            found.setdefault(kept, is_permanent)
    # The ways reports list addresses match other robots' mail too (a list digest's bare addresses): read
    # so only what says it is a failure report.
    listed = bounce_text.text_recipients(text) if signs.says_failure else []
    listed = bounce_text.recipients_only(listed, not_these)
    if not (found or listed) and signs.machine and signs.says_failure:
        listed = bounce_text.recipients_only(bounce_text.all_addresses(text), not_these)
    for address in listed:
        found.setdefault(address, None)
    delay = bool(bounce_text.DELAY.search(signs.subject + "\n" + text[:3000])) and not re.search(
        r"permanent|fatal", signs.subject + "\n" + text[:3000], re.I
    )
    return tuple(_text_failure(text, address, found[address], delay) for address in sorted(found))


def _text_failure(text: str, address: str, detector_says: bool | None, delay: bool) -> Failure:
    status, diagnostic = _paragraph_details(text, address)
    paragraph = _paragraph(text, address)
    if bounce_text.RETRY_TIMEOUT.search(paragraph):
        # Days of temporary errors, given up: the mail is lost, and the address has not taken mail for as
        # long as the sender's queue tries. RFC 3463's "delivery time expired", as a permanent status.
        return Failure(address, action="failed", status="5.4.7", diagnostic=diagnostic)
    elif status.startswith(("4", "5")):
        is_permanent = status.startswith("5")
    elif delay:
        is_permanent = False
    else:
        is_permanent = detector_says is not False
    if delay and not bounce_text.RETRY_TIMEOUT.search(paragraph) and not status.startswith("5"):
        is_permanent = False
    return Failure(
        address, action="failed" if is_permanent else "delayed", status=status, diagnostic=diagnostic
    )


def _paragraph(text: str, address: str) -> str:
    at = text.lower().find(address)
    if at < 0:
        return ""
    start = text.rfind("\n", 0, at) + 1
    end = re.compile(r"\n[ \t]*\n").search(text, at)
    return text[start : end.start() if end else len(text)]


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


# --- headers --------------------------------------------------------------------------------------
