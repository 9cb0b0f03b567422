""" "My tickets" (`/my`, issue 18) against the real `maild serve` over loopback HTTP: the form answers the
same whatever the address, a known address gets a sign-in mail whose link lists exactly their tickets
(each linking to their own ticket page), the link is signed and short-lived (tampered 404, expired 410),
opening it changes nothing, and the form is rate-limited and CSRF-protected."""

from __future__ import annotations

import datetime as dt
import re
import urllib.request
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select

from maild.config import Config
from maild.ingress.web_forms import RateLimit
from maild.mail.tokens import load_secret
from maild.outbound.link_tokens import link_key
from maild.storage.models import AuditLog, OutboxMessage, TicketLink
from maild.tickets.sign_in import check_token, make_token, sign_in_key
from tests.daemon import (
    Factory,
    Serve,
    sent_mails,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
)
from tests.pipeline.helpers import SUPPORT, deliver, make_desk, tickets
from tests.web_browser import (  # noqa: F401 (the fixtures web_port, web_config, web_cfg)
    Browser,
    web_cfg_fixture,
    web_config_fixture,
    web_port_fixture,
)

ALICE, CAROL, DAVE = "alice@customer.example", "carol@partner.example", "dave@other.example"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/my/[A-Za-z0-9_-]{43}")


def mail(sender: str, subject: str, serial: int, cc: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SUPPORT
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = f"<my-{serial}@customer.example>"
    msg["Date"] = "Sat, 07 Mar 2026 09:00:00 +0000"
    msg.set_content("Hello,\n\nplease help.\n")
    return msg.as_bytes()


def sign_in_mails(factory: Factory) -> list[EmailMessage]:
    with factory() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "web_sign_in")).all()
        found = [message_from_bytes(row.raw, policy=policy.default) for row in rows]
    return [m for m in found if isinstance(m, EmailMessage)]


def delivered_sign_in_mails(data_dir: Path) -> list[EmailMessage]:
    """The sign-in mails in the outgoing Maildir: sent right away, not at the next outbox run."""
    return [m for m in sent_mails(data_dir) if "Your link to your tickets" in str(m["Subject"])]


def body_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None and isinstance(part, EmailMessage)
    return str(part.get_content())


def row_counts(factory: Factory) -> tuple[int, int, int]:
    with factory() as s:
        return (
            s.scalar(select(func.count()).select_from(TicketLink)) or 0,
            s.scalar(select(func.count()).select_from(AuditLog)) or 0,
            s.scalar(select(func.count()).select_from(OutboxMessage)) or 0,
        )


def test_my_tickets_mails_a_link_that_lists_exactly_their_tickets(
    session_factory: Factory, web_cfg: Config, web_config: Path, start: Callable[[Path], Serve], web_port: int
) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    deliver(session_factory, web_cfg, mail(f"Alice <{ALICE}>", "Printer <b>broken</b>", 1, cc=CAROL))
    deliver(session_factory, web_cfg, mail(ALICE, "Second question", 2))
    deliver(session_factory, web_cfg, mail(DAVE, "Dave's own trouble", 3))
    with session_factory() as s:
        first, second, daves = (t.number for t in tickets(s))
    start(web_config)
    browser = Browser(f"http://127.0.0.1:{web_port}")

    known = browser.post("/my", {"address": ALICE.upper()})
    unknown = browser.post("/my", {"address": "nobody@nowhere.example"})

    assert known[0] == unknown[0] == 200
    assert known[1] == unknown[1]  # the page tells nobody whether an address is known
    assert "If this address has tickets with us" in known[1]
    [sent] = wait_until(
        lambda: delivered_sign_in_mails(web_cfg.data_dir), what="the sign-in mail", timeout=10
    )
    assert sent["To"].addresses[0].addr_spec == ALICE
    assert sent["Auto-Submitted"] == "auto-generated"
    url = LINK.search(body_of(sent))
    assert url is not None
    before = row_counts(session_factory)

    status, page = browser.get(url.group(0))

    assert status == 200
    assert first in page and second in page and daves not in page
    assert "Printer &lt;b&gt;broken&lt;/b&gt;" in page and "Dave" not in page
    ticket_links = re.findall(r'href="(http://127\.0\.0\.1:\d+/t/[A-Za-z0-9_-]{44})"', page)
    assert len(ticket_links) == 2
    status, ticket_page = browser.get(ticket_links[-1])  # oldest activity last: the first ticket
    assert status == 200 and "Printer &lt;b&gt;broken&lt;/b&gt;" in ticket_page
    assert row_counts(session_factory) == before  # opening the list and a ticket changed nothing
    assert len(sign_in_mails(session_factory)) == 1  # nobody@nowhere got nothing

    carol = Browser(f"http://127.0.0.1:{web_port}", client="192.0.2.7")
    assert carol.post("/my", {"address": CAROL})[0] == 200  # a sub-customer sees the ticket they are on
    mails = wait_until(
        lambda: [m for m in sign_in_mails(session_factory) if m["To"].addresses[0].addr_spec == CAROL]
    )
    carols_link = LINK.search(body_of(mails[0]))
    assert carols_link is not None
    status, page = carol.get(carols_link.group(0))
    assert status == 200 and first in page and second not in page and daves not in page


def test_tampered_and_expired_links_open_nothing(
    session_factory: Factory, web_cfg: Config, web_config: Path, start: Callable[[Path], Serve], web_port: int
) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    deliver(session_factory, web_cfg, mail(ALICE, "Printer", 1))
    with session_factory() as s:
        [ticket] = tickets(s)
        contact_id = ticket.customer_id
    start(web_config)
    browser = Browser(f"http://127.0.0.1:{web_port}")
    key = sign_in_key(link_key(load_secret(web_cfg.data_dir)))
    now = dt.datetime.now(dt.UTC)
    good = make_token(key, contact_id, now=now)
    assert browser.get(f"/my/{good}")[0] == 200
    tampered = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
    other_key = make_token(sign_in_key(b"another secret"), contact_id, now=now)
    expired = make_token(key, contact_id, now=now - dt.timedelta(minutes=16))

    for token in (tampered, other_key, good[:-1], good + "x", "0"):
        status, page = browser.get(f"/my/{token}")
        assert status == 404, token
        assert "does not open a list of tickets" in page and "Printer" not in page
    status, page = browser.get(f"/my/{expired}")
    assert status == 410 and "expired" in page and "Printer" not in page


def test_the_form_is_rate_limited_and_csrf_protected(
    session_factory: Factory, web_config: Path, start: Callable[[Path], Serve], web_port: int
) -> None:
    start(web_config)
    browser = Browser(f"http://127.0.0.1:{web_port}", client="198.51.100.1")
    for _ in range(3):
        assert browser.post("/my", {"address": "someone@customer.example"})[0] == 200
    status, page = browser.post("/my", {"address": "someone@customer.example"})
    assert status == 429 and "try again later" in page

    status, page = browser.post("/my", {"address": "not an <b>address</b> here"})
    assert status == 400 and "not an &lt;b&gt;address&lt;/b&gt; here is not a valid e-mail address." in page
    assert browser.post("/my", {"address": "x@customer.example", "csrf": "forged"})[0] == 403
    browser.headers = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}  # a browser, our own form
    assert browser.post("/my", {"address": "y@customer.example"})[0] == 200
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        browser.headers = headers  # another site's form, even with a good field and cookie
        assert browser.post("/my", {"address": "z@customer.example"})[0] == 403
    stranger = Browser(f"http://127.0.0.1:{web_port}", client="198.51.100.2")
    body = b"address=victim%40customer.example&csrf=" + browser.csrf("/my").encode()
    request = urllib.request.Request(stranger.url("/my"), data=body, method="POST")
    status, _ = stranger._open(request)  # a field without its cookie: another site's form
    assert status == 403
    for n in range(20):  # one client, many addresses: the client's own limit
        status, _ = stranger.post("/my", {"address": f"a{n}@customer.example"})
        assert status == 200
    assert stranger.post("/my", {"address": "a99@customer.example"})[0] == 429
    assert sign_in_mails(session_factory) == []


def test_sign_in_tokens_and_rate_limits_by_themselves() -> None:
    key, now = sign_in_key(b"k" * 32), dt.datetime(2026, 3, 7, 9, 0, tzinfo=dt.UTC)
    token = make_token(key, 7, now=now)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert check_token(key, token, now=now + dt.timedelta(minutes=14, seconds=59)) == ("ok", 7)
    assert check_token(key, token, now=now + dt.timedelta(minutes=15)) == ("expired", 7)
    assert check_token(sign_in_key(b"x" * 32), token, now=now) == ("invalid", 0)
    for bad in ("", "é" * 43, "!" * 43, token[:-1] + ("A" if token[-1] != "A" else "B")):
        assert check_token(key, bad, now=now) == ("invalid", 0)

    limit = RateLimit(2, 60.0, max_keys=3)
    assert [limit.hit("a", now=t) for t in (0.0, 1.0, 2.0)] == [True, True, False]
    assert limit.hit("a", now=60.5)  # the first hit left the window
    for key_name in ("b", "c", "d"):
        assert limit.hit(key_name, now=61.0)
    assert "a" not in limit._hits and len(limit._hits) == 3  # bounded: the oldest key forgotten
