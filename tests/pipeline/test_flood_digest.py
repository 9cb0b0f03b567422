"""Issue 14, point 8: a sender over the notice rate limit gets the agents one digest of the mails they were
not told of (maild.tickets.flood_digest), instead of one notice per mail or none at all."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.outbound.templating import render, sample_variables
from maild.storage.models import Message, OutboxMessage
from maild.tickets import flood_digest
from maild.tickets.flood_digest import send_flood_digests
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk, outbox

Factory = sessionmaker[Session]
ANNA, BOB = "anna@example.com", "bob@example.com"
DIGEST = "flood_digest_notice"


def setup(factory: Factory) -> None:
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(factory, ANNA, "Anna", ["support"])
    make_agent(factory, BOB, "Bob", ["support"])


def rows(factory: Factory, template: str) -> list[OutboxMessage]:
    with factory() as s:
        return [r for r in outbox(s, agents=True) if r.template == template]


def text_of(row: OutboxMessage) -> str:
    msg = message_from_bytes(row.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def listed(text: str) -> list[str]:
    """The ticket numbers a digest lists ("- 2026-03-07 09:30 UTC  SUP-26-03-6  Flood a 5")."""
    return [line.split("  ")[1] for line in text.splitlines() if line.startswith("- 20")]


def held(factory: Factory) -> int:
    with factory() as s:
        return len(list(s.scalars(select(Message.id).where(Message.notice_held_at.is_not(None)))))


def burst(factory: Factory, cfg: Config, start: dt.datetime, tag: str, count: int = 12) -> list[str]:
    """`count` new mails from Alice within a minute (one every 5 seconds): their ticket numbers."""
    numbers = []
    for n in range(count):
        raw = mail(subject=f"Flood {tag} {n}", message_id=f"<flood-{tag}-{n}@customer.example>")
        result = deliver(factory, cfg, raw, SUPPORT, start + dt.timedelta(seconds=5 * n))
        assert result.ticket_number is not None
        numbers.append(result.ticket_number)
    return numbers


def naive(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=None)


def test_a_flood_gets_each_agent_one_digest_of_the_held_mails(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    numbers = burst(session_factory, cfg, NOW, "a")
    assert len(set(numbers)) == 12
    assert len(rows(session_factory, "new_ticket_notice")) == 5 * 2  # as before: the first five, per agent
    assert held(session_factory) == 7

    # The sender's last mail came 55 s after the first: not quiet for a minute yet.
    assert send_flood_digests(session_factory, cfg, naive(NOW + dt.timedelta(seconds=60))).digests == []
    assert rows(session_factory, DIGEST) == []

    result = send_flood_digests(session_factory, cfg, naive(NOW + dt.timedelta(minutes=2)))
    assert [(sender, n) for _, sender, n in result.digests] == [("alice@customer.example", 7)]
    digests = rows(session_factory, DIGEST)
    assert sorted(r.rcpt_to[0] for r in digests) == [ANNA, BOB]
    assert sorted(result.outbox_ids) == sorted(r.id for r in digests)
    for row in digests:
        text = text_of(row)
        assert "of these 7 you got no notice" in text
        assert listed(text) == numbers[5:]
        for n in range(12):
            assert (f"  Flood a {n}\n" in text) == (n >= 5)
        assert "- and" not in text
        assert f"[{numbers[-1]}]" in row.subject  # threaded on, and answered to, the latest mail's ticket
        assert "alice@customer.example" in row.subject
    assert held(session_factory) == 0

    # Nothing is held any more: a second run sends nothing.
    assert send_flood_digests(session_factory, cfg, naive(NOW + dt.timedelta(minutes=3))).digests == []
    assert len(rows(session_factory, DIGEST)) == 2

    # A second burst later: five notices again, then a second digest of its seven.
    later = NOW + dt.timedelta(minutes=30)
    second = burst(session_factory, cfg, later, "b")
    assert len(rows(session_factory, "new_ticket_notice")) == 10 * 2
    send_flood_digests(session_factory, cfg, naive(later + dt.timedelta(minutes=2)))
    digests = rows(session_factory, DIGEST)
    assert len(digests) == 4
    for row in digests[2:]:
        text = text_of(row)
        assert "of these 7 you got no notice" in text
        assert listed(text) == second[5:]
    assert send_flood_digests(session_factory, cfg, naive(later + dt.timedelta(minutes=5))).digests == []
    assert len(rows(session_factory, DIGEST)) == 4


def test_a_flood_that_goes_on_gets_a_digest_every_window(session_factory: Factory, cfg: Config) -> None:
    setup(session_factory)
    first_digest_at = None
    for n in range(30):  # one mail every 30 s for 15 minutes; the job runs after each
        at = NOW + dt.timedelta(seconds=30 * n)
        raw = mail(subject=f"Storm {n}", message_id=f"<storm-{n}@customer.example>")
        deliver(session_factory, cfg, raw, SUPPORT, at)
        if send_flood_digests(session_factory, cfg, naive(at)).digests and first_digest_at is None:
            first_digest_at = n
    # Mail 5 (at 150 s) was the first held; the window after it ends at 750 s: mail 25.
    assert first_digest_at == 25
    digests = rows(session_factory, DIGEST)
    assert len(digests) == 2  # one per agent, while the flood goes on
    assert "of these 21 you got no notice" in text_of(digests[0])  # mails 5 … 25
    assert len(listed(text_of(digests[0]))) == 21
    assert held(session_factory) == 4  # mails 26 … 29: the next digest's
    send_flood_digests(session_factory, cfg, naive(NOW + dt.timedelta(minutes=20)))
    assert len(rows(session_factory, DIGEST)) == 4
    assert "of these 4 you got no notice" in text_of(rows(session_factory, DIGEST)[-1])


def test_a_long_digest_lists_the_first_mails_and_counts_the_rest(
    session_factory: Factory, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flood_digest, "MAX_LISTED", 3)
    setup(session_factory)
    numbers = burst(session_factory, cfg, NOW, "c")
    send_flood_digests(session_factory, cfg, naive(NOW + dt.timedelta(minutes=2)))
    for row in rows(session_factory, DIGEST):
        text = text_of(row)
        assert listed(text) == numbers[5:8]
        assert "- and 4 more" in text
        assert "of these 7 you got no notice" in text


def test_the_digest_template_renders_with_every_variable(tmp_path: Path) -> None:
    # no desk overrides under tmp_path: the package template, with the sample variables templating checks
    # desk overrides with (every optional value set, then empty)
    for sparse in (False, True):
        rendered = render(tmp_path, "support", DIGEST, sample_variables(DIGEST, sparse=sparse))
        assert "without a notice" in rendered.subject
        assert "SUP-26-03-2" in rendered.text
    assert "- and 2 more" in render(tmp_path, "support", DIGEST, sample_variables(DIGEST)).text
