"""The customers' ticket page under `maild serve` (issue 18): how long a long ticket's page takes over HTTP,
and whether page views slow down LMTP intake.

    .venv/bin/python bench/web_page.py [--messages 100] [--requests 200] [--mails 300] [--senders 10]
        [--views-per-second 20] [--rounds 2] [--views-of page|static] [--json]

One real `maild serve` on a fresh data dir (SQLite), LMTP and `[web]` on loopback, one desk `support` with
auto-replies and one agent, everything made the way it happens in use: the customer mails the desk over
LMTP (the first mail has an attachment), the agent answers by mail to the signed reply address of the
notice maild sent them, the two alternate until the ticket has --messages messages; the customer's link is
read from the auto-reply in the outgoing Maildir.

(a) page: --requests GETs of that ticket's page, one after another on one kept-alive HTTP/1.1 connection
    (after 20 not counted), each from writing the request to the last byte of the body: median, p95, p99,
    and maild's CPU time per GET (all its threads, from /proc: what a view costs, whatever else runs).
    Measured twice: on the fresh database, and again after the intake runs of (b) (a few thousand rows).
(b) intake: --mails new-ticket mails (~3 KB, bench/smtp_throughput.py's) over LMTP from --senders
    connections, back to back, without and with --views-per-second page views of the same page running
    against the same daemon (an open loop from its own thread: each view due at a fixed time; late views
    count their wait), in the order off, on, on, off, ... for --rounds rounds (each run adds --mails
    tickets, which slows the next a little: the order cancels that trend). Per run: accepted mail/s
    (first MAIL FROM .. last 250) and ticketed mail/s (.. every mail's spool row 'done'); the ratio
    with/without of the medians. The page views' own latency under intake is reported too.
    --views-of static fetches the style sheet instead: what the HTTP listener costs without the page's
    database read and rendering.

The clients run in this process (asyncio for LMTP, a thread for HTTP); maild in its own. Load average
before and after is printed: on a shared machine, compare runs of one invocation only.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import smtp_throughput as st  # noqa: E402

BIN = Path(sys.executable).parent
CUSTOMER = "alice@customer.example"
AGENT = "bob@bench.test"
WARMUP = 20
HTTP_TIMEOUT = 30.0
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class PageTimes:
    when: str  # fresh | after intake
    requests: int
    page_bytes: int
    messages_on_page: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    daemon_cpu_ms: float | None  # maild's CPU time (all threads) per GET: less noisy than wall time


@dataclass
class IntakeRun:
    views: bool
    mails: int
    accepted: int
    rate: float  # accepted mail/s
    ticketed_rate: float | None
    views_done: int = 0
    views_offered: int = 0
    view_p50_ms: float | None = None
    view_p95_ms: float | None = None


@dataclass
class Report:
    loadavg_before: str
    revision: str = field(default_factory=st.revision)
    loadavg_after: str = ""
    pages: list[PageTimes] = field(default_factory=list)
    intake: list[IntakeRun] = field(default_factory=list)
    rate_ratio: float | None = None  # median accepted rate with views / without
    ticketed_ratio: float | None = None


# --- the daemon ------------------------------------------------------------------------------------------


class WebMaild:
    """`maild serve` with LMTP and [web] on a fresh data dir; its log in a file (a full pipe never blocks)."""

    def __init__(self, workdir: Path) -> None:
        self.data_dir = workdir / "data"
        self.lmtp_port, self.web_port = st.free_port(), st.free_port()
        self.config = workdir / "maild.toml"
        self.config.write_text(
            f'data_dir = "{self.data_dir}"\n[listen]\nlmtp = "{st.HOST}:{self.lmtp_port}"\n'
            f'[web]\nlisten = "{st.HOST}:{self.web_port}"\npublic_url = "http://{st.HOST}:{self.web_port}"\n'
            # Every intake mail opens a ticket with an auto-reply: no hourly cap may stop them (see
            # bench/smtp_throughput.py); agents' replies by mail are relayed at once.
            f"[hygiene]\nautoreply_desk_per_hour = {st.UNCAPPED}\nautoreply_per_hour = {st.UNCAPPED}\n"
            f"autoreply_per_day = {st.UNCAPPED}\n"
        )
        self.ctl("init")
        self.ctl("desk", "add", "support", "--address", st.DESK_ADDRESS, "--pattern", "SUP-{{nr}}")
        self.ctl("agent", "add", AGENT, "--name", "Bob Builder", "--desk", "support")
        self.log = workdir / "maild.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "maild"), "--config", str(self.config), "serve"], stdout=out, stderr=out
            )
        st.wait_for_line(self.log, '"event": "ready"', self.proc)
        self.db = sqlite3.connect(f"file:{self.data_dir / 'maild.sqlite3'}?mode=ro", uri=True, timeout=30)

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "maildctl"), "--config", str(self.config), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"maildctl {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def spool_done(self) -> int:
        return int(self.db.execute("select count(*) from spool where state = 'done'").fetchone()[0])

    def sent(self) -> list[EmailMessage]:
        folder = self.data_dir / "outgoing" / "new"
        paths = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns) if folder.exists() else []
        found = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]
        return [m for m in found if isinstance(m, EmailMessage)]

    def wait_mail(self, to: str, timeout: float = 60) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for mail in self.sent():
                if to in str(mail["To"]):
                    return mail
            time.sleep(0.05)
        raise SystemExit(f"no mail to {to} within {timeout} s: see {self.log}")

    def stop(self) -> None:
        self.db.close()
        st.stop(self.proc)


# --- the long ticket -----------------------------------------------------------------------------------


def mail(sender: str, to: str, subject: str, text: str, n: int, attach: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<web-bench-{n}-{random.getrandbits(32):08x}@bench.test>"
    msg.set_content(text)
    if attach:
        msg.add_attachment(b"log line\n" * 200, maintype="text", subtype="plain", filename=f"log-{n}.txt")
    return msg.as_bytes(policy=SMTP)


async def lmtp_send(port: int, raw: bytes, sender: str, recipient: str) -> None:
    reader, writer = await asyncio.open_connection(st.HOST, port)
    lines = ["LHLO bench.test", f"MAIL FROM:<{sender}>", f"RCPT TO:<{recipient}>", "DATA"]
    try:
        await reader.readline()
        for line in lines:
            writer.write(line.encode() + b"\r\n")
            while (reply := await reader.readline())[3:4] == b"-":
                pass
            if reply[:1] not in (b"2", b"3"):
                raise SystemExit(f"LMTP {line!r}: {reply!r}")
        writer.write(raw.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        if not (reply := await reader.readline()).startswith(b"250"):
            raise SystemExit(f"LMTP DATA: {reply!r}")
    finally:
        writer.close()


def long_ticket(maild: WebMaild, messages: int) -> str:
    """A ticket with `messages` customer and agent messages, alternating; the customer's page URL."""
    words = " ".join(st.WORDS)
    subject = "Printer prints blank pages"
    first = mail(f"Alice <{CUSTOMER}>", st.DESK_ADDRESS, subject, f"Hello,\n\n{words}\n", 0, attach=True)
    asyncio.run(lmtp_send(maild.lmtp_port, first, CUSTOMER, st.DESK_ADDRESS))
    auto_reply = maild.wait_mail(CUSTOMER)
    body = auto_reply.get_body(("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    [link] = re.findall(r"http://\S+/t/[A-Za-z0-9_-]+", text)
    number = re.findall(r"\[(SUP-\d+)\]", str(auto_reply["Subject"]))[0]
    reply_to = maild.wait_mail(AGENT)["Reply-To"].addresses[0].addr_spec  # the agent's signed address

    async def rest() -> None:
        for n in range(1, messages):
            text = f"Message {n}.\n\n{words}\n{words}\n"
            if n % 2:
                raw = mail(f"Bob <{AGENT}>", reply_to, f"Re: [{number}] {subject}", text, n)
                await lmtp_send(maild.lmtp_port, raw, AGENT, reply_to)
            else:
                raw = mail(
                    f"Alice <{CUSTOMER}>", st.DESK_ADDRESS, f"Re: [{number}] {subject}", text, n, n % 10 == 0
                )
                await lmtp_send(maild.lmtp_port, raw, CUSTOMER, st.DESK_ADDRESS)

    asyncio.run(rest())
    deadline = time.monotonic() + st.DRAIN_TIMEOUT
    while (shown := get_page(link)[1].count(b"<article")) < messages:
        if time.monotonic() > deadline:
            raise SystemExit(f"the page shows {shown} of {messages} messages: see {maild.log}")
        time.sleep(0.2)
    return str(link)


# --- HTTP ------------------------------------------------------------------------------------------------


class Pages:
    """GETs of one URL on one kept-alive connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname or st.HOST, parts.port, timeout=HTTP_TIMEOUT)

    def get(self) -> bytes:
        self.conn.request("GET", self.path)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {self.path}: {response.status}")
        return body

    def close(self) -> None:
        self.conn.close()


def get_page(url: str) -> tuple[float, bytes]:
    pages = Pages(url)
    try:
        started = time.perf_counter()
        body = pages.get()
        return time.perf_counter() - started, body
    finally:
        pages.close()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid`, all its threads (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def page_times(maild: WebMaild, url: str, requests: int, when: str) -> PageTimes:
    pages = Pages(url)
    try:
        for _ in range(WARMUP):
            body = pages.get()
        seconds = []
        cpu_before = cpu_seconds(maild.proc.pid)
        for _ in range(requests):
            started = time.perf_counter()
            body = pages.get()
            seconds.append(time.perf_counter() - started)
        cpu_after = cpu_seconds(maild.proc.pid)
    finally:
        pages.close()
    cpu = (cpu_after - cpu_before) / requests if cpu_before is not None and cpu_after is not None else None
    return PageTimes(
        when=when,
        requests=requests,
        page_bytes=len(body),
        messages_on_page=body.count(b"<article"),
        p50_ms=st.ms(st.percentile(seconds, 0.5)),
        p95_ms=st.ms(st.percentile(seconds, 0.95)),
        p99_ms=st.ms(st.percentile(seconds, 0.99)),
        max_ms=st.ms(max(seconds)),
        daemon_cpu_ms=st.ms(cpu) if cpu is not None else None,
    )


class Viewer(threading.Thread):
    """Page views at a fixed rate until stopped; each view's latency counts from when it was due."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.latencies: list[float] = []
        self.offered = 0
        self.done = threading.Event()

    def run(self) -> None:
        pages = Pages(self.url)
        started = time.perf_counter()
        try:
            while not self.done.is_set():
                due = started + self.offered / self.rate
                pause = due - time.perf_counter()
                if pause > 0 and self.done.wait(pause):
                    break
                self.offered += 1
                pages.get()
                self.latencies.append(time.perf_counter() - due)
        finally:
            pages.close()


def intake_run(maild: WebMaild, url: str, mails: list[bytes], senders: int, views: float) -> IntakeRun:
    viewer = Viewer(url, views) if views else None
    if viewer is not None:
        viewer.start()
        time.sleep(1.0)  # the views are running before the first mail
    done_before = maild.spool_done()
    latencies, _, started, ended = asyncio.run(st.closed_loop("lmtp", maild.lmtp_port, mails, senders))
    ticketed = None
    deadline = time.perf_counter() + st.DRAIN_TIMEOUT
    while time.perf_counter() < deadline:
        if maild.spool_done() >= done_before + len(latencies):
            ticketed = time.perf_counter() - started
            break
        time.sleep(st.POLL_SECONDS)
    run = IntakeRun(
        views=viewer is not None,
        mails=len(mails),
        accepted=len(latencies),
        rate=round(len(latencies) / (ended - started), 1),
        ticketed_rate=round(len(latencies) / ticketed, 1) if ticketed else None,
    )
    if viewer is not None:
        viewer.done.set()
        viewer.join(HTTP_TIMEOUT)
        run.views_offered, run.views_done = viewer.offered, len(viewer.latencies)
        run.view_p50_ms = st.ms(st.percentile(viewer.latencies, 0.5))
        run.view_p95_ms = st.ms(st.percentile(viewer.latencies, 0.95))
    return run


def ratio(runs: list[IntakeRun], value: str) -> float | None:
    on = [getattr(r, value) for r in runs if r.views and getattr(r, value)]
    off = [getattr(r, value) for r in runs if not r.views and getattr(r, value)]
    return round(statistics.median(on) / statistics.median(off), 3) if on and off else None


def run(args: argparse.Namespace) -> Report:
    report = Report(loadavg_before=st.loadavg())
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="maild-web-bench-") as scratch:
        maild = WebMaild(Path(scratch))
        try:
            url = long_ticket(maild, args.messages)
            report.pages.append(page_times(maild, url, args.requests, "fresh"))
            for r in range(args.rounds):
                # off, on, on, off, ...: the database grows run by run, and this order cancels its trend
                order = (0.0, args.views_per_second) if r % 2 == 0 else (args.views_per_second, 0.0)
                for views in order:
                    tag = f"r{r}{'v' if views else 'n'}"
                    mails = [st.make_mail(tag, i, rng) for i in range(args.mails)]
                    viewed = url if args.views_of == "page" else url.split("/t/")[0] + "/static/maild.css"
                    report.intake.append(intake_run(maild, viewed, mails, args.senders, views))
            report.pages.append(page_times(maild, url, args.requests, "after intake"))
        finally:
            maild.stop()
    report.rate_ratio = ratio(report.intake, "rate")
    report.ticketed_ratio = ratio(report.intake, "ticketed_rate")
    report.loadavg_after = st.loadavg()
    return report


def show(report: Report) -> None:
    print(f"revision {report.revision}; load average before: {report.loadavg_before}")
    for p in report.pages:
        print(
            f"page ({p.when}): {p.messages_on_page} messages, {p.page_bytes} bytes, {p.requests} GETs: "
            f"median {p.p50_ms} ms, p95 {p.p95_ms} ms, p99 {p.p99_ms} ms, max {p.max_ms} ms; "
            f"maild CPU {p.daemon_cpu_ms} ms per GET"
        )
    for r in report.intake:
        views = f", views {r.views_done}/{r.views_offered} p50 {r.view_p50_ms} ms p95 {r.view_p95_ms} ms"
        print(
            f"intake {'with' if r.views else 'without'} page views: {r.accepted}/{r.mails} mails, "
            f"{r.rate} mail/s accepted, {r.ticketed_rate} mail/s ticketed{views if r.views else ''}"
        )
    print(f"with/without views: accepted {report.rate_ratio}, ticketed {report.ticketed_ratio}")
    print(f"load average after: {report.loadavg_after}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--mails", type=int, default=300)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--views-per-second", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--views-of",
        choices=("page", "static"),
        default="page",
        help="what the views of (b) fetch: the ticket page, or the style sheet (the listener's own cost)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        show(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
