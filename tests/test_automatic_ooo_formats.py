"""An agent's out-of-office reply, as the common responders send it, is recognised as an out-of-office
reply by maild.mail.automatic (only that class marks the agent away: maild.tickets.presence), with the
headers each responder writes and Exchange/Outlook's localised "Automatic reply:" subjects; a person's
mail with the same words in its subject stays a person's."""

from __future__ import annotations

import pytest

from maild.mail.automatic import AUTO_GENERATED, OUT_OF_OFFICE, classify, read_headers
from tests.pipeline.helpers import mail

AGENT = "anna@example.com"
ORIGINAL = "[SUP-26-12-7] Printer on fire"
# What Exchange (on-premises and Online) writes on an automatic reply; no Auto-Submitted: auto-replied.
EXCHANGE = (("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"))
REPLY = (("In-Reply-To", "<notice-1@example.com>"), ("References", "<notice-1@example.com>"))


def verdict(subject: str, headers: tuple[tuple[str, str], ...], *, is_reply: bool = True) -> str | None:
    raw = mail(sender=f"Anna <{AGENT}>", subject=subject, extra=headers)
    found = classify(read_headers(raw), subject=subject, sender=AGENT, envelope=AGENT, is_reply=is_reply)
    return found.kind if found else None


# Outlook/Exchange's subject prefix in the desk's languages (and neighbours'), as the client writes it.
EXCHANGE_SUBJECTS = [
    "Automatic reply:", "Automatische Antwort:", "Abwesenheitsnotiz:", "Réponse automatique :",
    "Respuesta automática:", "Risposta automatica:", "Automatisch antwoord:", "Automatická odpověď:",
    "Automatická odpoveď:", "Automatiskt svar:", "Automatisk svar:", "Autosvar:", "Odpowiedź automatyczna:",
    "Automatikus válasz:", "Resposta automática:", "Automaattinen vastaus:", "Automatski odgovor:",
    "Samodejni odgovor:", "Automatinis atsakymas:", "Automātiskā atbilde:", "Automaatvastus:",
    "Автоматичен отговор:", "Автоматична відповідь:", "Răspuns automat:",
]  # fmt: skip


@pytest.mark.parametrize("prefix", EXCHANGE_SUBJECTS)
def test_exchanges_localised_automatic_replies_are_out_of_office(prefix: str) -> None:
    assert verdict(f"{prefix} {ORIGINAL}", EXCHANGE + REPLY) == OUT_OF_OFFICE
    # Outlook's rules-based "reply with template" (no Auto-Submitted at all) and an old client's reply
    # that lost its In-Reply-To: the subject alone says it.
    assert verdict(f"{prefix} {ORIGINAL}", ()) == OUT_OF_OFFICE
    assert verdict(f"{prefix} {ORIGINAL}", (), is_reply=False) == OUT_OF_OFFICE


@pytest.mark.parametrize(
    ("responder", "subject", "headers"),
    [
        ("Gmail vacation responder", f"Re: {ORIGINAL}", (("Auto-Submitted", "auto-replied"),)),
        ("Gmail, own subject", "On holiday until 14 December", (("Auto-Submitted", "auto-replied"),)),
        ("Zimbra", f"Re: {ORIGINAL}", (("Auto-Submitted", "auto-replied (zimbra; vacation)"),)),
        (
            "Sieve vacation (Dovecot Pigeonhole, Thunderbird's filter)",
            f"Auto: {ORIGINAL}",
            (("Auto-Submitted", 'auto-replied; owner-email="anna@example.com"'), ("Precedence", "bulk")),
        ),
        ("Apple Mail / iCloud", f"Re: {ORIGINAL}", (("Auto-Submitted", "auto-replied"),)),
        ("Apple's vacation header", f"Re: {ORIGINAL}", (("X-Apple-Action", "vacation"),)),
        ("Lotus Notes / HCL Domino", "AUTO: Anna Smith is out of the office (returning 14/12/2026)", ()),
        ("Zoho", f"Re: {ORIGINAL}", (("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes"))),
        ("vacation(1)", f"Re: {ORIGINAL}", (("Precedence", "junk"),)),
        ("a responder that writes only Precedence", "Out of Office", (("Precedence", "auto_reply"),)),
    ],
)
def test_the_common_responders_are_out_of_office(
    responder: str, subject: str, headers: tuple[tuple[str, str], ...]
) -> None:
    assert verdict(subject, headers + REPLY) == OUT_OF_OFFICE, responder


def test_exchange_headers_without_an_automatic_subject_are_a_robots_mail_not_an_absence() -> None:
    # Exchange writes the same headers on its system mail (and a rule's reply can have any subject):
    # automatic, never answered, but no sign that the agent is away.
    assert verdict(f"Re: {ORIGINAL}", EXCHANGE + REPLY) == AUTO_GENERATED


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Automatic reply stopped working",  # a person's reply about it
        "Odpowiedź automatyczna nie działa",  # "the automatic reply does not work"
        "Question about the Risposta automatica setting",
    ],
)
def test_a_persons_mail_about_automatic_replies_stays_a_persons(subject: str) -> None:
    assert verdict(subject, REPLY) is None
