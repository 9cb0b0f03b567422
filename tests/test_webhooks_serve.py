"""Webhooks with a real `maild serve`: mail over SMTP becomes a ticket, and the daemon's webhook sender
POSTs its events, signed, to a real HTTP server on loopback (also message.sent, when the auto-reply is
handed over by the pipeline process's sender)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maild.config import load_config
from maild.storage.db import make_engine, make_sessionmaker
from tests.conftest import run_cli
from tests.daemon import EX_OK, free_port, send, start_fixture, write_config
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, mail, make_desk
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
