"""maild.mail.return_date over out-of-office texts as real responders and people write them (Outlook,
Gmail, Thunderbird, Lotus, hand-written): the first corpus here (en de pl hu pt), the wide one in
tests/corpus_ooo/ (also fr es it nl cs sv da, US and UK date orders, traps)."""

from __future__ import annotations

import datetime as dt

import pytest

from maild.mail import return_date_words
from maild.mail.return_date import TEXT_LIMIT, stated_return
from tests.corpus_ooo import AT_YEAR_END, BY_LANGUAGE, YEAR_END
from tests.corpus_ooo import TODAY as WIDE_TODAY

TODAY = dt.date(2026, 12, 8)

# (text, the first day back it states, or None)
CORPUS: list[tuple[str, dt.date | None]] = [
    # English
    ("I am out of the office until 12 December with limited access to email.", dt.date(2026, 12, 13)),
    (
        "Thank you for your message. I'm currently on leave and will be back on 2026-12-14.",
        dt.date(2026, 12, 14),
    ),
    ("I will be out of the office from December 9th through December 11th, 2026.", dt.date(2026, 12, 12)),
    (
        "I am away until Monday, 14 December. For urgent matters contact support@example.com.",
        dt.date(2026, 12, 15),
    ),
    ("I'm out of office and returning on December 15, 2026.", dt.date(2026, 12, 15)),
    ("AUTO: Jane Smith is out of the office (returning 16/12/2026)", dt.date(2026, 12, 16)),
    ("I am on annual leave from 10 to 18 December and will have no access to email.", dt.date(2026, 12, 19)),
    ("Out of office till 5 Jan. Happy holidays!", dt.date(2027, 1, 6)),
    ("I'm away 12/10/2026 - 12/14/2026.", dt.date(2026, 12, 15)),
    ("I am currently out of the office with limited access to email.", None),
    ("Our office is closed on 24 December. I will reply as soon as possible.", None),
    ("I was out until 1 December.", dt.date(2026, 12, 2)),
    ("I will be back tomorrow at 9.30 and answer then.", None),  # a time, not 30 September
    (
        "Back on Monday. Ticket SUP-2026-12-14 is handled by Bob.",
        None,
    ),  # a number, not a date  # in the past: the caller ignores it
    # German
    ("Vielen Dank für Ihre Nachricht. Ich bin bis zum 14.12.2026 nicht im Büro.", dt.date(2026, 12, 15)),
    ("Ich bin vom 10. bis 14.12. im Urlaub und ab dem 15.12. wieder erreichbar.", dt.date(2026, 12, 15)),
    ("Ich bin bis einschließlich 18. Dezember 2026 abwesend.", dt.date(2026, 12, 19)),
    ("Ab dem 21.12.2026 bin ich wieder im Büro.", dt.date(2026, 12, 21)),
    ("Ich bin zurück am Montag, 14. Dezember.", dt.date(2026, 12, 14)),
    ("Ich bin derzeit nicht im Büro. Ihre Nachricht wird nicht weitergeleitet.", None),
    # Polish
    ("Dziękuję za wiadomość. Jestem na urlopie do 14.12.2026.", dt.date(2026, 12, 15)),
    (
        "Przebywam na urlopie od 10.12 do 18.12. W pilnych sprawach proszę pisać do biura.",
        dt.date(2026, 12, 19),
    ),
    ("Jestem nieobecny do dnia 20 grudnia 2026 r.", dt.date(2026, 12, 21)),
    ("Wracam 15 grudnia.", dt.date(2026, 12, 15)),
    # Hungarian
    ("Köszönöm levelét. Szabadságon vagyok december 14-ig.", dt.date(2026, 12, 15)),
    ("Házon kívül vagyok 2026. december 18-ig, utána válaszolok.", dt.date(2026, 12, 19)),
    ("December 15-től újra elérhető vagyok.", dt.date(2026, 12, 15)),
    ("Irodán kívül vagyok 2026.12.10. és 2026.12.16. között.", dt.date(2026, 12, 17)),  # between … and …
    # Portuguese
    ("Obrigado pela sua mensagem. Estarei ausente até 14/12/2026.", dt.date(2026, 12, 15)),
    (
        "Estou de férias até ao dia 18 de dezembro de 2026, com acesso limitado ao email.",
        dt.date(2026, 12, 19),
    ),
    ("Estarei fora do escritório de 10 a 14 de dezembro.", dt.date(2026, 12, 15)),
    ("Volto no dia 21 de dezembro.", dt.date(2026, 12, 21)),
    ("Retorno em 04/01/2027.", dt.date(2027, 1, 4)),
]


@pytest.mark.parametrize(("text", "back"), CORPUS, ids=[t[:40] for t, _ in CORPUS])
def test_stated_return(text: str, back: dt.date | None) -> None:
    assert stated_return(text, TODAY) == back


def test_a_date_without_a_year_long_gone_is_next_years() -> None:
    assert stated_return("I am away until 5 January.", dt.date(2026, 12, 20)) == dt.date(2027, 1, 6)
    assert stated_return("I am away until 5 January.", dt.date(2027, 1, 2)) == dt.date(2027, 1, 6)


WIDE = [(language, text, back) for language, entries in BY_LANGUAGE.items() for text, back in entries]


@pytest.mark.parametrize(("language", "text", "back"), WIDE, ids=[f"{lang}-{t[:40]}" for lang, t, _ in WIDE])
def test_stated_return_wide(language: str, text: str, back: dt.date | None) -> None:
    assert stated_return(text, WIDE_TODAY) == back, language


@pytest.mark.parametrize(("text", "back"), YEAR_END, ids=[t[:40] for t, _ in YEAR_END])
def test_stated_return_at_the_years_end(text: str, back: dt.date) -> None:
    assert stated_return(text, AT_YEAR_END) == back


def test_the_wide_corpus_covers_the_desks_languages() -> None:
    assert set(BY_LANGUAGE) == {"en", "de", "pl", "hu", "pt", "fr", "es", "it", "nl", "cs", "sv", "da"}
    assert all(any(back is None for _, back in entries) for entries in BY_LANGUAGE.values())
    assert len(WIDE) + len(YEAR_END) >= 110


def test_no_month_spelling_names_two_months() -> None:
    seen: dict[str, int] = {}
    for language, spellings in return_date_words.MONTHS_BY_LANGUAGE.items():
        months = spellings.split()
        assert len(months) == 12, language
        for number, names in enumerate(months, start=1):
            for name in names.split("|"):
                assert seen.setdefault(name, number) == number, (language, name)


@pytest.mark.parametrize(
    ("text", "today", "back"),
    [
        # an ambiguous slashed date: the reading nearer to the day the reply arrives, US or UK
        ("I am away until 05/01/2027.", dt.date(2026, 12, 20), dt.date(2027, 1, 6)),
        ("I am away until 01/05/2027.", dt.date(2026, 12, 20), dt.date(2027, 1, 6)),
        # ... unless the text shows its order elsewhere (a day above 12)
        ("Away from 12/21/2026 until 01/05/2027.", dt.date(2026, 12, 20), dt.date(2027, 1, 6)),
        ("Away from 21/12/2026 until 05/01/2027.", dt.date(2026, 12, 20), dt.date(2027, 1, 6)),
        ("Away from 21/12/2026 until 01/05/2027.", dt.date(2026, 12, 20), dt.date(2027, 5, 2)),
        # a range across the year's end without years
        ("Ich bin vom 21.12. bis 04.01. im Urlaub.", dt.date(2026, 12, 18), dt.date(2027, 1, 5)),
    ],
)
def test_date_order_and_year(text: str, today: dt.date, back: dt.date) -> None:
    assert stated_return(text, today) == back


def test_only_the_top_of_a_long_text_is_read() -> None:
    filler = "Disclaimer: this e-mail is confidential.\n" * (TEXT_LIMIT // 40)
    assert stated_return("I am away until 11 December.\n" + filler, TODAY) == dt.date(2026, 12, 12)
    assert stated_return(filler + "I am away until 11 December.", TODAY) is None
    assert stated_return("until" + " " * 50_000 + "11 December", TODAY) is None  # and costs nothing
