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
    r"gru(?:ß|ss)",
    # French, Spanish, Italian, Dutch
    r"(?:bien )?cordialement",
    r"bien (?:à|a) (?:vous|toi)",
    r"(?:un )?saludos?(?: cordiales)?",
    r"atentamente",
    r"(?:cordiali|distinti) saluti",
    r"(?:met )?(?:vriendelijke|hartelijke) groet(?:en)?",
    # Finnish, Russian, Ukrainian, Scandinavian, Czech, Turkish
    r"(?:ystävällisin )?terveisin",
    r"с уважением",
    r"з повагою",
    r"(?:med )?(?:vänliga|venlig|vennlig) (?:hälsningar|hilsen)",
    r"s pozdravem",
    r"saygılarımla",
    r"iyi çalışmalar",
)
# What follows "Sent from" is a device or an app, never a sentence: no sentence punctuation, short, maybe
# a link in angle brackets ("Get Outlook for Android<https://aka.ms/ghei36>").
_DEVICE = r"(?:[^.!?<>]|\.(?=\S)){1,60}(?:<[^<>]{0,200}>)?"  # "WEB.DE Mail App" has a dot
_SENT_FROM = (
    r"von meinem \S+(?: \S+)? gesendet",
    rf"gesendet (?:von|mit|vom) {_DEVICE}",
    rf"enviado d[eo] (?:meu|minha|o) {_DEVICE}",
    rf"enviado desde (?:mi )?{_DEVICE}",
    rf"wysłane z {_DEVICE}",
    r"(?:iphone|ipad|android|samsung)-(?:ról|ről) küldve",
    r"küldve (?:az? )?.+(?:ról|ről)",
    rf"envoyé (?:de mon|depuis|à partir de|avec) {_DEVICE}",
    rf"(?:sent|send) (?:from|with|using|via) {_DEVICE}",
    rf"get outlook for {_DEVICE}",
    rf"(?:télécharger|obtenir) outlook pour {_DEVICE}",
    rf"obt(?:ener|enga) outlook para {_DEVICE}",
    rf"(?:inviato|invitato) da {_DEVICE}",
    rf"(?:verzonden|verstuurd) (?:vanaf|met|van) {_DEVICE}",
    rf"(?:skickat|skickades) från {_DEVICE}",
    rf"sendt fra {_DEVICE}",
    rf"lähetetty {_DEVICE}",
    rf"(?:отправлено|отправлено с|надіслано з) {_DEVICE}",
    rf"odesláno z {_DEVICE}",
    r"\S+ ?(?:cihazımdan|iphone'umdan|telefonumdan) gönderildi",
    r"(?:从我的|來自我的|發自我的|发自我的)\s?\S{1,30}",
    r"\S{1,30}から送信",
)
_SIGNOFF_LINE = re.compile(rf"^(?:{'|'.join(_SIGNOFFS)})\s*[,:!.]?\s*$", re.IGNORECASE)
_SENT_FROM_LINE = re.compile(rf"^(?:{'|'.join(_SENT_FROM)})\s*$", re.IGNORECASE)
MAX_BLOCK_LINES = 5  # name, company, phone, address: a signature block is short
MAX_BLOCK_LINE_CHARS = 80


_RULE_LINE = re.compile(r"^[-_]{2,}$")


def is_signoff_start(line: str) -> bool:
    """Whether `line` can open a signature: a separator ("--"), one of the sign-offs above or a "sent from"
    line, alone on its line; not a sentence that starts like one ("Thanks, but the export still fails")."""
    line = line.strip()
    return bool(_RULE_LINE.match(line) or _SIGNOFF_LINE.match(line) or _SENT_FROM_LINE.match(line))


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
