"""Nothing acknowledged is lost, nothing is doubled (issue 16): a 500-mail LMTP burst from senders that
retry like an MTA, while `maild serve` is killed with SIGKILL at ten random points, and while its database
goes away and comes back. Every mail that got a 250 must be a ticket exactly once in the end."""

from __future__ import annotations

import random
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from maild.storage.models import Message, SpoolEntry, Ticket
from tests.conftest import IS_POSTGRESQL
from tests.daemon import (
    Factory,
    LineClient,
    free_port,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, make_desk

MAILS = 500
SENDERS = 5
# Every mail is a new ticket from its own customer with an auto-reply: no rate limit may stop one.
LIMITS = (
    "[hygiene]\nautoreply_per_hour = 100000\nautoreply_per_day = 100000\nautoreply_desk_per_hour = 100000"
)


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def burst_mail(n: int) -> bytes:
    return (
        f"From: Customer {n} <customer{n}@burst.example>\r\nTo: {SUPPORT}\r\n"
        f"Subject: burst request {n}\r\nMessage-ID: <burst-{n}@burst.example>\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease help with case {n}.\r\n"
    ).encode()


class Burst:
    """SENDERS threads delivering MAILS over LMTP, each mail again and again until it gets its 250, as an
    MTA's queue would (after a 451, a refused connection or one cut mid-transaction)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked: list[int] = []
        self.refused = 0  # 4xx answers seen
        self.cut = 0  # connections refused or lost
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(i,), daemon=True) for i in range(SENDERS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a sender did not finish"

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _send(self, first: int) -> None:
        client: LineClient | None = None
        for n in range(first, MAILS, SENDERS):
            while True:
                try:
                    client = client or self._connect()
                    if self._transaction(client, n):
                        with self._lock:
                            self.acked.append(n)
                        break
                    with self._lock:
                        self.refused += 1
                except OSError:
                    with self._lock:
                        self.cut += 1
                    if client is not None:
                        client.close()
                    client = None
                    time.sleep(0.05)
        if client is not None:
            client.close()

    def _connect(self) -> LineClient:
        client = LineClient(("127.0.0.1", self.port))
        client.replies()  # the greeting
        client.command("LHLO burst.example")
        return client

    def _transaction(self, client: LineClient, n: int) -> bool:
        """True once the mail got its 250 after DATA; False after a 4xx (sent again)."""
        if not client.one(f"MAIL FROM:<customer{n}@burst.example>").startswith("250"):
            client.one("RSET")
            return False
        if not client.one(f"RCPT TO:<{SUPPORT}>").startswith("250"):
            client.one("RSET")
            return False
        if not client.one("DATA").startswith("354"):
            client.one("RSET")
            return False
        client.send(burst_mail(n) + b".\r\n")
        reply = client.replies()[0]
        if reply.startswith("250"):
            return True
        if not reply.startswith("4"):
            raise AssertionError(f"mail {n}: {reply}")
        return False


def _children(pid: int) -> list[int]:
    """The processes `pid` started and theirs (once mail has arrived: the pipeline process and its parse
    processes)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *_children(int(child))]
    except FileNotFoundError:  # it exited meanwhile
        pass
    return found


def _config(tmp_path: Path, data_dir: Path, url: str, port: int) -> Path:
    listen = {"lmtp": f"127.0.0.1:{port}"}
    return write_config(
        tmp_path / "serve.toml", data_dir, url, listen=listen, busy_timeout_ms=1000, extra=LIMITS
    )


def _exactly_once(factory: Factory, burst: Burst) -> None:
    """Every acknowledged mail is one message on one ticket of its own; no spool row is left waiting."""
    assert sorted(burst.acked) == list(range(MAILS))
    with factory() as s:
        per_id = dict(s.execute(select(Message.message_id, func.count()).group_by(Message.message_id)).all())
        assert per_id == {f"<burst-{n}@burst.example>": 1 for n in range(MAILS)}
        assert s.scalar(select(func.count(Ticket.id))) == MAILS
        outcomes = s.execute(select(SpoolEntry.outcome, func.count()).group_by(SpoolEntry.outcome)).all()
        # A mail spooled whose 250 the kill swallowed comes again: the second copy is a duplicate.
        assert {outcome for outcome, _ in outcomes} <= {"created", "duplicate"}, outcomes
        assert dict(outcomes)["created"] == MAILS


def _all_processed(factory: Factory) -> Callable[[], bool]:
    def check() -> bool:
        with factory() as s:
            waiting = s.scalar(select(func.count()).where(SpoolEntry.state == "received"))
            return s.scalar(select(func.count(SpoolEntry.id))) >= MAILS and waiting == 0

    return check


def test_ten_kills_in_a_burst_lose_and_double_nothing(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    port = free_port()
    config = _config(tmp_path, data_dir, database_url, port)
    rng = random.Random(16)
    kill_points = sorted(rng.sample(range(10, MAILS - 10), 10))
    serve = start(config)
    burst = Burst(port)
    burst.start()
    killed_children: list[int] = []
    for point in kill_points:
        wait_until(
            lambda point=point: burst.count() >= point, timeout=120, what=f"{point} mails acknowledged"
        )
        time.sleep(rng.uniform(0, 0.02))  # somewhere inside the next transactions
        children = _children(serve.proc.pid)
        killed_children += children
        serve.proc.send_signal(signal.SIGKILL)
        serve.wait_exit()
        # The parse processes die with the daemon: nothing is left running after a SIGKILL.
        wait_until(lambda gone=children: not any(Path(f"/proc/{p}").exists() for p in gone), what="no orphan")
        serve = start(config)
    burst.join(timeout=180)
    wait_until(_all_processed(session_factory), timeout=120, what="every spooled mail processed")
    assert serve.stop() == 0
    assert burst.cut > 0  # the kills cut connections: the senders had to come back
    assert killed_children  # the daemons killed had parse processes (and none survived them)
    _exactly_once(session_factory, burst)


class Outage:
    """The database as maild reaches it, and a way to take it away for a while: a TCP relay to
    PostgreSQL that cuts every connection and refuses new ones while down; for SQLite another connection
    holding the write lock (maild's transactions time out after busy_timeout_ms)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._down = threading.Event()
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._sqlite: Any = None
        if IS_POSTGRESQL:
            parsed = make_url(url)
            self._upstream = (parsed.host or "127.0.0.1", parsed.port or 5432)
            self._server = socket.create_server(("127.0.0.1", 0))
            self.maild_url = parsed.set(
                host="127.0.0.1", port=self._server.getsockname()[1]
            ).render_as_string(hide_password=False)
            threading.Thread(target=self._accept, daemon=True).start()
        else:
            self.maild_url = url

    def down(self) -> None:
        if IS_POSTGRESQL:
            self._down.set()
            with self._lock:
                pairs, self._pairs = self._pairs, []
            for pair in pairs:
                for sock in pair:
                    sock.close()
        else:
            import sqlite3

            self._sqlite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")

    def up(self) -> None:
        self._down.clear()
        if self._sqlite is not None:
            self._sqlite.rollback()
            self._sqlite.close()
            self._sqlite = None

    def close(self) -> None:
        self._stop.set()
        self.up()
        if IS_POSTGRESQL:
            self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while True:
                for key, _ in selector.select(timeout=1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            a.close()
            b.close()


def test_the_database_going_away_mid_burst_gives_451s_and_loses_nothing(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    port = free_port()
    outage = Outage(database_url)
    try:
        serve = start(_config(tmp_path, data_dir, outage.maild_url, port))
        burst = Burst(port)
        burst.start()
        wait_until(lambda: burst.count() >= MAILS // 3, timeout=120, what="a third acknowledged")
        outage.down()
        before = burst.refused + burst.cut
        wait_until(lambda: burst.refused + burst.cut > before + 3, timeout=60, what="451s while it is down")
        time.sleep(1.0)
        outage.up()
        burst.join(timeout=180)
        wait_until(_all_processed(session_factory), timeout=120, what="every spooled mail processed")
        assert serve.stop() == 0
    finally:
        outage.close()
    assert burst.refused > 0  # answered 451 while the database was away, not cut off
    _exactly_once(session_factory, burst)
