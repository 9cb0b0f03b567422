"""The customer acts on their ticket page (issue 18): a reply with files enters the spool and the pipeline
as their mail; bad input gets a clear message and stores nothing; a forged or cross-site POST gets 403;
closing is audited with the customer as the actor and the agents are told. Against the real `maild serve`
over loopback HTTP, as a browser without JavaScript posts its forms (tests/web_client.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from maild.storage.models import AuditLog, Message, OutboxMessage, SpoolEntry
from tests.cli import ctl, ok
from tests.daemon import EX_OK, Factory, Serve, sent_mails, wait_until
from tests.daemon import start_fixture as start_fixture  # the fixture `start`
from tests.test_web_pages import ALICE, BOB, links
from tests.test_web_pages import ticket_number as ticket_number  # the fixture
from tests.web_browser import (  # noqa: F401 (the fixtures web_port, web_config, web_cfg)
    web_cfg_fixture,
    web_config_fixture,
    web_port_fixture,
)
from tests.web_client import forms, get, post

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def show(config: Path, number: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(ctl(config, "ticket", "show", number, "--json")))
    return data


def counts(factory: Factory) -> tuple[int, int]:
    """(spool rows, messages): what a refused POST must leave as it was."""
    with factory() as s:
        return len(s.scalars(select(SpoolEntry.id)).all()), len(s.scalars(select(Message.id)).all())


def notices(factory: Factory, template: str) -> int:
    """How many `template` mails were queued (the desk's one agent, Bob, gets each notice; a sent row's
    recipients are not kept)."""
    with factory() as s:
        return len(s.scalars(select(OutboxMessage.id).where(OutboxMessage.template == template)).all())


def announced_too_large(url: str, csrf: str) -> bytes:
    """What a POST announcing a body of 100 MB gets, before sending it: the answer's first bytes."""
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000000\r\n\r\n"
    )
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as connection:
        connection.sendall(
            head.encode() + f'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}'.encode()
        )
        return connection.recv(200)


@pytest.fixture
def page(web_config: Path, ticket_number: str, start: Callable[[Path], Serve], web_port: int) -> Any:
    """The running daemon, Alice's page URL, its forms (action → CSRF token), the site's base URL."""
    serve = start(web_config)
    url = links(web_config, ticket_number)[ALICE]
    base = f"http://127.0.0.1:{web_port}"
    found = forms(get(url).text, base)
    assert set(found) == {f"{url}/reply", f"{url}/close"}  # ratings are off on this desk
    yield serve, url, found, base
    assert serve.stop() == EX_OK


def test_a_reply_with_a_file_becomes_the_customers_message(
    page: Any, web_config: Path, ticket_number: str, session_factory: Factory
) -> None:
    _serve, url, found, _base = page
    text = "Restarted it, still broken.\n<img src=x onerror=alert(1)> see photo"
    before = notices(session_factory, "customer_reply_notice")

    answer = post(
        f"{url}/reply",
        {"csrf": found[f"{url}/reply"], "text": text},
        files=[("screen <b>1.png", "image/png", PNG)],
    )

    assert answer.status == 303
    assert answer.headers["Location"] == f"{url[url.index('/t/') :]}?done=replied"

    def replied() -> dict[str, Any] | None:
        mine = [m for m in show(web_config, ticket_number)["messages"] if m["kind"] == "customer"]
        return mine[-1] if len(mine) == 2 else None

    message = wait_until(replied, what="the web reply on the ticket")
    assert message["from"] == ALICE and message["threaded_by"] == "token"
    assert "Restarted it, still broken." in message["visible_text"]
    [attachment] = message["attachments"]
    assert attachment["name"] == "screen <b>1.png" and attachment["stored"] and attachment["size"] == len(PNG)
    with session_factory() as s:
        assert s.scalars(select(SpoolEntry.ingress).order_by(SpoolEntry.id.desc())).first() == "web"
    wait_until(
        lambda: notices(session_factory, "customer_reply_notice") == before + 1,
        what="the agent's notice of the web reply",
    )
    shown = get(f"{url}?done=replied").text
    assert "Your reply was sent." in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown and "<img" not in shown
    assert "screen &lt;b&gt;1.png" in shown and "<b>" not in shown


def test_bad_input_and_forged_posts_store_nothing(
    page: Any, web_config: Path, session_factory: Factory
) -> None:
    _serve, url, found, base = page
    reply, csrf = f"{url}/reply", found[f"{url}/reply"]
    ok(ctl(web_config, "desk", "set", "support", "--max-attachment-mb", "1"))
    before = counts(session_factory)

    empty = post(reply, {"csrf": csrf, "text": "  \n "}, files=[("a.png", "image/png", PNG)])
    assert empty.status == 400 and "Please write your reply before sending it." in empty.text
    big = post(
        reply, {"csrf": csrf, "text": "here"}, files=[("big.pdf", "application/pdf", b"x" * 1_200_000)]
    )
    assert big.status == 400 and "big.pdf is larger than the limit of 1 MB per file." in big.text
    assert ">here</textarea>" in big.text  # what they typed is still there
    exe = post(
        reply, {"csrf": csrf, "text": "here"}, files=[("<i>run.exe", "application/x-msdownload", b"MZ")]
    )
    assert exe.status == 400 and "&lt;i&gt;run.exe: programs and scripts are not accepted." in exe.text
    assert "<i>" not in exe.text

    assert post(reply, {"text": "no token"}).status == 403
    assert post(reply, {"csrf": found[f"{url}/close"], "text": "another form's token"}).status == 403
    assert post(reply, {"csrf": csrf + "x", "text": "tampered"}).status == 403
    evil = post(reply, {"csrf": csrf, "text": "cross-site"}, headers={"Origin": "https://evil.example"})
    assert evil.status == 403 and "Not allowed" in evil.text
    assert evil.headers["Content-Security-Policy"].count("form-action 'self'") == 1
    fetched = post(reply, {"csrf": csrf, "text": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status == 403
    other_link = f"{base}/t/{'A' * 44}"
    assert post(f"{other_link}/reply", {"csrf": csrf, "text": "x"}).status == 404
    assert post(f"{url}/close", {"csrf": found[f"{url}/close"]}, headers={"Origin": "null"}).status == 303

    assert announced_too_large(f"{url}/reply", found[f"{url}/reply"]).startswith(b"HTTP/1.1 413")
    assert counts(session_factory)[0] == before[0]  # nothing spooled
    assert get(url).status == 200


def test_closing_is_the_customers_and_a_closed_ticket_takes_no_reply(
    page: Any, web_config: Path, ticket_number: str, session_factory: Factory, data_dir: Path
) -> None:
    _serve, url, found, _base = page
    before = notices(session_factory, "customer_reply_notice")

    closed = post(f"{url}/close", {"csrf": found[f"{url}/close"]})

    assert closed.status == 303 and closed.headers["Location"].endswith("?done=closed")
    assert show(web_config, ticket_number)["status"] == "closed"
    with session_factory() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "status")).all()[-1]
        assert entry.actor == f"customer:{ALICE}" and entry.detail["after"] == "closed"
    assert notices(session_factory, "customer_reply_notice") == before + 1

    def told_bob() -> bool:
        return any(
            BOB in str(m["To"]) and "closed the ticket on its web page" in m.get_body().get_content()
            for m in sent_mails(data_dir)
        )

    wait_until(told_bob, what="Bob's notice of the close")
    shown = get(f"{url}?done=closed").text
    assert "The ticket is closed. Thank you!" in shown and "Closed" in shown
    assert f"{url[url.index('/t/') :]}/reply" not in shown and "This ticket is closed." in shown
    spooled = counts(session_factory)[0]
    refused = post(f"{url}/reply", {"csrf": found[f"{url}/reply"], "text": "one more thing"})
    assert refused.status == 400 and "This ticket is closed: it takes no more replies." in refused.text
    assert counts(session_factory)[0] == spooled
    again = post(f"{url}/close", {"csrf": found[f"{url}/close"]})
    assert again.headers["Location"].endswith("?done=closed_already")
