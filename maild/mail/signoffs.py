"""Sign-offs and "sent from my phone" lines that mail-parser-reply does not know: the languages of the
helpdesks maild grew from (Hungarian, Portuguese, Polish, German) and phone clients' own wordings.

Only a whole line that is just the sign-off counts, and only when what follows it is a short block at
the end (a name, a company, a phone number): "Obrigado pela ajuda, mas …" is text, not a signature."""

from __future__ import annotations

import re

_SIGNOFFS = (
    # Hungarian
    r"üdvözlettel",
    r"(?:baráti|szívélyes) üdvözlettel",
    r"tisztelettel",
    r"köszönettel",
    r"üdv",
    # Portuguese
    r"atenciosamente",
    r"(?:com os )?(?:melhores )?cumprimentos",
    r"saudações",
    r"abraços?",
    r"att\.?",
    # Polish (beyond the parser's own list)
    r"serdecznie pozdrawiam",
    r"pozdrowienia",
    # German (beyond the parser's own list)
    r"(?:freundliche|herzliche|beste|liebe|viele) grüße",
    r"lg",
    r"mfg",
)
_SENT_FROM = (
    r"von meinem \S+(?: \S+)? gesendet",
    r"enviado d[eo] (?:meu|minha) .+",
    r"wysłane z (?:mojego|mojej) .+",
    r"(?:iphone|ipad|android|samsung)-(?:ról|ről) küldve",
    r"küldve (?:az? )?.+(?:ról|ről)",
    r"envoyé de mon .+",
)
_SIGNOFF_LINE = re.compile(rf"^(?:{'|'.join(_SIGNOFFS)})\s*[,:!.]?\s*$", re.IGNORECASE)
_SENT_FROM_LINE = re.compile(rf"^(?:{'|'.join(_SENT_FROM)})\s*$", re.IGNORECASE)
MAX_BLOCK_LINES = 5  # name, company, phone, address: a signature block is short
MAX_BLOCK_LINE_CHARS = 80


def strip_signoff(text: str) -> str:
    """`text` without a trailing sign-off block or phone line; unchanged when there is none."""
    lines = text.rstrip().split("\n")
    for index in range(1, len(lines)):
        line = lines[index].strip()
        tail = [rest.strip() for rest in lines[index + 1 :] if rest.strip()]
        if _SENT_FROM_LINE.match(line) and len(tail) <= 2:
            return "\n".join(lines[:index]).rstrip()
        if (
            _SIGNOFF_LINE.match(line)
            and len(tail) <= MAX_BLOCK_LINES
            and all(len(rest) <= MAX_BLOCK_LINE_CHARS for rest in tail)
        ):
            return "\n".join(lines[:index]).rstrip()
    return text
