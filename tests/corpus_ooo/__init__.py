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
