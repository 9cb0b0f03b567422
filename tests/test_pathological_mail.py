"""Pathological headers through the real spool and pipeline (issue 14, point 1): a Subject of a megabyte
folded into 500-character lines, a megabyte display name, References with thousands of ids, To with
thousands of addresses. Each still becomes a ticket; what is copied into the ticket and into outgoing mail
is capped (the stdlib's header parsing and folding take time superlinear in a value's length), while the
raw mail keeps the whole header. bench/pathological_mail.py times the full-size cases."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.mailparse import REFERENCES_MAX, SUBJECT_MAX, parse_mail
from maild.outbound.outgoing import DISPLAY_NAME_MAX, HEADER_TEXT_MAX, MAX_REFERENCES
from maild.pipeline.apply import TICKET_SUBJECT_MAX
from maild.storage.spool import read_raw
from tests.pipeline.helpers import (
    SUP_PATTERN,
    SUPPORT,
    crlf,
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


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def folded(words: list[str], width: int = 500) -> str:
    """`words` as one header value folded into lines of about `width` characters."""
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n ".join([*lines, line])


def sent(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_a_megabyte_subject_opens_a_ticket_with_capped_subjects(
    session_factory: Factory, cfg: Config
) -> None:
    words = [f"Grüße{i}" for i in range(120_000)]  # about 1 MB, 8-bit UTF-8 as many clients write it
    raw = mail(subject=folded(words))
    assert len(raw) > 1_000_000

    result = deliver(session_factory, cfg, raw)

    assert result.outcome == "created"
    with session_factory() as session:
        (t,) = tickets(session)
        assert len(t.subject) <= TICKET_SUBJECT_MAX
        assert t.subject.startswith("Grüße0 Grüße1 Grüße2") and t.subject.endswith("…")
        (message,) = messages(session)
        assert len(message.subject) <= SUBJECT_MAX and message.subject.startswith("Grüße0 Grüße1")
        (reply,) = outbox(session)
        assert len(reply.subject) <= HEADER_TEXT_MAX
        out = sent(reply.raw)
        assert str(out["Subject"]).startswith(f"[{t.number}]") and "Grüße0 Grüße1" in str(out["Subject"])
        assert len(str(out["Subject"])) <= HEADER_TEXT_MAX
        assert str(out["Thread-Topic"]).startswith("Grüße0 Grüße1")
        assert len(str(out["Thread-Topic"])) <= HEADER_TEXT_MAX
        assert all(len(line) <= 998 for line in reply.raw.split(b"\n"))
        # The whole subject stays in the raw mail.
        assert read_raw(cfg.spool_dir, spool(session)[0]) == raw


def test_a_megabyte_display_name_opens_a_ticket_and_the_reply_names_the_customer_briefly(
    session_factory: Factory, cfg: Config
) -> None:
    name = folded([f"Alice{i}" for i in range(150_000)])
    result = deliver(session_factory, cfg, mail(sender=f'"{name}" <{ALICE}>'))

    assert result.outcome == "created"
    with session_factory() as session:
        (t,) = tickets(session)
        assert t.customer.email == ALICE
        (reply,) = outbox(session)
        assert reply.rcpt_to == [ALICE]
        (to,) = sent(reply.raw)["To"].addresses
        assert to.addr_spec == ALICE
        assert to.display_name.startswith("Alice0 Alice1") and len(to.display_name) <= DISPLAY_NAME_MAX


def test_references_with_thousands_of_ids_keep_the_root_and_the_newest_and_still_thread(
    session_factory: Factory, cfg: Config
) -> None:
    assert deliver(session_factory, cfg, mail()).outcome == "created"
    first_id = "<first@customer.example>"
    junk = [f"<junk-{i}@evil.test>" for i in range(20_000)]
    chain = ["<root@customer.example>", *junk, first_id]
    raw = mail(
        subject="Re: Printer on fire",
        message_id="<second@customer.example>",
        extra=[("References", folded(chain, 900)), ("In-Reply-To", first_id)],
    )

    parsed = parse_mail(raw)
    assert len(parsed.references) == REFERENCES_MAX
    assert parsed.references[0] == "<root@customer.example>"
    assert parsed.references[-2:] == [junk[-1], first_id]

    result = deliver(session_factory, cfg, raw)
    assert result.outcome == "replied"
    with session_factory() as session:
        (t,) = tickets(session)
        assert [m.message_id for m in messages(session)] == [first_id, "<second@customer.example>"]
        assert ticket(session, t.number).status == "open"
        for row in outbox(session):
            references = str(sent(row.raw).get("References", "")).split()
            assert len(references) <= MAX_REFERENCES


def test_to_with_thousands_of_addresses_opens_one_ticket_answered_to_the_sender_only(
    session_factory: Factory, cfg: Config
) -> None:
    others = [f"Recipient Number {i} <rcpt{i}@evil.test>" for i in range(5_000)]
    raw = mail(to=folded([f"{SUPPORT},", *(f"{o}," for o in others[:-1]), others[-1]], 900))

    parsed = parse_mail(raw)
    assert len(parsed.to) == 5_001

    result = deliver(session_factory, cfg, raw)
    assert result.outcome == "created"
    with session_factory() as session:
        assert len(tickets(session)) == 1
        (reply,) = outbox(session)
        assert reply.rcpt_to == [ALICE]
        assert len(reply.raw) < 20_000


def test_a_subject_longer_than_a_line_is_read_from_its_start(session_factory: Factory, cfg: Config) -> None:
    """RFC 2047 encoded words over many folded lines (as Outlook writes a long non-ASCII subject)."""
    text = " ".join(f"Füße{i}" for i in range(40_000))
    raw = crlf(
        "From: Alice Example <alice@customer.example>\n"
        f"To: {SUPPORT}\n"
        "Subject: " + "\n ".join(f"=?utf-8?b?{w}?=" for w in _b64_words(text)) + "\n"
        "Message-ID: <long@customer.example>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nHello\n"
    )
    parsed = parse_mail(raw)
    assert parsed.subject.startswith("Füße0 Füße1 Füße2") and len(parsed.subject) == SUBJECT_MAX
    assert deliver(session_factory, cfg, raw).outcome == "created"


def _b64_words(text: str) -> list[str]:
    import base64

    data = text.encode()
    return [base64.b64encode(data[i : i + 45]).decode() for i in range(0, len(data), 45)]
