"""French, Spanish and Italian out-of-office texts (agents of a European helpdesk): Outlook's localised
templates, Lotus Notes, hand-written ones; traps. Read on 2026-12-08 (a Tuesday)."""

# ruff: noqa: E501  (corpus data: the texts are long string literals)
from __future__ import annotations

import datetime as dt

D = dt.date
CORPUS: dict[str, list[tuple[str, dt.date | None]]] = {
    "fr": [
        (
            "Réponse automatique : [SUP-26-12-7] Imprimante\n\nBonjour, je suis absent(e) jusqu\u2019au vendredi "
            "11 décembre 2026 inclus. Pour toute urgence, merci de contacter le 01 23 45 67 89.",
            D(2026, 12, 12),
        ),
        (  # Lotus Notes
            "AUTO : Jean Dupont est absent(e) (retour le 14/12/2026)\n\nJe serai absent(e) du bureau à partir "
            "du 07/12/2026 de retour le 14/12/2026.",
            D(2026, 12, 14),
        ),
        ("Je suis en congés du 7 au 11 décembre. Je serai de retour le lundi 14 décembre.", D(2026, 12, 14)),
        ("Je ne serai pas de retour avant le 14 décembre.", D(2026, 12, 14)),
        ("Je serai joignable à nouveau à partir du 14 décembre.", D(2026, 12, 14)),
        ("Absent jusqu'au 1er janvier 2027.", D(2027, 1, 2)),
        ("Je suis absent jusqu\u2019à nouvel ordre.", None),
        ("Je suis absent depuis le 1er décembre.", None),
        # written before the reader was run on them
        ("Je suis actuellement en congé et serai de retour le 14/12.", D(2026, 12, 14)),
        ("Je serai absent du lundi 7 au vendredi 11 décembre inclus.", D(2026, 12, 12)),
        (
            "Je suis en déplacement jusqu'au 11/12 inclus, avec un accès limité à mes e-mails.",
            D(2026, 12, 12),
        ),
        # a second batch written before the reader was run on them
        ("Je suis absent jusqu'au 11.12.2026.", D(2026, 12, 12)),
        ("En congé jusqu'au lundi 14/12 inclus", D(2026, 12, 15)),
        (
            "Bonjour,\n\nJe suis actuellement absent et je reviendrai le 14 décembre 2026.\n\nCordialement",
            D(2026, 12, 14),
        ),
        # a third batch written before the reader was run on them
        (
            "Merci pour votre message. Je suis en congés jusqu'au 11 décembre inclus et je reprendrai le travail le lundi 14 décembre.",
            D(2026, 12, 14),
        ),
        (
            "Je suis absente du 07/12 au 11/12. En cas d'urgence, contactez le support au 01 02 03 04 05.",
            D(2026, 12, 12),
        ),
        # someone else's dates: an urgent contact, a colleague
        ("En cas d'urgence, mon collègue est joignable jusqu'au 18/12.", None),
        # a fourth batch written before the reader was run on them
        (
            "Je suis en formation jusqu'au vendredi 11 décembre. Je répondrai à votre message dès mon retour.",
            D(2026, 12, 12),
        ),
        ("Absente jusqu'au 11/12 inclus. Retour le 14/12.", D(2026, 12, 14)),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "Je suis absent jusqu'au 11 décembre. Nos bureaux seront fermés du 24 décembre au 1er janvier.",
            D(2026, 12, 12),
        ),
    ],
    "es": [
        (
            "Respuesta automática: [SUP-26-12-7]\n\nGracias por su mensaje. Estaré fuera de la oficina hasta el "
            "viernes 11 de diciembre de 2026, con acceso limitado al correo.",
            D(2026, 12, 12),
        ),
        (  # Lotus Notes
            "Estaré fuera de la oficina a partir del 07/12/2026 y no volveré hasta el 14/12/2026.",
            D(2026, 12, 14),
        ),
        (
            "Estoy de vacaciones del 7 al 11 de diciembre. Regresaré el lunes 14 de diciembre.",
            D(2026, 12, 14),
        ),
        ("Estaré de vuelta el 4 de enero de 2027.", D(2027, 1, 4)),
        ("Estaré de vacaciones hasta nuevo aviso.", None),
        # written before the reader was run on them
        (
            "Estaré ausente del 7 al 11 de diciembre, ambos inclusive. Para asuntos urgentes contacte con soporte@example.es.",
            D(2026, 12, 12),
        ),
        ("Me encuentro fuera de la oficina hasta el 11/12/2026.", D(2026, 12, 12)),
        # a second batch written before the reader was run on them
        ("Estaré fuera hasta el lunes 14 de diciembre (incluido).", D(2026, 12, 15)),
        ("Hola, estoy de baja hasta nuevo aviso. Para cualquier consulta escriba a soporte@example.es", None),
        # a third batch written before the reader was run on them
        ("Estoy fuera de la oficina. Me reincorporo el lunes 14 de diciembre.", D(2026, 12, 14)),
        ("Estaré de vacaciones desde el 7 hasta el 11 de diciembre.", D(2026, 12, 12)),
        # a fourth batch written before the reader was run on them
        ("Me encuentro de vacaciones. Volveré a la oficina el 14/12/2026.", D(2026, 12, 14)),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "Estoy de vacaciones hasta el 11 de diciembre. Para urgencias llame al 91 123 45 67.",
            D(2026, 12, 12),
        ),
    ],
    "it": [
        (
            "Risposta automatica: [SUP-26-12-7]\n\nGrazie per il messaggio. Sarò fuori ufficio fino all\u201911 "
            "dicembre compreso.",
            D(2026, 12, 12),
        ),
        ("Sarò in ferie dal 7 all'11 dicembre e rientrerò in ufficio lunedì 14 dicembre.", D(2026, 12, 14)),
        ("Rientro previsto: 14/12/2026.", D(2026, 12, 14)),
        ("Sono assente fino a nuovo avviso.", None),
        # written before the reader was run on them
        (
            "Sarò assente fino a venerdì 11 dicembre. Per urgenze contattare il numero 02 1234 5678.",
            D(2026, 12, 12),
        ),
        ("Sono in ferie fino al 11/12 compreso, rientro il 14/12.", D(2026, 12, 14)),
        # a second batch written before the reader was run on them
        ("Sarò assente dal 07.12 al 11.12.2026", D(2026, 12, 12)),
        (
            "Buongiorno, sono fuori ufficio fino al 11 dicembre con accesso limitato alla posta.",
            D(2026, 12, 12),
        ),
        # a third batch written before the reader was run on them
        ("Sono in ferie. Tornerò in ufficio il 14/12/2026.", D(2026, 12, 14)),
        ("Sarò assente da lunedì 7 a venerdì 11 dicembre.", D(2026, 12, 12)),
        # a fourth batch written before the reader was run on them
        ("Sono fuori ufficio per ferie fino all'11/12/2026 incluso.", D(2026, 12, 12)),
        ("Sarò fuori ufficio dal 07/12/2026 e rientrerò il 14/12/2026.", D(2026, 12, 14)),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "Sono assente fino all'11 dicembre; in caso di urgenza contattare il collega Marco Rossi.",
            D(2026, 12, 12),
        ),
    ],
}
