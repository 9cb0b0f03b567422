"""Out-of-office texts as vacation responders and agents really write them, each with the first day back
it states (or None), read on TODAY (a Tuesday). Entries: (text, first day back). By language: en.py;
de_pl_hu_pt.py; fr_es_it.py; nl_cs_sv_da.py. Used by tests/test_presence_return_date.py."""

from __future__ import annotations

import datetime as dt

from tests.corpus_ooo import de_pl_hu_pt, en, fr_es_it, nl_cs_sv_da

TODAY = dt.date(2026, 12, 8)  # Tuesday; Friday is the 11th, Monday the 14th
Entry = tuple[str, dt.date | None]
BY_LANGUAGE: dict[str, list[Entry]] = {
    **en.CORPUS,
    **de_pl_hu_pt.CORPUS,
    **fr_es_it.CORPUS,
    **nl_cs_sv_da.CORPUS,
}
# Ranges across the year's end, read while the writer is away (a responder answers only then).
AT_YEAR_END = dt.date(2026, 12, 22)
YEAR_END: list[Entry] = [
    ("I am on leave from 20/12/2026 to 04/01/2027 inclusive.", dt.date(2027, 1, 5)),
    ("Ich bin vom 20.12.2026 - 04.01.2027 im Urlaub.", dt.date(2027, 1, 5)),
    ("Bitte beachten Sie: Unser Büro ist vom 24.12. bis 01.01. geschlossen.", dt.date(2027, 1, 2)),
    ("Je suis absente du 21/12/2026 au 03/01/2027.", dt.date(2027, 1, 4)),
    ("Sarò fuori sede dal 21/12/2026 al 06/01/2027.", dt.date(2027, 1, 7)),
    ("Jestem na urlopie od 21.12 do 4.01.", dt.date(2027, 1, 5)),
    ("Szabadságon vagyok 2026.12.21-től 2027.01.04-ig.", dt.date(2027, 1, 5)),
    ("Estou de férias de 21/12 a 04/01, retorno dia 05/01.", dt.date(2027, 1, 5)),
    ("Out of office until January 4th. Happy holidays!", dt.date(2027, 1, 5)),
    ("Ik ben afwezig van 21 december t/m 1 januari.", dt.date(2027, 1, 2)),
]
