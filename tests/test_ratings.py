"""Customers rate agent replies (issue 18): the rating links in the agent_reply mail open a confirmation
page (a GET stores nothing: mail scanners follow links), its POST stores one rating per reply and contact
and a second POST changes it; audited with the customer as the actor; shown on the page, in
`maildctl ticket show --json` and in `maildctl report`; a desk without ratings answers 404. Against the
real `maild serve` over loopback HTTP (tests/web_client.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import AuditLog, Desk, Message, OutboxMessage, Rating
from tests.cli import ctl, ok
from tests.daemon import EX_OK, Factory, Serve, sent_mails, wait_until
from tests.daemon import start_fixture as start_fixture  # the fixture `start`
from tests.pipeline.helpers import SUPPORT, agent_address, deliver, mail, make_agent, make_desk, tickets
from tests.test_web_actions import show
from tests.test_web_pages import ALICE, BOB, CAROL, customer_mail, links
from tests.test_web_pages import ticket_number as ticket_number  # the fixture
from tests.web_browser import (  # noqa: F401 (the fixtures web_port, web_config, web_cfg)
    web_cfg_fixture,
    web_config_fixture,
    web_port_fixture,
)
from tests.web_client import forms, get, post

RATE_LINK = re.compile(r"(http://\S+/rate/(\d+))\?score=4")


def ratings(factory: Factory) -> list[tuple[str, int, str]]:
    with factory() as s:
        return [(r.contact_id, r.score, r.comment) for r in s.scalars(select(Rating).order_by(Rating.id))]


def mail_to(data_dir: Path, address: str, text: str) -> EmailMessage | None:
    return next(
        (
            m
            for m in sent_mails(data_dir)
            if address in str(m["To"]) and text in m.get_body(("plain",)).get_content()
        ),
        None,
    )


def report(config: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(ctl(config, "report", "--json")))
    return data


def test_rating_links_confirm_and_only_a_post_stores(
    web_config: Path,
    ticket_number: str,
    start: Callable[[Path], Serve],
    session_factory: Factory,
    data_dir: Path,
    web_port: int,
) -> None:
    ok(ctl(web_config, "desk", "set", "support", "--web-ratings"))
    ok(ctl(web_config, "ticket", "reply", ticket_number, "--as", BOB, stdin=b"Second answer: it is fixed.\n"))
    serve = start(web_config)
    base = f"http://127.0.0.1:{web_port}"
    mail = wait_until(lambda: mail_to(data_dir, ALICE, "Second answer"), what="the reply to Alice")
    text = mail.get_body(("plain",)).get_content()
    link, message_id = RATE_LINK.search(text).groups()  # type: ignore[union-attr]
    page_url = links(web_config, ticket_number)[ALICE]
    assert link == f"{page_url}/rate/{message_id}"
    assert f'href="{link}?score=5"' in mail.get_body(("html",)).get_content()
    first = mail_to(data_dir, ALICE, "Please restart it")  # sent before the desk took ratings
    assert first is not None and "/rate/" not in first.get_body(("plain",)).get_content()
    carol_link = links(web_config, ticket_number)[CAROL] + f"/rate/{message_id}?score="
    # Carol's copy (Cc, same headers, her own envelope) carries her own links.
    wait_until(lambda: mail_to(data_dir, ALICE, carol_link), what="Carol's copy with her rating links")

    confirm = get(f"{link}?score=4")
    assert confirm.status == 200 and 'value="4" checked' in confirm.text and "Second answer" in confirm.text
    assert get(f"{link}?score=4").status == 200
    assert ratings(session_factory) == []  # following the link stores nothing
    csrf = forms(confirm.text, base)[link]

    stored = post(link, {"csrf": csrf, "score": "4", "comment": "<b>quick</b> fix"})
    assert stored.status == 303 and stored.headers["Location"].endswith(f"?done=rated#m{message_id}")
    assert [(score, comment) for _, score, comment in ratings(session_factory)] == [(4, "<b>quick</b> fix")]
    changed = post(link, {"csrf": csrf, "score": "2", "comment": "<b>quick</b> fix"})
    assert changed.status == 303
    assert [(score, comment) for _, score, comment in ratings(session_factory)] == [(2, "<b>quick</b> fix")]
    bad = post(link, {"csrf": csrf, "score": "9"})
    assert bad.status == 400 and "Please choose a rating from 1 to 5." in bad.text
    assert post(link, {"csrf": "forged", "score": "1"}).status == 403
    with session_factory() as s:
        audits = s.scalars(select(AuditLog).where(AuditLog.action == "rating").order_by(AuditLog.id)).all()
        assert [(a.actor, a.detail["before"], a.detail["after"]) for a in audits] == [
            (f"customer:{ALICE}", None, 4),
            (f"customer:{ALICE}", 4, 2),
        ]
    page = get(f"{page_url}?done=rated").text
    assert "Thank you for your rating." in page and "Your rating of this reply: 2 of 5" in page
    assert "&lt;b&gt;quick&lt;/b&gt; fix" in page and "<b>quick" not in page

    # Carol rates the same reply on her own page: her own rating, beside Alice's.
    carol_url = links(web_config, ticket_number)[CAROL]
    carol_forms = forms(get(carol_url).text, base)
    carol_rate = f"{carol_url}/rate/{message_id}"
    assert post(carol_rate, {"csrf": carol_forms[carol_rate], "score": "5"}).status == 303

    replies = _show_and_report_agree(web_config, ticket_number, int(message_id))
    _ratings_off_answer_404(web_config, session_factory, page_url, link, csrf, replies)
    assert serve.stop() == EX_OK


def _show_and_report_agree(
    web_config: Path, ticket_number: str, message_id: int
) -> dict[int, dict[str, Any]]:
    """Alice's 2 and Carol's 5 of the reply, in `ticket show --json` and `report` (JSON and text)."""
    replies = {m["id"]: m for m in show(web_config, ticket_number)["messages"]}
    rated = replies[message_id]["ratings"]
    assert [(r["contact"], r["score"], r["comment"]) for r in rated] == [
        (ALICE, 2, "<b>quick</b> fix"),
        (CAROL, 5, ""),
    ]
    assert all(r["rated_at"].endswith("Z") for r in rated)
    assert all(m["ratings"] == [] for i, m in replies.items() if i != message_id)
    expected = {"count": 2, "mean": 3.5, "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}}
    numbers = report(web_config)
    assert [d["ratings"] for d in numbers["desks"]] == [expected]
    assert {a["agent"]: a["ratings"] for a in numbers["agents"]}[BOB] == expected
    text_report = ok(ctl(web_config, "report"))
    assert "RATINGS" in text_report and "1:0 2:1 3:0 4:0 5:1" in text_report and "3.50" in text_report
    return replies


def _ratings_off_answer_404(
    web_config: Path,
    session_factory: Factory,
    page_url: str,
    link: str,
    csrf: str,
    replies: dict[int, dict[str, Any]],
) -> None:
    """A customer message is not rated; with the desk's ratings off, links and forms answer 404."""
    customer_message = next(i for i, m in replies.items() if m["kind"] == "customer")
    assert get(f"{page_url}/rate/{customer_message}").status == 404  # only agent replies are rated
    ok(ctl(web_config, "desk", "set", "support", "--no-web-ratings"))
    assert get(f"{link}?score=4").status == 404
    assert post(link, {"csrf": csrf, "score": "3"}).status == 404
    assert "/rate/" not in get(page_url).text
    assert len(ratings(session_factory)) == 2


def test_an_agents_reply_by_mail_carries_each_recipients_rating_links(
    session_factory: Factory, web_cfg: Config
) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, BOB, "Bob Builder", ["support"])
    with transaction(session_factory) as s:
        s.scalars(select(Desk)).one().web_ratings = True
    deliver(session_factory, web_cfg, customer_mail("Printer broken"))
    with session_factory() as s:
        [ticket] = tickets(s)
        number = ticket.number
    answer = mail(
        sender=f"Bob Builder <{BOB}>", subject=f"Re: [{number}] Printer broken", body="Unplug it.\n"
    )
    to = agent_address(session_factory, web_cfg, number, BOB)

    deliver(session_factory, web_cfg, answer, to)

    with session_factory() as s:
        reply = s.scalars(select(Message).where(Message.kind == "agent")).one()
        relays = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "agent_reply")).all()
        texts = [plain_text(row.raw) for row in relays]
    assert len(texts) == 2  # Alice's copy and Carol's, each with their own links
    urls = {re.search(rf"(\S+/rate/{reply.id})\?score=1", text).group(1) for text in texts}  # type: ignore[union-attr]
    assert len(urls) == 2 and all(f"/rate/{reply.id}?score=5" in text for text in texts)


def plain_text(raw: bytes) -> str:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
