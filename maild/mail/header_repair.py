"""A header block the stdlib would misread, repaired before parsing: a pure function over the raw bytes.

The stdlib ends the header block at the first line that is neither `Name:` nor whitespace-started, and
reads everything after it as body. Real mail has such lines where no client meant the headers to end:
- an unindented continuation (`X-Tracker: a` / `b=c` / `From: …`: a gateway or script that folded a long
  value without the leading whitespace), which leaves From, Subject and MIME headers in the body;
- a field name with whitespace before its colon (`Subject : …`), which some scripts write;
- junk before the first header: a UTF-8 byte order mark, blank lines, a helpdesk's or a client's export
  banner (`---- Original email message ----`), an mbox `From ` line after any of these.
Only such lines change, and only when the lines after them are a mail's header fields (a known field name
among them): a body that merely starts without the empty line (`Subject: x` / `Hello,` / `…`) is left as
the stdlib reads it. A mail without any of these problems comes back as the very same bytes object, after
one pass over its header lines (this runs on every mail). The spool keeps the original bytes; only what is
parsed is repaired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BOM = b"\xef\xbb\xbf"
# No header block is this long (maild.mail.automatic reads no more of one either); a mail without an
# empty line costs no more than this to check.
SCAN_BYTES = 256 * 1024
# Export banners and blank lines before the headers: a few lines, never a page of text.
LEADING_JUNK_LINES = 8
# An unindented continuation is a value broken over a few lines, not a paragraph.
CONTINUATION_LINES = 20

# A field line as the stdlib reads one (email.feedparser.headerRE), and one with blanks before the colon.
_FIELD = re.compile(rb"[!-9;-~]+:")
_SPACED_FIELD = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]*)[ \t]+:")
# Field names that say "this is a mail's header": what clients, MTAs and filters write. A run of lines
# behind a junk line must name one of them before the junk line is taken for a broken fold.
_KNOWN_FIELD = re.compile(
    rb"(?:from|sender|reply-to|to|cc|bcc|subject|date|message-id|in-reply-to|references|mime-version"
    rb"|content-[a-z-]+|received|return-path|delivered-to|envelope-to|dkim-signature|domainkey-signature"
    rb"|authentication-results|received-spf|arc-[a-z-]+|list-[a-z-]+|precedence|auto-submitted"
    rb"|user-agent|organi[sz]ation|importance|priority|thread-index|thread-topic|accept-language"
    rb"|x-[!-9;-~]+|resent-[a-z-]+|disposition-notification-to|errors-to|comments|keywords):",
    re.IGNORECASE,
)
# Fields only a mail has: what must follow junk on top before that junk is dropped (an HTTP request has
# Content-Type and Date too, and is no mail).
_MAIL_FIELD = re.compile(
    rb"(?:from|sender|reply-to|to|cc|subject|message-id|received|return-path|delivered-to):", re.IGNORECASE
)
_MBOX_FROM = b"From "
_FIELD_KINDS = ("field", "spaced")
# A line end followed by an empty line (CRLF, LF or CR-only mail; "\r\n" is one line end, not two).
_BLANK = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")


@dataclass
class Repaired:
    """The bytes to parse, and what was repaired in them (parse records each as a defect)."""

    raw: bytes
    repairs: list[str] = field(default_factory=list)


def _kind(line: bytes) -> str:
    """blank | fold | field | spaced | mbox | junk, as the stdlib's header loop would see `line`
    (`spaced`: a known field name with blanks before its colon; an unknown one is junk)."""
    body = line.rstrip(b"\r\n")
    if not body:
        return "blank"
    if body[:1] in (b" ", b"\t"):
        return "fold"
    if _FIELD.match(body):
        return "field"
    spaced = _SPACED_FIELD.match(body)  # before the mbox test: `From : x` is a field, not a From_ line
    if spaced is not None and _KNOWN_FIELD.match(spaced.group(1) + b":"):
        return "spaced"
    if body.startswith(_MBOX_FROM):
        return "mbox"
    return "junk"


def _header_lines(raw: bytes) -> list[bytes]:
    """The lines of the header region (line ends kept), up to and including the first blank line that
    follows a field, at most SCAN_BYTES: blank lines before any field are junk, not the end of the
    headers. Most mails: one search for the empty line, one split of what is before it."""
    found = _BLANK.search(raw, 0, SCAN_BYTES)
    if found is not None:
        lines = raw[: found.end()].splitlines(keepends=True)
        if any(_kind(line) in _FIELD_KINDS for line in lines):
            return lines
    lines = raw[:SCAN_BYTES].splitlines(keepends=True)
    seen_field = False
    for index, line in enumerate(lines):
        kind = _kind(line)
        if kind == "blank" and seen_field:
            return lines[: index + 1]
        seen_field = seen_field or kind in _FIELD_KINDS
    return lines


def _as_field(line: bytes, kind: str) -> bytes:
    """A field line as the stdlib would read it once repaired: `Name :` becomes `Name:`."""
    return _SPACED_FIELD.sub(rb"\1:", line, count=1) if kind == "spaced" else line


def _looks_like_headers(lines: list[bytes], known_field: re.Pattern[bytes]) -> bool:
    """One of `lines` (up to the blank line) is a `known_field`: these are a mail's header fields."""
    for line in lines:
        kind = _kind(line)
        if kind == "blank":
            return False
        if kind in _FIELD_KINDS and known_field.match(_as_field(line, kind)):
            return True
    return False


def _leading_junk(lines: list[bytes]) -> int:
    """How many lines before the first field are junk to drop (0: none, or not a mail behind them)."""
    for index, line in enumerate(lines[: LEADING_JUNK_LINES + 1]):
        kind = _kind(line)
        if kind in _FIELD_KINDS:
            if index == 0 or not _looks_like_headers(lines[index:], _MAIL_FIELD):
                return 0
            # An mbox `From ` line alone on top is the stdlib's own business (it reads it as unixfrom).
            only_mbox = index == 1 and _kind(lines[0]) == "mbox"
            return 0 if only_mbox else index
    return 0


def _known_ahead(lines: list[bytes], kinds: list[str]) -> list[bool]:
    """For each line: a known field name is at it or after it, before the blank line. One pass from the
    end, so that judging every junk line costs no more than the block's length (no quadratic scan)."""
    known = [False] * (len(lines) + 1)
    for index in range(len(lines) - 1, -1, -1):
        kind = kinds[index]
        if kind != "blank":
            here = kind in _FIELD_KINDS and bool(_KNOWN_FIELD.match(_as_field(lines[index], kind)))
            known[index] = here or known[index + 1]
    return known


def _is_broken_fold(kinds: list[str], known: list[bool], index: int) -> bool:
    """The junk line at `index` continues the field before it: fields follow it (after at most
    CONTINUATION_LINES junk lines) and a known field name is among them."""
    for ahead in range(index + 1, min(len(kinds), index + CONTINUATION_LINES + 1)):
        kind = kinds[ahead]
        if kind in _FIELD_KINDS:
            return known[ahead]
        if kind not in ("junk", "fold"):
            return False  # the blank line, or an mbox line: the body starts where the stdlib says
    return False


def _fixed(lines: list[bytes], repairs: list[str]) -> list[bytes] | None:
    """The header lines with broken folds indented and `Name :` written `Name:`; None when there is
    nothing to repair (the junk line ends the headers where the stdlib ends them)."""
    kinds = [_kind(line) for line in lines]
    known = _known_ahead(lines, kinds)
    out: list[bytes] = []
    spaced: dict[str, None] = {}
    folded = False
    for index, (line, kind) in enumerate(zip(lines, kinds, strict=True)):
        if kind == "spaced":
            out.append(_as_field(line, kind))
            spaced[line.split(b":", 1)[0].strip().decode()] = None
        elif kind == "junk" and out and _is_broken_fold(kinds, known, index):
            out.append(b" " + line)
            folded = True
        elif kind in ("junk", "blank"):
            out.extend(lines[index:])  # where the stdlib ends the headers, and so do we
            break
        else:
            out.append(line)
    if spaced:
        repairs.append(f"header repaired: blanks before the colon of {', '.join(list(spaced)[:5])}")
    if folded:
        repairs.append("header repaired: unindented continuation line(s) joined to the field above")
    return out if spaced or folded else None


def _needs_repair(lines: list[bytes]) -> bool:
    for line in lines:
        kind = _kind(line)
        if kind == "blank":
            return False
        if kind in ("junk", "spaced"):
            return True
    return False


def repair_header_block(raw: bytes) -> Repaired:
    """The bytes to parse: `raw` itself when its header block reads as it should, else a repaired copy
    (the header region rewritten, the body's bytes unchanged) and what was done."""
    repairs: list[str] = []
    start = 0
    if raw.startswith(BOM):
        start = len(BOM)
        repairs.append("header repaired: byte order mark before the headers dropped")
    lines = _header_lines(raw[start:] if start else raw)
    skip = _leading_junk(lines)
    if skip:
        dropped = sum(len(line) for line in lines[:skip])
        start += dropped
        repairs.append(f"header repaired: {skip} line(s) before the headers dropped (an export's banner?)")
        lines = lines[skip:]
    fixed = _fixed(lines, repairs) if _needs_repair(lines) else None
    if fixed is None:
        return Repaired(raw[start:], repairs) if start else Repaired(raw)
    region = sum(len(line) for line in lines)
    return Repaired(b"".join(fixed) + raw[start + region :], repairs)
