"""`maild pipe` end to end, as an MTA's pipe transport runs it: the real console script in a subprocess,
one message on stdin, the answer in the exit code (sysexits): 0 done, 67 unknown recipient, 75 try again
later, 78 invalid config. Whatever happens after the bytes reached the spool, they are kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import BIN, IS_POSTGRESQL, run_cli
from tests.pipe_worker import short_idle_worker, wait_for_worker_exit  # noqa: F401
from tests.pipeline.helpers import (
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    crlf,
    mail,
    make_desk,
    outbox,
    spool,
    tickets,
)

EX_OK, EX_NOUSER, EX_TEMPFAIL, EX_CONFIG = 0, 67, 75, 78
Factory = sessionmaker[Session]
pytestmark = pytest.mark.usefixtures("short_idle_worker")


# --- helpers ----------------------------------------------------------------------------------------


def pipe(config: Path, raw: bytes, recipient: str | None = None) -> subprocess.CompletedProcess[str]:
    args = ["pipe", *(["--recipient", recipient] if recipient else [])]
    return run_cli("maild", *args, config=config, stdin=raw)


def ctl_json(config: Path, *args: str) -> Any:
    proc = run_cli("maildctl", *args, "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def write_config(
    path: Path, data_dir: Path, url: str, *, busy_timeout_ms: int | None = None, smarthost: str | None = None
) -> Path:
    lines = [f'data_dir = "{data_dir}"', "[database]", f'url = "{url}"']
    if busy_timeout_ms is not None:
        lines.append(f"busy_timeout_ms = {busy_timeout_ms}")
    if smarthost is not None:
        lines += ["[outgoing]", f'smarthost = "{smarthost}"', "timeout = 5"]
    path.write_text("\n".join(lines) + "\n")
    return path


def spooled(data_dir: Path, raw: bytes) -> Path:
    digest = hashlib.sha256(raw).hexdigest()
    return data_dir / "spool" / digest[:2] / digest[2:4] / f"{digest}.eml"


def sent_mails(data_dir: Path) -> list[EmailMessage]:
    folder = data_dir / "outgoing" / "new"
    files = sorted(folder.iterdir()) if folder.exists() else []
    found = []
    for path in files:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def first_numbers_since(start: dt.datetime) -> set[str]:
    """SUP-<yy>-<mm>-1 of the UTC month at `start` and now (two, should the test straddle a month end)."""
    return {f"SUP-{t:%y}-{t:%m}-1" for t in (start, dt.datetime.now(dt.UTC))}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


@pytest.fixture
def two_desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)


# --- the happy path ---------------------------------------------------------------------------------


def test_new_mail_opens_a_ticket_and_answers_once(config_file: Path, data_dir: Path) -> None:
    added = run_cli(
        "maildctl",
        "desk",
        "add",
        "support",
        "--address",
        SUPPORT,
        "--pattern",
        SUP_PATTERN,
        config=config_file,
    )
    assert added.returncode == 0, added.stderr
    raw = mail()
    start = dt.datetime.now(dt.UTC)

    proc = pipe(config_file, raw, SUPPORT)

    assert proc.returncode == EX_OK, proc.stderr
    # `maildctl desk add` wrote the desk-address table: the pipe exited once the row was committed and
    # left the mail to its on-demand worker.
    wait_for_worker_exit(data_dir)
    [t] = ctl_json(config_file, "ticket", "list")
    assert t["number"] in first_numbers_since(start)
    assert (t["status"], t["desk"], t["customer"], t["message_count"]) == (
        "open",
        "support",
        "alice@customer.example",
        1,
    )
    # The raw bytes are kept, content-addressed.
    assert spooled(data_dir, raw).read_bytes() == raw
    # Exactly one auto-reply, delivered to the outgoing Maildir (no smarthost configured).
    [reply] = sent_mails(data_dir)
    assert reply["In-Reply-To"] == "<first@customer.example>"
    assert reply["References"] == "<first@customer.example>"
    assert f"[{t['number']}]" in reply["Subject"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["From"].addresses[0].addr_spec == SUPPORT
    assert reply["To"].addresses[0].addr_spec == "alice@customer.example"
    [row] = ctl_json(config_file, "outbox", "list")
    assert (row["status"], row["attempts"], row["message_id"]) == ("sent", 1, reply["Message-ID"])


def test_reply_with_the_number_in_the_subject_joins(config_file: Path, data_dir: Path, support: None) -> None:
    assert pipe(config_file, mail(), SUPPORT).returncode == EX_OK
    [number] = [t["number"] for t in ctl_json(config_file, "ticket", "list")]
    reply = mail(subject=f"AW: [{number}] Printer on fire", message_id="<second@customer.example>")

    assert pipe(config_file, reply, SUPPORT).returncode == EX_OK

    shown = ctl_json(config_file, "ticket", "show", number)
    assert (shown["message_count"], shown["status"]) == (2, "open")
    assert [m["threaded_by"] for m in shown["messages"]] == ["new", "subject"]
    assert len(sent_mails(data_dir)) == 1  # no second auto-reply for a reply


def test_reply_to_the_auto_reply_joins(
    config_file: Path, data_dir: Path, support: None, session_factory: Factory
) -> None:
    assert pipe(config_file, mail(), SUPPORT).returncode == EX_OK
    [auto_reply] = sent_mails(data_dir)
    # Subject without the tag: only In-Reply-To can find the ticket.
    reply = mail(
        subject="Re: Printer on fire",
        message_id="<second@customer.example>",
        extra=[("In-Reply-To", auto_reply["Message-ID"])],
    )

    assert pipe(config_file, reply).returncode == EX_OK

    with session_factory() as s:
        [t] = tickets(s)
        assert (len(t.messages), t.status) == (2, "open")
        assert t.messages[1].threaded_by == "references"


# --- idempotence ------------------------------------------------------------------------------------


def test_the_same_mail_piped_twice_changes_nothing(
    config_file: Path, data_dir: Path, support: None, session_factory: Factory
) -> None:
    raw = mail()
    assert pipe(config_file, raw, SUPPORT).returncode == EX_OK
    second = pipe(config_file, raw, SUPPORT)
    assert second.returncode == EX_OK, second.stderr
    with session_factory() as s:
        assert len(tickets(s)) == 1
        assert len(outbox(s)) == 1
        assert [e.outcome for e in spool(s)] == ["created", "duplicate"]
    assert len(sent_mails(data_dir)) == 1


def test_mail_without_message_id_piped_twice_is_one_ticket(
    config_file: Path, data_dir: Path, support: None, session_factory: Factory
) -> None:
    raw = mail(message_id=None)
    assert [pipe(config_file, raw, SUPPORT).returncode for _ in range(2)] == [EX_OK, EX_OK]
    with session_factory() as s:
        assert len(tickets(s)) == 1
        assert [e.outcome for e in spool(s)] == ["created", "duplicate"]
    assert len(sent_mails(data_dir)) == 1


def test_a_mistake_in_the_pipe_command_line_defers_the_mail(config_file: Path, support: None) -> None:
    """A typo in master.cf must not bounce customers' mail: exit 75 (the MTA keeps it), one line saying
    what is wrong."""
    proc = run_cli("maild", "pipe", "--recipent", SUPPORT, config=config_file, stdin=mail())
    assert proc.returncode == EX_TEMPFAIL
    assert proc.stderr.splitlines() == [
        f"maild: unrecognized arguments: --recipent {SUPPORT}: see 'maild --help'"
    ]
    # Elsewhere a wrong command line is exit 2, one line.
    other = run_cli("maild", "serve", "--workers", "3", config=config_file)
    assert (other.returncode, other.stderr.splitlines()) == (
        2,
        ["maild: unrecognized arguments: --workers 3: see 'maild --help'"],
    )


# --- routing ----------------------------------------------------------------------------------------


def test_unknown_recipient_exits_67(config_file: Path, support: None, session_factory: Factory) -> None:
    by_envelope = pipe(config_file, mail(), "nobody@example.com")
    assert by_envelope.returncode == EX_NOUSER
    assert "nobody@example.com" in by_envelope.stderr
    by_header = pipe(config_file, mail(to="nobody@example.com", message_id="<other@customer.example>"))
    assert by_header.returncode == EX_NOUSER
    with session_factory() as s:
        assert tickets(s) == []
        assert [e.outcome for e in spool(s)] == ["unknown_recipient", "unknown_recipient"]


@pytest.mark.parametrize(
    ("recipient", "headers", "desk"),
    [
        (SALES, [("Delivered-To", SUPPORT), ("X-Original-To", SUPPORT)], "sales"),
        (None, [("Delivered-To", SALES), ("X-Original-To", SUPPORT)], "sales"),
        (None, [("X-Original-To", SALES)], "sales"),
        (None, [], "support"),
    ],
    ids=["recipient-wins", "delivered-to", "x-original-to", "to"],
)
def test_recipient_then_headers_pick_the_desk(
    recipient: str | None,
    headers: list[tuple[str, str]],
    desk: str,
    config_file: Path,
    two_desks: None,
    session_factory: Factory,
) -> None:
    raw = mail(to=SUPPORT, extra=headers)
    assert pipe(config_file, raw, recipient).returncode == EX_OK
    with session_factory() as s:
        assert [t.desk.name for t in tickets(s)] == [desk]


def test_cross_posted_mail_makes_one_ticket_per_desk(
    config_file: Path, data_dir: Path, two_desks: None, session_factory: Factory
) -> None:
    raw = mail(to=f"{SUPPORT}, {SALES}")
    assert pipe(config_file, raw, SUPPORT).returncode == EX_OK
    assert pipe(config_file, raw, SALES).returncode == EX_OK
    with session_factory() as s:
        assert sorted(t.desk.name for t in tickets(s)) == ["sales", "support"]
    senders = sorted(m["From"].addresses[0].addr_spec for m in sent_mails(data_dir))
    assert senders == [SALES, SUPPORT]


# --- garbage ----------------------------------------------------------------------------------------


def test_garbage_is_quarantined_and_accepted(
    config_file: Path, support: None, session_factory: Factory
) -> None:
    inputs = {
        b"": "empty input",
        b"\x00\x01\x02\xff\xfe\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4: "no header fields",
        crlf("To: support@example.com\nSubject: who sent this\n\nno From header\n"): "no sender address",
    }
    for raw in inputs:
        proc = pipe(config_file, raw, SUPPORT)
        assert proc.returncode == EX_OK, proc.stderr

    quarantined = ctl_json(config_file, "spool", "list", "--quarantined")
    assert len(quarantined) == 3
    by_sha = {row["sha256"]: row for row in quarantined}
    for raw, reason in inputs.items():
        row = by_sha[hashlib.sha256(raw).hexdigest()]
        assert (row["outcome"], row["state"], row["ticket"], row["size"]) == (
            "quarantined",
            "done",
            None,
            len(raw),
        )
        assert reason in row["reason"]
    with session_factory() as s:
        assert tickets(s) == [] and outbox(s) == []


# --- try again later --------------------------------------------------------------------------------


def _unreachable_url(tmp_path: Path) -> str:
    if IS_POSTGRESQL:
        return f"postgresql://maild@127.0.0.1:{free_port()}/maild"
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "not-a-db").mkdir()
    return f"sqlite:///{tmp_path / 'not-a-db'}"


def test_database_down_exits_75_and_keeps_the_mail(
    config_file: Path, data_dir: Path, tmp_path: Path, support: None, session_factory: Factory
) -> None:
    down = write_config(tmp_path / "down.toml", data_dir, _unreachable_url(tmp_path))
    raw = mail()

    proc = pipe(down, raw, SUPPORT)

    assert proc.returncode == EX_TEMPFAIL
    assert "try again later" in proc.stderr
    assert spooled(data_dir, raw).read_bytes() == raw
    # The MTA retries once the database is back: the mail becomes a ticket, answered once.
    assert pipe(config_file, raw, SUPPORT).returncode == EX_OK
    with session_factory() as s:
        assert len(tickets(s)) == 1
        assert [(e.state, e.outcome) for e in spool(s)] == [("done", "created")]
    assert len(sent_mails(data_dir)) == 1


class Lock:
    """Another connection holding the database's write lock, and a config that waits for it only briefly."""

    def __init__(self, database_url: str, data_dir: Path, tmp_path: Path) -> None:
        if IS_POSTGRESQL:
            url = make_url(database_url)
            engine = create_engine(url)
            self._pg = engine.connect()
            self._pg.execute(text("LOCK TABLE spool IN ACCESS EXCLUSIVE MODE"))
            waiting = url.update_query_dict({"options": "-c lock_timeout=300"})
            self.config = write_config(tmp_path / "locked.toml", data_dir, waiting.render_as_string(False))
        else:
            self._lite = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
            self._lite.execute("BEGIN IMMEDIATE")
            self.config = write_config(tmp_path / "locked.toml", data_dir, database_url, busy_timeout_ms=200)
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if IS_POSTGRESQL:
            self._pg.rollback()
            self._pg.close()
            self._pg.engine.dispose()
        else:
            self._lite.rollback()
            self._lite.close()


@pytest.fixture
def lock(database_url: str, data_dir: Path, tmp_path: Path) -> Iterator[Lock]:
    held = Lock(database_url, data_dir, tmp_path)
    yield held
    held.release()


def test_database_locked_exits_75_then_the_retry_succeeds(
    support: None, lock: Lock, data_dir: Path, session_factory: Factory
) -> None:
    raw = mail()

    proc = pipe(lock.config, raw, SUPPORT)

    assert proc.returncode == EX_TEMPFAIL, proc.stderr
    assert "try again later" in proc.stderr
    assert spooled(data_dir, raw).read_bytes() == raw
    lock.release()
    # The same config, now that nobody holds the lock: it was the lock, and the retry goes through.
    assert pipe(lock.config, raw, SUPPORT).returncode == EX_OK
    with session_factory() as s:
        assert len(tickets(s)) == 1
        assert [(e.state, e.outcome) for e in spool(s)] == [("done", "created")]
    assert len(sent_mails(data_dir)) == 1


def test_spool_not_writable_exits_75(config_file: Path, data_dir: Path, support: None) -> None:
    (data_dir / "spool").write_text("a file where the spool directory should be")
    proc = pipe(config_file, mail(), SUPPORT)
    assert proc.returncode == EX_TEMPFAIL
    assert "spool" in proc.stderr


def test_smarthost_down_leaves_the_reply_queued(
    data_dir: Path, database_url: str, tmp_path: Path, support: None, session_factory: Factory
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        config = write_config(
            tmp_path / "smarthost.toml", data_dir, database_url, smarthost=f"127.0.0.1:{port}"
        )
        proc = pipe(config, mail(), SUPPORT)

    assert proc.returncode == EX_OK, proc.stderr
    with session_factory() as s:
        assert len(tickets(s)) == 1
        [row] = outbox(s)
        assert (row.status, row.attempts) == ("queued", 1)
        assert row.last_error
        assert row.next_attempt_at > row.created_at
    assert sent_mails(data_dir) == []


# --- invalid config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("data_dir = \n", "not valid TOML"),
        ('data_dir = "/tmp/x"\n[database]\nuri = "sqlite:///x"\n', "database.uri"),
        ('data_dir = "/tmp/x"\n[database]\nurl = "mysql://x"\n', "database.url"),
        (None, "not found"),
    ],
    ids=["not-toml", "unknown-key", "bad-url", "missing-file"],
)
def test_invalid_config_exits_78(content: str | None, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    proc = pipe(path, mail(), SUPPORT)
    assert proc.returncode == EX_CONFIG
    assert message in proc.stderr


# --- several deliveries at once ---------------------------------------------------------------------


def _pipe_concurrently(config: Path, raws: list[bytes]) -> list[int]:
    """Start one `maild pipe` per mail at the same time, as an MTA with parallel deliveries does."""
    procs = [
        subprocess.Popen(
            [str(BIN / "maild"), "--config", str(config), "pipe", "--recipient", SUPPORT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in raws
    ]
    for proc, raw in zip(procs, raws, strict=True):
        assert proc.stdin is not None
        proc.stdin.write(raw)
        proc.stdin.close()
    codes = []
    for proc in procs:
        proc.wait(timeout=120)
        codes.append(proc.returncode)
    return codes


def test_the_same_mail_delivered_in_parallel_is_one_ticket(
    config_file: Path, data_dir: Path, support: None, session_factory: Factory
) -> None:
    raw = mail()
    assert _pipe_concurrently(config_file, [raw] * 4) == [EX_OK] * 4
    with session_factory() as s:
        [t] = tickets(s)
        # Deliveries that overlap share one 'received' row, so there are 1 to 4 rows; exactly one of
        # them records the creation, every other one is a duplicate of that ticket.
        entries = spool(s)
        assert sorted(e.outcome or "" for e in entries) == ["created"] + ["duplicate"] * (len(entries) - 1)
        assert {e.ticket_id for e in entries} == {t.id}
        assert [e.attempts for e in entries if e.outcome == "created"] == [1]
    assert len(sent_mails(data_dir)) == 1


def test_parallel_mails_of_a_new_customer_make_one_contact(
    config_file: Path, data_dir: Path, support: None, session_factory: Factory
) -> None:
    raws = [mail(message_id=f"<p{n}@customer.example>", subject=f"request {n}") for n in range(4)]
    assert _pipe_concurrently(config_file, raws) == [EX_OK] * 4
    with session_factory() as s:
        found = tickets(s)
        assert sorted(t.number.rsplit("-", 1)[1] for t in found) == ["1", "2", "3", "4"]
        assert {t.customer.email for t in found} == {"alice@customer.example"}
        assert len({t.customer_id for t in found}) == 1
    assert len(sent_mails(data_dir)) == 4


@pytest.mark.parametrize(
    ("arguments", "stored", "answered"),
    [
        ((), "", True),  # not given: unknown (a Return-Path header could tell)
        (("--sender", "alice@customer.example"), "alice@customer.example", True),
        (("--sender", ""), "<>", False),  # Postfix's ${sender} with null_sender=: a bounce's null sender
    ],
)
def test_the_envelope_sender_is_stored_and_a_null_one_is_not_answered(
    config_file: Path,
    session_factory: Factory,
    support: None,
    arguments: tuple[str, ...],
    stored: str,
    answered: bool,
) -> None:
    proc = run_cli("maild", "pipe", "--recipient", SUPPORT, *arguments, config=config_file, stdin=mail())

    assert proc.returncode == 0, proc.stderr
    with session_factory() as s:
        [row] = spool(s)
        assert (row.mail_from, row.outcome) == (stored, "created")
        assert len(outbox(s)) == (1 if answered else 0)
