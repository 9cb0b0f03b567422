"""Webhooks with a real `maild serve`: mail over SMTP becomes a ticket, and the daemon's webhook sender
POSTs its events, signed, to a real HTTP server on loopback (also message.sent, when the auto-reply is
handed over by the pipeline process's sender)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maild.config import load_config
from maild.storage.db import make_engine, make_sessionmaker
from tests.cli import ctl, ok
from tests.conftest import run_cli
from tests.daemon import EX_OK, free_port, send, start_fixture, write_config
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, mail, make_desk
from tests.test_web_pages import ALICE, links
from tests.test_web_pages import ticket_number as ticket_number  # the fixture
from tests.web_browser import (  # noqa: F401 (the fixtures web_port, web_config, web_cfg)
    web_cfg_fixture,
    web_config_fixture,
    web_port_fixture,
)
from tests.web_client import forms, get, post
from tests.webhook_receiver import Receiver, receiver

__all__ = ["receiver", "start_fixture"]  # fixtures


def test_serve_posts_a_new_tickets_events_signed(
    tmp_path: Path, data_dir: Path, database_url: str, receiver: Receiver, start: Any
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "serve.toml",
        data_dir,
        database_url,
        listen={"smtp": f"127.0.0.1:{port}"},
        extra="[webhooks]\npoll_seconds = 0.1\n",
    )
    engine = make_engine(load_config(str(config)).database_url, 15000)
    make_desk(make_sessionmaker(engine), "support", [SUPPORT], SUP_PATTERN)
    engine.dispose()
    events = "ticket.created,message.sent"
    added = run_cli("maildctl", "webhook", "add", "crm", receiver.url, "--events", events, config=config)
    secret = added.stdout.split(": ")[-1].strip()
    serve = start(config)

    send(port, mail(), [SUPPORT])

    requests = receiver.wait_for(2)
    assert all(r.signed_with(secret) for r in requests)
    kinds = sorted(r.headers["X-Maild-Event"] for r in requests)
    assert kinds[0] == "message.sent" and kinds[-1] == "ticket.created"
    delivered = serve.wait_for("webhook_delivered", webhook="crm", kind="ticket.created")
    assert delivered["status"] == 200 and delivered["attempts"] == 1
    assert serve.stop() == EX_OK


def test_a_customers_close_on_the_web_page_is_posted(
    web_config: Path, ticket_number: str, web_port: int, receiver: Receiver, start: Any
) -> None:
    with web_config.open("a") as fh:
        fh.write("\n[webhooks]\npoll_seconds = 0.1\n")
    ok(ctl(web_config, "webhook", "add", "closes", receiver.url, "--events", "status.changed"))
    url = links(web_config, ticket_number)[ALICE]
    serve = start(web_config)
    found = forms(get(url).text, f"http://127.0.0.1:{web_port}")
    assert post(f"{url}/close", {"csrf": found[f"{url}/close"]}).status == 303

    [request] = receiver.wait_for(1)
    body = request.json
    assert (body["event"], body["before"], body["after"]) == ("status.changed", "waiting", "closed")
    assert body["ticket"]["number"] == ticket_number and body["ticket"]["status"] == "closed"
    assert url not in request.body.decode()  # no page link (it carries the customer's secret token)
    assert serve.stop() == EX_OK
