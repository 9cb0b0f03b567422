"""`#to` once through the real `maild serve` (SMTP in, the outbox sender delivering to its Maildir): the
agent's mail opens the ticket, the customer's first mail leaves the daemon, and the customer's answer to
it, sent back over SMTP, threads into the ticket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tests.daemon import (
    EX_OK,
    all_done,
    free_port,
    send,
    sent_mails,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import SUPPORT, mail, make_agent, make_desk, ticket

Factory = sessionmaker[Session]
ANNA, ALICE = "anna@example.com", "alice@customer.example"
PASS = ("Authentication-Results", "mx.example.com; dkim=pass header.d=example.com")


def test_to_by_smtp_through_maild_serve_and_the_customers_answer_threads_in(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    make_desk(session_factory, "support", [SUPPORT], "SUP-{{nr}}")
    make_agent(session_factory, ANNA, "Anna", ["support"])
    port = free_port()
    config = write_config(
        tmp_path / "serve.toml",
        data_dir,
        database_url,
        listen={"smtp": f"127.0.0.1:{port}"},
        extra='[agents]\ntrusted_authserv_ids = ["mx.example.com"]',
    )
    serve = start(config)
    raw = mail(
        sender=f"Anna <{ANNA}>",
        subject="Your order",
        body=f"#to {ALICE}\n\nHello Alice,\nyour order shipped today.\n",
        message_id="<a1@example.com>",
        extra=[PASS],
    )
    send(port, raw, [SUPPORT], sender=ANNA)
    wait_until(all_done(session_factory, 1), what="the agent's mail processed")
    [first] = wait_until(
        lambda: [m for m in sent_mails(data_dir) if m["To"].addresses[0].addr_spec == ALICE] or None,
        what="the first mail to the customer delivered",
    )
    assert first["Subject"] == "[SUP-1] Your order"
    reply_to = first["Reply-To"].addresses[0].addr_spec
    answer = mail(
        subject="Re: [SUP-1] Your order",
        to=reply_to,
        body="Thank you!\n",
        message_id="<answer@customer.example>",
        extra=[("In-Reply-To", first["Message-ID"])],
    )
    send(port, answer, [reply_to])
    wait_until(all_done(session_factory, 2), what="the customer's answer processed")
    with session_factory() as s:
        t = ticket(s, "SUP-1")
        assert t.status == "open" and [m.kind for m in t.messages] == ["agent", "customer"]
    assert serve.stop() == EX_OK
