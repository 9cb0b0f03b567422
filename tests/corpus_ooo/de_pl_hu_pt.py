"""German, Polish, Hungarian and Portuguese (PT and BR) out-of-office texts: Outlook's localised
templates, Lotus Notes, hand-written ones; traps. Read on 2026-12-08 (a Tuesday)."""

# ruff: noqa: E501  (corpus data: the texts are long string literals)
from __future__ import annotations

import datetime as dt

D = dt.date
CORPUS: dict[str, list[tuple[str, dt.date | None]]] = {
    "de": [
        (
            "Automatische Antwort: [SUP-26-12-7] Drucker defekt\n\nVielen Dank für Ihre Nachricht. Ich bin bis "
            "einschließlich 11.12.2026 nicht im Büro. Ab dem 14.12.2026 bin ich wieder für Sie erreichbar. "
            "In dringenden Fällen wenden Sie sich bitte an Frau Müller (Tel. 030 1234 5678).",
            D(2026, 12, 14),
        ),
        (  # Lotus Notes
            "AUTO: Hans Muster ist außer Haus (Rückkehr am 14.12.2026)\n\nIch werde ab 07.12.2026 nicht im Büro "
            "sein. Ich kehre zurück am 14.12.2026.",
            D(2026, 12, 14),
        ),
        (
            "Abwesenheitsnotiz: Ihre Anfrage\n\nIch bin vom 08.12. \u2013 14.12.2026 im Urlaub. Ihre E-Mail wird "
            "nicht weitergeleitet.",
            D(2026, 12, 15),
        ),
        ("Ich bin bis 12 Uhr am Freitag, 11.12., nicht erreichbar.", D(2026, 12, 11)),
        ("Ich bin bis Freitag, den 11. Dezember 2026 abwesend und ab Montag wieder da.", D(2026, 12, 12)),
        ("Ich bin derzeit nicht im Büro und ab dem 14. Dezember wieder erreichbar.", D(2026, 12, 14)),
        ("Ich bin bis am 11.12.2026 abwesend.", D(2026, 12, 12)),  # Swiss
        ("Ich bin nach dem 11.12. wieder erreichbar.", D(2026, 12, 12)),
        ("Ich bin erst am 14.12. wieder im Haus.", D(2026, 12, 14)),
        ("Ich bin zwischen dem 7. und 11. Dezember nicht im Büro.", D(2026, 12, 12)),
        (
            "Sehr geehrte Damen und Herren,\n\nich bin bis\u00a0zum\u00a014.\u00a012.\u00a02026 nicht im Büro.",
            D(2026, 12, 15),
        ),
        (
            "Vielen Dank für Ihre E-Mail vom 08.12.2026. Ich bin ab 21.12.2026 im Urlaub und ab 04.01.2027 "
            "wieder da.",
            D(2027, 1, 4),
        ),
        ("Ich bin bis auf Weiteres nicht erreichbar. Seit dem 1.12. bin ich in Elternzeit.", None),
        ("Ich bin ab Montag wieder im Büro.", None),
        ("Ich bin diese Woche nicht im Büro. Mit freundlichen Grüßen\nMusterstraße 14, 12345 Berlin", None),
        # written before the reader was run on them
        ("Ich bin ab dem 7.12. für zwei Wochen im Urlaub.", None),  # "ab" (from): a start, not a return
        (
            "Ich befinde mich bis zum 11. Dezember 2026 im Urlaub. Ihre Nachricht wird nicht weitergeleitet. In dringenden Fällen wenden Sie sich bitte an service@example.de.",
            D(2026, 12, 12),
        ),
        ("Ich bin am 10. und 11.12. nicht im Büro.", None),
        ("Ich bin bis inkl. 11.12. nicht erreichbar.", D(2026, 12, 12)),
        ("Bin ab Mo, 14.12. wieder da.", D(2026, 12, 14)),
        # a second batch written before the reader was run on them
        ("Ich bin vom Mo. 7.12. bis Fr. 11.12. abwesend.", D(2026, 12, 12)),
        ("Bin bis 11.12. im Urlaub \u2013 ab 14.12. wieder erreichbar.", D(2026, 12, 14)),
        ("Bitte senden Sie Ihre Nachricht nach dem 14.12. erneut.", D(2026, 12, 15)),
        (
            "Ich bin nicht im Büro.\n\n--\nTel.: +49 (0)30 12.34.56-78\nGeschäftsführer: Max Muster | Amtsgericht Berlin HRB 12345\nBürozeiten: Mo-Fr 9:00-17:00",
            None,
        ),
        ("Hinweis: Ich arbeite in Teilzeit (Mo-Mi). Bis 11.12. bin ich im Urlaub.", D(2026, 12, 12)),
        # a third batch written before the reader was run on them
        (
            "Guten Tag, vom 07.12.2026 bis einschließlich 11.12.2026 bin ich nicht im Hause. Ab Montag, den 14.12.2026, bin ich wieder für Sie da.",
            D(2026, 12, 14),
        ),
        (
            "Ich bin bis zum 11.12. auf Dienstreise und habe nur eingeschränkt Zugriff auf E-Mails.",
            D(2026, 12, 12),
        ),
        ("Ich bin am 14.12.2026 zurück im Büro.", D(2026, 12, 14)),
        ("Vielen Dank! Ihre Anfrage vom 07.12.2026 ist eingegangen. Ich bin bis Ende der Woche krank.", None),
        ("Ich bin in Elternzeit bis voraussichtlich 31.03.2027.", D(2027, 4, 1)),
        # someone else's dates: an urgent contact, a colleague
        (
            "Meine Kollegin ist in dringenden Fällen bis 18.12. erreichbar. Ich bin ab 14.12. wieder da.",
            D(2026, 12, 14),
        ),
        # a greeting to colleagues is not an urgent contact
        ("Liebe Kolleginnen und Kollegen,\nich bin bis 11.12. im Urlaub.", D(2026, 12, 12)),
        # a fourth batch written before the reader was run on them
        (
            "Ich bin vom 09. bis 11. Dezember 2026 nicht im Büro und ab dem 14. Dezember 2026 wieder erreichbar.",
            D(2026, 12, 14),
        ),
        ("Abwesend bis einschl. Fr., 11.12.2026", D(2026, 12, 12)),
        (
            "Ich bin ab sofort bis zum 11.12.2026 nicht erreichbar. Ihre E-Mail wird nicht weitergeleitet.",
            D(2026, 12, 12),
        ),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "Ich bin bis 11.12. nicht da. Ab 1.1.2027 lautet meine neue Telefonnummer 030 123456.",
            D(2026, 12, 12),
        ),
        (
            "Ich bin im Urlaub. Ihre Nachricht vom 07.12.2026 wird nach meiner Rückkehr am 14.12.2026 bearbeitet.",
            D(2026, 12, 14),
        ),
        ("Ich bin auf Fortbildung (bis 11.12.).", D(2026, 12, 12)),
    ],
    "pl": [
        (
            "Odpowiedź automatyczna: [SUP-26-12-7]\n\nDzień dobry, jestem na urlopie do 11.12.2026 r. W pilnych "
            "sprawach proszę o kontakt z biurem: +48 22 123 45 67.",
            D(2026, 12, 12),
        ),
        ("Przebywam na urlopie w dniach 07.12-11.12.2026. Wracam 14 grudnia.", D(2026, 12, 14)),
        ("Jestem poza biurem od 7 do 11 grudnia.", D(2026, 12, 12)),
        ("Będę dostępny ponownie od 14.12.2026.", D(2026, 12, 14)),
        ("Jestem na zwolnieniu lekarskim do odwołania.", None),
        # written before the reader was run on them
        ("Jestem na urlopie do piątku 11 grudnia włącznie.", D(2026, 12, 12)),
        ("Do 11.12.2026 przebywam na urlopie, wracam 14.12.", D(2026, 12, 14)),
        # a second batch written before the reader was run on them
        ("Jestem na urlopie od 07.12.2026 do 11.12.2026 (włącznie).", D(2026, 12, 12)),
        ("Nie ma mnie w biurze do 11 grudnia.", D(2026, 12, 12)),
        # a third batch written before the reader was run on them
        ("Witam, jestem poza biurem do dnia 11.12.2026. Odpowiem po powrocie.", D(2026, 12, 12)),
        ("Będę niedostępny w dniach 7-11 grudnia.", D(2026, 12, 12)),
        # a fourth batch written before the reader was run on them
        ("Przebywam na urlopie. Wracam do pracy 14 grudnia 2026 r.", D(2026, 12, 14)),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "Jestem na urlopie do 11.12. W sprawach pilnych proszę kontaktować się z p. Kowalskim do 18.12.",
            D(2026, 12, 12),
        ),
    ],
    "hu": [
        (
            "Automatikus válasz: [SUP-26-12-7]\n\nTisztelt Feladó! 2026. december 11-ig szabadságon vagyok, "
            "december 14-től újra elérhető leszek.",
            D(2026, 12, 14),
        ),
        ("Házon kívül vagyok 2026.12.07-2026.12.11. között.", D(2026, 12, 12)),
        ("Szabadságon vagyok december 18-ig.", D(2026, 12, 19)),
        ("Szabadságon vagyok, visszatérésem időpontja még nem ismert.", None),
        # written before the reader was run on them
        ("Szabadságon vagyok, 2026. december 14-én érkezem vissza.", D(2026, 12, 14)),
        ("Szabadságon vagyok dec. 11-ig.", D(2026, 12, 12)),
        # a second batch written before the reader was run on them
        ("Tisztelt Partnerünk! December 7. és 11. között szabadságon vagyok.", D(2026, 12, 12)),
        ("2026. december 14-én visszatérek.", D(2026, 12, 14)),
        # a third batch written before the reader was run on them
        ("Szabadság miatt 2026.12.11-ig nem vagyok elérhető.", D(2026, 12, 12)),
        # a fourth batch written before the reader was run on them
        ("Házon kívül vagyok december 11-ig. Sürgős esetben keresse kollégámat.", D(2026, 12, 12)),
    ],
    "pt": [
        (  # Portugal
            "Resposta automática: [SUP-26-12-7]\n\nObrigado pelo seu email. Encontro-me ausente até dia 11 de "
            "dezembro, com acesso limitado ao email. Regresso a 14 de dezembro.",
            D(2026, 12, 14),
        ),
        (  # Brazil
            "Olá! Estou de férias de 07/12 a 11/12/2026 e retorno no dia 14/12. Em caso de urgência, ligue "
            "(11) 3456-7890.",
            D(2026, 12, 14),
        ),
        ("Estarei fora do escritório até segunda-feira, 14 de dezembro de 2026.", D(2026, 12, 15)),
        ("Estou ausente por tempo indeterminado.", None),
        # written before the reader was run on them
        ("Estou em férias até 11/12. Volto dia 14/12.", D(2026, 12, 14)),
        # a second batch written before the reader was run on them
        ("Até 11/12 estarei de férias. A partir de 14/12 estarei de volta.", D(2026, 12, 14)),
        # a third batch written before the reader was run on them
        ("Estou de licença até o dia 11 de dezembro. Retorno no dia 14.", D(2026, 12, 12)),
        ("Encontro-me de férias, regressando a 14 de Dezembro.", D(2026, 12, 14)),
        # a fourth batch written before the reader was run on them
        ("Estarei ausente de 07 a 11 de dezembro de 2026, com acesso limitado aos emails.", D(2026, 12, 12)),
    ],
}
