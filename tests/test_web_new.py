"""Opening a ticket from the web (`/new/<desk>`, issue 18) against the real `maild serve` over loopback
HTTP: the form becomes a spooled mail (ingress "web") that the pipeline makes a ticket of, with its
auto-reply, the CCs as sub-customers and the attachment; every wrong field is named on the page and
nothing is stored; desk and agent addresses are refused; the honeypot and the rate limits; confirm-first
desks send nothing but the confirmation link until it is followed; a desk without the option is 404."""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import Desk
from maild.tickets.web_pending import PENDING_DIR
from tests.daemon import (
    Factory,
    Serve,
    sent_mails,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
)
from tests.pipeline.helpers import SALES, SUPPORT, make_agent, make_desk, outbox, spool, tickets
from tests.web_browser import (  # noqa: F401 (the fixtures web_port, web_config, web_cfg)
    Browser,
    web_cfg_fixture,
    web_config_fixture,
    web_port_fixture,
)

ALICE, CAROL, BOB = "alice@customer.example", "carol@partner.example", "bob.agent@example.com"
PDF = b"%PDF-1.4 printer log\n" + bytes(range(256))
CONFIRM_LINK = re.compile(r"http://127\.0\.0\.1:\d+/new/confirmed/confirm/[A-Za-z0-9_-]{43}")


def desks(factory: Factory) -> None:
    """support: web form on; sales: off; confirmed: on, confirm-first. Bob is an agent of support."""
    make_desk(factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_desk(factory, "sales", [SALES], "SALES-{{nr}}")
    make_desk(factory, "confirmed", ["confirm@example.com"], "CON-{{nr}}")
    make_agent(factory, BOB, "Bob Builder", ["support"])
    with transaction(factory) as s:
        for desk in s.scalars(select(Desk)):
            desk.web_new_tickets = desk.name != "sales"
            desk.web_confirm_address = desk.name == "confirmed"
            desk.max_attachment_mb = 1  # a file too large costs a megabyte, not 25


def form(**fields: str) -> dict[str, str]:
    return {
        "name": "Alice Example",
        "address": ALICE,
        "subject": "Printer broken",
        "cc": "",
        "text": "Hello,\nthe printer shows error 42.\n",
        **fields,
    }


def sent_templates(factory: Factory, template: str) -> list[int]:
    """The outbox rows of `template` (read in a session closed at once: SQLite sessions lock)."""
    with factory() as s:
        return [r.id for r in outbox(s) if r.template == template]


def stored(factory: Factory, data_dir: Path) -> tuple[int, int, int]:
    pending = data_dir / PENDING_DIR
    with factory() as s:
        return (
            len(spool(s)),
            len(outbox(s, agents=True)),
            len(list(pending.iterdir())) if pending.exists() else 0,
        )


def test_a_form_becomes_a_ticket_with_its_auto_reply_ccs_and_attachment(
    session_factory: Factory, web_config: Path, start: Callable[[Path], Serve], web_port: int
) -> None:
    desks(session_factory)
    start(web_config)
    browser = Browser(f"http://127.0.0.1:{web_port}")
    assert browser.get("/new/sales")[0] == 404  # the desk's option is off
    assert browser.get("/new/nosuch")[0] == 404
    status, page = browser.get("/new/support")
    assert status == 200 and 'name="website"' in page and "<script" not in page and " style=" not in page
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/new/support", timeout=10) as response:
        policy_header = response.headers["Content-Security-Policy"]  # the form may post here, nowhere else
        assert "form-action 'self'" in policy_header and "script-src" not in policy_header
        assert (
            "HttpOnly" in response.headers["Set-Cookie"] and "SameSite=Lax" in response.headers["Set-Cookie"]
        )

    status, page = browser.post(
        "/new/support",
        form(cc=f"Carol@Partner.example, {ALICE}", text="Hello,\nthe printer shows <b>error 42</b>.\n"),
        files=[("printer log.pdf", "application/pdf", PDF)],
    )

    assert status == 200 and "We have received your request" in page
    wait_until(lambda: sent_templates(session_factory, "ticket_created"), what="the auto-reply")
    with session_factory() as s:
        [entry] = spool(s)
        assert (entry.ingress, entry.recipient, entry.mail_from) == ("web", SUPPORT, ALICE)
        [ticket] = tickets(s)
        assert ticket.desk.name == "support" and ticket.subject == "Printer broken"
        assert ticket.customer.email == ALICE and ticket.customer.display_name == "Alice Example"
        assert {(p.contact.email, p.role) for p in ticket.participants if p.role == "cc"} == {(CAROL, "cc")}
        [message] = ticket.messages
        assert "<b>error 42</b>" in message.text
        assert [(a.filename, a.size, a.refused_reason) for a in message.attachments] == [
            ("printer log.pdf", len(PDF), None)
        ]
        # the auto-reply: the customer's alone until an agent answers (the pipeline's rule for any mail)
        [reply] = [r for r in outbox(s) if r.template == "ticket_created"]
        assert reply.rcpt_to + reply.delivered_to == [ALICE] and ticket.number in reply.subject


def test_each_wrong_field_is_named_and_nothing_is_stored(
    session_factory: Factory, web_cfg: Config, web_config: Path, start: Callable[[Path], Serve], web_port: int
) -> None:
    desks(session_factory)
    data_dir = web_cfg.data_dir
    start(web_config)
    browser = Browser(f"http://127.0.0.1:{web_port}")

    status, page = browser.post(
        "/new/support",
        form(address="not-an-address", subject="  ", text="\n", cc="carol@partner.example, bad@@x"),
        files=[("setup.exe", "application/x-msdownload", b"MZ\x90\x00" + b"\x00" * 100)],
    )
    assert status == 400
    for words in (
        "not-an-address is not a valid e-mail address.",
        "Please give a subject.",
        "Please write your message.",
        "bad@@x is not a valid e-mail address.",
        "setup.exe cannot be attached: we do not accept programs or scripts.",
        'aria-invalid="true"',
    ):
        assert words in page, words
    assert 'value="carol@partner.example, bad@@x"' in page  # what was typed stays in the form

    for fields, words in (
        ({"address": BOB}, f"{BOB} belongs to this help desk"),  # an agent as the customer
        ({"address": "Support+x@Example.com"}, "support+x@example.com belongs to this help desk"),
        ({"cc": f"{CAROL}, {SALES}"}, f"{SALES} belongs to this help desk"),  # another desk as a CC
        ({"cc": BOB}, f"{BOB} belongs to this help desk"),
        ({"subject": "x" * 201}, "The subject is too long"),
        ({"name": "n" * 101}, "Your name is too long"),
        ({"cc": ", ".join(f"c{n}@partner.example" for n in range(11))}, "At most 10 addresses in copy."),
    ):
        status, page = browser.post("/new/support", form(**fields))
        assert status == 400 and words in page, (fields, page)
    status, page = browser.post(
        "/new/support", form(), files=[("big.pdf", "application/pdf", b"x" * 1_000_001)]
    )
    assert (
        status == 400 and "big.pdf cannot be attached: it is 1.1 MB, larger than the 1 MB we accept." in page
    )
    assert stored(session_factory, data_dir) == (0, 0, 0)

    with socket.create_connection(("127.0.0.1", web_port), timeout=10) as sock:  # claims a huge body
        sock.sendall(
            b"POST /new/support HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 999999999\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 413")  # at once, nothing read
    assert browser.post("/new/support", form(csrf="forged"))[0] == 403
    assert stored(session_factory, data_dir) == (0, 0, 0)


def test_honeypot_and_rate_limits(
    session_factory: Factory, web_config: Path, start: Callable[[Path], Serve], web_port: int
) -> None:
    desks(session_factory)
    start(web_config)
    robot = Browser(f"http://127.0.0.1:{web_port}", client="203.0.113.9")
    for _ in range(10):  # thanked as a person would be, nothing kept
        status, page = robot.post("/new/confirmed", form(website="http://spam.example"))
        assert status == 200 and "We have received your request" in page
    status, page = robot.post("/new/confirmed", form())
    assert status == 429 and "try again later" in page  # the client's 10 forms an hour
    with session_factory() as s:
        assert spool(s) == [] and outbox(s, agents=True) == []

    for n in range(5):  # one address from five clients: the address's 5 an hour
        person = Browser(f"http://127.0.0.1:{web_port}", client=f"198.51.100.{n}")
        assert person.post("/new/confirmed", form(subject=f"Question {n}"))[0] == 200
    person = Browser(f"http://127.0.0.1:{web_port}", client="198.51.100.99")
    assert person.post("/new/confirmed", form(subject="Question 6"))[0] == 429
    assert person.post("/new/confirmed", form(address=CAROL))[0] == 200  # another address is fine


def confirmation_links(data_dir: Path) -> list[str]:
    """The links in the confirmation mails of the outgoing Maildir (sent at once, not at the next outbox
    run)."""
    found = []
    for msg in sent_mails(data_dir):
        body = msg.get_body(("plain",))
        assert isinstance(body, EmailMessage)
        found += CONFIRM_LINK.findall(str(body.get_content()))
    return found


def test_a_confirm_first_desk_sends_nothing_before_the_address_is_confirmed(
    session_factory: Factory, web_cfg: Config, web_config: Path, start: Callable[[Path], Serve], web_port: int
) -> None:
    desks(session_factory)
    start(web_config)
    browser = Browser(f"http://127.0.0.1:{web_port}")

    status, page = browser.post("/new/confirmed", form(cc=CAROL), files=[("log.pdf", "application/pdf", PDF)])

    assert status == 200 and "Please confirm your address" in page
    [link] = wait_until(
        lambda: confirmation_links(web_cfg.data_dir), what="the confirmation mail", timeout=10
    )
    with session_factory() as s:
        assert spool(s) == [] and tickets(s) == []
        assert [(r.template, r.rcpt_to + r.delivered_to) for r in outbox(s, agents=True)] == [
            ("web_confirm_address", [ALICE])
        ]

    reader = Browser(f"http://127.0.0.1:{web_port}")  # the mail client's browser: another cookie jar
    for _ in range(2):  # a mail scanner following the link changes nothing
        status, page = reader.get(link)
        assert status == 200 and "Confirm and send" in page and "Printer broken" in page
    with session_factory() as s:
        assert spool(s) == []
    wrong_desk = link.replace("/new/confirmed/", "/new/support/")
    assert reader.get(wrong_desk)[0] == 410

    token = reader.csrf(link)
    status, page = reader.send(link, {"csrf": token})
    assert status == 200 and "We have received your request" in page
    wait_until(lambda: sent_templates(session_factory, "ticket_created"), what="the ticket's auto-reply")
    with session_factory() as s:
        [ticket] = tickets(s)
        assert ticket.desk.name == "confirmed" and ticket.customer.email == ALICE
        assert [p.contact.email for p in ticket.participants if p.role == "cc"] == [CAROL]
        assert [a.filename for a in ticket.messages[0].attachments] == ["log.pdf"]
        assert [e.ingress for e in spool(s)] == ["web"]
    assert reader.get(link)[0] == 410  # used: sent once
    assert reader.send(link, {"csrf": token})[0] == 410
    with session_factory() as s:
        assert len(spool(s)) == 1
