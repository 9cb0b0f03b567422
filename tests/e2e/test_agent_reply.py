"""An agent answers a ticket from their own mail client: the customer's mail comes in through Postfix, the
agent's `new_ticket_notice` reaches the agent's Dovecot mailbox, the agent replies to its Reply-To (a token
bound to the agent and the ticket) straight into maild's SMTP listener, and maild relays the answer to the
customer's Dovecot mailbox in the desk's name, the agent's commands (`#priority high`) applied and cut off.

The same token From someone who is not the agent (a stolen or forwarded notice) relays nothing."""

from __future__ import annotations

import json
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from maild.mail.tokens import load_secret, token_of, verify_token
from maild.storage.models import OutboxMessage
from tests.conftest import run_cli
from tests.daemon import EX_OK, Factory, Serve, all_done, free_port, send, wait_until
from tests.e2e.helpers import DESK, TIMEOUT, parse, relays, serve_config
from tests.pipeline.helpers import crlf, mail, outbox, spool, tickets
from tests.servers.dovecot import Dovecot
from tests.servers.postfix import Postfix, StartPostfix

AGENT_NAME = "Anna Schmidt"
AGENT_DISPLAY_NAME = "Anna from Support"
CUSTOMER_TEXT = "My printer is on fire"
ANSWER = "Hello Carol, we have ordered a new fuser unit."


class Helpdesk:
    """The running setup of one test: Postfix, `maild serve` (LMTP behind Postfix, and an SMTP listener the
    agent's client talks to), the agent with a Dovecot mailbox, and a ticket the customer opened."""

    def __init__(
        self,
        postfix: StartPostfix,
        dovecot: Dovecot,
        customer: str,
        start: Any,
        tmp_path: Path,
        data_dir: Path,
        database_url: str,
        session_factory: Factory,
    ) -> None:
        self.dovecot, self.customer = dovecot, customer
        self.data_dir, self.factory = data_dir, session_factory
        lmtp_port, self.smtp_port = free_port(), free_port()
        self.mta: Postfix = postfix(lmtp_port=lmtp_port, relays=relays(dovecot))
        self.config = serve_config(
            tmp_path / "serve.toml",
            data_dir,
            database_url,
            lmtp_port,
            self.mta.smtp_port,
            smtp=f"127.0.0.1:{self.smtp_port}",
        )
        # The agent reads mail in Dovecot too: the notices go out through the same Postfix.
        self.agent = dovecot.add_user("anna")
        added = run_cli(
            "maildctl",
            *("agent", "add", self.agent, "--name", AGENT_NAME),
            *("--display-name", AGENT_DISPLAY_NAME, "--desk", "support"),
            config=self.config,
        )
        assert added.returncode == 0, added.stderr
        self.serve: Serve = start(self.config)

    def open_ticket(self) -> tuple[str, EmailMessage]:
        """The customer writes in; returns the ticket's number and the agent's notice as it arrived."""
        body = f"Hello,\n\n{CUSTOMER_TEXT}, the one on floor 2. Smoke everywhere.\n\nCarol\n"
        raw = mail(
            sender=f"Carol <{self.customer}>",
            to=DESK,
            subject="Printer broken",
            body=body,
            message_id="<printer-1@mail.test>",
        )
        self.mta.send(self.customer, DESK, raw)
        wait_until(all_done(self.factory, 1), TIMEOUT, "the ticket")
        with self.factory() as s:
            [ticket] = tickets(s)
            number = ticket.number
        [notice_raw] = wait_until(lambda: self.dovecot.messages(self.agent), TIMEOUT, "the notice", 0.25)
        # The customer's auto-reply (ticket_created), so that later counts start from a quiet mailbox.
        wait_until(lambda: self.dovecot.messages(self.customer), TIMEOUT, "the auto-reply", 0.25)
        return number, parse(notice_raw)

    def ticket_json(self, number: str) -> dict[str, Any]:
        proc = run_cli("maildctl", "ticket", "show", number, "--json", config=self.config)
        assert proc.returncode == 0, proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def settled(self) -> None:
        """Everything maild queued has been handed to Postfix, and Postfix has delivered it."""
        wait_until(lambda: _all_sent(self.factory), TIMEOUT, "the outbox handed over")
        self.mta.wait_queue_empty()


def _all_sent(factory: Factory) -> bool:
    with factory() as s:
        return all(row.status == "sent" for row in outbox(s, agents=True))


def _relay_rows(factory: Factory) -> list[OutboxMessage]:
    """The outbox's `agent_reply` mails (the agent's answer, relayed to the customer)."""
    with factory() as s:
        rows = [row for row in outbox(s) if row.template == "agent_reply"]
        s.expunge_all()
        return rows


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage), msg
    return str(part.get_content())


def _all_text(msg: EmailMessage) -> str:
    """Every text part (plain and HTML), for what must appear in none of them."""
    return "\n".join(str(part.get_content()) for part in msg.walk() if part.get_content_maintype() == "text")


def client_reply(notice: EmailMessage, sender: str, body: str) -> bytes:
    """An answer to `notice` as a mail client writes it (Thunderbird's shape): Re: subject, threaded on the
    notice, the new text on top, then the attribution line and the whole notice quoted."""
    date = parsedate_to_datetime(str(notice["Date"]))
    attribution = f"On {date:%a, %d %b %Y at %H:%M}, {notice['From']} wrote:"
    quoted = "\n".join(f"> {line}".rstrip() for line in _text(notice).splitlines())
    reply_to = notice["Reply-To"].addresses[0].addr_spec
    lines = [
        f"From: {AGENT_NAME} <{sender}>",
        f"To: {reply_to}",
        f"Subject: Re: {notice['Subject']}",
        "Date: Tue, 24 Nov 2026 10:05:00 +0000",
        "Message-ID: <5d1c0a3e-7b2f-4c1e-9a0d-agent-reply@mail.test>",
        f"In-Reply-To: {notice['Message-ID']}",
        f"References: {notice['Message-ID']}",
        "User-Agent: Mozilla Thunderbird",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"{body}\n{attribution}\n{quoted}\n",
    ]
    return crlf("\n".join(lines))


REPLY_BODY = f"#priority high\n\n{ANSWER}\n\nBest regards\nAnna\n"


@pytest.fixture
def desk(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    start: Any,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> Helpdesk:
    return Helpdesk(postfix, dovecot, customer, start, tmp_path, data_dir, database_url, session_factory)


def test_an_agent_answers_from_their_mail_client_and_the_customer_hears_from_the_desk(desk: Helpdesk) -> None:
    number, notice = desk.open_ticket()
    secret = load_secret(desk.data_dir)
    with desk.factory() as s:
        [ticket] = tickets(s)
        ticket_id, agent_id = ticket.id, ticket.desk.agents[0].id
    # The notice: the customer's text, the ticket's number, a Reply-To bound to this agent and ticket.
    assert f"[{number}]" in notice["Subject"]
    assert CUSTOMER_TEXT in _text(notice)
    agent_address = notice["Reply-To"].addresses[0].addr_spec
    assert agent_address.startswith("support+") and agent_address.endswith("@support.test")
    token = token_of(agent_address)
    assert token is not None
    target = verify_token(secret, token)
    assert target is not None and (target.ticket_id, target.agent_id) == (ticket_id, agent_id)

    reply = client_reply(notice, desk.agent, REPLY_BODY)
    send(desk.smtp_port, reply, [agent_address], sender=desk.agent)

    wait_until(all_done(desk.factory, 2), TIMEOUT, "the agent's reply processed")
    with desk.factory() as s:
        row = spool(s)[1]
        verdict = (row.outcome, row.reason)
        assert (row.outcome, row.ticket_id) == ("replied", ticket_id), verdict
    # The pipeline's transaction queued the relay, or nothing will ever come.
    assert len(_relay_rows(desk.factory)) == 1, verdict
    mails = wait_until(lambda: _count(desk.dovecot.messages(desk.customer), 2), TIMEOUT, "the relay", 0.25)
    desk.settled()
    [relay_row] = _relay_rows(desk.factory)
    assert relay_row.delivered_to == [desk.customer]
    [relay] = [m for m in map(parse, mails) if m["Message-ID"] == relay_row.message_id]

    # In the desk's name, signed by the agent's display name; to the customer, on the ticket.
    [sender] = relay["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (AGENT_DISPLAY_NAME, DESK)
    assert [a.addr_spec for a in relay["To"].addresses] == [desk.customer]
    assert f"[{number}]" in relay["Subject"]
    # Threaded on the customer's own mail; the agent-only notice is a mail the customer never saw.
    references = str(relay["References"] or "")
    assert "<printer-1@mail.test>" in references
    assert str(notice["Message-ID"]) not in references + str(relay["In-Reply-To"] or "")
    # The answer without the command line, and without the quoted notice below it.
    text = _text(relay)
    assert ANSWER in text
    everything = _all_text(relay)
    assert "#priority" not in everything
    assert CUSTOMER_TEXT not in everything
    assert "wrote:" not in everything and "wrote on" not in everything
    # The customer's answers go to the ticket, not to the agent: a token without an agent.
    customer_address = relay["Reply-To"].addresses[0].addr_spec
    assert customer_address.startswith("support+") and customer_address.endswith("@support.test")
    customer_token = token_of(customer_address)
    assert customer_token is not None
    customer_target = verify_token(secret, customer_token)
    assert customer_target is not None
    assert (customer_target.ticket_id, customer_target.agent_id) == (ticket_id, None)

    shown = desk.ticket_json(number)
    assert (shown["priority"], shown["status"]) == ("high", "waiting")
    [answer] = [m for m in shown["messages"] if m["kind"] == "agent"]
    assert answer["from"] == desk.agent
    assert ANSWER in answer["visible_text"]
    assert "#priority" not in answer["visible_text"]
    assert CUSTOMER_TEXT not in answer["visible_text"]
    assert desk.serve.stop() == EX_OK


@pytest.mark.parametrize("impostor", ["mallory@evil.test", "customer"])
def test_the_agents_token_from_someone_else_relays_nothing(desk: Helpdesk, impostor: str) -> None:
    number, notice = desk.open_ticket()
    sender = desk.customer if impostor == "customer" else impostor
    stolen = notice["Reply-To"].addresses[0].addr_spec
    before = desk.ticket_json(number)

    send(desk.smtp_port, client_reply(notice, sender, REPLY_BODY), [stolen], sender=sender)

    wait_until(all_done(desk.factory, 2), TIMEOUT, "the forged reply processed")
    with desk.factory() as s:
        row = spool(s)[1]
        assert row.outcome == "held", (row.outcome, row.reason)
    desk.settled()
    assert _relay_rows(desk.factory) == []
    # Nothing but the auto-reply to the customer's own mail ever reached the customer.
    [only] = desk.dovecot.messages(desk.customer)
    assert ANSWER not in parse(only).as_string()
    after = desk.ticket_json(number)
    assert (after["priority"], after["status"]) == (before["priority"], before["status"])
    assert after["priority"] == "normal"
    assert not [m for m in after["messages"] if m["kind"] == "agent"]
    # Held for review: the ticket says so, the text went nowhere.
    [note] = [m for m in after["messages"] if m["kind"] == "system" and "held" in m["text"]]
    assert sender in note["text"]
    assert not [m for m in after["messages"] if ANSWER in (m["text"] or "")]
    assert desk.serve.stop() == EX_OK


def _count(items: list[bytes], count: int) -> list[bytes] | None:
    return items if len(items) == count else None
