"""`maild pipe` with `maild serve` running on the same data directory (maild.ingress.control): the pipe
spools the
mail and the daemon records and processes it, answering the verdict the pipe turns into its exit code.
When the daemon is not there or fails to answer, the pipe processes the mail itself. Real subprocesses, a
real unix socket; the daemon's JSON log says who processed what."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maild.ingress.control import SOCKET_NAME
from maild.ingress.desk_table import read_table, table_path
from tests.conftest import run_cli
from tests.daemon import Factory, all_done, free_port, sent_mails, start_fixture, wait_until, write_config  # noqa: F401
from tests.pipe_worker import short_idle_worker  # noqa: F401
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, mail, make_desk, spool, tickets

EX_OK, EX_NOUSER = 0, 67
pytestmark = pytest.mark.usefixtures("short_idle_worker")


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


@pytest.fixture
def serve_config(tmp_path: Path, data_dir: Path, database_url: str) -> Path:
    return write_config(
        tmp_path / "serve.toml", data_dir, database_url, listen={"smtp": f"127.0.0.1:{free_port()}"}
    )


def pipe(config: Path, raw: bytes, recipient: str | None = SUPPORT) -> Any:
    args = ["pipe", *(["--recipient", recipient] if recipient else [])]
    return run_cli("maild", *args, config=config, stdin=raw)


def test_the_daemon_processes_what_the_pipe_spooled(
    config_file: Path, serve_config: Path, data_dir: Path, session_factory: Factory, start: Any
) -> None:
    serve = start(serve_config)
    path = data_dir / SOCKET_NAME
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o660
    serve.wait_for("listening", protocol="control", address=f"unix:{path}")

    proc = pipe(config_file, mail(message_id="<piped@customer.example>"))

    # Exit 0 once the row is committed (a desk's recipient: as LMTP's 250); the daemon processes it.
    assert (proc.returncode, proc.stderr) == (EX_OK, "")
    wait_until(all_done(session_factory, 1), what="the piped mail processed by the daemon")
    with session_factory() as s:
        [ticket] = tickets(s)
        [row] = spool(s)
        assert (row.ingress, row.outcome, row.ticket_id) == ("pipe", "created", ticket.id)
    # The daemon recorded and processed it (the pipe's own path logs nothing), and sent the auto-reply.
    serve.wait_for("accepted", ingress="pipe", spool_ids=[row.id])
    serve.wait_for("processed", spool_id=row.id, outcome="created", ticket=ticket.number)
    wait_until(lambda: len(sent_mails(data_dir)) == 1, what="the auto-reply sent by the daemon")
    # The same mail again (an MTA retrying): a duplicate, still exit 0.
    again = pipe(config_file, mail(message_id="<piped@customer.example>"))
    assert again.returncode == EX_OK
    wait_until(all_done(session_factory, 2), what="the second delivery processed")
    with session_factory() as s:
        assert [r.outcome for r in spool(s)] == ["created", "duplicate"] and len(tickets(s)) == 1
    assert serve.stop() == EX_OK
    assert not path.exists()  # gone at stop: the next pipe processes its mail itself


def test_an_unknown_recipient_is_exit_67_through_the_daemon(
    config_file: Path, serve_config: Path, data_dir: Path, session_factory: Factory, start: Any
) -> None:
    serve = start(serve_config)
    # The daemon wrote the desk-address table when it loaded the addresses. An address it does not
    # list is not bounced on its word: the daemon decides, after spooling (its pipeline's verdict).
    serve.wait_for("desk_addresses_loaded")
    assert read_table(data_dir) == frozenset({SUPPORT})
    proc = pipe(config_file, mail(), "nobody@example.com")
    assert proc.returncode == EX_NOUSER
    assert "nobody@example.com" in proc.stderr and proc.stderr.startswith("maild pipe: ")
    with session_factory() as s:
        assert [r.outcome for r in spool(s)] == ["unknown_recipient"]
    # Without the table, the same.
    table_path(data_dir).unlink()
    proc = pipe(config_file, mail(), "nobody@example.com")
    assert proc.returncode == EX_NOUSER
    assert "nobody@example.com" in proc.stderr and proc.stderr.startswith("maild pipe: ")
    with session_factory() as s:
        rows = spool(s)
        assert [r.outcome for r in rows] == ["unknown_recipient"] * 2
    serve.wait_for("processed", spool_id=rows[-1].id, outcome="unknown_recipient")
    # No --recipient: the pipeline routes by the headers, and the pipe waits for its answer.
    by_header = mail(to="nobody@example.com", message_id="<by-header@customer.example>")
    assert pipe(config_file, by_header, None).returncode == EX_NOUSER
    routed = pipe(config_file, mail(message_id="<routed@customer.example>"), None)
    assert routed.returncode == EX_OK
    with session_factory() as s:  # answered after processing: done already
        assert [r.outcome for r in spool(s)] == ["unknown_recipient"] * 3 + ["created"]


def test_a_bad_request_is_refused_and_records_nothing(
    serve_config: Path, data_dir: Path, session_factory: Factory, start: Any
) -> None:
    serve = start(serve_config)
    for line in (b"not json\n", b'{"sha256": "' + b"0" * 64 + b'", "size": 3}\n'):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(str(data_dir / SOCKET_NAME))
            client.sendall(line)
            assert client.recv(100) == b""  # no verdict: closed
    refused = serve.wait_for("control_request_refused")
    assert "JSON" in refused["error"]
    wait_until(lambda: len(serve.find("control_request_refused")) == 2, what="both refused")
    assert "no spooled file" in serve.find("control_request_refused")[1]["error"]
    with session_factory() as s:
        assert spool(s) == []


@pytest.fixture
def silent_socket(data_dir: Path) -> Iterator[list[bytes]]:
    """A socket where the daemon's would be that reads the request and hangs up without a verdict (a
    daemon killed mid-request). Yields the requests it got."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(data_dir / SOCKET_NAME))
    server.listen()
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                got.append(conn.recv(4096))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield got
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (closing alone does not, on Linux)
    server.close()
    thread.join(timeout=5)


def test_a_daemon_that_hangs_up_leaves_the_mail_to_the_pipe(
    config_file: Path, session_factory: Factory, silent_socket: list[bytes]
) -> None:
    proc = pipe(config_file, mail(message_id="<cut@customer.example>"))
    assert proc.returncode == EX_OK, proc.stderr
    [request] = silent_socket
    assert json.loads(request)["recipient"] == SUPPORT
    with session_factory() as s:
        [row] = spool(s)
        assert (row.outcome, len(tickets(s))) == ("created", 1)


def test_a_stale_socket_is_ignored_by_the_pipe_and_replaced_by_the_next_daemon(
    config_file: Path, serve_config: Path, data_dir: Path, session_factory: Factory, start: Any
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(data_dir / SOCKET_NAME))  # bound, never listening: what a killed daemon leaves
    stale.close()
    assert pipe(config_file, mail(message_id="<stale@customer.example>")).returncode == EX_OK
    serve = start(serve_config)
    serve.wait_for("listening", protocol="control")
    assert pipe(config_file, mail(message_id="<after@customer.example>")).returncode == EX_OK
    wait_until(all_done(session_factory, 2), what="the second mail processed by the daemon")
    with session_factory() as s:
        assert [r.outcome for r in spool(s)] == ["created", "created"]
    assert serve.find("accepted", ingress="pipe")  # the second went through the daemon
