"""The visible text of a mail: what its sender wrote now, without the quoted history and the signature.

mail-parser-reply finds the quote headers of Gmail, Outlook, Apple Mail and Thunderbird in the languages
it knows; this module adds the guards a helpdesk needs around it, because the full text is what the
customer sent and visible text must never hide a part of it that matters (the full text is kept too)."""

from __future__ import annotations

import re

from mailparser_reply import EmailMessage
from mailparser_reply.constants import MAIL_LANGUAGES

# Every language the parser knows ("david" is a fixture of its own tests, not a language).
LANGUAGES = tuple(language for language in MAIL_LANGUAGES if language != "david")
# Its signature rule cuts from "Thanks," or "Best regards" to the end of the reply: a real signature is
# short, so a longer cut is a customer's text that happens to contain such a line, and stays.
SIGNATURE_MAX_LINES = 10
SIGNATURE_MAX_CHARS = 700
# The reply is at the top; the parser's regexes need not crawl a megabyte of pasted log below it.
PARSE_LIMIT = 100_000
_QUOTED_LINE = re.compile(r"^\s*>")
# A time, a year or an address: what every client puts in the line that introduces a quote.
_DATE_OR_ADDRESS = re.compile(r"\d{1,2}:\d{2}|\b(?:19|20)\d{2}\b|@")


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
        quoted = quoted or bool(lines.pop().strip())
    if quoted and lines and lines[-1].strip().endswith(":"):
        before = lines[-2].strip() if len(lines) > 1 else ""
        if before and not before.endswith((".", "!", "?", ":")) and _is_attribution(f"{before} {lines[-1]}"):
            del lines[-2:]  # an attribution the client wrapped onto two lines
        elif _is_attribution(lines[-1]):
            lines.pop()
    return "\n".join(lines)


def _plausible_signature(signature: str) -> bool:
    return len(signature) <= SIGNATURE_MAX_CHARS and signature.count("\n") < SIGNATURE_MAX_LINES


def visible_text(text: str) -> str:
    """The newest reply in `text`; the whole text when nothing is left after removing quotes."""
    if not text.strip():
        return ""
    message = EmailMessage(text=text[:PARSE_LIMIT], languages=list(LANGUAGES), keep_hyphen_lists=True).read()
    if not message.replies:
        return text.strip()
    reply = message.replies[0]
    body = reply.body if _plausible_signature(reply.signatures) else reply.full_body
    if reply.headers:
        # The mail opens with a quote header: the sender answered below or between the quoted lines.
        body = _without_quoted_lines(body)
    body = _without_trailing_quote(body).strip()
    return body or text.strip()
