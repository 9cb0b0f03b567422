"""Work per mail on pathological mail: each case must take ≤ 1 s.

    .venv/bin/python bench/pathological_mail.py [--scale 1.0] [--case NAME ...]

Two parts:
- parse time of the pathological shapes of tests/test_fuzz.py (each once took minutes);
- the whole pipeline (spool, record_received, pipeline.runner.process on a fresh SQLite database, as
  tests/pipeline/helpers.deliver does) for huge headers a hostile sender writes: a 5 MB Subject folded
  into 500-character lines, a 1 MB display name, References with 50,000 ids, To with 20,000 addresses.
  Each becomes a ticket and queues the auto-reply, whose headers copy the subject and the sender's name
  (issue 14: the stdlib's header folding was superlinear in their length, under the write lock).

--scale multiplies the sizes of the pipeline cases (0.2: a 1 MB Subject). Exits 1 when a case took > 1 s.

    .venv/bin/python bench/pathological_mail.py --alongside [--scale 1.0] [--case NAME ...]

--alongside measures instead what a pathological mail does to the OTHER deliveries, through a real
`maild serve` (a fresh data dir with the desk per run, LMTP only on a free loopback port, outgoing to the
default Maildir, stopped with SIGTERM). One thread sends small unique new-ticket mails over one LMTP
connection, one every 100 ms, for at least 2 s and until the pathological mail is processed; 200 ms after
the first, another connection sends the pathological mail (pre-dot-stuffed, so the client does no Python
work per byte meanwhile). Per normal mail: acceptance latency (MAIL FROM .. the 250 after DATA) and
time-to-ticket (MAIL FROM .. its tickets row seen by a read-only SQLite poll every 20 ms); for the
pathological mail: its acceptance and the time until its spool row is 'done'. A baseline run (3 s of
normal mails only) comes first; a case fails when any normal mail was refused, never ticketed, or took
longer than the baseline's max + 1 s to be accepted or ticketed, or when the pathological mail was
refused or not processed within 120 s. Exits 1 when a case failed.
"""

from __future__ import annotations

import argparse
import re
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maild.config import load_config  # noqa: E402
from maild.mail.mailparse import NotAMessage, parse_mail  # noqa: E402
from maild.pipeline.runner import process  # noqa: E402
from maild.storage.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from maild.storage.migrate import upgrade  # noqa: E402
from maild.storage.models import Desk, DeskAddress  # noqa: E402
from maild.storage.spool import record_received, write_raw  # noqa: E402
from tests.test_fuzz import PATHOLOGICAL  # noqa: E402

BUDGET_S = 1.0
MB = 1_000_000


def _folded(text: str, width: int = 500) -> str:
    """`text` folded into lines of about `width` characters (at spaces), as the hostile sender did."""
    lines, line = [], []
    size = 0
    for word in text.split(" "):
        if size + len(word) + 1 > width and line:
            lines.append(" ".join(line))
            line, size = [], 0
        line.append(word)
        size += len(word) + 1
    lines.append(" ".join(line))
    return "\r\n ".join(lines)


def _words(size: int) -> str:
    return " ".join(f"word{i % 1000:03}" for i in range(size // 8))[:size]


def _mail(
    *,
    subject: str = "Help",
    from_header: str = "Mallory <mallory@evil.test>",
    to: str = "Support <support@example.com>",
    extra: str = "",
    serial: int = 0,
) -> bytes:
    return (
        f"From: {from_header}\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <pathological-{serial}@evil.test>\r\n"
        f"{extra}"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello, please help.\r\n"
    ).encode()


def long_subject(scale: float) -> bytes:
    return _mail(subject=_folded(_words(int(5 * MB * scale))), serial=1)


def long_display_name(scale: float) -> bytes:
    name = _folded(_words(int(1 * MB * scale)))
    return _mail(from_header=f'"{name}" <mallory@evil.test>', serial=2)


def many_references(scale: float) -> bytes:
    ids = " ".join(f"<ref-{i}@evil.test>" for i in range(int(50_000 * scale)))
    return _mail(
        subject="Re: old thread",
        extra=f"References: {_folded(ids, 900)}\r\nIn-Reply-To: <ref-0@evil.test>\r\n",
    )


def many_recipients(scale: float) -> bytes:
    to = ", ".join(f"Recipient Number {i} <rcpt{i}@evil.test>" for i in range(int(20_000 * scale)))
    return _mail(to=_folded(f"Support <support@example.com>, {to}", 900), serial=4)


CASES: dict[str, Callable[[float], bytes]] = {
    "long folded Subject": long_subject,
    "long display name": long_display_name,
    "References 50,000 ids": many_references,
    "To 20,000 addresses": many_recipients,
}


def prepare(workdir: Path, extra: str = "") -> Path:
    """A config with data_dir under `workdir` (plus `extra` TOML), its database and the desk `support`."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    config = workdir / "maild.toml"
    config.write_text(f'data_dir = "{data_dir}"\n{extra}')
    cfg = load_config(str(config))
    upgrade(cfg.database_url)
    factory = make_sessionmaker(make_engine(cfg.database_url))
    with transaction(factory) as session:
        session.add(
            Desk(
                name="support",
                pattern="SUP-{{yy}}-{{mm}}-{{nr-m}}",
                addresses=[DeskAddress(address="support@example.com")],
            )
        )
    return config


def bench_parse() -> list[tuple[str, float]]:
    results = []
    for name, raw, _outcome, _reason in PATHOLOGICAL:
        started = time.perf_counter()
        try:
            parse_mail(raw)
            verdict = "parsed"
        except NotAMessage as exc:
            verdict = f"not a message ({exc})"
        elapsed = time.perf_counter() - started
        print(f"parse    {name:32} {len(raw):>10} bytes  {elapsed * 1000:9.1f} ms  {verdict}", flush=True)
        results.append((name, elapsed))
    return results


def bench_pipeline(names: list[str], scale: float) -> list[tuple[str, float]]:
    results = []
    for name in names:
        raw = CASES[name](scale)
        # A fresh database per case: each mail is its sender's first (no rate limit, auto-reply queued).
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(str(prepare(Path(tmp))))
            engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
            factory = make_sessionmaker(engine)
            started = time.perf_counter()
            digest = write_raw(cfg.spool_dir, raw)
            with transaction(factory) as session:
                spool_id = record_received(session, digest, len(raw), "support@example.com", "bench").id
            result = process(factory, cfg, spool_id)
            elapsed = time.perf_counter() - started
            engine.dispose()
        outcome = f"{result.outcome} {result.ticket_number or ''}, {len(result.outbox_ids)} queued".strip()
        print(f"pipeline {name:32} {len(raw):>10} bytes  {elapsed * 1000:9.1f} ms  {outcome}", flush=True)
        results.append((name, elapsed))
    return results


# --- alongside: what one pathological mail does to the other deliveries of a real `maild serve` ---------

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
DESK_ADDRESS = "support@example.com"
MALLORY = "mallory@evil.test"
NORMAL_INTERVAL_S = 0.1  # one normal mail every 100 ms ...
MIN_NORMAL_S = 2.0  # ... for at least 2 s, and until the pathological mail is processed
BASELINE_S = 3.0  # the baseline run: normal mails only
HEAD_START_S = 0.2  # normal mails flow this long before the pathological mail is sent
POLL_S = 0.02
WAIT_S = 120.0  # a stuck daemon fails the bench instead of hanging it
NORMAL_SUBJECT = re.compile(r"\(normal-(\d+)\)")


@dataclass
class Normal:
    index: int
    sent_at: float  # perf_counter() at MAIL FROM
    accept_s: float | None = None  # until the 250 after DATA (None: refused or failed)
    ticket_s: float | None = None  # until its ticket row was seen
    error: str = ""


@dataclass
class AlongsideRun:
    name: str
    size: int = 0
    path_accept_s: float | None = None
    path_done_s: float | None = None  # until its spool row is 'done'
    path_outcome: str = ""
    path_error: str = ""
    normals: list[Normal] = field(default_factory=list)
    exit_code: int | None = None

    def accepts(self) -> list[float]:
        return [n.accept_s for n in self.normals if n.accept_s is not None]

    def tickets(self) -> list[float]:
        return [n.ticket_s for n in self.normals if n.ticket_s is not None]

    def incomplete(self) -> int:
        return sum(1 for n in self.normals if n.accept_s is None or n.ticket_s is None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _normal_mail(i: int) -> tuple[str, bytes]:
    """A small new-ticket mail from its own customer (no rate limit), unique subject and Message-ID."""
    sender = f"customer{i}@example.org"
    raw = (
        f"From: Customer {i} <{sender}>\r\n"
        f"To: Support <{DESK_ADDRESS}>\r\n"
        f"Subject: Printer broken (normal-{i})\r\n"
        f"Message-ID: <normal-{i}-{time.time_ns()}@example.org>\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello,\r\n\r\nthe printer on floor 2 prints blank pages.\r\n\r\nRegards\r\n"
    ).encode()
    return sender, raw


def _lmtp(port: int) -> smtplib.LMTP:
    client = smtplib.LMTP(HOST, port, timeout=WAIT_S)
    code, text = client.ehlo()  # LMTP: sends LHLO
    if code != 250:
        raise RuntimeError(f"LHLO: {code} {text!r}")
    return client


def _send_prepared(client: smtplib.LMTP, sender: str, data: bytes) -> None:
    """MAIL, RCPT, DATA with `data` already dot-stuffed and terminated, so that the client does no
    per-byte Python work on a huge mail while the clock runs (sendall releases the GIL)."""
    for command, expected in (
        (f"mail FROM:<{sender}>", 250),
        (f"rcpt TO:<{DESK_ADDRESS}>", 250),
        ("data", 354),
    ):
        client.putcmd(command)
        code, text = client.getreply()
        if code != expected:
            raise RuntimeError(f"{command.split()[0].upper()}: {code} {text!r}")
    client.send(data)
    code, text = client.getreply()  # one recipient: one reply
    if code != 250:
        raise RuntimeError(f"DATA: {code} {text!r}")


def _stuffed(raw: bytes) -> bytes:
    body = re.sub(rb"(?m)^\.", b"..", raw)
    return body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"


class Daemon:
    """`maild serve` on a fresh data dir with the desk, LMTP only, on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        config = prepare(workdir, f'[listen]\nlmtp = "{HOST}:{self.port}"\n')
        self.db_path = load_config(str(config)).database_url.removeprefix("sqlite:///")
        self.log = workdir / "maild.log"  # a file: a full pipe would block maild
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "maild"), "--config", str(config), "serve"], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + WAIT_S
        while not self._accepts():
            if self.proc.poll() is not None:
                raise SystemExit(f"maild serve exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"maild serve not ready within {WAIT_S:.0f} s")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        if '"event": "ready"' not in self.log.read_text(errors="replace"):
            return False
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def connect_db(self) -> sqlite3.Connection:
        # Plain reads in WAL mode never take the write lock: polling does not hold maild up.
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _poll(daemon: Daemon, run: AlongsideRun, path_sent: list[float], stop: threading.Event) -> None:
    """Records when each normal mail's ticket and the pathological mail's 'done' spool row appear."""
    db = daemon.connect_db()
    last_ticket = 0
    seen_at: dict[int, float] = {}  # normal mail index: perf_counter() when its ticket was first seen
    try:
        while not stop.is_set():
            rows = db.execute(
                "select id, substr(subject, 1, 200) from tickets where id > ? order by id", (last_ticket,)
            ).fetchall()
            now = time.perf_counter()
            for ticket_id, subject in rows:
                last_ticket = ticket_id
                found = NORMAL_SUBJECT.search(subject or "")
                if found:
                    seen_at[int(found.group(1))] = now
            for normal in list(run.normals):
                seen = seen_at.get(normal.index)
                if normal.ticket_s is None and seen is not None:
                    normal.ticket_s = seen - normal.sent_at
            if path_sent and run.path_done_s is None:
                row = db.execute(
                    "select s.outcome, t.number from spool s left join tickets t on t.id = s.ticket_id"
                    " where s.mail_from = ? and s.state = 'done'",
                    (MALLORY,),
                ).fetchone()
                if row:
                    run.path_done_s = now - path_sent[0]
                    run.path_outcome = f"{row[0]} {row[1] or ''}".strip()
            time.sleep(POLL_S)
    finally:
        db.close()


def _send_normals(port: int, run: AlongsideRun, enough: threading.Event, min_s: float) -> None:
    client = _lmtp(port)
    started = time.perf_counter()
    i = 0
    try:
        while True:
            now = time.perf_counter()
            if now - started >= min_s and enough.is_set():
                break
            due = started + i * NORMAL_INTERVAL_S
            if due > now:
                time.sleep(due - now)
            sender, raw = _normal_mail(i)
            data = _stuffed(raw)
            normal = Normal(index=i, sent_at=time.perf_counter())
            run.normals.append(normal)
            try:
                _send_prepared(client, sender, data)
                normal.accept_s = time.perf_counter() - normal.sent_at
            except (OSError, RuntimeError, smtplib.SMTPException) as exc:
                normal.error = str(exc)[:200]
                client.close()
                client = _lmtp(port)
            i += 1
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def run_alongside(name: str | None, scale: float) -> AlongsideRun:
    """Normal mails every 100 ms through a fresh `maild serve`, with the pathological mail `name` sent
    HEAD_START_S after the first (None: the baseline, normal mails only)."""
    run = AlongsideRun(name=name or "baseline")
    data = b""
    if name is not None:
        raw = CASES[name](scale)
        run.size = len(raw)
        data = _stuffed(raw)
    with tempfile.TemporaryDirectory(prefix="maild-alongside-") as tmp:
        daemon = Daemon(Path(tmp))
        try:
            stop_polling, enough = threading.Event(), threading.Event()
            path_sent: list[float] = []
            poller = threading.Thread(target=_poll, args=(daemon, run, path_sent, stop_polling), daemon=True)
            poller.start()
            min_s = MIN_NORMAL_S if name is not None else BASELINE_S
            sender = threading.Thread(
                target=_send_normals, args=(daemon.port, run, enough, min_s), daemon=True
            )
            sender.start()
            if name is None:
                enough.set()
            else:
                client = _lmtp(daemon.port)
                time.sleep(HEAD_START_S)
                started = time.perf_counter()
                path_sent.append(started)
                try:
                    _send_prepared(client, MALLORY, data)
                    run.path_accept_s = time.perf_counter() - started
                    client.quit()
                except (OSError, RuntimeError, smtplib.SMTPException) as exc:
                    run.path_error = str(exc)[:200]
                    client.close()
                deadline = time.perf_counter() + WAIT_S
                while run.path_done_s is None and not run.path_error and time.perf_counter() < deadline:
                    time.sleep(POLL_S)
                if run.path_done_s is None and not run.path_error:
                    run.path_error = f"not processed within {WAIT_S:.0f} s"
                enough.set()
            sender.join(WAIT_S + 10)
            deadline = time.perf_counter() + WAIT_S
            while time.perf_counter() < deadline and any(
                n.ticket_s is None for n in run.normals if n.accept_s is not None
            ):
                time.sleep(POLL_S)
            stop_polling.set()
            poller.join(10)
        finally:
            run.exit_code = daemon.stop()
    return run


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _summary(run: AlongsideRun) -> str:
    accepts, tickets = run.accepts(), run.tickets()
    accept = f"accept p50 {_ms(_p50(accepts)):>7} max {_ms(max(accepts, default=None)):>7}"
    ticket = f"ticket p50 {_ms(_p50(tickets)):>7} max {_ms(max(tickets, default=None)):>7}"
    missing = f", {run.incomplete()} not accepted/ticketed" if run.incomplete() else ""
    return f"{len(run.normals):>3} normal: {accept}, {ticket}{missing}"


def bench_alongside(names: list[str], scale: float) -> bool:
    """Prints one line per run; True when every case kept every normal mail within baseline max + 1 s."""
    baseline = run_alongside(None, scale)
    print(f"alongside baseline {'':32} {_summary(baseline)}  (maild exit {baseline.exit_code})", flush=True)
    if baseline.incomplete() or not baseline.normals:
        print("alongside baseline incomplete: cannot judge the cases")
        return False
    accept_limit = max(baseline.accepts()) + BUDGET_S
    ticket_limit = max(baseline.tickets()) + BUDGET_S
    print(
        f"alongside limits: accept ≤ {_ms(accept_limit)}, ticket ≤ {_ms(ticket_limit)} (baseline max + 1 s)"
    )
    failing = []
    for name in names:
        run = run_alongside(name, scale)
        late = [
            n
            for n in run.normals
            if n.accept_s is None
            or n.ticket_s is None
            or n.accept_s > accept_limit
            or n.ticket_s > ticket_limit
        ]
        ok = not late and not run.path_error
        own = (
            f"own accept {_ms(run.path_accept_s)}, processed {_ms(run.path_done_s)} ({run.path_outcome})"
            if not run.path_error
            else f"own: {run.path_error}"
        )
        print(
            f"alongside {name:32} {run.size:>10} bytes  {own}  | {_summary(run)}  "
            f"{'ok' if ok else f'FAIL ({len(late)} late)'}  (maild exit {run.exit_code})",
            flush=True,
        )
        if not ok:
            failing.append(name)
    if failing:
        print(
            f"alongside: other deliveries delayed > baseline max + {BUDGET_S:.0f} s by: {', '.join(failing)}"
        )
        return False
    print(f"alongside: all {len(names)} cases kept other deliveries within baseline max + {BUDGET_S:.0f} s")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="size factor of the pipeline cases")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only these pipeline cases")
    parser.add_argument("--no-parse", action="store_true", help="skip the parse-only fuzz shapes")
    parser.add_argument(
        "--alongside",
        action="store_true",
        help="instead: normal mails through a real `maild serve` while each pathological mail goes in",
    )
    args = parser.parse_args()
    if args.alongside:
        if not bench_alongside(args.case or list(CASES), args.scale):
            raise SystemExit(1)
        return
    results = [] if args.no_parse else bench_parse()
    results += bench_pipeline(args.case or list(CASES), args.scale)
    slow = [name for name, elapsed in results if elapsed > BUDGET_S]
    if slow:
        print(f"over {BUDGET_S:.0f} s: {', '.join(slow)}")
        raise SystemExit(1)
    print(f"all {len(results)} cases ≤ {BUDGET_S:.0f} s")


if __name__ == "__main__":
    main()
