"""Find where the quoted history starts in a reply, line by line, in every language of quote_patterns.

What this keeps is every line its sender wrote: the `>` lines and the header that introduces them go, and
a reply written below or between them stays (bottom-posting, interleaved answers). A header followed by
a quote without `>` (Outlook's "From: … Sent: …", "-----Original Message-----", Yahoo's indented quote,
"Em … escreveu:" over plain text) ends the reply: everything below it is the quoted mail. A forward with
nothing written above it is the message itself."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from maild.mail.quote_patterns import (
    ADDRESS,
    ADDRESS_END,
    CJK_WROTE,
    DASHED_ATTRIBUTION,
    FORWARD_SEPARATOR,
    FROM_FIELD,
    HEADER_FIELD,
    OPENER,
    ORIGINAL_SEPARATOR,
    QUOTED_LINE,
    RULE_LINE,
    TIME_OR_YEAR,
    WROTE,
    YEAR,
)

# No quote header is longer: longer lines are never tested, which bounds the time a line can take.
MAX_HEADER_CHARS = 300
MAX_WRAPPED_LINES = 3  # a client wraps a long "On … <address> wrote:" onto two or three lines
HEADER_BLOCK_WINDOW = 14  # From, Sent, To, Cc (wrapped over a few lines), Subject
MIN_HEADER_FIELDS = 3  # From + two others; two after a rule or a separator


@dataclass(frozen=True)
class Scan:
    text: str  # the sender's own lines
    forwarded: bool = False  # nothing above a forward separator: `text` is the forwarded mail
    # Header lines the sender pasted as content ("Here are the headers:\nFrom: …\nTo: …"): in `text` as
    # placeholder words, so that no later quote rule takes them for a quote header; put them back after.
    pasted: dict[str, str] = field(default_factory=dict)


def is_attribution(line: str) -> bool:
    """ "On Wed, 30 Apr 2025 at 15:19, Ana <ana@example.com> wrote:" in any language: a verb of writing
    and a colon at the end (or Gmail's verbless "…, Ана <ana@x>:"), with a time, a year or an address."""
    dashed = DASHED_ATTRIBUTION.match(line)
    if dashed:
        line = dashed.group(1) + ":"
    context = TIME_OR_YEAR.search(line) is not None or ADDRESS.search(line) is not None
    if CJK_WROTE.search(line):
        return context
    if not line.endswith((":", "：")) or not context:
        return False
    if WROTE.search(line) or _verb_inside(line):
        return True
    return ADDRESS_END.search(line) is not None and TIME_OR_YEAR.search(line) is not None


def _verb_inside(line: str) -> bool:
    """German, Dutch and Scandinavian put the verb before the name: "Am … schrieb Max <max@x>:"."""
    lowered = line.lower()
    return any(
        f" {verb} " in lowered
        for verb in ("schrieb", "schreef", "skrev", "ezt írta", "het volgende geschreven", "wrote")
    )


def _starts_attribution(line: str) -> bool:
    """Whether a line can be the first of an attribution wrapped onto the next: "On Wed, 30 Apr 2025 at
    15:19 Ana <", "support <s@x> ezt írta (időpont: 2026. márc. 7., Szo,"; not a sentence of the reply."""
    if line.endswith((".", "!", "?", ":")):
        return False
    return bool(OPENER.match(line) or ADDRESS.search(line) or _verb_inside(line + " "))


def _attribution_span(lines: list[str], start: int) -> int:
    """How many lines the attribution at `start` takes (0: none)."""
    for count in range(1, MAX_WRAPPED_LINES + 1):
        part = [line.strip() for line in lines[start : start + count]]
        if len(part) < count or not part[-1] or QUOTED_LINE.match(lines[start + count - 1]):
            return 0
        rest = " ".join(part[1:])
        if count > 1 and (not _starts_attribution(part[0]) or (OPENER.match(rest) and is_attribution(rest))):
            return 0  # the attribution starts on a later line: this one is the sender's
        joined = " ".join(part)
        if len(joined) > MAX_HEADER_CHARS:
            return 0
        if is_attribution(joined):
            return count
    return 0


def _header_block_span(lines: list[str], start: int, after_rule: bool) -> int:
    """How many lines the "From: … Sent: … To: … Subject: …" block at `start` takes (0: none)."""
    if not HEADER_FIELD.match(lines[start]):
        return 0
    fields, has_from, last, wrapped = 0, False, start, 0
    for index in range(start, min(len(lines), start + HEADER_BLOCK_WINDOW)):
        line = lines[index]
        if not line.strip() and index + 1 < len(lines) and HEADER_FIELD.match(lines[index + 1]):
            continue  # HTML converted to text: each field its own paragraph
        if QUOTED_LINE.match(line) or not line.strip():
            break
        if HEADER_FIELD.match(line) and len(line) <= MAX_HEADER_CHARS:
            fields, last, wrapped = fields + 1, index, 0
            has_from = has_from or FROM_FIELD.match(line) is not None
        elif wrapped < 2:
            wrapped += 1  # a value the client wrapped: "To: a@x; b@y;\n c@z"
        else:
            break
    needed = MIN_HEADER_FIELDS - 1 if after_rule else MIN_HEADER_FIELDS
    return last - start + 1 if has_from and fields >= needed else 0


def _next_content(lines: list[str], start: int) -> int | None:
    for index in range(start, len(lines)):
        if lines[index].strip():
            return index
    return None


def _without_trailing_rules(kept: list[str]) -> list[str]:
    """Blank lines and a dangling rule ("-----", Outlook web's underscores) at the end of the reply."""
    while kept and (not kept[-1].strip() or RULE_LINE.match(kept[-1].strip())):
        kept.pop()
    return kept


def _header_span(lines: list[str], index: int, kept: list[str]) -> int:
    """How many lines the reply or quote header at `index` takes (0: none)."""
    stripped = lines[index].strip()
    if ORIGINAL_SEPARATOR.match(stripped):
        return 1
    previous = next((line.strip() for line in reversed(kept) if line.strip()), "")
    after_rule = RULE_LINE.match(previous) is not None
    block = _header_block_span(lines, index, after_rule)
    if block:
        return block
    if DASHED_ATTRIBUTION.match(stripped) and is_attribution(stripped):
        return 1
    return _attribution_span(lines, index)


def _after_quote(lines: list[str], index: int, kept: list[str]) -> int:
    """Skip the `>` lines at `index`; one blank line stands where the quote stood."""
    while index < len(lines) and (QUOTED_LINE.match(lines[index]) or not lines[index].strip()):
        index += 1
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and index < len(lines):
        kept.append("")
    return index


def _strong(lines: list[str], index: int, span: int) -> bool:
    """Whether a header may end the reply when no `>` follows it: a separator or a header block always; an
    attribution only with a verb of writing and a year or an address (a sentence like "Yesterday at 10:00
    you wrote:" has neither; a log line "2024-01-15 10:31: error from <db@host>:" has no verb)."""
    header = " ".join(line.strip() for line in lines[index : index + span])
    if (span > 1 and HEADER_FIELD.match(lines[index])) or ORIGINAL_SEPARATOR.match(header):
        return True
    if DASHED_ATTRIBUTION.match(header):
        return True
    verb = WROTE.search(header) is not None or _verb_inside(header) or CJK_WROTE.search(header) is not None
    return verb and (YEAR.search(header) is not None or ADDRESS.search(header) is not None)


def _pasted_block(lines: list[str], index: int, kept: list[str]) -> int:
    """How many lines a header block the sender pasted takes (0: none): one that a line ending in a colon
    introduces ("Hier die Kopfzeilen:"), which no client puts above its quote header."""
    previous = next((line.strip() for line in reversed(kept) if line.strip()), "")
    if not previous.endswith((":", "：")) or RULE_LINE.match(previous):
        return 0
    return _header_block_span(lines, index, after_rule=False)


def scan_quotes(text: str) -> Scan:
    """The lines of `text` its sender wrote (see the module's docstring)."""
    lines = text.split("\n")
    kept: list[str] = []
    pasted: dict[str, str] = {}
    nonce = uuid.uuid4().hex
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if QUOTED_LINE.match(line):
            index = _after_quote(lines, index, kept)
            continue
        if not stripped or len(stripped) > MAX_HEADER_CHARS:
            kept.append(line)
            index += 1
            continue
        if FORWARD_SEPARATOR.match(stripped):
            if not "".join(kept).strip():
                return Scan("\n".join(lines[index:]).strip(), forwarded=True)
            return Scan("\n".join(_without_trailing_rules(kept)), pasted=pasted)
        paste = _pasted_block(lines, index, kept)
        for line in lines[index : index + paste]:
            token = f"pasted{nonce}n{len(pasted)}x"
            pasted[token] = line.rstrip()
            kept.append(token)
        if paste:
            index += paste
            continue
        span = _header_span(lines, index, kept)
        if not span:
            kept.append(line)
            index += 1
            continue
        following = _next_content(lines, index + span)
        if following is not None and not QUOTED_LINE.match(lines[following]) and _strong(lines, index, span):
            return Scan("\n".join(_without_trailing_rules(kept)), pasted=pasted)  # a quote without `>`
        if following is not None and not QUOTED_LINE.match(lines[following]):
            kept.extend(lines[index : index + span])  # "Yesterday at 10:00 your colleague wrote:" is text
        index += span  # the header of a `>` quote: what follows the quote is the sender's again
    return Scan("\n".join(_without_trailing_rules(kept)), pasted=pasted)
