"""The customers' ticket page (`[web]`, issue 18) against the real `maild serve` over loopback HTTP:
what the page shows and never shows, attachments as downloads, the security headers, 404 for every link
that opens nothing, and links revoked with `maildctl ticket links --revoke`.

Tickets are made by delivering mail through the real pipeline (tests/pipeline/helpers.py); the agent's
reply and note through maildctl; the pages are read with urllib, as a browser without JavaScript would."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import Attachment, TicketLink
from tests.cli import ctl, ok
from tests.daemon import (
    EX_OK,
    EX_OSERR,
    Factory,
    Serve,
    start_fixture,  # noqa: F401 (the fixture `start`)
)
from tests.pipeline.helpers import SUPPORT, deliver, make_agent, make_desk, tickets
from tests.web_browser import (  # noqa: F401 (the fixtures web_port, web_config, web_cfg)
    web_cfg_fixture,
    web_config_fixture,
    web_port_fixture,
)

ALICE, CAROL = "alice@customer.example", "carol@partner.example"
BOB = "bob.agent@example.com"
PDF = b"%PDF-1.4 printer log\n" + bytes(range(256))


def customer_mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{ALICE}>"
    msg["To"] = SUPPORT
    msg["Cc"] = f"Carol Partner <{CAROL}>"
    msg["Subject"] = subject
    msg["Message-ID"] = "<web-1@customer.example>"
    msg["Date"] = "Sat, 07 Mar 2026 09:00:00 +0000"
    msg.set_content("Hello,\n\nthe printer shows <b>error 42</b>.\n\nAlice\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="printer log.pdf")
    return msg.as_bytes(policy=SMTP)


@pytest.fixture
def ticket_number(session_factory: Factory, web_cfg: Config, web_config: Path) -> str:
    """A ticket with a customer mail (attachment, a CC), an agent's reply and an internal note."""
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, BOB, "Bob Builder", ["support"])
    deliver(session_factory, web_cfg, customer_mail("Printer <script>alert(1)</script> broken"))
    with session_factory() as s:
        [ticket] = tickets(s)
        number = ticket.number
    ok(ctl(web_config, "ticket", "reply", number, "--as", BOB, stdin=b"Please restart it, Alice.\n"))
    ok(ctl(web_config, "ticket", "note", number, stdin=b"INTERNAL: customer is on the old contract\n"))
    return number


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def links(config: Path, number: str, *flags: str) -> dict[str, str]:
    rows = json.loads(ok(ctl(config, "ticket", "links", number, "--json", *flags)))
    return {row["email"]: row["url"] for row in rows}


def test_the_page_shows_the_conversation_and_nothing_internal(
    web_config: Path, ticket_number: str, start: Callable[[Path], Serve], web_port: int
) -> None:
    serve = start(web_config)
    assert serve.find("listening", protocol="http", address=f"127.0.0.1:{web_port}")
    urls = links(web_config, ticket_number)
    assert set(urls) == {ALICE, CAROL}  # the customer and the sub-customer, each their own link
    assert urls[ALICE] != urls[CAROL] and ticket_number not in urls[ALICE]

    status, headers, body = get(urls[ALICE])

    assert status == 200
    page = body.decode()
    assert ticket_number in page
    assert "Printer &lt;script&gt;alert(1)&lt;/script&gt; broken" in page  # mail never becomes markup
    assert "<script" not in page
    assert "&lt;b&gt;error 42&lt;/b&gt;" in page
    assert "Please restart it, Alice." in page
    assert ">You</span>" in page and ">Bob Builder</span>" in page  # the viewer, the agent by name
    assert "Waiting for your reply" in page  # the agent's reply made it `waiting`, in the customer's words
    assert "printer log.pdf" in page
    assert "INTERNAL" not in page  # the note
    for address in (BOB, ALICE, CAROL, SUPPORT, "@"):
        assert address not in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Content-Type"].startswith("text/html")
    post = urllib.request.Request(urls[ALICE], data=b"x=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=10)
    assert refused.value.code == 405  # nothing here takes a POST (yet)
    assert serve.stop() == EX_OK
    token = urls[ALICE].rsplit("/", 1)[1]
    assert serve.not_json == [] and token not in json.dumps(serve.events)  # no access log: paths are secrets


def test_an_attachment_downloads_only_through_its_tickets_link(
    web_config: Path,
    ticket_number: str,
    start: Callable[[Path], Serve],
    session_factory: Factory,
    web_cfg: Config,
) -> None:
    serve = start(web_config)
    urls = links(web_config, ticket_number)
    with session_factory() as s:
        [attachment] = s.query(Attachment).all()
        attachment_id = attachment.id
    # A second ticket of another customer, with its own link: it must not open the first one's file.
    deliver(session_factory, web_cfg, customer_mail("Other").replace(b"web-1@", b"web-2@"))
    with session_factory() as s:
        other = tickets(s)[-1].number

    status, headers, body = get(f"{urls[CAROL]}/a/{attachment_id}")

    assert status == 200 and body == PDF
    assert headers["Content-Disposition"].startswith('attachment; filename="printer log.pdf"')
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Content-Type-Options"] == "nosniff"
    other_urls = links(web_config, other)
    assert get(f"{other_urls[ALICE]}/a/{attachment_id}")[0] == 404  # another ticket's attachment
    assert get(f"{other_urls[ALICE]}/a/{attachment_id + 1000}")[0] == 404
    assert serve.stop() == EX_OK


def test_links_that_open_nothing_are_404_and_a_get_changes_nothing(
    web_config: Path,
    ticket_number: str,
    start: Callable[[Path], Serve],
    session_factory: Factory,
    web_port: int,
) -> None:
    serve = start(web_config)
    old = links(web_config, ticket_number)
    base = f"http://127.0.0.1:{web_port}"
    for url in (f"{base}/t/{'A' * 44}", f"{base}/t/short", f"{base}/", f"{base}/t/{ticket_number}"):
        status, headers, body = get(url)
        assert status == 404, url
        assert b"Not found" in body and headers["X-Content-Type-Options"] == "nosniff"

    def link_rows() -> list[Any]:
        with session_factory() as s:
            return [(r.id, r.revoked_at) for r in s.query(TicketLink).order_by(TicketLink.id)]

    before = link_rows()
    for _ in range(3):
        assert get(old[ALICE])[0] == 200
    assert link_rows() == before  # reading a page writes nothing

    new = links(web_config, ticket_number, "--revoke")

    assert get(old[ALICE])[0] == 404 and get(old[CAROL])[0] == 404
    assert get(new[ALICE])[0] == 200 and get(new[CAROL])[0] == 200
    assert links(web_config, ticket_number) == new  # the same links, shown again
    ok(ctl(web_config, "block", "add", CAROL))
    assert get(new[CAROL])[0] == 404 and get(new[ALICE])[0] == 200  # a blocked recipient's link
    ok(ctl(web_config, "ticket", "delete", ticket_number))
    assert get(new[ALICE])[0] == 404
    with transaction(session_factory) as s:
        assert s.query(TicketLink).count() == 0  # gone with the ticket
    assert serve.stop() == EX_OK


def test_a_web_address_in_use_exits_71_and_the_listener_stops_with_the_daemon(
    web_config: Path, web_port: int, start: Callable[[Path], Serve]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", web_port))
        taken.listen()
        refused = Serve(web_config)
        assert refused.wait_exit() == EX_OSERR
        assert refused.find("cannot_listen", protocol="http")

    serve = start(web_config)
    assert get(f"http://127.0.0.1:{web_port}/static/maild.css")[0] == 200
    assert serve.stop() == EX_OK
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=5)
