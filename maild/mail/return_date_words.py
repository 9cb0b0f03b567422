"""The words maild.mail.return_date reads out-of-office texts with, by language: month names, and the words
that say what a date is (the last day away, the first day back). A table: add a language by adding its
words here; the reader's rules do not change.

Languages: en de pl hu pt (PT and BR) fr es it nl cs sv da. Words are written lower case, with the
apostrophe ' (the reader turns ’ into '). Short month abbreviations that are also common words are left
out ("out" and "set" in Portuguese, "sie" in Polish: "I'm out 14-18 December" is not 14 October)."""

from __future__ import annotations

# Per language: the twelve months in order, separated by spaces; a month's spellings separated by "|".
MONTHS_BY_LANGUAGE: dict[str, str] = {
    "en": "january|jan february|feb march|mar april|apr may june|jun july|jul august|aug "
    "september|sep|sept october|oct november|nov december|dec",
    "de": "januar|jänner|jan februar|feb märz|maerz|mrz april|apr mai juni|jun juli|jul august|aug "
    "september|sep|sept oktober|okt november|nov dezember|dez",
    "pl": "stycznia|styczeń|styczen lutego|luty marca|marzec kwietnia|kwiecień|kwiecien maja|maj "
    "czerwca|czerwiec lipca|lipiec sierpnia|sierpień|sierpien września|wrzesnia|wrzesień|wrzesien "
    "października|pazdziernika|październik|pazdziernik listopada|listopad grudnia|grudzień|grudzien",
    "hu": "január|jan február|febr|feb március|márc|marc április|ápr|apr május|máj június|jún|jun "
    "július|júl|jul augusztus|aug szeptember|szept|szep október|okt november|nov december|dec",
    "pt": "janeiro|jan fevereiro|fev março|marco|mar abril|abr maio junho|jun julho|jul agosto "
    "setembro outubro novembro|nov dezembro|dez",
    "fr": "janvier|janv février|fevrier|févr|fevr mars avril|avr mai juin juillet|juil août|aout "
    "septembre|sept octobre novembre décembre|decembre|déc",
    "es": "enero|ene febrero|feb marzo|mar abril|abr mayo|may junio|jun julio|jul agosto "
    "septiembre|setiembre|sep|sept octubre|oct noviembre|nov diciembre|dic",
    "it": "gennaio|gen febbraio|feb marzo|mar aprile|apr maggio|mag giugno|giu luglio|lug agosto "
    "settembre|sett ottobre|ott novembre|nov dicembre|dic",
    "nl": "januari|jan februari|feb maart|mrt april|apr mei juni|jun juli|jul augustus|aug "
    "september|sep|sept oktober|okt november|nov december|dec",
    "cs": "ledna|leden února|unora|únor|unor března|brezna|březen|brezen dubna|duben května|kvetna|květen "
    "června|cervna|červen|cerven července|cervence|červenec|cervenec srpna|srpen září|zari "
    "října|rijna|říjen|rijen listopadu|listopad prosince|prosinec",
    "sv": "januari|jan februari|feb mars april|apr maj juni|jun juli|jul augusti|aug september|sep|sept "
    "oktober|okt november|nov december|dec",
    "da": "januar|jan februar|feb marts april|apr maj juni|jun juli|jul august|aug september|sep|sept "
    "oktober|okt november|nov december|dec",
}

# The last day away follows: "until 14 December", "bis zum 14.12.", "jusqu'au 14 décembre".
UNTIL = (
    "until", "till", "til", "through", "thru", "up to and including", "up until",  # en
    "bis", "bis zum", "bis zur", "bis am", "bis einschließlich", "bis inkl", "bis inkl.",  # de
    "do", "do dnia",  # pl, cs
    "até", "ate", "até ao", "até o", "até dia", "até ao dia", "até o dia",  # pt
    "jusqu'au", "jusqu'à", "jusqu'a", "jusqu au",  # fr
    "hasta", "hasta el", "hasta el día",  # es
    "fino al", "fino all'", "fino a", "sino al", "sino all'", "fino a tutto il", "fino al giorno",  # it
    "tot", "tot en met", "t/m", "tot op",  # nl
    "till och med", "fram till", "t.o.m.", "t.o.m",  # sv ("tom" alone is a name)
    "til og med", "til den", "indtil",  # da
)  # fmt: skip
# Words between an until-word and its date: "until the", "bis einschließlich", "do dnia", "até ao dia".
UNTIL_FILLERS = (
    "the", "and including", "inclusive", "dem", "den", "der", "einschließlich", "einschl.", "einschl", "inkl",
    "dnia", "dzień",
    "dia", "ao", "o", "le", "el", "día", "il", "giorno", "lo", "op", "og med", "och med", "a", "and",
)  # fmt: skip

# The first day back follows (within a few words): "back on", "zurück am", "de retour le", "rientro il".
BACK = (
    "back", "return", "returns", "returning", "return date", "again", "not before", "resume",
    "resuming",  # en
    "zurück", "wieder", "rückkehr", "nicht vor",  # de ("ab" starts an absence as often as it ends one)
    "wracam", "wrócę", "wroce", "powrót", "powrot", "z powrotem", "ponownie", "nie wcześniej niż",  # pl
    "vissza", "visszatérek", "visszatérés", "újra",  # hu
    "volto", "voltarei", "voltando", "de volta", "retorno", "retornarei", "retornando", "regresso",
    "regressarei", "regressando", "de regresso", "novamente", "não antes de",  # pt
    "retour", "reviendrai", "rentrerai", "reprendrai", "reprise", "de nouveau", "à nouveau",
    "pas avant",  # fr
    "regreso", "regresaré", "regresare", "vuelvo", "volveré", "volvere", "de vuelta", "reincorporo",
    "reincorporaré", "de nuevo", "nuevamente", "no antes del",  # es
    "rientro", "rientrerò", "rientrero", "ritorno", "tornerò", "tornero", "torno", "di ritorno", "riprenderò",
    "di nuovo", "nuovamente", "non prima del",  # it
    "terug", "weer", "niet voor",  # nl
    "zpět", "zpet", "zpátky", "vrátím", "vratim", "návrat", "navrat", "opět", "opet", "znovu",  # cs
    "tillbaka", "åter", "igen", "inte före",  # sv
    "tilbage", "ikke før",  # da
)  # fmt: skip
# ... or comes right after the date: "14.12. wieder", "15 grudnia wracam", "15. 12. zpět", "15/12 terug".
BACK_AFTER = (
    "back", "zurück", "wieder", "wracam", "wrócę", "volto", "voltarei", "de volta", "regresso", "retorno",
    "visszatérek", "vissza", "újra", "terug", "weer", "zpět", "zpátky", "tillbaka", "åter", "tilbage",
    "de retour", "di ritorno", "de vuelta", "opět", "znovu",
)  # fmt: skip
# "I will not return until 14 December" (Lotus Notes' own template), "no volveré hasta el 15": a negated
# return before an until-word names the first day back, not the last day away.
NEGATIONS = (
    "not", "n't", "no", "non", "não", "nao", "ne", "pas", "niet", "nicht", "ikke", "inte", "nem",
)  # fmt: skip
RETURN_VERBS = (
    "back", "return", "returning", "in the office", "available", "zurück", "zurückkehren", "wieder",
    "volveré", "volvere", "regresaré", "regresare", "rientrerò", "rientrero", "tornerò", "tornero",
    "voltarei", "retornarei", "de retour", "terug", "tillbaka", "tilbage", "zpět", "vrátím",
)  # fmt: skip
# The day after the date is the first day back: "back after 14 December", "nach dem 14.12.", "po 14.12.".
AFTER = (
    "after", "nach dem", "nach", "po", "após", "apos", "depois de", "après le", "apres le", "después del",
    "despues del", "dopo il", "efter", "efter den",
)  # fmt: skip
# Between a range's two dates: "10.12. - 14.12.", "from 10 to 14 December", "du 8 au 14", "dal 8 al 14".
RANGE_CONNECTORS = (
    "-", "to", "until", "till", "through", "thru", "bis", "do", "a", "até", "au", "al", "tot", "t/m", "til",
    "all'", "až",
)  # fmt: skip
# "and" joins a range only after "between": "between 7 and 11 December", "zwischen dem 7. und 11.12.";
# else it joins days ("closed on 25 December and 1 January").
BETWEEN = ("between", "zwischen", "entre", "tra", "tussen", "mezi", "mellan", "mellem", "między", "pomiędzy")
RANGE_AND = ("and", "und", "et", "e", "y", "en", "och", "og", "a", "i")
# A date after these words, in the same sentence, is someone else's: "If it is urgent, please email my
# manager, who is in the office until 11/12", "In dringenden Fällen wenden Sie sich bis 14.12. an …".
OTHERS = (
    "urgent", "urgently", "emergency", "emergencies", "colleague", "colleagues", "deputy", "manager",
    "please contact", "please call", "please email", "please e-mail", "please reach",  # en
    "dringend", "dringenden", "dringende", "eilig", "eiligen", "vertretung", "vertritt", "vertreten",
    "kollege", "kollegin", "kollegen", "wenden sie sich",  # de
    "urgence", "urgences", "collègue", "collègues", "veuillez contacter", "merci de contacter",  # fr
    "urgente", "urgentes", "urgencia", "compañero", "compañera", "contacte con",  # es
    "urgenti", "urgenza", "collega", "colleghi", "contattare",  # it
    "urgência", "colega", "colegas", "contacte", "entre em contato",  # pt
    "spoed", "spoedeisende", "collega's",  # nl
    "pilne", "pilnych", "pilnej", "pilnym", "proszę o kontakt", "kolega", "koleżanka", "zastępca",  # pl
    "naléhavé", "naléhavých", "urgentní", "kolegyně", "kontaktujte",  # cs
    "brådskande", "akut", "kollega", "kontakta",  # sv
    "haster", "hastende", "presserende",  # da
    "sürgős", "sürgősen", "kolléga", "kollégám", "keresse",  # hu
)  # fmt: skip
# Abbreviations whose dot ends no sentence (weekdays, "inclusive", titles).
ABBREVIATIONS = (
    "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun", "mo", "di", "mi", "do", "fr",
    "sa", "so", "lun", "mar", "mer", "jeu", "ven", "sam", "dim", "mié", "jue", "vie", "sáb", "gio", "ma",
    "wo", "vr", "za", "zo", "pon", "wt", "śr", "czw", "pt", "sob", "ndz", "po", "út", "st", "čt", "pá",
    "ne", "tis", "ons", "tor", "fre", "lör", "sön", "man", "tirs", "ons", "tors", "lør", "søn", "einschl",
    "inkl", "incl", "ca", "bzw", "tel", "nr", "dr", "hr", "mr", "mrs", "ms", "d", "p", "mgr", "inż", "ing",
    "prof", "dott", "sig", "sr", "sra", "m", "mme",
)  # fmt: skip
