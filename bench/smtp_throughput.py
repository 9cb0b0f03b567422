"""Intake throughput of `maild serve` over LMTP and SMTP, side by side with a bare aiosmtpd server.

    .venv/bin/python bench/smtp_throughput.py [--mails 300] [--senders 1,10,50] [--protocols lmtp,smtp]
        [--paced-rate 200] [--paced-seconds 10] [--profile] [--json]

Two servers, each in its own process (so neither shares a core or the GIL with the clients here):
  baseline  aiosmtpd SMTP and LMTP whose handler answers 250 at once: the cost of the protocol alone.
  maild     a real `maild serve` on a fresh data dir (SQLite default database, or the empty PostgreSQL
            database of --database-url; outgoing to the Maildir),
            one desk `support` (support@bench.test) made with `maildctl init` + `maildctl desk add`.

For every protocol and sender count, the same N unique ~3 KB mails are sent to each server. Every sender
keeps one connection open (connected before the clock starts) and sends its share back to back:
aiosmtplib for SMTP (MAIL, RCPT, DATA; no pipelining), a minimal LMTP client over asyncio streams here.

Definitions:
  acceptance latency  from writing MAIL FROM on the open connection to reading the 250 after the final
                      "." of DATA (LMTP: the recipient's reply). For maild that 250 means "fsynced to the
                      spool and the 'received' row committed".
  mail/s              N / (first MAIL FROM .. last 250).
  ticketed mail/s     maild only: N / (first MAIL FROM .. the moment every one of the N spool rows is
                      'done' and every new ticket's auto-reply row is in the outbox), polled every 20 ms
                      from the database. Each configuration waits for this before the next starts.
  paced run           open loop over LMTP: --paced-rate mail/s for --paced-seconds, spread over 10
                      senders, each mail due at a fixed time. Its latency runs from the due time (a sender
                      that falls behind counts the wait: no coordinated omission); "service" latency from
                      the MAIL FROM actually written. Backlog = spool rows not 'done' at the last 250.

--profile adds one more ticketed run (LMTP, 10 senders, N mails) against a second fresh `maild serve`
running under cProfile in *every* thread (`python -m cProfile` would only see the asyncio thread; the
pipeline runs in worker threads), stopped with SIGTERM, and prints the top functions. cProfile slows
Python code down, so only the shares matter there, not the absolute rate.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import pstats
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
UNCAPPED = 1_000_000  # automatic mails per desk and hour: no cap within a bench run
DESK_ADDRESS = "support@bench.test"
PATTERN = "SUP-{{yy}}-{{mm}}-{{nr-m}}"
HOST = "127.0.0.1"
TIMEOUT = 60.0  # per SMTP/LMTP command; a stuck server must fail the bench, not hang it
DRAIN_TIMEOUT = 600.0  # the pipeline may be far behind intake: give it time, but not forever
POLL_SECONDS = 0.02
PACED_SENDERS = 10
MAIL_SIZE = 3000

WORDS = [
    *("printer", "invoice", "login", "password", "error", "broken", "urgent", "order", "delivery"),
    *("refund", "account", "screen", "update", "network", "slow", "crash", "report", "access", "license"),
    *("server", "backup"),
]


# --- mail ----------------------------------------------------------------------------------------------


def make_mail(tag: str, i: int, rng: random.Random) -> bytes:
    """A new-ticket mail of about MAIL_SIZE bytes; Message-ID and subject unique (no [NUMBER], no Re:)."""
    customer = i % 500  # contacts get reused, as on a real desk
    subject = f"{' '.join(rng.choice(WORDS) for _ in range(4)).capitalize()} ({tag} #{i})"
    head = (
        f"From: Customer {customer} <customer{customer}@example.org>\r\n"
        f"To: Support <{DESK_ADDRESS}>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <bench-{tag}-{i}-{rng.getrandbits(32):08x}@example.org>\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\n"
    )
    lines: list[str] = []
    size = len(head) + 20
    while size < MAIL_SIZE:
        line = " ".join(rng.choice(WORDS) for _ in range(10))
        lines.append(line)
        size += len(line) + 2
    return (head + "\r\n".join(lines) + "\r\n\r\nRegards\r\n").encode()


def sender_of(raw: bytes) -> str:
    start = raw.index(b"<") + 1
    return raw[start : raw.index(b">", start)].decode()


# --- clients ---------------------------------------------------------------------------------------


class Client(Protocol):
    async def send(self, raw: bytes) -> bool: ...
    async def close(self) -> None: ...


class LmtpClient:
    """Just enough LMTP (RFC 2033) for one recipient per mail on a connection that is kept open."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> LmtpClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)
        client = cls(reader, writer)
        await client._expect(220)
        await client._command(b"LHLO bench.test", 250)
        return client

    async def _reply(self) -> tuple[int, str]:
        while True:
            line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
            if not line:
                raise ConnectionError("server closed the connection")
            if line[3:4] != b"-":  # the last line of a multi-line reply
                return int(line[:3]), line.decode(errors="replace").rstrip()

    async def _expect(self, code: int) -> str:
        got, text = await self._reply()
        if got != code:
            raise RuntimeError(f"expected {code}, got {text!r}")
        return text

    async def _command(self, line: bytes, code: int) -> str:
        self.writer.write(line + b"\r\n")
        return await self._expect(code)

    async def send(self, raw: bytes) -> bool:
        try:
            await self._command(f"MAIL FROM:<{sender_of(raw)}>".encode(), 250)
            await self._command(f"RCPT TO:<{DESK_ADDRESS}>".encode(), 250)
            await self._command(b"DATA", 354)
            # Dot-stuffing (RFC 5321 4.5.2); the generated mails end with CRLF.
            body = raw.replace(b"\r\n.", b"\r\n..")
            self.writer.write((b"." + body if body.startswith(b".") else body) + b".\r\n")
            code, _ = await self._reply()  # one reply per accepted recipient: we send one
            if code == 250:
                return True
        except RuntimeError:
            pass
        # A refused mail: reset the transaction and keep the connection, as an MTA would.
        await self._command(b"RSET", 250)
        return False

    async def close(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self._reply(), 5)
        except (OSError, ConnectionError, TimeoutError):
            pass
        self.writer.close()


class SmtpClient:
    """aiosmtplib on a connection kept open: sendmail() is MAIL, RCPT, DATA per mail."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    async def connect(cls, port: int) -> SmtpClient:
        import aiosmtplib

        client = aiosmtplib.SMTP(hostname=HOST, port=port, timeout=TIMEOUT, start_tls=False)
        await client.connect()
        await client.ehlo()  # before the clock: sendmail would otherwise do it on the first mail
        return cls(client)

    async def send(self, raw: bytes) -> bool:
        import aiosmtplib

        try:
            await self.client.sendmail(sender_of(raw), [DESK_ADDRESS], raw)
        except aiosmtplib.SMTPException:
            if not self.client.is_connected:
                await self.client.connect()
            return False
        return True

    async def close(self) -> None:
        try:
            await self.client.quit()
        except Exception:
            self.client.close()


async def connect(protocol: str, port: int) -> Client:
    return await (LmtpClient.connect(port) if protocol == "lmtp" else SmtpClient.connect(port))


# --- measurements --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 values is the 99th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


@dataclass
class Run:
    server: str  # baseline | maild
    protocol: str
    senders: int
    mails: int
    accepted: int = 0
    failed: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    ticketed_seconds: float | None = None  # maild: first MAIL FROM .. all done with their auto-reply queued
    ticketed_rate: float | None = None
    handed_over_seconds: float | None = None  # .. every auto-reply written to the outgoing Maildir
    created: int | None = None
    outbox: int | None = None
    spool_p50_ms: float | None = None  # maild's own 'accepted' duration_ms: spool fsync + row commit
    spool_p99_ms: float | None = None
    pipeline_ms_mean: float | None = None  # maild's 'processed' duration_ms per mail, from its log


@dataclass
class Paced:
    offered_rate: float
    seconds: float
    senders: int
    mails: int
    accepted: int = 0
    failed: int = 0
    unsent: int = 0  # still not sent 3 x seconds after the start: the server could not keep up
    achieved_rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    service_p50_ms: float = 0.0
    service_p99_ms: float = 0.0
    backlog_at_end: int = 0
    drained_seconds: float | None = None  # after the last 250, until the backlog was gone
    ticketed_rate: float | None = None
    spool_p50_ms: float | None = None
    spool_p99_ms: float | None = None


def revision() -> str:
    """The code measured: others commit to this tree while benches run, so say which state it was."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


@dataclass
class Report:
    loadavg_before: str
    revision: str = field(default_factory=revision)
    loadavg_after: str = ""
    cpus: int = field(default_factory=lambda: os.cpu_count() or 0)
    runs: list[Run] = field(default_factory=list)
    paced: Paced | None = None
    profile: dict[str, Any] | None = None


async def closed_loop(
    protocol: str, port: int, mails: list[bytes], senders: int
) -> tuple[list[float], int, float, float]:
    """Every sender sends its share back to back: latencies, failures, start and end (perf_counter)."""
    clients = await asyncio.gather(*(connect(protocol, port) for _ in range(senders)))
    latencies: list[float] = []
    failed = 0

    async def sender(client: Client, share: list[bytes]) -> None:
        nonlocal failed
        for raw in share:
            started = time.perf_counter()
            if await client.send(raw):
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender(c, mails[i::senders]) for i, c in enumerate(clients)))
    ended = time.perf_counter()
    await asyncio.gather(*(c.close() for c in clients))
    return latencies, failed, started, ended


# --- servers -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited {proc.returncode} before {needle!r}")
        time.sleep(0.05)
    raise SystemExit(f"{proc.args}: no {needle!r} within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 90) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Baseline:
    """This script with --serve-baseline in a subprocess: aiosmtpd answering 250 at once."""

    def __init__(self, workdir: Path) -> None:
        self.ports = {"smtp": free_port(), "lmtp": free_port()}
        self.log = workdir / "baseline.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--serve-baseline",
                    str(self.ports["smtp"]),
                    str(self.ports["lmtp"]),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_line(self.log, "ready", self.proc)


class Maild:
    """A fresh data dir, `maildctl init`, `maildctl desk add support`, then `maild serve` (maybe profiled)."""

    def __init__(self, workdir: Path, profile_to: Path | None = None, database_url: str = "") -> None:
        workdir.mkdir(parents=True)
        self.ports = {"smtp": free_port(), "lmtp": free_port()}
        self.data_dir = workdir / "data"
        self.config = workdir / "maild.toml"
        self.database_url = database_url
        database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
        self.config.write_text(
            f'data_dir = "{self.data_dir}"\n{database}[listen]\n'
            f'lmtp = "{HOST}:{self.ports["lmtp"]}"\nsmtp = "{HOST}:{self.ports["smtp"]}"\n'
            # Every mail here is a new ticket with an auto-reply: the desk-wide hourly cap (200 by
            # default) would stop the replies of a run of more mails, and the run would never finish.
            # The 500 senders of a long run each get more than the 5 automatic mails an hour allowed to one
            # address: without these their tickets would have no auto-reply, and "ticketed" never came.
            f"[hygiene]\nautoreply_desk_per_hour = {UNCAPPED}\nautoreply_per_hour = {UNCAPPED}\n"
            f"autoreply_per_day = {UNCAPPED}\n"
        )
        for args in (
            ["init"],
            ["desk", "add", "support", "--address", DESK_ADDRESS, "--pattern", PATTERN],
        ):
            done = subprocess.run(
                [str(BIN / "maildctl"), "--config", str(self.config), *args], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(f"maildctl {' '.join(args)} exited {done.returncode}: {done.stderr}")
        self.log = workdir / "maild.log"  # JSON lines; a file, so a full pipe never blocks maild
        if profile_to is None:
            argv = [str(BIN / "maild"), "--config", str(self.config), "serve"]
        else:
            argv = [sys.executable, __file__, "--serve-profiled", str(profile_to), str(self.config)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_for_line(self.log, '"event": "ready"', self.proc)
        self.db: Any
        if database_url:  # PostgreSQL: psycopg in autocommit, each poll its own snapshot
            import psycopg

            self.db = psycopg.connect(database_url, autocommit=True)
        else:
            self.db = sqlite3.connect(f"file:{self.data_dir / 'maild.sqlite3'}?mode=ro", uri=True, timeout=30)

    def counts(self) -> tuple[int, int, int, int]:
        """spool rows done, rows with outcome 'created', outbox rows, outbox rows sent (to the Maildir)."""
        # Plain reads in WAL mode: they never take the write lock, so polling does not slow maild down.
        row = self.db.execute(
            "select (select count(*) from spool where state = 'done'),"
            " (select count(*) from spool where outcome = 'created'),"
            " (select count(*) from outbox), (select count(*) from outbox where status = 'sent')"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def wait_ticketed(
        self, done_target: int, outbox_target: int, started: float
    ) -> tuple[float | None, float | None]:
        """Seconds from `started` until every mail is done with its reply queued, and until all are sent."""
        ticketed = handed_over = None
        deadline = time.perf_counter() + DRAIN_TIMEOUT
        while time.perf_counter() < deadline:
            done, _, outbox, sent = self.counts()
            now = time.perf_counter()
            if ticketed is None and done >= done_target and outbox >= outbox_target:
                ticketed = now - started
            if ticketed is not None and sent >= outbox_target:
                handed_over = now - started
                break
            time.sleep(POLL_SECONDS)
        return ticketed, handed_over

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found


def server_side(events: list[dict[str, Any]], tag: str) -> tuple[float | None, float | None, float | None]:
    """maild's own view of one configuration's mails (found by the tag in their Message-IDs)."""
    marker = f"<bench-{tag}-"
    spooled = [
        e["duration_ms"] for e in events if e.get("event") == "accepted" and marker in e.get("message_id", "")
    ]
    processed = [
        e["duration_ms"]
        for e in events
        if e.get("event") == "processed" and marker in (e.get("message_id") or "")
    ]
    return (
        percentile(spooled, 0.5) if spooled else None,
        percentile(spooled, 0.99) if spooled else None,
        sum(processed) / len(processed) if processed else None,
    )


# --- the runs ------------------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def measure(server: str, protocol: str, port: int, mails: list[bytes], senders: int) -> tuple[Run, float]:
    latencies, failed, started, ended = asyncio.run(closed_loop(protocol, port, mails, senders))
    seconds = ended - started
    run = Run(
        server=server,
        protocol=protocol,
        senders=senders,
        mails=len(mails),
        accepted=len(latencies),
        failed=failed,
        seconds=round(seconds, 3),
        rate=round(len(latencies) / seconds, 1),
        p50_ms=ms(percentile(latencies, 0.5)),
        p99_ms=ms(percentile(latencies, 0.99)),
        max_ms=ms(max(latencies, default=float("nan"))),
    )
    return run, started


def measure_maild(maild: Maild, protocol: str, mails: list[bytes], senders: int) -> Run:
    done0, created0, outbox0, _ = maild.counts()
    run, started = measure("maild", protocol, maild.ports[protocol], mails, senders)
    # Every mail opens a new ticket on an auto-reply desk: one outbox row each.
    ticketed, handed_over = maild.wait_ticketed(done0 + run.accepted, outbox0 + run.accepted, started)
    _, created, outbox, _ = maild.counts()
    run.created, run.outbox = created - created0, outbox - outbox0
    if ticketed is not None:
        run.ticketed_seconds = round(ticketed, 3)
        run.ticketed_rate = round(run.accepted / ticketed, 1)
    if handed_over is not None:
        run.handed_over_seconds = round(handed_over, 3)
    return run


async def paced_loop(
    port: int, mails: list[bytes], rate: float, senders: int, give_up: float
) -> tuple[list[float], list[float], int, int, float, float]:
    """Open loop: mail k is due at start + k / rate; sender j sends mails j, j + senders, ...

    A server slower than the offered rate would make this run for N / its rate: after `give_up` seconds
    the senders stop, and the mails not sent by then are counted (as latency beyond any percentile)."""
    clients = await asyncio.gather(*(connect("lmtp", port) for _ in range(senders)))
    from_due: list[float] = []
    service: list[float] = []
    failed = unsent = 0
    start = time.perf_counter() + 0.1
    deadline = start + give_up

    async def sender(j: int, client: Client) -> None:
        nonlocal failed, unsent
        for k in range(j, len(mails), senders):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            began = time.perf_counter()
            if began > deadline:
                unsent += 1
                continue
            ok = await client.send(mails[k])
            ended = time.perf_counter()
            if ok:
                from_due.append(ended - due)
                service.append(ended - began)
            else:
                failed += 1

    await asyncio.gather(*(sender(j, c) for j, c in enumerate(clients)))
    ended = time.perf_counter()
    await asyncio.gather(*(c.close() for c in clients))
    return from_due, service, failed, unsent, start, ended


def measure_paced(maild: Maild, mails: list[bytes], rate: float, seconds: float) -> Paced:
    done0, _, outbox0, _ = maild.counts()
    from_due, service, failed, unsent, started, ended = asyncio.run(
        paced_loop(maild.ports["lmtp"], mails, rate, PACED_SENDERS, give_up=3 * seconds)
    )
    done, _, _, _ = maild.counts()
    accepted = len(from_due)
    # Unsent mails waited longer than any sent one: they count in the percentiles as infinitely late.
    latencies = from_due + [math.inf] * unsent
    result = Paced(
        offered_rate=rate,
        seconds=seconds,
        senders=PACED_SENDERS,
        mails=len(mails),
        accepted=accepted,
        failed=failed,
        unsent=unsent,
        achieved_rate=round(accepted / (ended - started), 1),
        p50_ms=ms(percentile(latencies, 0.5)),
        p99_ms=ms(percentile(latencies, 0.99)),
        max_ms=ms(max(from_due, default=float("nan"))),
        service_p50_ms=ms(percentile(service, 0.5)),
        service_p99_ms=ms(percentile(service, 0.99)),
        backlog_at_end=done0 + accepted - done,
    )
    ticketed, _ = maild.wait_ticketed(done0 + accepted, outbox0 + accepted, started)
    if ticketed is not None:
        result.drained_seconds = round(max(0.0, ticketed - (ended - started)), 2)
        result.ticketed_rate = round(accepted / ticketed, 1)
    return result


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


# --- profile -------------------------------------------------------------------------------------------

# Functions whose cumulative time per mail says where the pipeline's time goes (file suffix, function).
KEY_FUNCTIONS = [
    ("maild/ingress/intake.py", "_spool", "intake: spool the bytes + commit the 'received' row"),
    ("storage/spool.py", "write_raw", "  raw bytes written and fsynced"),
    ("storage/spool.py", "record_received", "  'received' row (query + insert)"),
    ("pipeline/runner.py", "process", "worker: pipeline.runner.process"),
    ("pipeline/runner.py", "_run_stages", "  the stages"),
    ("pipeline/parse.py", "run", "    parse"),
    ("pipeline/route.py", "run", "    route"),
    ("pipeline/dedupe.py", "run", "    dedupe"),
    ("pipeline/identify.py", "run", "    identify"),
    ("pipeline/thread.py", "run", "    thread"),
    ("pipeline/policy.py", "run", "    policy"),
    ("pipeline/apply.py", "run", "    apply"),
    ("pipeline/notify.py", "run", "    notify"),
    ("maild/outbound/sender.py", "flush", "worker: sender.flush (auto-reply to the Maildir)"),
    ("~", "<method 'commit' of 'sqlite3.Connection' objects>", "sqlite3 COMMIT (WAL fsync)"),
    (
        "~",
        "<method 'execute' of 'sqlite3.Cursor' objects>",
        "sqlite3 cursor.execute (incl. BEGIN IMMEDIATE waits)",
    ),
    ("~", "<built-in method posix.fsync>", "os.fsync (spool file, Maildir)"),
    ("jinja2/environment.py", "render", "jinja2 Template.render"),
    ("_base.py", "_process_event", "structlog: log events"),
]


def shorten(text: str) -> str:
    """Paths in pstats output, relative to the repo, site-packages or the stdlib."""
    import sysconfig

    for prefix in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], str(ROOT)):
        text = text.replace(prefix + "/", "")
    return text


def top(stats: pstats.Stats, order: str, count: int) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(order).print_stats(count)
    # Keep the table only: pstats prefixes it with the file name, totals and the sort order.
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return shorten("\n".join(line for line in lines[start:] if line.strip()))


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> tuple[int, float, float]:
    """Calls, own and cumulative seconds of the functions `name` in files ending in `suffix`."""
    calls = 0
    tottime = cumtime = 0.0
    for (path, _line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and (path == suffix or path.endswith("/" + suffix)):
            calls, tottime, cumtime = calls + nc, tottime + tt, cumtime + ct
    return calls, tottime, cumtime


def per_mail(groups: dict[str, pstats.Stats], merged: pstats.Stats, mails: int) -> list[dict[str, Any]]:
    rows = []
    # BEGIN IMMEDIATE per thread group: on SQLite it is where a transaction waits for the write lock.
    begin = [
        (stats, "storage/db.py", "_sqlite_begin", f"BEGIN IMMEDIATE in {name} threads (write-lock wait)")
        for name, stats in groups.items()
    ]
    for stats, suffix, name, label in [*((merged, *key) for key in KEY_FUNCTIONS), *begin]:
        calls, tottime, cumtime = cumulative(stats, suffix, name)
        if calls:
            rows.append(
                {
                    "what": label,
                    "calls": calls,
                    "cum_s": round(cumtime, 3),
                    "ms_per_mail": round(cumtime / mails * 1000, 2),
                    "own_ms_per_mail": round(tottime / mails * 1000, 2),
                }
            )
    return rows


def by_area(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own (tottime) seconds by library area: what the threads' wall time was spent in."""
    areas: dict[str, float] = {}
    for (path, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "sqlite3" in func:
            area = "sqlite3 C calls (SQL, commit fsync, lock waits)"
        elif "fsync" in func:
            area = "os.fsync"
        elif any(word in func for word in ("acquire", "poll", "select", "SimpleQueue")):
            area = "idle: lock/queue/epoll waits"
        elif "/sqlalchemy/" in path:
            area = "sqlalchemy (python)"
        elif "/email/" in path:
            area = "stdlib email"
        elif "/jinja2/" in path or "/markupsafe/" in path:
            area = "jinja2"
        elif "/structlog/" in path or "/logging/" in path or "json" in path:
            area = "structlog/logging/json"
        elif "/aiosmtpd/" in path or "/asyncio/" in path:
            area = "aiosmtpd/asyncio"
        elif path.startswith(str(ROOT)):
            area = "maild's own code"
        elif path == "~":
            area = "other builtins"
        else:
            area = "other python (stdlib, libraries)"
        areas[area] = areas.get(area, 0.0) + tt
    return sorted(areas.items(), key=lambda kv: -kv[1])


def profiled(out: str, run: Callable[[], Any], prefix: str = "") -> Any:
    """`run()` with a cProfile profiler in every thread of this process; the stats are written to
    OUT.<prefix><group> per thread group (main, intake, writer …) and, without a prefix, all merged to OUT."""
    import cProfile

    profilers: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()

    def hook(frame: Any, event: str, arg: Any) -> None:
        # threading calls this on a new thread's first event: swap it for a C profiler of that thread.
        profiler = cProfile.Profile()
        with lock:
            profilers.append((threading.current_thread().name, profiler))
        profiler.enable()

    threading.setprofile(hook)  # the pools' threads start later, when the first job arrives
    main_profiler = cProfile.Profile()
    main_profiler.enable()
    try:
        return run()
    finally:
        main_profiler.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        groups: dict[str, pstats.Stats] = {"main": pstats.Stats(main_profiler)}
        for name, profiler in profilers:
            group = name.split("_")[0]  # ThreadPoolExecutor names threads "<prefix>_<n>"
            if group in groups:
                groups[group].add(profiler)
            else:
                groups[group] = pstats.Stats(profiler)
        merged = pstats.Stats(main_profiler)
        for name, stats in groups.items():
            stats.dump_stats(f"{out}.{prefix}{name}")
            if name != "main":
                merged.add(stats)
        if not prefix:
            merged.dump_stats(out)


def pipeline_profiled(out: str, *args: Any) -> None:
    """The pipeline process of a profiled `maild serve` (maild.ingress.pipeline_process), profiled too."""
    from maild.ingress.pipeline_process import run_pipeline_process

    profiled(out, lambda: run_pipeline_process(*args), prefix="pipeline-")


def serve_profiled(out: str, config: str) -> int:
    """`maild serve` profiled in every thread, and its pipeline process in every thread."""
    import functools

    import maild.ingress.pipeline_process as pipeline_process
    from maild.ingress.cli import main as maild_main

    # Spawned by reference: the pipeline process imports this script and runs pipeline_profiled.
    pipeline_process.run_pipeline_process = functools.partial(pipeline_profiled, out)  # type: ignore[assignment]
    return int(profiled(out, lambda: maild_main(["--config", config, "serve"])))


def run_profile(workdir: Path, mails: list[bytes], senders: int) -> dict[str, Any]:
    profile_file = workdir / "maild-serve.prof"
    maild = Maild(workdir / "profiled", profile_to=profile_file)
    run = measure_maild(maild, "lmtp", mails, senders)
    code = stop(maild.proc)
    if code != 0 or not profile_file.exists():
        raise SystemExit(f"profiled maild serve exited {code}, profile written: {profile_file.exists()}")
    merged = pstats.Stats(str(profile_file))
    groups = {path.suffix[1:]: pstats.Stats(str(path)) for path in sorted(workdir.glob("maild-serve.prof.*"))}
    for name, stats in groups.items():
        if name.startswith("pipeline-"):  # the pipeline process's threads
            merged.add(stats)
    return {
        "file": str(profile_file),
        "run": asdict(run),
        "exit_code": code,
        "total_by_thread_group_s": {name: round(s.total_tt, 2) for name, s in groups.items()},  # type: ignore[attr-defined]
        "by_area": {name: [(area, round(t, 2)) for area, t in by_area(s)] for name, s in groups.items()},
        "per_mail": per_mail(groups, merged, run.accepted),
        "top_cumulative": top(merged, "cumulative", 25),
        "top_tottime": top(merged, "tottime", 25),
        "worker_top_tottime": top(writer, "tottime", 25) if (writer := groups.get("pipeline-writer")) else "",
    }


# --- the bench ---------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> Report:
    rng = random.Random(args.seed)
    report = Report(loadavg_before=loadavg())
    senders_list = [int(s) for s in args.senders.split(",") if s]
    protocols = [p for p in args.protocols.split(",") if p]
    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as tmp:
        workdir = Path(tmp)
        baseline = Baseline(workdir)
        maild = Maild(workdir / "maild", database_url=args.database_url)
        try:
            for protocol in protocols:
                for senders in senders_list:
                    tag = f"{protocol}{senders}"
                    say(f"{protocol}, {senders} senders: baseline ...")
                    # The same mails for both servers: baseline never stores them, so no duplicate.
                    mails = [make_mail(tag, i, rng) for i in range(args.mails)]
                    report.runs.append(
                        measure("baseline", protocol, baseline.ports[protocol], mails, senders)[0]
                    )
                    say(f"{protocol}, {senders} senders: maild ...")
                    report.runs.append(measure_maild(maild, protocol, mails, senders))
            if args.paced_rate > 0:
                say(f"paced: {args.paced_rate:g} mail/s over LMTP for {args.paced_seconds:g} s ...")
                count = int(args.paced_rate * args.paced_seconds)
                mails = [make_mail("paced", i, rng) for i in range(count)]
                report.paced = measure_paced(maild, mails, args.paced_rate, args.paced_seconds)
            events = maild.events()
            for run in report.runs:
                if run.server == "maild":
                    run.spool_p50_ms, run.spool_p99_ms, run.pipeline_ms_mean = server_side(
                        events, f"{run.protocol}{run.senders}"
                    )
            if report.paced is not None:
                report.paced.spool_p50_ms, report.paced.spool_p99_ms, _ = server_side(events, "paced")
        finally:
            code = stop(maild.proc)
            stop(baseline.proc)
        if code != 0:
            say(f"warning: maild serve exited {code} on SIGTERM")
        if args.profile:
            say("profile: LMTP, 10 senders, maild serve under cProfile ...")
            mails = [make_mail("profiled", i, rng) for i in range(args.mails)]
            report.profile = run_profile(workdir, mails, 10)
            if args.keep_profile:
                Path(args.keep_profile).write_bytes(Path(report.profile["file"]).read_bytes())
                report.profile["file"] = args.keep_profile
    report.loadavg_after = loadavg()
    return report


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(report: Report, args: argparse.Namespace) -> None:
    print(
        f"load average before: {report.loadavg_before}  after: {report.loadavg_after}  ({report.cpus} CPUs)"
    )
    print(
        f"{args.mails} mails of ~{MAIL_SIZE} bytes per configuration; latency = MAIL FROM .. 250 after DATA"
    )
    print()
    header = (
        f"{'server':8} {'proto':5} {'snd':>3} {'mail/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'fail':>4} {'ticketed/s':>10} {'ticketed s':>10} {'spool p50/p99 ms':>16} {'pipeline ms':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in report.runs:
        spool = "-" if r.spool_p50_ms is None else f"{r.spool_p50_ms:.1f}/{fmt(r.spool_p99_ms)}"
        print(
            f"{r.server:8} {r.protocol:5} {r.senders:>3} {r.rate:>7.1f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
            f"{r.max_ms:>7.1f} {r.failed:>4} {fmt(r.ticketed_rate):>10} {fmt(r.ticketed_seconds):>10} "
            f"{spool:>16} {fmt(r.pipeline_ms_mean):>11}"
        )
    bare = {(r.protocol, r.senders): r.rate for r in report.runs if r.server == "baseline"}
    print()
    for r in report.runs:
        if r.server == "maild" and r.ticketed_rate is not None and bare.get((r.protocol, r.senders)):
            accepted = r.rate / bare[(r.protocol, r.senders)] * 100
            share = r.ticketed_rate / bare[(r.protocol, r.senders)] * 100
            print(
                f"maild {r.protocol} {r.senders:>2} senders: accepted {accepted:5.1f}% "
                f"and ticketed {share:5.1f}% of the bare rate ({r.created} tickets, {r.outbox} auto-replies; "
                f"all in the Maildir after {fmt(r.handed_over_seconds, 2)} s)"
            )
    p = report.paced
    if p is not None:
        print()
        print(
            f"paced LMTP, {p.offered_rate:g} mail/s offered for {p.seconds:g} s by {p.senders} senders: "
            f"{p.accepted} accepted ({p.failed} failed, {p.unsent} not sent within {3 * p.seconds:g} s) "
            f"at {p.achieved_rate} mail/s; latency from due time "
            f"p50 {p.p50_ms:.1f} ms, p99 {p.p99_ms:.1f} ms, max {p.max_ms:.1f} ms (service p50 "
            f"{p.service_p50_ms:.1f}, p99 {p.service_p99_ms:.1f}; maild spool p50/p99 "
            f"{fmt(p.spool_p50_ms)}/{fmt(p.spool_p99_ms)} ms); backlog at the last 250: {p.backlog_at_end} "
            f"mails, drained {fmt(p.drained_seconds, 2)} s later (ticketed {fmt(p.ticketed_rate)} mail/s)"
        )
    prof = report.profile
    if prof is not None:
        run = prof["run"]
        print()
        print(
            f"profile ({prof['file']}): LMTP, {run['senders']} senders, {run['accepted']} mails, cProfile: "
            f"{run['rate']} mail/s accepted, {fmt(run['ticketed_rate'])} ticketed"
        )
        print("wall seconds by thread group:", prof["total_by_thread_group_s"])
        for group, areas in prof["by_area"].items():
            print(f"  {group}: " + ", ".join(f"{area} {t:.2f}" for area, t in areas if t >= 0.05))
        print()
        print(f"{'per mail (all threads)':58} {'calls':>7} {'cum s':>8} {'ms/mail':>8} {'own ms':>7}")
        for row in prof["per_mail"]:
            print(
                f"{row['what']:58} {row['calls']:>7} {row['cum_s']:>8.2f} {row['ms_per_mail']:>8.2f} "
                f"{row['own_ms_per_mail']:>7.2f}"
            )
        print("\ntop 25 by cumulative time (all threads; wall clock):")
        print(prof["top_cumulative"])
        print("\ntop 25 by own time (all threads; wall clock, idle waits included):")
        print(prof["top_tottime"])
        print("\ntop 25 by own time, pipeline worker threads only:")
        print(prof["worker_top_tottime"])


# --- helper processes (this script re-executed) ---------------------------------------------------------


def serve_baseline(smtp_port: int, lmtp_port: int) -> int:
    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Accept:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            if isinstance(server, LMTP):  # one reply per recipient
                return "\r\n".join(["250 2.0.0 OK"] * len(envelope.rcpt_tos))
            return "250 2.0.0 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = Accept()
        hostname = socket.getfqdn()  # as maild does: aiosmtpd would resolve it on every connection
        factories: list[tuple[int, Callable[[], SMTP]]] = [
            (smtp_port, lambda: SMTP(handler, hostname=hostname, loop=loop)),
            (lmtp_port, lambda: LMTP(handler, hostname=hostname, loop=loop)),
        ]
        servers = [await loop.create_server(f, HOST, port) for port, f in factories]
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        print("ready", flush=True)
        await stopping.wait()
        for server in servers:
            server.close()

    asyncio.run(main())
    return 0


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-baseline":
        sys.exit(serve_baseline(int(sys.argv[2]), int(sys.argv[3])))
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-profiled":
        sys.exit(serve_profiled(sys.argv[2], sys.argv[3]))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mails", type=int, default=300, help="mails per configuration (default 300)")
    parser.add_argument("--senders", default="1,10,50", help="concurrent senders, comma-separated")
    parser.add_argument("--protocols", default="lmtp,smtp", help="lmtp, smtp or both (default)")
    parser.add_argument(
        "--paced-rate", type=float, default=200.0, help="mail/s offered over LMTP; 0: no paced run"
    )
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--profile", action="store_true", help="add a ticketed run under cProfile")
    parser.add_argument("--keep-profile", metavar="FILE", help="copy the merged profile (pstats) here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url", default="", help="maild on this empty PostgreSQL database (default: SQLite)"
    )
    args = parser.parse_args()
    report = bench(args)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print_report(report, args)


if __name__ == "__main__":
    main()
