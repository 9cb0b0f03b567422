"""Peak memory of `maild serve` while 10 clients each deliver one ~25 MB mail at once over LMTP.

    .venv/bin/python bench/memory_large_mails.py [--clients 10] [--mb 25] [--json]

A real `maild serve` on a fresh data dir (`maildctl init`, `maildctl desk add support`, as
bench/smtp_throughput.py makes it). Every client connects first, then all send at the same moment one
unique mail: a short text part and a base64 attachment of about --mb MB (random bytes, so nothing
compresses or deduplicates). Meanwhile the resident memory of every process of maild's tree (the daemon
and any children, found through /proc/<pid>/task/*/children) is sampled every 20 ms; at the end each
process's own high-water mark (VmHWM) is read too.

Reported:
  peak RSS (sampled)  the largest sum of VmRSS over the tree seen in one sample
  peak until accepted the same until the last 250: what the intake holds (the pipeline starts meanwhile)
  sum of VmHWM        each process's own peak, added up: an upper bound (peaks at different moments)
  RSS at start        the tree's RSS before the first mail
  accepted            seconds from the start until the last client read its 250
  ticketed            seconds from the start until every mail's spool row is 'done'
The goal of issue 16: peak ≤ 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_throughput import DESK_ADDRESS, LmtpClient, Maild, loadavg, stop

SAMPLE_SECONDS = 0.02
TICKET_TIMEOUT = 900.0


def make_large_mail(i: int, megabytes: float) -> bytes:
    """A new-ticket mail carrying a base64 attachment of about `megabytes` MB (encoded size)."""
    payload = random.Random(i).randbytes(int(megabytes * 1024 * 1024 * 3 / 4))
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    head = (
        f"From: Customer {i} <customer{i}@example.org>\r\n"
        f"To: Support <{DESK_ADDRESS}>\r\n"
        f"Subject: Large attachment {i}\r\n"
        f"Message-ID: <bench-large-{i}-{os.getpid()}@example.org>\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, the file is attached.\r\n"
        f'--b\r\nContent-Type: application/octet-stream; name="data{i}.bin"\r\n'
        f'Content-Disposition: attachment; filename="data{i}.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return head + encoded + b"--b--\r\n"


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (by /proc children lists), those still alive."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    todo.extend(int(child) for child in fh.read().split())
        except OSError:
            continue
    return found


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def command_of(pid: int) -> str:
    """A short name for the process: the daemon, or the module a child runs (a pool worker, say)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if "serve" in argv:
        return "maild serve"
    return " ".join(argv[1:3])[:60]


class Sampler(threading.Thread):
    """Sums VmRSS over maild's process tree every SAMPLE_SECONDS; remembers the peak and each VmHWM."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_kb = 0
        self.accept_peak_kb = 0  # the peak until every mail had its 250: the intake's share
        self.accepting = True
        self.hwm_kb: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.accept_peak_by_pid: dict[int, int] = {}
        self.done = threading.Event()

    def sample(self) -> int:
        pids = process_tree(self.root)
        for pid in pids:
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), status_kb(pid, "VmHWM"))
            if pid not in self.names:
                self.names[pid] = command_of(pid)
        rss = {pid: status_kb(pid, "VmRSS") for pid in pids}
        if self.accepting:
            for pid, kb in rss.items():
                self.accept_peak_by_pid[pid] = max(self.accept_peak_by_pid.get(pid, 0), kb)
        return sum(rss.values())

    def run(self) -> None:
        while not self.done.is_set():
            rss = self.sample()
            self.peak_kb = max(self.peak_kb, rss)
            if self.accepting:
                self.accept_peak_kb = max(self.accept_peak_kb, rss)
            time.sleep(SAMPLE_SECONDS)


@dataclass
class Report:
    clients: int
    mail_mb: float
    start_rss_mb: float
    peak_rss_mb: float
    accept_peak_rss_mb: float
    sum_hwm_mb: float
    hwm_by_process: list[tuple[str, float, float]]  # name, VmHWM, peak RSS until accepted
    processes: int
    accepted: int
    accepted_seconds: float
    ticketed_seconds: float | None
    load: str


async def deliver(port: int, mails: list[bytes]) -> tuple[int, float]:
    clients = [await LmtpClient.connect(port) for _ in mails]
    started = time.perf_counter()
    results = await asyncio.gather(*(c.send(m) for c, m in zip(clients, mails, strict=True)))
    accepted_at = time.perf_counter() - started
    await asyncio.gather(*(c.close() for c in clients))
    return sum(results), accepted_at


def wait_done(maild: Maild, target: int, started: float) -> float | None:
    deadline = time.perf_counter() + TICKET_TIMEOUT
    while time.perf_counter() < deadline:
        if maild.counts()[0] >= target:
            return time.perf_counter() - started
        time.sleep(SAMPLE_SECONDS)
    return None


def bench(clients: int, megabytes: float) -> Report:
    mails = [make_large_mail(i, megabytes) for i in range(clients)]
    with tempfile.TemporaryDirectory(prefix="maild-memory-") as tmp:
        maild = Maild(Path(tmp) / "maild")
        try:
            sampler = Sampler(maild.proc.pid)
            start_kb = sampler.sample()
            sampler.start()
            started = time.perf_counter()
            accepted, accepted_seconds = asyncio.run(deliver(maild.ports["lmtp"], mails))
            sampler.accepting = False
            ticketed = wait_done(maild, accepted, started)
            time.sleep(0.2)  # a last sample or two after the final commit
            sampler.done.set()
            sampler.join()
            sampler.sample()
        finally:
            stop(maild.proc)
    return Report(
        clients=clients,
        mail_mb=round(len(mails[0]) / 1e6, 1),
        start_rss_mb=round(start_kb / 1024, 1),
        peak_rss_mb=round(sampler.peak_kb / 1024, 1),
        accept_peak_rss_mb=round(sampler.accept_peak_kb / 1024, 1),
        hwm_by_process=[
            (
                sampler.names.get(p, "?"),
                round(kb / 1024, 1),
                round(sampler.accept_peak_by_pid.get(p, 0) / 1024, 1),
            )
            for p, kb in sampler.hwm_kb.items()
        ],
        sum_hwm_mb=round(sum(sampler.hwm_kb.values()) / 1024, 1),
        processes=len(sampler.hwm_kb),
        accepted=accepted,
        accepted_seconds=round(accepted_seconds, 2),
        ticketed_seconds=round(ticketed, 2) if ticketed is not None else None,
        load=loadavg(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--mb", type=float, default=25.0, help="encoded attachment size in MB")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = bench(args.clients, args.mb)
    if args.json:
        print(json.dumps(asdict(report)))
        return
    print(f"{report.clients} clients × one {report.mail_mb} MB mail over LMTP ({report.load})")
    print(f"  RSS at start        {report.start_rss_mb} MB")
    print(f"  peak RSS (sampled)  {report.peak_rss_mb} MB over {report.processes} process(es)")
    print(f"  peak until accepted {report.accept_peak_rss_mb} MB")
    print(f"  sum of VmHWM        {report.sum_hwm_mb} MB")
    for name, mb, until_accepted in report.hwm_by_process:
        print(f"    VmHWM {mb:7.1f} MB, until accepted {until_accepted:7.1f} MB  {name}")
    print(f"  accepted            {report.accepted}/{report.clients} in {report.accepted_seconds} s")
    print(f"  ticketed            {report.ticketed_seconds} s")


if __name__ == "__main__":
    main()
