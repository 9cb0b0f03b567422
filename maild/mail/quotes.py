"""The visible text of a mail: what its sender wrote now, without the quoted history and the signature.

quote_scan first removes the quoted history line by line in every language of quote_patterns (keeping a
reply written below or between `>` lines, and a forward with nothing above it whole); mail-parser-reply
then finds what is left of quote headers and the signature; this module adds the guards a helpdesk needs
around it, because the full text is what the customer sent and visible text must never hide a part of it
that matters (the full text is kept too)."""

from __future__ import annotations

import re
import uuid
from bisect import bisect_left

from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

from maild.mail.quote_patterns import INVISIBLE
from maild.mail.quote_scan import scan_quotes
from maild.mail.signoffs import is_signoff_start, strip_signoff

# Every language the parser knows ("david" is a fixture of its own tests, not a language).
LANGUAGES = tuple(language for language in MAIL_LANGUAGES if language != "david")
# Its signature rule cuts from "Thanks," or "Best regards" to the end of the reply: a real signature is
# short, so a longer cut is a customer's text that happens to contain such a line, and stays.
SIGNATURE_MAX_LINES = 10
SIGNATURE_MAX_CHARS = 700
# The reply is at the top; the parser's regexes need not crawl a megabyte of pasted log below it.
PARSE_LIMIT = 100_000
# The parser's regexes take time superlinear in the length of a line and in the length of a run of blank
# lines (a 100 KB paragraph on one line, or 100,000 empty lines, took minutes to hours). No quote header is
# that long: longer lines are hidden from it behind a placeholder word and put back in the result; more
# than two blank lines in a row are shown to it as two.
LINE_LIMIT = 500
BLANK_RUN_LIMIT = 2
_QUOTED_LINE = re.compile(r"^\s*>")
# The parser's sign-offs ("Best regards", "Mit freundlichen Grüßen", "Tak") open a signature only alone on
# their line; its phone lines ("Sent from my …") only as a short line.
_PARSER_SIGNOFF = re.compile(
    "^(?:{})\\s*[,:!.]?\\s*$".format(
        "|".join(
            phrase for language in LANGUAGES for phrase in MAIL_LANGUAGES[language].get("signatures", [])
        )
    ),
    re.IGNORECASE,
)
_PARSER_SENT_FROM = re.compile(
    "^(?:{}).{{0,80}}$".format(
        "|".join(
            str(MAIL_LANGUAGES[language]["sent_from"])
            for language in LANGUAGES
            if MAIL_LANGUAGES[language].get("sent_from")
        )
    ),
    re.IGNORECASE,
)
# A time, a year or an address: what every client puts in the line that introduces a quote.
_DATE_OR_ADDRESS = re.compile(r"\d{1,2}:\d{2}|\b(?:19|20)\d{2}\b|@")


# Sign-offs and "sent from" lines the parser has no rule for: Portuguese and Hungarian ones, and the word
# order of iOS in languages it knows ("Von meinem iPhone gesendet"). Cut like its own: with the few short
# lines below them (name, company), only at the end.
# A mailing list's footer (Mailman) below a rule of underscores. The parser means to treat that rule as a
# signature separator, but its own normalisation deletes the rule first (mail-parser-reply 1.x).
_FOOTER_RULE = re.compile(r"\s*_{32,}\s*")


def _without_quoted_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _QUOTED_LINE.match(line))


def _is_attribution(line: str) -> bool:
    """ "W dniu 7.03.2026 o 10:00, Ana <a@x> pisze:": a line that introduces a quote names a time, a year
    or an address and ends with a colon, in any language."""
    line = line.strip()
    return line.endswith(":") and _DATE_OR_ADDRESS.search(line) is not None


def _without_trailing_quote(text: str) -> str:
    """Quoted lines at the end, and the attribution line that introduces them, for the quote headers of
    languages the parser does not know (Portuguese, Hungarian, …)."""
    lines = text.rstrip().splitlines()
    quoted = False
    while lines and (_QUOTED_LINE.match(lines[-1]) or not lines[-1].strip()):
        if lines.pop().strip():  # pop first: `quoted or pop()` stopped popping once quoted
            quoted = True
    if quoted and lines and lines[-1].strip().endswith(":"):
        before = lines[-2].strip() if len(lines) > 1 else ""
        if before and not before.endswith((".", "!", "?", ":")) and _is_attribution(f"{before} {lines[-1]}"):
            del lines[-2:]  # an attribution the client wrapped onto two lines
        elif _is_attribution(lines[-1]):
            lines.pop()
    return "\n".join(lines)


def _for_parser(text: str) -> tuple[str, dict[str, str]]:
    nonce = uuid.uuid4().hex
    hidden: dict[str, str] = {}
    lines: list[str] = []
    blanks = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        blanks = blanks + 1 if not line.strip() else 0
        if blanks > BLANK_RUN_LIMIT:
            continue
        if len(line) > LINE_LIMIT:
            token = f"longline{nonce}n{len(hidden)}x"
            hidden[token] = line.strip()  # the parser strips every line
            line = token
        lines.append(line)
    return "\n".join(lines), hidden


def _restore(text: str, hidden: dict[str, str]) -> str:
    for token, line in hidden.items():
        text = text.replace(token, line)
    return text


def _without_footer(text: str) -> str:
    lines = text.split("\n")
    for i in range(len(lines) - 1, 0, -1):
        if _FOOTER_RULE.fullmatch(lines[i]):
            if _plausible_signature("\n".join(lines[i:]).strip()):
                return "\n".join(lines[:i])
            break
    return text


def _indented(body: str, source: str) -> str:
    """The parser strips every line, but indentation is content (a traceback's frames, a digest's table of
    contents): each line of the body back as it is in the source, matched in order."""
    source_lines = source.split("\n")
    positions: dict[str, list[int]] = {}
    for number, line in enumerate(source_lines):
        positions.setdefault(line.strip(), []).append(number)
    lines, start = [], 0
    for line in body.split("\n"):
        candidates = positions.get(line, [])
        index = bisect_left(candidates, start)
        if index < len(candidates):
            start = candidates[index] + 1
            line = source_lines[start - 1].rstrip()
        lines.append(line)
    return "\n".join(lines)


def _plausible_signature(signature: str) -> bool:
    return len(signature) <= SIGNATURE_MAX_CHARS and signature.count("\n") < SIGNATURE_MAX_LINES


def _cut_signature(full_body: str, signature: str, restored: str) -> str:
    """The parser's signature rule cuts from "Thanks," to the end: only a short block that starts with a
    line that is just a sign-off ("Thanks, but it still fails" is the customer's text)."""
    if not signature or not _plausible_signature(restored):
        return full_body
    first = signature.split("\n", 1)[0].strip()
    if not (is_signoff_start(first) or _PARSER_SIGNOFF.match(first) or _PARSER_SENT_FROM.match(first)):
        return full_body
    return full_body.replace(signature, "").strip()


def visible_text(text: str, *, whole_when_empty: bool = True) -> str:
    """The newest reply in `text`; the whole text when nothing is left after removing quotes (a customer's
    mail is never shown empty), unless `whole_when_empty` is off: an agent's reply of commands above the
    quoted notice has nothing to say to the customer. A forward with nothing written above it shows the
    forwarded mail."""
    text = INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        return ""
    scan = scan_quotes(text[:PARSE_LIMIT])
    if scan.forwarded:
        return scan.text if whole_when_empty else ""
    shortened, hidden = _for_parser(scan.text)
    hidden.update(scan.pasted)
    shortened = _without_footer(shortened)
    message = EmailMessage(text=shortened, languages=list(LANGUAGES), keep_hyphen_lists=True).read()
    if not message.replies:
        return text.strip()
    reply = message.replies[0]
    body = _cut_signature(reply.full_body, reply.signatures, _restore(reply.signatures, hidden))
    body = _restore(_indented(body, shortened), hidden)
    if reply.headers:
        # The mail opens with a quote header: the sender answered below or between the quoted lines.
        body = _without_quoted_lines(body)
    body = strip_signoff(_without_trailing_quote(body)).strip()
    return body or (text.strip() if whole_when_empty else "")
