"""`maildctl ticket links` (issue 18): each recipient's own link to the ticket's page, shown when issued,
revoked and issued again with --revoke, audited; a token is a stored nonce and an HMAC under the server
secret. The pages themselves are tested against the real daemon in tests/test_web_pages.py."""

from __future__ import annotations

import email
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.mail.tokens import load_secret
from maild.outbound.link_tokens import link_key
from maild.storage.models import AuditLog, TicketLink
from maild.tickets.ticket_links import open_link as open_with_key
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import SUPPORT, deliver, mail, make_agent, make_desk, outbox, tickets

Factory = sessionmaker[Session]
ALICE, CAROL = "alice@customer.example", "carol@partner.example"
BOB = "bob@example.com"


@pytest.fixture
def open_link(cfg: Config) -> Any:
    key = link_key(load_secret(cfg.data_dir))
    return lambda session, token: open_with_key(session, key, token)


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


def test_each_recipient_gets_a_link_shown_again(
    web_config: Path, number: str, session_factory: Factory, open_link: Any
) -> None:
    rows = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))

    assert [(r["email"], r["role"], r["issued_now"]) for r in rows] == [
        (ALICE, "customer", True),
        (CAROL, "cc", True),
    ]
    tokens = [r["url"].removeprefix("https://help.example.com/desk/t/") for r in rows]
    assert all(len(t) == 44 and number not in t for t in tokens) and tokens[0] != tokens[1]
    with session_factory() as s:
        stored = {link.nonce for link in s.query(TicketLink)}
        assert stored == {t[:22] for t in tokens}  # the nonce, never the MAC
        opened = open_link(s, tokens[1])
        assert opened is not None and opened.contact.email == CAROL and opened.ticket.number == number
        assert [a.action for a in s.query(AuditLog).filter_by(action="link_issue")] == ["link_issue"] * 2
    again = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))
    assert [(r["url"], r["issued_now"]) for r in again] == [(r["url"], False) for r in rows]
    table = ok(ctl(web_config, "ticket", "links", number))
    assert ALICE in table and rows[0]["url"] in table


def test_a_tampered_or_foreign_token_opens_nothing(
    web_config: Path, number: str, session_factory: Factory, open_link: Any
) -> None:
    [alice, carol] = [
        r["url"].rsplit("/", 1)[1]
        for r in json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))
    ]
    last = "A" if alice[-1] != "A" else "B"
    with session_factory() as s:
        assert open_link(s, alice[:-1] + last) is None  # one character of the MAC changed
        assert open_link(s, alice[:22] + carol[22:]) is None  # Carol's MAC on Alice's nonce
        assert open_with_key(s, link_key(b"another server" * 3), alice) is None
        assert open_link(s, alice) is not None


def test_revoke_replaces_every_link(
    web_config: Path, number: str, session_factory: Factory, open_link: Any
) -> None:
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
    web_config: Path, number: str, session_factory: Factory, cfg: Config, open_link: Any
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
    web_config: Path, number: str, session_factory: Factory, open_link: Any
) -> None:
    rows = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))
    tokens = {r["email"]: r["url"].rsplit("/", 1)[1] for r in rows}

    ok(ctl(web_config, "ticket", "cc", number, "remove", CAROL))

    with session_factory() as s:
        assert open_link(s, tokens[CAROL]) is None
        assert open_link(s, tokens[ALICE]) is not None


def test_each_recipient_gets_their_own_link_in_each_mail(
    web_config: Path, session_factory: Factory, open_link: Any
) -> None:
    web_cfg = load_config(str(web_config))
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, BOB, "Bob", ["support"])
    deliver(session_factory, web_cfg, mail(extra=[("Cc", f"Carol <{CAROL}>")]))
    number = tickets_number(session_factory)
    with session_factory() as s:
        [auto_reply] = outbox(s)
        assert auto_reply.rcpt_to == [ALICE]  # the auto-reply goes to the customer alone

    ok(ctl(web_config, "ticket", "reply", number, "--as", BOB, stdin=b"Please restart it.\n"))

    with session_factory() as s:
        rows = [r for r in outbox(s) if r.template == "agent_reply"]
        assert sorted(tuple(r.rcpt_to) for r in rows) == [(ALICE,), (CAROL,)]  # one copy each
        assert len({r.message_id for r in rows}) == 2
        urls = {}
        for row in rows:
            copy = email.message_from_bytes(row.raw)
            assert ALICE in copy["To"] and CAROL in copy["Cc"]  # the headers everybody sees
            [url] = set(LINK.findall(_text_of(copy)))
            opened = open_link(s, url.rsplit("/", 1)[1])
            assert opened is not None and opened.contact.email == row.rcpt_to[0]
            urls[row.rcpt_to[0]] = url
        assert LINK.findall(_text_of(email.message_from_bytes(auto_reply.raw))) == [urls[ALICE]]
        assert s.query(TicketLink).count() == 2
    listed = json.loads(ok(ctl(web_config, "ticket", "links", number, "--json")))
    assert {row["email"]: (row["url"], row["issued_now"]) for row in listed} == {
        address: (url, False) for address, url in urls.items()
    }


LINK = re.compile(r"https://help\.example\.com/desk/t/[A-Za-z0-9_-]{44}")


def _text_of(message: email.message.Message) -> str:
    return "".join(
        part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_type() == "text/plain"
    )


def tickets_number(factory: Factory) -> str:
    with factory() as s:
        return str(tickets(s)[0].number)
