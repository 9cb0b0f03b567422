"""`maildctl ticket links` (issue 18): each recipient's own link to the ticket's page, shown when issued,
revoked and issued again with --revoke, audited; only the token's sha256 is stored. The pages themselves
are tested against the real daemon in tests/test_web_pages.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.storage.models import AuditLog, TicketLink
from maild.tickets.ticket_links import open_link
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import SUPPORT, deliver, mail, make_desk, tickets

Factory = sessionmaker[Session]
ALICE, CAROL = "alice@customer.example", "carol@partner.example"


@pytest.fixture
def web_config(config_file: Path) -> Path:
    path = config_file.with_name("web.toml")
    path.write_text(config_file.read_text() + '\n[web]\npublic_url = "https://help.example.com/desk/"\n')
    return path


@pytest.fixture
def number(session_factory: Factory, cfg: Config) -> str:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    raw = mail(extra=[("Cc", f"Carol <{CAROL}>")])
    deliver(session_factory, cfg, raw)
    with session_factory() as s:
        return str(tickets(s)[0].number)


def test_each_recipient_gets_a_link_shown_once(
    web_config: Path, number: str, session_factory: Factory
) -> None:
    rows = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))

    assert [(r["email"], r["role"]) for r in rows] == [(ALICE, "customer"), (CAROL, "cc")]
    tokens = [r["url"].removeprefix("https://help.example.com/desk/t/") for r in rows]
    assert all(len(t) == 43 and number not in t for t in tokens) and tokens[0] != tokens[1]
    with session_factory() as s:
        stored = {link.token_sha256 for link in s.query(TicketLink)}
        assert stored == {hashlib.sha256(t.encode()).hexdigest() for t in tokens}  # never the token itself
        opened = open_link(s, tokens[1])
        assert opened is not None and opened.contact.email == CAROL and opened.ticket.number == number
        assert [a.action for a in s.query(AuditLog).filter_by(action="link_issue")] == ["link_issue"] * 2
    again = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))
    assert [r["url"] for r in again] == [None, None]  # issued before: the URL is not known any more
    table = ok(ctl(web_config, "ticket", "links", number))
    assert ALICE in table and "--revoke" in table


def test_revoke_replaces_every_link(web_config: Path, number: str, session_factory: Factory) -> None:
    first = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))

    second = json.loads(ok(ctl(web_config, "ticket", "links", number, "--revoke", "--json")))

    old_tokens = [r["url"].rsplit("/", 1)[1] for r in first]
    new_tokens = [r["url"].rsplit("/", 1)[1] for r in second]
    with session_factory() as s:
        assert all(open_link(s, t) is None for t in old_tokens)
        assert all(open_link(s, t) is not None for t in new_tokens)
        [entry] = s.query(AuditLog).filter_by(action="links_revoke").all()
        assert entry.detail["revoked"] == 2 and entry.detail["issued"] == [ALICE, CAROL]


def test_without_public_url_one_line_and_nothing_issued(
    config_file: Path, number: str, session_factory: Factory
) -> None:
    assert load_config(str(config_file)).web.public_url == ""

    line = one_line_error(ctl(config_file, "ticket", "links", number))

    assert "public_url" in line
    with session_factory() as s:
        assert s.query(TicketLink).count() == 0


def test_a_merged_tickets_link_opens_the_survivor(
    web_config: Path, number: str, session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(subject="Second problem", message_id="<second@customer.example>"))
    with session_factory() as s:
        newer = tickets(s)[-1].number
    [row] = json.loads(ok(ctl(web_config, "ticket", "links", newer, "--json")))
    token = row["url"].rsplit("/", 1)[1]

    ok(ctl(web_config, "ticket", "merge", number, newer))

    with session_factory() as s:
        opened = open_link(s, token)
        assert opened is not None and opened.ticket.number == number


def test_a_sub_customer_taken_off_the_ticket_loses_the_page(
    web_config: Path, number: str, session_factory: Factory
) -> None:
    rows = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))
    tokens = {r["email"]: r["url"].rsplit("/", 1)[1] for r in rows}

    ok(ctl(web_config, "ticket", "cc", number, "remove", CAROL))

    with session_factory() as s:
        assert open_link(s, tokens[CAROL]) is None
        assert open_link(s, tokens[ALICE]) is not None
