"""RFC 3676 unflowing, and the sign-offs mail-parser-reply does not know."""

from __future__ import annotations

import pytest

from maild.mail.flowed import unflow
from maild.mail.signoffs import strip_signoff


def test_soft_breaks_join_and_hard_breaks_stay() -> None:
    text = "first line \nwraps here.\nhard break\n\nnext paragraph \nends"
    assert unflow(text) == "first line wraps here.\nhard break\n\nnext paragraph ends"


def test_the_signature_separator_is_never_a_soft_break() -> None:
    assert unflow("text\n-- \nKlaus") == "text\n-- \nKlaus"


def test_quote_depth_is_kept_and_a_depth_change_ends_a_paragraph() -> None:
    text = "> quoted \n> on\n>> deeper \n> back"
    assert unflow(text) == "> quoted on\n>> deeper\n> back"


def test_space_stuffing_and_delsp() -> None:
    assert unflow(" From the start") == "From the start"
    assert unflow("Donau\xaddampf \nschiff", delsp=True) == "Donau\xaddampfschiff"
    assert unflow("two \nwords", delsp=False) == "two words"


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("Jó napot!\n\nKérem.\n\nÜdvözlettel:\nKovács Péter", "Jó napot!\n\nKérem."),
        ("Olá,\n\nerro.\n\nAtenciosamente,\nJoão Pereira\nPereira & Filhos Ltda.", "Olá,\n\nerro."),
        ("Dzień dobry.\n\nSerdecznie pozdrawiam\nAnna", "Dzień dobry."),
        ("Ergänzung.\n\nVon meinem iPhone gesendet", "Ergänzung."),
        ("Segue.\n\nEnviado do meu iPhone", "Segue."),
        ("Hallo,\ngeht wieder.\n\nViele Grüße\nAnna Schmidt\nTel. 0761 1", "Hallo,\ngeht wieder."),
    ],
)
def test_sign_off_blocks_at_the_end_go(text: str, visible: str) -> None:
    assert strip_signoff(text) == visible


@pytest.mark.parametrize(
    "text",
    [
        "Obrigado pela ajuda, mas ainda falha.",  # a sentence that starts like a sign-off
        "Üdvözlettel:\nKovács Péter",  # nothing above it: the whole mail is the text
        "Problem:\n\nAtenciosamente,\n" + "\n".join(f"log line {n}" for n in range(10)),  # too long a block
    ],
)
def test_text_that_only_looks_like_a_sign_off_stays(text: str) -> None:
    assert strip_signoff(text) == text
