"""`maild serve` polling a real Dovecot mailbox as a desk inbox: a mail in the mailbox becomes a ticket and
is marked \\Seen only after it is spooled; check-config and serve refuse an unreadable IMAP password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from maild.storage.models import SpoolEntry, Ticket
from tests.conftest import run_cli
from tests.daemon import (
    Factory,
    free_port,
    sent_mails,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, mail, make_desk
from tests.servers.dovecot import Dovecot, dovecot_fixture  # noqa: F401  (the fixture `dovecot`)


def imap_config(tmp_path: Path, data_dir: Path, database_url: str, host: str, port: int, user: str) -> Path:
    secret = tmp_path / "imap-password"
    secret.write_text("secret\n")
    extra = "\n".join(
        [
            "[[imap]]",
            'name = "support-inbox"',
            'desk = "support"',
            f'host = "{host}"',
            f"port = {port}",
            "tls = false",
            f'username = "{user}"',
            f'password_file = "{secret}"',
            "poll_seconds = 2",
        ]
    )
    listen = {"smtp": f"127.0.0.1:{free_port()}"}
    return write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen, extra=extra)


def test_serve_turns_mail_in_a_polled_mailbox_into_tickets(
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
    dovecot: Dovecot,
    start: Any,
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    inbox = dovecot.add_user("helpdesk")
    dovecot.deliver(inbox, mail(message_id="<waiting@customer.example>", subject="Already there"))

    serve = start(imap_config(tmp_path, data_dir, database_url, dovecot.host, dovecot.imap_port, inbox))
    wait_until(lambda: len(sent_mails(data_dir)) == 1, what="the first mail ticketed and answered")
    # one that arrives while serve runs (IDLE or the next poll)
    dovecot.deliver(inbox, mail(message_id="<later@customer.example>", subject="Arrived later"))
    wait_until(lambda: len(sent_mails(data_dir)) == 2, what="the second mail ticketed and answered")

    with session_factory() as session:
        subjects = sorted(session.scalars(select(Ticket.subject)))
        rows = list(session.scalars(select(SpoolEntry)))
    assert subjects == ["Already there", "Arrived later"]
    assert {(r.ingress, r.recipient, r.state) for r in rows} == {("imap", SUPPORT, "done")}
    assert [r"\Seen" in flags for flags in dovecot.flags(inbox)] == [True, True]
    assert serve.stop() == 0
    # a restart fetches nothing again
    serve = start(imap_config(tmp_path, data_dir, database_url, dovecot.host, dovecot.imap_port, inbox))
    serve.wait_for("imap_polling")
    assert serve.stop() == 0
    with session_factory() as session:
        assert len(list(session.scalars(select(SpoolEntry)))) == 2


def test_check_config_and_serve_refuse_an_unreadable_imap_password(
    tmp_path: Path, data_dir: Path, database_url: str
) -> None:
    # Refused before any connection: no IMAP server needed.
    config = imap_config(tmp_path, data_dir, database_url, "127.0.0.1", free_port(), "nobody@mail.test")
    (tmp_path / "imap-password").unlink()

    for command in ("check-config", "serve"):
        proc = run_cli("maild", command, config=config)
        assert proc.returncode == 78, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert "imap.support-inbox.password_file" in line and "cannot read" in line
