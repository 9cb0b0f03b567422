"""Dutch, Czech, Swedish and Danish out-of-office texts (agents of a European helpdesk): Outlook's
localised templates, Lotus Notes, hand-written ones; traps. Read on 2026-12-08 (a Tuesday)."""

# ruff: noqa: E501  (corpus data: the texts are long string literals)
from __future__ import annotations

import datetime as dt

D = dt.date
CORPUS: dict[str, list[tuple[str, dt.date | None]]] = {
    "nl": [
        (
            "Automatisch antwoord: [SUP-26-12-7]\n\nBedankt voor uw bericht. Ik ben tot en met vrijdag 11 "
            "december afwezig. Vanaf maandag 14 december ben ik weer aanwezig.",
            D(2026, 12, 14),
        ),
        ("Ik ben vanaf 07-12-2026 afwezig en keer terug op 14-12-2026.", D(2026, 12, 14)),  # Lotus Notes
        ("Ik ben met vakantie t/m 11-12-2026.", D(2026, 12, 12)),
        ("Ik ben van 7 tot 11 december niet aanwezig.", D(2026, 12, 12)),
        ("Ik ben tot nader bericht afwezig.", None),
        # written before the reader was run on them
        ("Ik ben afwezig tot maandag 14 december.", D(2026, 12, 15)),
        ("Ik ben op 14 december weer op kantoor.", D(2026, 12, 14)),
        ("Vanaf 14-12-2026 ben ik weer bereikbaar.", D(2026, 12, 14)),
        # a second batch written before the reader was run on them
        ("Ik ben afwezig van maandag 7 december tot en met vrijdag 11 december.", D(2026, 12, 12)),
        ("Op maandag 14 december ben ik weer terug.", D(2026, 12, 14)),
        # a third batch written before the reader was run on them
        ("Ik ben momenteel niet aanwezig. Vanaf 14 december ben ik weer bereikbaar.", D(2026, 12, 14)),
        ("Tot en met 11 december ben ik met verlof.", D(2026, 12, 12)),
        # a fourth batch written before the reader was run on them
        ("Ik ben afwezig tot 14-12-2026.", D(2026, 12, 15)),
        ("Ik ben de hele week afwezig, maandag 14 december ben ik weer op kantoor.", D(2026, 12, 14)),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "Ik ben afwezig tot en met 11 december. Voor dringende zaken kunt u contact opnemen met mijn collega.",
            D(2026, 12, 12),
        ),
    ],
    "cs": [
        (
            "Automatická odpověď: [SUP-26-12-7]\n\nDobrý den, do 11. 12. 2026 jsem mimo kancelář. Od 14. 12. "
            "budu opět k dispozici.",
            D(2026, 12, 14),
        ),
        ("Jsem na dovolené od 7. do 11. prosince 2026.", D(2026, 12, 12)),
        ("Do kanceláře se vrátím 14. prosince.", D(2026, 12, 14)),
        ("Jsem mimo kancelář až do odvolání.", None),
        # written before the reader was run on them
        ("Jsem na dovolené do pátku 11. 12. 2026.", D(2026, 12, 12)),
        ("Jsem mimo kancelář od 7. 12. do 11. 12. 2026.", D(2026, 12, 12)),
        # a second batch written before the reader was run on them
        ("V termínu 7.\u201311. 12. 2026 čerpám dovolenou.", D(2026, 12, 12)),
        # a third batch written before the reader was run on them
        (
            "Dobrý den, jsem na služební cestě do pátku 11. prosince. Vrátím se v pondělí 14. prosince.",
            D(2026, 12, 14),
        ),
        # a fourth batch written before the reader was run on them
        (
            "Do 11.12.2026 čerpám dovolenou. V naléhavých případech kontaktujte kolegu na tel. 123 456 789.",
            D(2026, 12, 12),
        ),
    ],
    "sv": [
        (
            "Automatiskt svar: [SUP-26-12-7]\n\nTack för ditt mejl. Jag är på semester till och med 11 december "
            "och är tillbaka måndag 14 december.",
            D(2026, 12, 14),
        ),
        ("Jag är föräldraledig t.o.m. 2026-12-11.", D(2026, 12, 12)),
        ("Jag är åter på kontoret den 14 december.", D(2026, 12, 14)),
        ("Jag är borta fram till 11 december.", D(2026, 12, 12)),
        ("Jag är tjänstledig tills vidare.", None),
        # written before the reader was run on them
        ("Jag är ledig till och med fredag 11/12.", D(2026, 12, 12)),
        ("Jag är tillbaka på kontoret måndag den 14 december.", D(2026, 12, 14)),
        # a second batch written before the reader was run on them
        ("Jag är på semester v. 50 och tillbaka 14/12.", D(2026, 12, 14)),
        ("Hej! Jag är föräldraledig och åter i tjänst 2027-01-11.", D(2027, 1, 11)),
        # a third batch written before the reader was run on them
        ("Jag är tillbaka den 14/12 och besvarar ditt mejl då.", D(2026, 12, 14)),
        ("Jag är på tjänsteresa 7-11 december.", D(2026, 12, 12)),
        # a fourth batch written before the reader was run on them
        ("Jag är ledig och tillbaka på jobbet måndag 14 december.", D(2026, 12, 14)),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "Jag är ledig till 11 december. Vid brådskande ärenden, kontakta min kollega som är på plats till 18 december.",
            D(2026, 12, 12),
        ),
    ],
    "da": [
        (
            "Autosvar: [SUP-26-12-7]\n\nTak for din mail. Jeg holder ferie til og med den 11. december og er "
            "tilbage mandag den 14. december.",
            D(2026, 12, 14),
        ),
        ("Jeg er på kursus fra 7. til 11. december.", D(2026, 12, 12)),
        ("Jeg er tilbage den 14.12.2026.", D(2026, 12, 14)),
        ("Jeg er fraværende indtil fredag den 11. december 2026.", D(2026, 12, 12)),
        ("Jeg er syg indtil videre.", None),
        # written before the reader was run on them
        ("Jeg er på ferie frem til og med 11. december.", D(2026, 12, 12)),
        ("Jeg har ferie i uge 50 og er tilbage mandag d. 14/12.", D(2026, 12, 14)),
        # a second batch written before the reader was run on them
        ("Jeg er på barsel til 1. marts 2027.", D(2027, 3, 2)),
        # a third batch written before the reader was run on them
        ("Jeg er på ferie fra mandag den 7. december til og med fredag den 11. december.", D(2026, 12, 12)),
        ("Jeg er tilbage på kontoret mandag d. 14. december 2026.", D(2026, 12, 14)),
        # a fourth batch written before the reader was run on them
        ("Jeg holder juleferie og er tilbage den 4. januar 2027.", D(2027, 1, 4)),
    ],
}
