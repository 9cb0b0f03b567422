"""Is a mail automatic, and of which class? (RFC 3834 and what real robots write instead.)

Classes:
  out-of-office       an answer a robot sent to a mail (vacation, Outlook/Exchange automatic reply, Sieve)
  auto-generated      a robot's own mail: notifications, ticket systems' acknowledgements, null senders
  list                mailing lists and bulk mail (List-Id, List-Unsubscribe, Precedence: list|bulk)
  challenge-response  "prove you are human" gatekeepers (TMDA, BoxTrapper, SpamArrest …)

The rules are tried in that order of specificity (`classify`): challenge-response, a ticket system's
automatic mail, out-of-office, list, auto-generated. Each verdict names the rule that decided, for
`maildctl explain` and the spool row.

Decisions worth knowing:
- `X-Auto-Response-Suppress` is a *request* ("do not answer me"), not a statement that the mail is automatic.
  Exchange writes `All` on its own automatic mail (OOF replies, system and meeting-response mail), while
  distribution-list expansion and some clients put narrower values (`DR, OOF, AutoReply`) on mail people
  wrote. So only `All` counts by itself; other values only help recognise a ticket system's mail.
- An empty envelope sender counts only when the envelope is known: LMTP/SMTP always know it; `maild pipe`
  without `--sender` and IMAP do not, unless the delivering MTA wrote `Return-Path: <>` (Postfix's pipe
  flag R, Dovecot's LMTP). An unknown envelope is never taken for an empty one.
- Out-of-office subjects count only at the start of the subject (a reply "Re: Automatic replies stopped
  working" is a person's), and short words that people also use as subjects ("Absence: request for May")
  only when the mail answers another one (In-Reply-To or References).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses

OUT_OF_OFFICE = "out-of-office"
AUTO_GENERATED = "auto-generated"
LIST = "list"
CHALLENGE_RESPONSE = "challenge-response"
CLASSES = (OUT_OF_OFFICE, AUTO_GENERATED, LIST, CHALLENGE_RESPONSE)


@dataclass(frozen=True)
class Verdict:
    kind: str  # one of CLASSES
    reason: str  # the header or rule that decided, e.g. "Auto-Submitted: auto-replied"


# --- headers ----------------------------------------------------------------------------------------

_HEADER_END = re.compile(rb"\r?\n\r?\n")


# Upstream filters and MTAs add their headers on top; a real header block is never this long, and a mail
# without an empty line (or with megabytes of folded Subject) costs no more than this to read.
HEADER_SCAN_BYTES = 256 * 1024


def read_headers(raw: bytes) -> Message:
    """The top-level header block only, at most HEADER_SCAN_BYTES of it (the body is never parsed here:
    a 30 MB mail costs nothing). compat32: values as written, which is what these rules compare;
    policy.default could raise on junk."""
    end = _HEADER_END.search(raw, 0, HEADER_SCAN_BYTES)
    block = raw[: end.end()] if end else raw[:HEADER_SCAN_BYTES]
    return BytesParser(policy=compat32).parsebytes(block, headersonly=True)


def _values(headers: Message, name: str) -> list[str]:
    return [" ".join(str(v).split()) for v in headers.get_all(name, [])]


def _first(headers: Message, name: str) -> str | None:
    values = _values(headers, name)
    return values[0] if values else None


_COMMENT = re.compile(r"\([^()]*\)")


def _token(value: str) -> str:
    """`auto-replied; owner-email="x@y"` or `auto-replied (vacation)` → `auto-replied`: RFC 3834 allows
    parameters and comments (Sieve vacation and Zimbra write one)."""
    return _COMMENT.sub(" ", value).split(";", 1)[0].strip().lower()


# --- envelope ---------------------------------------------------------------------------------------

NULL_SENDER = "<>"  # how SpoolEntry.mail_from records MAIL FROM:<> ("" means: this delivery did not say)


def envelope_sender(mail_from: str, headers: Message) -> str | None:
    """The envelope sender ("" for the null sender <>), or None when this delivery did not say.

    `SpoolEntry.mail_from` is "<>" for the null sender (SMTP/LMTP `MAIL FROM:<>`, `maild pipe --sender ''`)
    and "" when the ingress did not know (pipe without --sender, IMAP without Return-Path); then the
    Return-Path the delivering MTA wrote (the topmost: Postfix drops senders' own) decides."""
    if mail_from == NULL_SENDER:
        return ""
    if mail_from:
        return mail_from
    return_path = _first(headers, "Return-Path")
    if return_path is None:
        return None
    return return_path.strip().strip("<>").strip()


# --- senders ----------------------------------------------------------------------------------------

# noreply, no-reply, no_reply, donotreply, do-not-reply, mailer-daemon, also as a part of the local part
# (jira-noreply, noreply-billing) — never "noreplyx" or "info".
_ROBOT_LOCAL = re.compile(
    r"(?:^|[-_.+])(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon)(?:$|[-_.+])", re.IGNORECASE
)


def robot_sender(address: str) -> bool:
    local = address.rpartition("@")[0] if "@" in address else address
    return bool(_ROBOT_LOCAL.search(local))


# --- subjects ---------------------------------------------------------------------------------------

# Out-of-office subjects of the common clients and servers (Outlook/Exchange "Automatic reply:", Lotus
# Notes, Zimbra, GroupWise, old Outlook "Out of Office:") in their languages. Matched at the subject's
# start, followed by ":" or the end of the subject (case-insensitive).
_OOO_STRONG = (
    # en
    "out of office", "out of the office", "out-of-office", "automatic reply", "automatic response",
    "auto reply", "auto-reply", "autoreply", "auto response", "auto-response", "autoresponse",
    "vacation reply", "away from the office", "away from office", "out of office autoreply",
    # de
    "abwesenheitsnotiz", "automatische antwort", "abwesenheitsmeldung", "nicht im büro",
    "automatische abwesenheitsnachricht",
    # fr
    "réponse automatique", "reponse automatique", "message d'absence", "absent du bureau",
    "absence du bureau",
    # es
    "respuesta automática", "respuesta automatica", "fuera de la oficina", "respuesta de ausencia",
    # it
    "risposta automatica", "fuori sede", "fuori ufficio",
    # pt
    "resposta automática", "resposta automatica", "fora do escritório", "ausência temporária",
    # nl
    "automatisch antwoord", "automatisch bericht", "niet aanwezig", "afwezigheidsbericht",
    # hu
    "házon kívül", "automatikus válasz",
    # pl (Outlook writes "Odpowiedź automatyczna:")
    "automatyczna odpowiedź", "automatyczna odpowiedz", "odpowiedź automatyczna", "odpowiedz automatyczna",
    "poza biurem",
    # sv
    "automatiskt svar", "frånvaromeddelande", "inte på kontoret",
    # da / no
    "automatisk svar", "autosvar", "ikke på kontoret", "ikke på kontoret",
    # fi
    "automaattinen vastaus", "poissa toimistosta",
    # cs / sk
    "automatická odpověď", "automaticka odpoved", "mimo kancelář", "automatická odpoveď",
    "mimo kancelárie",
    # hr / sr / bs, sl, lt, lv, et, bg, uk (Outlook's "Automatic reply:" in the EU's other languages)
    "automatski odgovor", "samodejni odgovor", "automatinis atsakymas", "automātiskā atbilde",
    "automaatvastus", "автоматичен отговор", "автоматична відповідь",
    # ro, tr, ru, el, ja, zh, ko
    "răspuns automat", "raspuns automat", "otomatik yanıt", "otomatik cevap", "ofis dışında",
    "автоматический ответ", "автоответ", "вне офиса", "αυτόματη απάντηση", "自動応答", "自動返信",
    "不在", "自动回复", "自動回覆", "자동 회신", "자동 응답",
)  # fmt: skip
# Words people also put in their own subjects ("Absence: doctor's appointment"): only on a reply.
_OOO_WEAK = (
    "absence", "absent", "abwesend", "abwesenheit", "ausente", "afwezig", "nieobecność", "nieobecnosc",
    "frånvaro", "fraværende", "fravær", "poissa", "nepřítomnost", "vacation", "on vacation", "away",
)  # fmt: skip


def _phrases(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(sorted((re.escape(w) for w in set(words)), key=len, reverse=True))
    # "Automatic reply: …", "Réponse automatique : …", "Out of Office", "Autoreply - …", "自動応答：…",
    # also after a ticket system's tag: "[rt.example #90412] AutoReply: …"
    return re.compile(rf"^\s*(?:\[[^\]]*\]\s*)?(?:{alternatives})\s*(?:[:：\-–]|$)", re.IGNORECASE)


_OOO_STRONG_RE = _phrases(_OOO_STRONG)
_OOO_WEAK_RE = _phrases(_OOO_WEAK)

# Challenge-response gatekeepers ask the sender to prove being human; their subjects, at the start.
_CHALLENGE_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:"
    r"please confirm your (?:e-?mail )?message"
    r"|confirm(?:ation)? (?:required|request)(?: for| of)? your (?:e-?mail|message)"
    r"|your (?:e-?mail|message)(?: to .{1,200}?)? (?:requires|needs) (?:your )?verification"
    r"|your (?:e-?mail|message)(?: to .{1,200}?)? is (?:awaiting|pending) (?:your )?verification"
    r"|(?:please )?verify (?:that )?you are (?:a )?(?:human|real person|person)"
    r"|bitte bestätigen sie ihre (?:e-?mail|nachricht)"
    r"|veuillez confirmer votre message"
    r")",
    re.IGNORECASE,
)
_CHALLENGE_ANYWHERE = re.compile(
    r"\bverify#\w+|\[spamarrest\]|\[mailblocks\]|\bguest list\b|please register to reach"
    r"|(?:added|add yourself|be added) to (?:the |my )?(?:whitelist|white-list|approved senders)"
    r"|^\s*(?:qurb|choicemail|mailwasher|bluebottle|boxbe)\b"
    r"|^\s*(?:e-?mail |sender )?verification (?:required|request)"
    r"|^\s*message held\b.{0,80}\bconfirm",
    re.IGNORECASE,
)
# BoxTrapper (cPanel), TMDA, SpamArrest, Mailblocks, ChoiceMail, Boxbe, Bluebottle, Qurb write their own
# headers; the services send from their own domains.
_CHALLENGE_HEADER_PREFIXES = (
    "x-boxtrapper", "x-tmda", "x-spamarrest", "x-mailblocks", "x-choicemail", "x-boxbe", "x-bluebottle",
    "x-qurb", "x-mailwasher", "x-sendio",
)  # fmt: skip
_CHALLENGE_DOMAINS = (
    "spamarrest.com", "mailblocks.com", "choicemail.com", "boxbe.com", "bluebottle.com", "qurb.com",
    "sendio.com", "mailwasher.net",
)  # fmt: skip
_CHALLENGE_MAILERS = re.compile(r"\b(?:qurb|choicemail|mailwasher|spamarrest|tmda|boxtrapper)\b", re.I)

# Lotus Notes / Domino: "AUTO: Jane Smith is out of the office (returning 03/01/2026)". Upper case only:
# "Auto: question about my car insurance" is a person's subject in German.
_LOTUS_AUTO = re.compile(r"^\s*AUTO:\s")
# Words of an absence anywhere in a subject, for mail that already says "a robot answered" (Precedence).
_ABSENCE_ANYWHERE = re.compile(
    r"vacation|holiday|out of (?:the )?office|away from|abwesen|urlaub|absent|absence|ausente|afwezig"
    r"|vacances|congés|ferie|nieobecn|poissa|frånvar",
    re.IGNORECASE,
)
# Notification robots whose headers alone say so: they send nothing a person wrote to us.
_NOTIFIER_HEADER_PREFIXES = {
    "x-jira-fingerprint": "Jira",
    "x-servicenow-": "ServiceNow",
    "x-github-": "GitHub",
    "x-gitlab-": "GitLab",
    "x-redmine-": "Redmine",
    "x-bugzilla-": "Bugzilla",
    "x-gitea-": "Gitea",
    "x-phabricator-": "Phabricator",
}
# Responders that mark their answers with a header of their own (any value but "no"), or with a header whose
# value says so (Apple's vacation, Yahoo's message class, Exchange's FirstClass).
_AUTOREPLY_HEADERS = (
    "X-Autoreply", "X-Autorespond", "X-Auto-Reply", "X-Autoresponse", "X-Autoresponder", "X-AutoReply-From",
    "X-Mail-Autoreply",
)  # fmt: skip
_AUTOREPLY_VALUES = {
    "X-Apple-Action": re.compile(r"^\s*vacation", re.I),
    "X-Autogenerated": re.compile(r"^\s*reply", re.I),
    "X-POST-MessageClass": re.compile(r"autoresponder", re.I),
    "X-FC-MachineGenerated": re.compile(r"^\s*true", re.I),
}
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|aw|sv|vs|antw|odp|r|rif|res)\s*:", re.IGNORECASE)

# Ticket systems: headers by which their mail is recognised (on agents' replies too, so they count only
# together with a sign that this mail is automatic).
_TICKET_HEADER_PREFIXES = {
    "x-zendesk-": "Zendesk",
    "x-freshdesk-": "Freshdesk",
    "x-otrs-": "OTRS",
    "x-znuny-": "Znuny",
    "x-jira-": "Jira",
    "x-helpscout-": "Help Scout",
    "x-freescout-": "FreeScout",
    "x-zammad-": "Zammad",
    "rt-ticket": "RT",
    "x-rt-loop-prevention": "RT",
    "x-osticket-": "osTicket",
}
_TICKET_MAILERS = re.compile(
    r"zendesk|freshdesk|otrs|znuny|osticket|help ?scout|zammad|freescout|request tracker|jira", re.IGNORECASE
)


def _ticket_system(headers: Message) -> str | None:
    for name in headers:
        lowered = name.lower()
        for prefix, system in _TICKET_HEADER_PREFIXES.items():
            if lowered.startswith(prefix):
                return f"{system} ({name})"
    if (_first(headers, "Managed-BY") or "").lower().startswith("rt "):
        return "RT (Managed-BY)"
    for name in ("X-Mailer", "X-Powered-By"):
        value = _first(headers, name)
        if value and _TICKET_MAILERS.search(value):
            return f"{value} ({name})"
    return None


# --- the classifier ---------------------------------------------------------------------------------


def _auto_submitted(headers: Message) -> str | None:
    value = _first(headers, "Auto-Submitted")
    if value is None:
        return None
    token = _token(value)
    return None if token in ("no", "") else token


def _precedence(headers: Message) -> str | None:
    value = _first(headers, "Precedence")
    return _token(value) if value else None


def _automatic_signs(headers: Message, sender: str, envelope: str | None) -> list[str]:
    """Any sign at all that a robot sent the mail (what a ticket system's mail needs to count)."""
    signs = []
    if (token := _auto_submitted(headers)) is not None:
        signs.append(f"Auto-Submitted: {token}")
    if (token := _precedence(headers)) in ("bulk", "junk", "list", "auto_reply"):
        signs.append(f"Precedence: {token}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        value = _first(headers, name)
        if value is not None and value.strip().lower() not in ("", "no", "none"):
            signs.append(f"{name}: {value}")
    if robot_sender(sender):
        signs.append(f"sender {sender}")
    if envelope == "":
        signs.append("empty envelope sender")
    return signs


def _challenge(headers: Message, subject: str, sender: str) -> str | None:
    for name in headers:
        if name.lower().startswith(_CHALLENGE_HEADER_PREFIXES):
            return f"challenge-response header {name}"
    mailer = _first(headers, "X-Mailer") or ""
    if _CHALLENGE_MAILERS.search(mailer):
        return f"challenge-response mailer {mailer[:80]}"
    if any(sender.lower().endswith(("@" + d, "." + d)) for d in _CHALLENGE_DOMAINS):
        return f"challenge-response service {sender}"
    if _CHALLENGE_SUBJECT.search(subject) or _CHALLENGE_ANYWHERE.search(subject):
        return f"challenge-response subject {subject[:80]!r}"
    return None


def out_of_office_subject(subject: str, is_reply: bool) -> bool:
    return bool(
        _OOO_STRONG_RE.search(subject)
        or _LOTUS_AUTO.search(subject)
        or (is_reply and _OOO_WEAK_RE.search(subject))
    )


def _autoreply_header(headers: Message) -> str | None:
    """The responder's own header that marks its answer, as `name: value`, or None."""
    for name in _AUTOREPLY_HEADERS:
        value = _first(headers, name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return f"{name}: {value}"[:200]
    for name, meaning in _AUTOREPLY_VALUES.items():
        value = _first(headers, name)
        if value is not None and meaning.search(value):
            return f"{name}: {value}"[:200]
    return None


def _notifier(headers: Message) -> str | None:
    for name in headers:
        lowered = name.lower()
        for prefix, system in _NOTIFIER_HEADER_PREFIXES.items():
            if lowered.startswith(prefix):
                return f"{system} ({name})"
    return None


def _machine_report(headers: Message) -> str | None:
    """A report a machine sends (RFC 6522 multipart/report): a read receipt (RFC 8098 MDN), an abuse
    report (ARF), or a delivery report the bounce stage could not read. Its report-type, or None."""
    if headers.get_content_type() != "multipart/report":
        return None
    return str(headers.get_param("report-type", "", header="content-type") or "").lower() or "unknown"


def _vacation_by_precedence(headers: Message, subject: str, is_reply: bool, precedence: str | None) -> bool:
    """vacation(1), Sieve and many responders mark their answer only with `Precedence: bulk|junk`: on an
    answer (or with words of an absence in the subject) and without a list's headers, that is an
    out-of-office reply, not a list."""
    if precedence not in ("bulk", "junk"):
        return False
    if _first(headers, "List-Id") is not None or _first(headers, "List-Unsubscribe") is not None:
        return False
    return bool(is_reply or _REPLY_SUBJECT.match(subject) or _ABSENCE_ANYWHERE.search(subject))


def classify(
    headers: Message, *, subject: str, sender: str, envelope: str | None, is_reply: bool
) -> Verdict | None:
    """The class of an automatic mail and why, or None for a mail a person wrote.

    `headers`: `read_headers(raw)`; `subject`: decoded (RFC 2047); `sender`: the From address;
    `envelope`: `envelope_sender(...)` (None: unknown); `is_reply`: it has In-Reply-To or References."""
    if (reason := _challenge(headers, subject, sender)) is not None:
        return Verdict(CHALLENGE_RESPONSE, reason)

    signs = _automatic_signs(headers, sender, envelope)
    system = _ticket_system(headers)
    if system is not None and (signs or out_of_office_subject(subject, is_reply)):
        # A ticket system's acknowledgement or notification, whatever RFC 3834 class it claims
        # (osTicket and RT call their acknowledgements auto-replies).
        return Verdict(AUTO_GENERATED, f"ticket system {system}: {', '.join(signs) or 'automatic subject'}")

    if (report_type := _machine_report(headers)) is not None:
        return Verdict(AUTO_GENERATED, f"multipart/report; report-type={report_type}"[:200])
    if (notifier := _notifier(headers)) is not None:
        return Verdict(AUTO_GENERATED, f"notification system {notifier}")

    auto_submitted = _auto_submitted(headers)
    if auto_submitted == "auto-replied":
        return Verdict(OUT_OF_OFFICE, "Auto-Submitted: auto-replied")
    if (marked := _autoreply_header(headers)) is not None:
        return Verdict(OUT_OF_OFFICE, marked)
    precedence = _precedence(headers)
    if precedence == "auto_reply":
        return Verdict(OUT_OF_OFFICE, "Precedence: auto_reply")
    if out_of_office_subject(subject, is_reply):
        return Verdict(OUT_OF_OFFICE, f"out-of-office subject {subject[:80]!r}")
    if _vacation_by_precedence(headers, subject, is_reply, precedence):
        return Verdict(OUT_OF_OFFICE, f"Precedence: {precedence} on an answer")

    for name in ("List-Id", "List-Unsubscribe"):
        value = _first(headers, name)
        if value is not None:
            return Verdict(LIST, f"{name}: {value}"[:200])
    if precedence in ("list", "bulk"):
        return Verdict(LIST, f"Precedence: {precedence}")

    if auto_submitted is not None:
        return Verdict(AUTO_GENERATED, f"Auto-Submitted: {auto_submitted}")
    if precedence == "junk":
        return Verdict(AUTO_GENERATED, "Precedence: junk")
    suppress = _first(headers, "X-Auto-Response-Suppress")
    if suppress is not None and "all" in {v.strip().lower() for v in suppress.split(",")}:
        return Verdict(AUTO_GENERATED, f"X-Auto-Response-Suppress: {suppress}"[:200])
    if envelope == "" or (envelope is not None and robot_sender(envelope)):
        return Verdict(AUTO_GENERATED, f"envelope sender <{envelope}>")
    if robot_sender(sender):
        return Verdict(AUTO_GENERATED, f"sender {sender}")
    return None


def loop_marked(headers: Message) -> Verdict | None:
    """Mail carrying an X-Loop header has been through a robot that marks its own mail so (procmail,
    OTRS, CRMs, our own desks): it is never answered automatically, whoever it names. Not part of
    `classify`: X-Loop says nothing about whether a person wrote the words (a forwarded mail keeps them),
    only that answering could start a loop."""
    values = _values(headers, "X-Loop")
    return Verdict(AUTO_GENERATED, f"X-Loop: {values[0]}"[:200]) if values else None


def x_loop_addresses(headers: Message) -> list[str]:
    """The addresses named in X-Loop headers (a bare `yes`, as OTRS writes, names none)."""
    return [addr for _, addr in getaddresses(_values(headers, "X-Loop")) if "@" in addr]
