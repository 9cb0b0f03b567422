"""Helpers to run `maild serve` as a real subprocess in tests: free ports, config files, bounded waits,
the daemon itself (`Serve`, whose JSON log lines are read as they come), and small SMTP/LMTP clients.
Shared by tests/test_serve.py, tests/test_listeners.py and the end-to-end tests in tests/e2e/."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.files import content_path
from tests.conftest import BIN, IS_POSTGRESQL
from tests.pipeline.helpers import outbox, spool

Factory = sessionmaker[Session]
TIMEOUT = 30.0
EX_OK, EX_OSERR = 0, 71


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spooled_file(cfg: Config, raw: bytes) -> Path:
    return content_path(cfg.spool_dir, hashlib.sha256(raw).hexdigest(), ".eml")


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for localhost (openssl ships with every Debian)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    proc = subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return cert, key


def write_config(
    path: Path,
    data_dir: Path,
    url: str,
    *,
    listen: dict[str, Any],
    busy_timeout_ms: int | None = None,
    extra: str = "",
) -> Path:
    lines = [f'data_dir = "{data_dir}"', "[database]", f'url = "{url}"']
    if busy_timeout_ms is not None:
        lines.append(f"busy_timeout_ms = {busy_timeout_ms}")
    lines.append("[listen]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in listen.items()]  # JSON scalars/lists are TOML
    path.write_text("\n".join([*lines, extra]) + "\n")
    return path


def wait_until(
    condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition", interval: float = 0.05
) -> Any:
    """The first truthy value of `condition()`, polled every `interval` seconds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sent_mails(data_dir: Path) -> list[EmailMessage]:
    folder = data_dir / "outgoing" / "new"
    found = []
    for path in sorted(folder.iterdir()) if folder.exists() else []:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def all_done(factory: Factory, count: int) -> Callable[[], bool]:
    def check() -> bool:
        with factory() as s:
            rows = spool(s)
        return len(rows) == count and all(r.state == "done" for r in rows)

    return check


def send(
    port: int, raw: bytes, recipients: list[str], sender: str = "alice@customer.example", **kw: Any
) -> str:
    """Send over SMTP with aiosmtplib; returns the server's text after 250 (raises on a refusal)."""

    async def go() -> str:
        _, reply = await aiosmtplib.send(
            raw,
            sender=sender,
            recipients=recipients,
            hostname="127.0.0.1",
            port=port,
            timeout=TIMEOUT,
            **{"start_tls": False, **kw},
        )
        return reply

    return asyncio.run(go())


class Serve:
    """A running `maild serve`; its stdout is read line by line (every line must be JSON)."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "maild"), "--config", str(config), "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.events: list[dict[str, Any]] = []
        self.not_json: list[str] = []
        self.stderr = b""
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    self.not_json.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._changed:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]

    def wait_for(self, event: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.find(event, **fields)
                if found:
                    return found[0]
                if self.proc.poll() is not None and not self._readers[0].is_alive():
                    raise AssertionError(
                        f"maild serve exited {self.proc.returncode} before {event!r}: "
                        f"{self.events[-5:]} {self.stderr.decode(errors='replace')}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {event!r} {fields} within {timeout}s; last: {self.events[-5:]}")
                self._changed.wait(min(remaining, 0.2))

    def ready(self) -> Serve:
        self.wait_for("ready")
        return self

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.wait_exit()

    def wait_exit(self) -> int:
        code = self.proc.wait(timeout=TIMEOUT + 10)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(name="start")  # imported as start_fixture: a test's `start` parameter then shadows nothing
def start_fixture() -> Iterator[Callable[[Path], Serve]]:
    """`start(config)` runs `maild serve` and waits for 'ready'; whatever is still running is killed after."""
    started: list[Serve] = []

    def starter(config: Path) -> Serve:
        serve = Serve(config)
        started.append(serve)
        return serve.ready()

    yield starter
    for serve in started:
        serve.kill()


def queued_sent(factory: Factory) -> bool:
    with factory() as s:
        return all(row.status == "sent" for row in outbox(s)) and bool(outbox(s))


class LineClient:
    """LMTP (or SMTP) spoken line by line over a blocking socket, TCP or unix."""

    def __init__(self, address: tuple[str, int] | Path) -> None:
        if isinstance(address, Path):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(str(address))
        else:
            self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")

    def replies(self, count: int = 1) -> list[str]:
        found = []
        while len(found) < count:
            line = self.file.readline().decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != "-":
                found.append(line)
        return found

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str, count: int = 1) -> list[str]:
        self.send(line.encode() + b"\r\n")
        return self.replies(count)

    def one(self, line: str) -> str:
        return self.command(line)[0]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Lock:
    """Another connection holds the database's write lock; serve's config waits for it only briefly."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._pg: Connection | None = None
        self._lite: sqlite3.Connection | None = None

    def serve_url(self) -> str:
        if IS_POSTGRESQL:
            waiting = make_url(self.url).update_query_dict({"options": "-c lock_timeout=300"})
            return waiting.render_as_string(hide_password=False)
        return self.url

    def acquire(self) -> None:
        if IS_POSTGRESQL:
            self._pg = create_engine(self.url).connect()
            self._pg.execute(text("LOCK TABLE spool IN ACCESS EXCLUSIVE MODE"))
        else:
            self._lite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._lite.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()
            self._pg.engine.dispose()
            self._pg = None
        if self._lite is not None:
            self._lite.rollback()
            self._lite.close()
            self._lite = None
