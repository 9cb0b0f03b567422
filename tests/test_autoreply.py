"""Automatic mail (issue 5 item 1): every rule of maild.mail.automatic, the autoreply stage in the pipeline
(flagged, stored, never answered), and the outgoing guard (bouncing and blocked recipients dropped,
automatic mail rate-limited per address)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, Hygiene
from maild.mail.automatic import (
    AUTO_GENERATED,
    CHALLENGE_RESPONSE,
    LIST,
    OUT_OF_OFFICE,
    Verdict,
    classify,
    envelope_sender,
    read_headers,
)
from maild.outbound.outgoing import queue_desk_mail, queue_mail
from maild.pipeline.runner import Result, process
from maild.storage.db import transaction
from maild.storage.models import AutoReplySent, BlockEntry, Contact, Desk, Message
from maild.storage.spool import record_received, write_raw
from tests.conftest import run_cli
from tests.pipeline.helpers import (
    NOW,
    SUP_PATTERN,
    SUPPORT,
    client_mail,
    deliver,
    mail,
    make_desk,
    messages,
    outbox,
    spool,
    ticket,
    tickets,
)

Factory = sessionmaker[Session]
ALICE = "alice@customer.example"


def verdict(
    *headers: tuple[str, str],
    subject: str = "Printer on fire",
    sender: str = ALICE,
    envelope: str | None = None,
    is_reply: bool = False,
) -> Verdict | None:
    raw = mail(sender=sender, subject=subject, extra=headers)
    return classify(read_headers(raw), subject=subject, sender=sender, envelope=envelope, is_reply=is_reply)


def kind(*headers: tuple[str, str], **options: object) -> str | None:
    found = verdict(*headers, **options)  # type: ignore[arg-type]
    return found.kind if found else None


# --- the rules, one by one ----------------------------------------------------------------------------


def test_a_persons_mail_is_not_automatic() -> None:
    assert verdict() is None


@pytest.mark.parametrize(
    ("headers", "expected", "reason"),
    [
        ([("Auto-Submitted", "auto-replied")], OUT_OF_OFFICE, "Auto-Submitted: auto-replied"),
        ([("Auto-Submitted", "Auto-Replied (vacation)")], OUT_OF_OFFICE, "Auto-Submitted: auto-replied"),
        ([("Auto-Submitted", 'auto-replied; owner-email="a@b.example"')], OUT_OF_OFFICE, "auto-replied"),
        ([("Auto-Submitted", "auto-generated")], AUTO_GENERATED, "Auto-Submitted: auto-generated"),
        ([("Auto-Submitted", "auto-notified")], AUTO_GENERATED, "Auto-Submitted: auto-notified"),
        ([("Precedence", "bulk")], LIST, "Precedence: bulk"),
        ([("Precedence", "list")], LIST, "Precedence: list"),
        ([("Precedence", "junk")], AUTO_GENERATED, "Precedence: junk"),
        ([("Precedence", "auto_reply")], OUT_OF_OFFICE, "Precedence: auto_reply"),
        ([("X-Autoreply", "yes")], OUT_OF_OFFICE, "X-Autoreply: yes"),
        ([("X-Autorespond", "Vacation message")], OUT_OF_OFFICE, "X-Autorespond"),
        ([("X-Auto-Response-Suppress", "All")], AUTO_GENERATED, "X-Auto-Response-Suppress: All"),
        ([("List-Id", "Users <users.lists.example.org>")], LIST, "List-Id"),
        ([("List-Unsubscribe", "<mailto:leave@lists.example.org>")], LIST, "List-Unsubscribe"),
        ([("X-Boxtrapper", "abc123")], CHALLENGE_RESPONSE, "X-Boxtrapper"),
        ([("X-TMDA-Fingerprint", "Zm9v")], CHALLENGE_RESPONSE, "X-TMDA-Fingerprint"),
    ],
)
def test_each_header_rule(headers: Sequence[tuple[str, str]], expected: str, reason: str) -> None:
    found = verdict(*headers)
    assert found is not None and found.kind == expected
    assert reason in found.reason


@pytest.mark.parametrize(
    "headers",
    [
        [("Auto-Submitted", "no")],
        [("Auto-Submitted", "No (a person wrote this)")],
        [("Precedence", "first-class")],
        [("X-Autoreply", "no")],
        # A request not to be answered by Exchange, as distribution lists and clients write it on mail
        # people wrote: only `All` says the mail itself is automatic.
        [("X-Auto-Response-Suppress", "DR, OOF, AutoReply")],
        [("X-Auto-Response-Suppress", "OOF")],
        # A ticket system's agent reply (a person) carries the system's headers too.
        [("X-Mailer", "Zendesk Mailer"), ("X-Zendesk-From-Account-Id", "7d41c2a")],
        [("X-Loop", "yes")],
    ],
)
def test_what_is_not_a_sign_of_a_robot(headers: Sequence[tuple[str, str]]) -> None:
    assert verdict(*headers) is None


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Mailer", "Zendesk Mailer"), ("Auto-Submitted", "auto-replied")],
        [("X-Mailer", "osTicket Mailer"), ("Precedence", "auto_reply"), ("X-Autoreply", "yes")],
        [("X-Freshdesk-Ticket-Id", "19283"), ("Auto-Submitted", "auto-replied")],
        [("X-Mailer", "OTRS Mail Service (6.0.38)"), ("X-Loop", "yes"), ("Precedence", "bulk")],
        [("X-Mailer", "Znuny Mail Service"), ("Auto-Submitted", "auto-generated")],
        [("X-JIRA-FingerPrint", "3f5b7d9e"), ("Precedence", "bulk")],
        [("RT-Ticket", "rt.example #1"), ("Managed-BY", "RT 5.0.5"), ("Precedence", "bulk")],
        [("X-HelpScout-Conversation", "1"), ("X-Auto-Response-Suppress", "OOF")],
    ],
)
def test_a_ticket_systems_automatic_mail_is_auto_generated(headers: Sequence[tuple[str, str]]) -> None:
    found = verdict(*headers)
    assert found is not None and found.kind == AUTO_GENERATED
    assert found.reason.startswith("ticket system")


def test_rts_autoreply_subject_is_a_ticket_systems_acknowledgement() -> None:
    rt = [("RT-Ticket", "physics.example.edu #90412"), ("X-RT-Loop-Prevention", "physics.example.edu")]
    assert kind(*rt, subject="[physics.example.edu #90412] AutoReply: Cluster account") == AUTO_GENERATED


@pytest.mark.parametrize(
    ("header", "subject"),
    [
        ((), "Please confirm your message"),
        ((), "[SpamArrest] Please confirm your message to bob@example.org"),
        ((), "Your email requires verification verify#8f3a1c2d"),
        ((), "Your message to ken@example.org is awaiting verification"),
        ((), "Please verify you are a human"),
        ((), "Bitte bestätigen Sie Ihre Nachricht"),
        ((("X-SpamArrest-Id", "1"),), "Re: Invoice"),
    ],
)
def test_challenge_response(header: tuple[tuple[str, str], ...], subject: str) -> None:
    assert kind(*header, subject=subject) == CHALLENGE_RESPONSE


def test_a_challenge_service_sender_is_a_challenge() -> None:
    assert kind(sender="verify@spamarrest.com") == CHALLENGE_RESPONSE


def test_a_person_asking_about_confirmation_is_not_a_challenge() -> None:
    assert verdict(subject="Re: Please confirm your message was received") is None
    assert verdict(subject="How do I verify my email address?") is None


# --- out-of-office subjects per language group ----------------------------------------------------------

OUT_OF_OFFICE_SUBJECTS = {
    "en": ["Out of Office: Printer", "Automatic reply: [SUP-1] Printer", "Autoreply: hello", "Auto-Reply - x",
           "Out of the office", "Automatic Response: Re: order"],
    "de": ["Abwesenheitsnotiz: Rechnung", "Automatische Antwort: AW: Drucker", "Nicht im Büro: Termin"],
    "fr": ["Réponse automatique : Facture", "Message d'absence", "Absent du bureau: question"],
    "es": ["Respuesta automática: Factura", "Fuera de la oficina: consulta"],
    "it": ["Risposta automatica: Fattura", "Fuori sede: richiesta"],
    "pt": ["Resposta automática: Fatura", "Fora do escritório: pedido"],
    "nl": ["Automatisch antwoord: Factuur", "Niet aanwezig: vraag"],
    "hu": ["Házon kívül: Számla", "Automatikus válasz: kérdés"],
    "pl": ["Automatyczna odpowiedź: Faktura", "Poza biurem: pytanie"],
    "sv": ["Automatiskt svar: Faktura", "Autosvar: fråga"],
    "da/no": ["Automatisk svar: Faktura", "Ikke på kontoret: spørgsmål"],
    "fi": ["Automaattinen vastaus: Lasku", "Poissa toimistosta: kysymys"],
    "cs/sk": ["Automatická odpověď: Faktura", "Automatická odpoveď: otázka"],
    "other": ["Răspuns automat: Factură", "Otomatik yanıt: Fatura", "Автоматический ответ: Счёт",
              "自動応答: 請求書", "自动回复: 发票"],
}  # fmt: skip


@pytest.mark.parametrize("language", sorted(OUT_OF_OFFICE_SUBJECTS))
def test_out_of_office_subjects(language: str) -> None:
    for subject in OUT_OF_OFFICE_SUBJECTS[language]:
        found = verdict(subject=subject)
        assert found is not None and found.kind == OUT_OF_OFFICE, subject
        assert found.reason.startswith("out-of-office subject")


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Automatic replies stopped working",
        "RE: Réponse automatique non reçue",
        "Out of office hours support?",
        "Automatic reply settings in Outlook do not save",
        "I was out of office last week",
        "AW: Abwesenheitsnotiz einrichten",
    ],
)
def test_a_persons_subject_about_out_of_office_is_not_one(subject: str) -> None:
    assert verdict(subject=subject) is None


@pytest.mark.parametrize("subject", ["Absence: Re: [SUP-1] Printer", "Afwezig: Factuur", "Ausente: Factura"])
def test_short_out_of_office_words_count_only_on_a_reply(subject: str) -> None:
    assert kind(subject=subject, is_reply=True) == OUT_OF_OFFICE
    assert verdict(subject=subject, is_reply=False) is None  # "Absence: how do I book parental leave?"


# --- senders and the envelope ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "noreply@shop.example",
        "no-reply@accounts.example",
        "no_reply@bank.example",
        "donotreply@bank.example",
        "do-not-reply@bank.example",
        "MAILER-DAEMON@mx.example.org",
        "jira-noreply@acme.example",
        "noreply+billing@acme.example",
    ],
)
def test_robot_senders_are_auto_generated(sender: str) -> None:
    found = verdict(sender=sender)
    assert found is not None and (found.kind, found.reason) == (AUTO_GENERATED, f"sender {sender}")


@pytest.mark.parametrize(
    "sender", ["noreen.reply@customer.example", "info@shop.example", "nora@no-reply.example"]
)
def test_people_whose_address_looks_a_little_like_a_robot(sender: str) -> None:
    assert verdict(sender=sender) is None


def test_an_empty_envelope_sender_is_automatic_an_unknown_one_is_not() -> None:
    found = verdict(envelope="")
    assert found is not None and (found.kind, found.reason) == (AUTO_GENERATED, "envelope sender <>")
    assert verdict(envelope=None) is None
    assert verdict(envelope=ALICE) is None
    assert kind(envelope="MAILER-DAEMON") == AUTO_GENERATED  # Postfix's default null_sender replacement


def test_envelope_sender_null_known_and_unknown() -> None:
    plain = read_headers(mail())
    with_null = read_headers(mail(extra=[("Return-Path", "<>")]))
    with_address = read_headers(mail(extra=[("Return-Path", "<alice@customer.example>")]))
    # "<>" is a null sender the ingress saw (MAIL FROM:<>, maild pipe --sender '').
    assert envelope_sender("<>", plain) == ""
    assert envelope_sender(ALICE, plain) == ALICE
    assert envelope_sender(ALICE, with_null) == ALICE  # the envelope wins over a header
    # "" is an ingress that did not say (pipe without --sender, IMAP): the delivering MTA's Return-Path tells.
    assert envelope_sender("", plain) is None
    assert envelope_sender("", with_null) == ""
    assert envelope_sender("", with_address) == ALICE


# --- the stage in the pipeline --------------------------------------------------------------------------


def deliver_lmtp(factory: Factory, cfg: Config, raw: bytes, mail_from: str, now: dt.datetime = NOW) -> Result:
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(factory) as session:
        spool_id = record_received(session, digest, len(raw), SUPPORT, "lmtp", mail_from).id
    return process(factory, cfg, spool_id, now)


def test_an_out_of_office_mail_opens_a_flagged_ticket_and_gets_no_answer(
    session_factory: Factory, cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    raw = mail(subject="Automatic reply: Printer on fire", extra=[("Auto-Submitted", "auto-generated")])

    result = deliver(session_factory, cfg, raw, SUPPORT)

    assert result.outcome == "created" and result.outbox_ids == ()
    with session_factory() as s:
        [message] = messages(s)
        assert message.automatic == OUT_OF_OFFICE
        assert outbox(s) == []
        [row] = spool(s)
        assert "not answered: automatic mail (out-of-office: out-of-office subject" in row.reason


def test_an_automatic_reply_joins_the_ticket_flagged(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    first = deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as s:
        [auto_reply] = outbox(s)
    ooo = client_mail(
        "outlook",
        subject=f"Automatic reply: [{first.ticket_number}] Printer on fire",
        in_reply_to=auto_reply.message_id,
        references=[auto_reply.message_id],
    )

    result = deliver(session_factory, cfg, ooo, SUPPORT)

    assert (result.outcome, result.ticket_number, result.outbox_ids) == ("replied", first.ticket_number, ())
    with session_factory() as s:
        assert [m.automatic for m in messages(s)] == [None, OUT_OF_OFFICE]
        assert len(outbox(s)) == 1
    # an agent sees the flag on the ticket
    shown = run_cli("maildctl", "ticket", "show", str(first.ticket_number), "--json", config=config_file)
    assert shown.returncode == 0, shown.stderr
    assert [m["automatic"] for m in json.loads(shown.stdout)["messages"]] == [None, OUT_OF_OFFICE]


def test_a_null_envelope_sender_over_lmtp_gets_no_answer(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)

    result = deliver_lmtp(session_factory, cfg, mail(), "<>")

    assert result.outcome == "created" and result.outbox_ids == ()
    with session_factory() as s:
        assert [m.automatic for m in messages(s)] == [AUTO_GENERATED]


def test_a_person_over_lmtp_is_answered(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)

    result = deliver_lmtp(session_factory, cfg, mail(), ALICE)

    assert result.outcome == "created" and len(result.outbox_ids) == 1
    with session_factory() as s:
        assert [m.automatic for m in messages(s)] == [None]


def test_replies_only_sends_no_refusal_to_automatic_mail(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    with transaction(session_factory) as s:
        s.execute(update(Desk).values(replies_only=True))

    robot = deliver(session_factory, cfg, mail(sender="noreply@shop.example"), SUPPORT)
    person = deliver(session_factory, cfg, mail(message_id="<second@customer.example>"), SUPPORT)

    assert (robot.outcome, robot.outbox_ids) == ("refused", ())
    assert len(person.outbox_ids) == 1
    with session_factory() as s:
        assert [row.template for row in outbox(s)] == ["replies_only_refusal"]


# --- the outgoing guard ----------------------------------------------------------------------------------


def new_mail(n: int, sender: str = f"Alice Example <{ALICE}>") -> bytes:
    return mail(sender=sender, subject=f"Request {n}", message_id=f"<r{n}.{sender[-20:-1]}@customer.example>")


def test_the_sixth_automatic_mail_within_an_hour_to_one_address_is_not_queued(
    session_factory: Factory, cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    results = [
        deliver(session_factory, cfg, new_mail(n), SUPPORT, now=NOW + dt.timedelta(minutes=n))
        for n in range(6)
    ]
    bob = deliver(session_factory, cfg, new_mail(6, "Bob <bob@customer.example>"), SUPPORT, now=NOW)

    assert [len(r.outbox_ids) for r in results] == [1, 1, 1, 1, 1, 0]
    assert [r.outcome for r in results] == ["created"] * 6  # the ticket is there all the same
    assert (
        "auto-reply not queued to alice@customer.example (rate limit: 5 automatic mails in the last hour)"
        in (results[5].reason)
    )
    assert len(bob.outbox_ids) == 1  # another address has its own count
    with session_factory() as s:
        assert len(tickets(s)) == 7
        counted = sorted(s.scalars(select(AutoReplySent.address)))
        assert counted == ["alice@customer.example"] * 5 + ["bob@customer.example"]

    # An hour after the first one, the oldest has left the window.
    later = deliver(session_factory, cfg, new_mail(7), SUPPORT, now=NOW + dt.timedelta(minutes=61))
    assert len(later.outbox_ids) == 1


def test_the_twenty_first_automatic_mail_in_a_day_is_not_queued(
    session_factory: Factory, cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    # 65 minutes apart: never two in one hour, and all 21 within 24 hours (20 × 65 min ≈ 21.7 h).
    spacing = dt.timedelta(minutes=65)
    results = [deliver(session_factory, cfg, new_mail(n), SUPPORT, now=NOW + n * spacing) for n in range(21)]

    assert [len(r.outbox_ids) for r in results] == [1] * 20 + [0]
    assert "rate limit: 20 automatic mails in the last 24 hours" in results[20].reason


def test_the_limits_come_from_the_config(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    strict = replace(cfg, hygiene=Hygiene(autoreply_per_hour=1, autoreply_per_day=20))
    first = deliver(session_factory, strict, new_mail(0), SUPPORT, now=NOW)
    second = deliver(session_factory, strict, new_mail(1), SUPPORT, now=NOW + dt.timedelta(minutes=5))
    assert (len(first.outbox_ids), len(second.outbox_ids)) == (1, 0)


def _a_ticket(factory: Factory, cfg: Config) -> str:
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    result = deliver(factory, cfg, mail(), SUPPORT)
    assert result.ticket_number is not None
    return result.ticket_number


def test_mail_a_person_sends_is_not_rate_limited(session_factory: Factory, cfg: Config) -> None:
    number = _a_ticket(session_factory, cfg)
    with transaction(session_factory) as s:
        s.add_all(AutoReplySent(address=ALICE, sent_at=NOW.replace(tzinfo=None)) for _ in range(30))
    with transaction(session_factory) as s:
        automatic = queue_mail(
            s, cfg, ticket(s, number), "ticket_created", [("", ALICE)], automatic=True, now=NOW
        )
        relayed = queue_mail(
            s, cfg, ticket(s, number), "ticket_created", [("", ALICE)], automatic=False, now=NOW
        )
        assert automatic is None
        assert relayed is not None and relayed.rcpt_to == [ALICE]


def test_a_bouncing_customer_gets_nothing_and_the_ticket_is_still_created(
    session_factory: Factory, cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    with transaction(session_factory) as s:
        s.add(Contact(email=ALICE, display_name="Alice", status="bouncing", status_reason="5.1.1"))

    result = deliver(session_factory, cfg, mail(), SUPPORT)

    assert (result.outcome, result.outbox_ids) == ("created", ())
    assert "auto-reply not queued to alice@customer.example (bouncing)" in result.reason
    with session_factory() as s:
        assert len(tickets(s)) == 1 and outbox(s) == []
        assert list(s.scalars(select(AutoReplySent))) == []


def test_bouncing_and_blocked_recipients_are_dropped_the_rest_still_get_it(
    session_factory: Factory, cfg: Config
) -> None:
    number = _a_ticket(session_factory, cfg)
    with transaction(session_factory) as s:
        s.add(Contact(email="bounce@customer.example", status="bouncing"))
        s.add(BlockEntry(pattern="@blocked.example", reason="abuse", added_by="admin"))
    with transaction(session_factory) as s:
        dropped: dict[str, str] = {}
        row = queue_mail(
            s,
            cfg,
            ticket(s, number),
            "ticket_created",
            [("Alice", ALICE)],
            cc=[
                ("", "bounce@customer.example"),
                ("", "Eve@Blocked.example"),
                ("Carol", "carol@customer.example"),
            ],
            automatic=False,
            now=NOW,
            dropped=dropped,
        )
        assert row is not None and row.rcpt_to == [ALICE, "carol@customer.example"]
        assert dropped == {
            "bounce@customer.example": "bouncing",
            "eve@blocked.example": "blocked (@blocked.example)",
        }
        # With nobody left, nothing is queued.
        assert (
            queue_mail(
                s,
                cfg,
                ticket(s, number),
                "ticket_created",
                [("", "x@blocked.example")],
                automatic=False,
                now=NOW,
            )
            is None
        )
        assert (
            queue_desk_mail(
                s,
                cfg,
                ticket(s, number).desk,
                "replies_only_refusal",
                [("", "bounce@customer.example")],
                automatic=True,
                now=NOW,
                variables={"customer_name": "x", "original_subject": "y"},
            )
            is None
        )


def test_when_the_customer_is_dropped_the_cc_become_the_to(session_factory: Factory, cfg: Config) -> None:
    number = _a_ticket(session_factory, cfg)
    with transaction(session_factory) as s:
        s.execute(update(Contact).where(Contact.email == ALICE).values(status="bouncing"))
    with transaction(session_factory) as s:
        carol = [("Carol", "carol@customer.example")]
        row = queue_mail(
            s, cfg, ticket(s, number), "ticket_created", [("", ALICE)], cc=carol, automatic=True, now=NOW
        )
        assert row is not None and row.rcpt_to == ["carol@customer.example"]
        assert b"To: Carol <carol@customer.example>" in row.raw and b"\nCc:" not in row.raw


def test_the_stored_message_keeps_the_class(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    deliver(session_factory, cfg, mail(extra=[("List-Id", "<users.lists.example.org>")]), SUPPORT)
    with session_factory() as s:
        assert list(s.scalars(select(Message.automatic).where(Message.kind == "customer"))) == [LIST]
