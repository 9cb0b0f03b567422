"""An agent's out-of-office reply to a notice, as Exchange/Outlook sends it in the desk's languages,
through the pipeline: it marks the agent away until the day its text states, and the customer's words
the reply's subject quotes ("Automatic reply: [SUP-…] <the customer's subject>") state nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.models import Agent, OutboxMessage
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    deliver,
    mail,
    make_agent,
    make_desk,
)

Factory = sessionmaker[Session]
ANNA = "anna@example.com"
NUMBER = "SUP-26-03-1"
CUSTOMER_SUBJECT = "Delivery promised until 20 March, still nothing"
EXCHANGE = (("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"))


def anna_answers_her_notice(factory: Factory, cfg: Config, prefix: str, body: str) -> dt.datetime | None:
    """A ticket from a customer; Anna's responder answers its notice; her away_until afterwards."""
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(factory, ANNA, "Anna", ["support"])
    assert deliver(factory, cfg, mail(subject=CUSTOMER_SUBJECT), SUPPORT).ticket_number == NUMBER
    with factory() as s:
        notices = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "new_ticket_notice")).all()
        [notice_id] = [n.message_id for n in notices if n.rcpt_to == [ANNA]]
    raw = mail(
        sender=f"Anna <{ANNA}>",
        subject=f"{prefix} [{NUMBER}] {CUSTOMER_SUBJECT}",
        body=body,
        message_id="<ooo-1@example.com>",
        extra=(*EXCHANGE, ("In-Reply-To", notice_id), ("References", notice_id)),
    )
    result = deliver(factory, cfg, raw, agent_address(factory, cfg, NUMBER, ANNA), now=NOW)
    assert "marked away by their out-of-office reply" in result.reason, result.reason
    with factory() as s:
        anna = s.scalars(select(Agent).where(Agent.email == ANNA)).one()
        assert anna.away_since is not None
        return anna.away_until


@pytest.mark.parametrize(
    ("prefix", "body", "until"),
    [
        (
            "Odpowiedź automatyczna:",
            "Dzień dobry, jestem na urlopie do 11.03.2026 r.",
            dt.datetime(2026, 3, 12),
        ),
        ("Réponse automatique :", "Je serai de retour le lundi 16 mars.", dt.datetime(2026, 3, 16)),
        ("Automatisch antwoord:", "Ik ben afwezig t/m vrijdag 13 maart.", dt.datetime(2026, 3, 14)),
        ("Automatická odpověď:", "Do 13. 3. 2026 jsem mimo kancelář.", dt.datetime(2026, 3, 14)),
        ("Automatic reply:", "I will not return until 03/16/2026.", dt.datetime(2026, 3, 16)),
        # no date of her own: away until she says #back, not until the customer's 20 March
        ("Automatic reply:", "I am out of the office with limited access to email.", None),
    ],
    ids=["pl", "fr", "nl", "cs", "en-notes", "en-no-date"],
)
def test_an_agents_localised_out_of_office_marks_them_away_until_its_date(
    session_factory: Factory, cfg: Config, prefix: str, body: str, until: dt.datetime | None
) -> None:
    assert anna_answers_her_notice(session_factory, cfg, prefix, body) == until
