"""Two `maild serve` instances on one PostgreSQL database sharing an LMTP load (issue 16, "Scale"): no mail
may be lost or stored twice; the aggregate rate is reported with each instance's CPU.

    .venv/bin/python bench/two_instances.py [--mails 1000] [--senders 10] [--baseline-senders 20]
        [--workers 2] [--phases 1,2] [--database-url postgresql://postgres@127.0.0.1:54329/postgres]
        [--keep] [--json] [--render SAVED.json]

Each phase gets a fresh database (created through --database-url's server, dropped unless --keep) and a
fresh data_dir with `maildctl init`, `maildctl desk add support`; N unique ~3 KB mails, each a new ticket
with an auto-reply (to the outgoing Maildir; auto-reply caps lifted), sent over LMTP by senders that each
keep one connection and send their share back to back (closed loop), all from this process:
  1  one `maild serve`, --baseline-senders senders (default 2 x --senders: the two-instance phase's
     connection count, so both phases are offered the same concurrency);
  2  two `maild serve` on the same database and data_dir (one host: they share the spool, attachments and
     outgoing Maildir), config files differing only in `[listen] lmtp` (no SMTP), half of the mails and
     --senders senders each. The second runs without the control socket (the first holds it).
Measured per phase:
  accepted mail/s  acknowledged / (first MAIL FROM .. last 250), all instances; per instance over its own
                   first..last. Latency: MAIL FROM .. the 250.
  ticketed mail/s  acknowledged / (first MAIL FROM .. every spool row 'done', every created ticket's
                   auto-reply in the outbox), polled every 50 ms; handed over: .. every outbox row settled.
  CPU seconds      utime+stime+cutime+cstime (/proc/<pid>/stat) sampled every 0.25 s from "ready" until all
                   is handed over: each daemon, and its descendants (/proc/<pid>/task/*/children: the parse
                   processes); PostgreSQL: the phase database's backends (pg_stat_activity, this script's
                   two excluded; not the cluster's WAL writer, checkpointer); this script (the clients);
                   the machine's busy CPU (/proc/stat): shows what other processes took meanwhile.
Checked afterwards: each acknowledged Message-ID is exactly one message (0 lost, 0 duplicates), one ticket
per mail, unique numbers, one spool row per mail, all 'done' as 'created', one outbox row per ticket, all
sent, a Maildir file per sent row (named by row id: a second delivery adds no file, so the sends the logs
report, replies_handed_over and outbox_sent, must equal the sent rows too). Log warnings/errors by event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import smtp_throughput as st  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.25
POLL_SECONDS = 0.05
Q = (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
BACKENDS = (
    "select pid, wait_event_type, left(query, 50) from pg_stat_activity where datname = current_database()"
)
DRAINED = (  # spool rows, done, done as a new ticket; outbox rows, settled (sent or given up)
    "select (select count(*) from spool), (select count(*) from spool where state = 'done'), (select count(*)"
    " from spool where outcome = 'created'), (select count(*) from outbox), (select count(*) from outbox"
    " where status <> 'queued')"
)
MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.MULTILINE)


def cpu_seconds(pid: int) -> float | None:
    """utime + stime + cutime + cstime of `pid` (its threads, and its children it has reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return sum(int(v) for v in fields[11:15]) / TICK


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in children.read_text().split():
                found += [int(child), *descendants(int(child))]
        except OSError:
            continue
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine was busy since boot (all cores): not idle, not waiting for I/O."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK


class CpuSampler(threading.Thread):
    """Every SAMPLE_SECONDS: each daemon's and its descendants' CPU, and the phase database's backends'.
    A process first seen after the first sample was born during the run: it counts from zero. Also which
    statements the backends were waiting on a lock in (`lock_waits`: samples per statement)."""

    def __init__(self, url: str, daemons: dict[str, int], exclude: set[int]) -> None:
        super().__init__(daemon=True)
        self.daemons = daemons
        self.conn = psycopg.connect(url, autocommit=True)
        self.exclude = exclude | {self.conn.info.backend_pid}
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.done, self.lock_waits = threading.Event(), Counter[str]()
        self.sample(initial=True)

    def sample(self, initial: bool = False) -> None:
        keys = [(name, pid) for name, pid in self.daemons.items()]
        keys += [(f"{name} children", c) for name, pid in self.daemons.items() for c in descendants(pid)]
        backends = self.conn.execute(BACKENDS).fetchall()
        keys += [("postgres", pid) for pid, _, _ in backends if pid not in self.exclude]
        self.lock_waits.update(" ".join(query.split()) for _, wait, query in backends if wait == "Lock")
        for key in keys:
            seconds = cpu_seconds(key[1])
            if seconds is not None:
                self.first.setdefault(key, seconds if initial else 0.0)
                self.last[key] = seconds

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            self.sample()

    def finish(self) -> dict[str, tuple[float, int]]:
        """Stop sampling, take a last sample: CPU seconds and process count per group."""
        self.done.set()
        self.join()
        self.sample()
        self.conn.close()
        groups: dict[str, tuple[float, int]] = {}
        for key, seconds in self.last.items():
            total, count = groups.get(key[0], (0.0, 0))
            groups[key[0]] = (total + seconds - self.first[key], count + 1)
        return groups


class Site:
    """A fresh database and data_dir with the desk `support`; `start()` runs one more `maild serve`."""

    def __init__(self, workdir: Path, admin_url: str, database: str, workers: int) -> None:
        self.workdir, self.admin_url, self.database, self.workers = workdir, admin_url, database, workers
        workdir.mkdir(parents=True)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{database}" with (force)')
            admin.execute(f'create database "{database}"')
        self.url = urlsplit(admin_url)._replace(path=f"/{database}").geturl()
        self.data_dir = workdir / "data"
        self.daemons: list[Daemon] = []
        config = self.config("setup", st.free_port())
        desk = ["desk", "add", "support", "--address", st.DESK_ADDRESS, "--pattern", st.PATTERN]
        for args in (["init"], desk):
            done = subprocess.run(
                [str(st.BIN / "maildctl"), "--config", str(config), *args], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(f"maildctl {' '.join(args)} exited {done.returncode}: {done.stderr}")

    def config(self, name: str, port: int) -> Path:
        path = self.workdir / f"maild-{name}.toml"
        # Only [listen] lmtp differs between the instances. Every mail is a new ticket with an auto-reply,
        # 500 customers: lift the desk-wide and the per-address caps, or replies would stop mid-run.
        path.write_text(
            f'data_dir = "{self.data_dir}"\n[database]\nurl = "{self.url}"\n'
            f'[listen]\nlmtp = "{st.HOST}:{port}"\nworkers = {self.workers}\n'
            f"[hygiene]\nautoreply_desk_per_hour = {st.UNCAPPED}\nautoreply_per_hour = {st.UNCAPPED}\n"
            f"autoreply_per_day = {st.UNCAPPED}\n"
        )
        return path

    def start(self, name: str) -> Daemon:
        port, log = st.free_port(), self.workdir / f"maild-{name}.log"
        argv = [str(st.BIN / "maild"), "--config", str(self.config(name, port)), "serve"]
        with log.open("wb") as out:  # JSON lines to a file: a full pipe never blocks maild
            self.daemons.append(Daemon(name, port, log, subprocess.Popen(argv, stdout=out, stderr=out)))
        st.wait_for_line(log, '"event": "ready"', self.daemons[-1].proc)
        return self.daemons[-1]

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{self.database}" with (force)')


@dataclass
class Daemon:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]


@dataclass
class Sent:
    instance: str
    message_id: str
    ok: bool
    started: float
    ended: float


async def send_share(name: str, port: int, share: list[bytes], out: list[Sent]) -> None:
    """One sender: one connection, its mails back to back; a broken connection is opened again."""
    client: st.LmtpClient | None = await st.LmtpClient.connect(port)
    for raw in share:
        found = MESSAGE_ID.search(raw)
        message_id = found.group(1).decode() if found else ""
        started = time.perf_counter()
        ok = False
        try:
            client = client or await st.LmtpClient.connect(port)
            ok = await client.send(raw)
        except (OSError, ConnectionError, TimeoutError, RuntimeError):
            client = None  # not acknowledged: it may still have been stored (a 250 lost)
        out.append(Sent(name, message_id, ok, started, time.perf_counter()))
    if client is not None:
        await client.close()


async def send_all(targets: list[tuple[Daemon, list[bytes]]], senders: int) -> list[Sent]:
    out: list[Sent] = []
    shares = [
        send_share(daemon.name, daemon.port, mails[j::senders], out)
        for daemon, mails in targets
        for j in range(senders)
    ]
    await asyncio.gather(*shares)
    return out


def sending(sent: list[Sent]) -> dict[str, float]:
    """The senders' view: acknowledged and refused mails, mail/s over first MAIL FROM .. last 250, latency."""
    latencies = [s.ended - s.started for s in sent if s.ok]
    seconds = max(s.ended for s in sent) - min(s.started for s in sent) if sent else 0.0
    quantiles = {f"{name}_ms": st.ms(st.percentile(latencies, q)) for name, q in Q}
    return {
        "mails": len(sent),
        "accepted": len(latencies),
        "failed": len(sent) - len(latencies),
        "seconds": round(seconds, 3),
        "rate": round(len(latencies) / seconds, 1) if seconds else 0.0,
        **quantiles,
    }


def wait_drained(
    conn: psycopg.Connection[Any], accepted: int, started: float, timeout: float
) -> tuple[float | None, float | None]:
    """Seconds from `started` until every spool row is done with its ticket's auto-reply queued, and until
    every outbox row is settled."""
    ticketed = None
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        total, done, created, outbox, settled = row(conn, DRAINED)
        now = time.perf_counter()
        if ticketed is None and total >= accepted and done == total and outbox >= created:
            ticketed = now - started
        if ticketed is not None and settled >= outbox:
            return ticketed, now - started
        time.sleep(POLL_SECONDS)
    st.say(f"warning: not drained within {timeout:g} s")
    return ticketed, None


def row(conn: psycopg.Connection[Any], query: str) -> tuple[Any, ...]:
    return conn.execute(query).fetchone() or ()


def several(conn: psycopg.Connection[Any], column: str, table: str, where: str = "true") -> int:
    query = f"select {column} from {table} where {where} group by 1 having count(*) > 1"
    return int(row(conn, f"select count(*) from ({query}) t")[0])


def counts(conn: psycopg.Connection[Any], column: str, table: str) -> dict[str, int]:
    return {str(k): int(n) for k, n in conn.execute(f"select {column}, count(*) from {table} group by 1")}


def check(conn: psycopg.Connection[Any], sent: list[Sent], maildir: Path) -> dict[str, Any]:
    """What the database and the Maildir hold; `problems` judges it once the logs are read too."""
    acked = {s.message_id for s in sent if s.ok}
    stored = Counter(str(m).strip("<>") for (m,) in conn.execute("select message_id from messages"))
    ours = {m: n for m, n in stored.items() if m.startswith("bench-")}
    tickets, numbers = row(conn, "select count(*), count(distinct number) from tickets")
    return {
        "acknowledged": len(acked),
        "messages": sum(ours.values()),
        "duplicate_message_ids": sum(1 for n in ours.values() if n > 1),
        "lost": sorted(acked - set(ours)),
        "stored_unacknowledged": len(set(ours) - acked),
        "tickets": tickets,
        "distinct_ticket_numbers": numbers,
        "tickets_with_several_mails": several(conn, "ticket_id", "messages", "message_id like '%bench-%'"),
        "spool_rows": int(row(conn, "select count(*) from spool")[0]),
        "spool_duplicates": several(conn, "header_message_id", "spool"),
        "spool_outcomes": counts(conn, "coalesce(outcome, state)", "spool"),
        "outbox_by_status": counts(conn, "status", "outbox"),
        "tickets_with_several_replies": several(conn, "ticket_id", "outbox"),
        "maildir_files": sum(1 for sub in ("new", "cur") for f in (maildir / sub).glob("*") if f.is_file()),
    }


def problems(c: dict[str, Any], mails: int) -> list[str]:
    sent, rows = c["outbox_by_status"].get("sent", 0), sum(c["outbox_by_status"].values())
    found = [
        (c["duplicate_message_ids"], f"{c['duplicate_message_ids']} Message-IDs stored more than once"),
        (c["lost"], f"{len(c['lost'])} acknowledged mails not stored: {c['lost'][:5]}"),
        (c["acknowledged"] < mails, f"{mails - c['acknowledged']} mails not acknowledged"),
        (c["tickets"] != c["messages"], f"{c['tickets']} tickets for {c['messages']} mails"),
        (c["distinct_ticket_numbers"] != c["tickets"], "ticket numbers not unique"),
        (c["tickets_with_several_mails"], f"{c['tickets_with_several_mails']} tickets hold several mails"),
        (c["spool_duplicates"], f"{c['spool_duplicates']} Message-IDs with several spool rows"),
        (c["spool_outcomes"] != {"created": c["spool_rows"]}, f"spool outcomes {c['spool_outcomes']}"),
        (rows != c["tickets"], f"{rows} outbox rows for {c['tickets']} tickets"),
        (c["tickets_with_several_replies"], f"{c['tickets_with_several_replies']} tickets, several replies"),
        (sent != rows, f"outbox {c['outbox_by_status']}"),
        (c["maildir_files"] != sent, f"{c['maildir_files']} Maildir files for {sent} sent rows"),
        (c["sends_logged"] != sent, f"{c['sends_logged']} sends logged for {sent} sent rows"),
    ]
    return [text for bad, text in found if bad]


def summarise_log(log: Path) -> dict[str, Any]:
    """The mails its writer wrote ('processed'), the replies it sent, its warnings and errors by event."""
    found: dict[str, Any] = {"processed": 0, "sends_logged": 0}
    problems: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": "(not JSON) " + line[:60], "level": "error"}
        name = str(event.get("event", "?"))
        if event.get("level") in ("warning", "error", "critical"):
            problems[f"{event['level']} {name}"] += 1
        elif name == "processed":
            found["processed"] += 1
        if name in ("replies_handed_over", "outbox_sent"):
            found["sends_logged"] += int(event.get("sent", 0))
    return {**found, "log_problems": dict(problems.most_common())}


def run_phase(args: argparse.Namespace, workdir: Path, count: int, mails: list[bytes]) -> dict[str, Any]:
    senders = args.senders if count == 2 else args.baseline_senders or 2 * args.senders
    phase: dict[str, Any] = {"instances_count": count, "database": f"twoinst_{os.getpid()}_{count}"}
    phase |= {"senders": senders * count, "loadavg_before": st.loadavg(), "instances": [], "checks": {}}
    site = Site(workdir / f"{count}-instances", args.database_url, phase["database"], args.workers)
    try:
        daemons = [site.start(name) for name in ("a", "b")[:count]]
        measure(args, site, daemons, mails, phase)
    finally:
        codes = {daemon.name: st.stop(daemon.proc) for daemon in site.daemons}
        for instance, daemon in zip(phase["instances"], site.daemons, strict=False):
            instance |= {"exit_code": codes[daemon.name], **summarise_log(daemon.log)}
        if not args.keep:
            site.drop()
    phase["checks"]["sends_logged"] = sum(i["sends_logged"] for i in phase["instances"])
    phase["checks"]["problems"] = problems(phase["checks"], len(mails))
    phase["loadavg_after"] = st.loadavg()
    return phase


def measure(
    args: argparse.Namespace, site: Site, daemons: list[Daemon], mails: list[bytes], phase: dict[str, Any]
) -> None:
    poll = psycopg.connect(site.url, autocommit=True)
    sampler = CpuSampler(site.url, {d.name: d.proc.pid for d in daemons}, {poll.info.backend_pid})
    busy0, own0, window0 = (
        machine_busy_seconds(),
        sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        time.perf_counter(),
    )
    sampler.start()
    shares = [(daemon, mails[k :: len(daemons)]) for k, daemon in enumerate(daemons)]
    senders = phase["senders"] // len(daemons)
    st.say(f"{len(daemons)} instance(s), {phase['senders']} senders, {len(mails)} mails ...")
    sent = asyncio.run(send_all(shares, senders))
    phase["sending"] = sending(sent)
    accepted = int(phase["sending"]["accepted"])
    ticketed, handed_over = wait_drained(poll, accepted, min(s.started for s in sent), args.drain_timeout)
    cpu = sampler.finish()
    window = phase["window_seconds"] = round(time.perf_counter() - window0, 2)
    phase["ticketed_seconds"] = None if ticketed is None else round(ticketed, 3)
    phase["ticketed_rate"] = None if ticketed is None else round(accepted / ticketed, 1)
    phase["handed_over_seconds"] = None if handed_over is None else round(handed_over, 3)
    for daemon in daemons:
        main = cpu.get(daemon.name, (0.0, 1))[0]
        children, processes = cpu.get(f"{daemon.name} children", (0.0, 0))
        own = sending([s for s in sent if s.instance == daemon.name])
        phase["instances"].append(
            {
                "name": daemon.name,
                "port": daemon.port,
                "senders": senders,
                "sending": own,
                "children": processes,
            }
        )
        phase["instances"][-1]["cpu_seconds"] = {
            "total": round(main + children, 2),
            "daemon": round(main, 2),
            "children": round(children, 2),
        }
    postgres, phase["postgres_backends"] = cpu.get("postgres", (0.0, 0))
    phase["lock_waits"] = dict(sampler.lock_waits.most_common(5))  # samples with a backend waiting
    phase["cpu_seconds"] = {
        "maild": round(sum(i["cpu_seconds"]["total"] for i in phase["instances"]), 2),
        "postgres": round(postgres, 2),
        "this_script": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - own0, 2),
        "machine_busy": round(machine_busy_seconds() - busy0, 2),
        "machine_capacity": round(window * (os.cpu_count() or 1), 2),
    }
    phase["checks"] = check(poll, sent, site.data_dir / "outgoing")
    poll.close()


def print_phase(p: dict[str, Any]) -> None:
    s = p["sending"]
    print(
        f"{p['instances_count']} instance(s), {p['senders']} senders, {s['mails']} mails: accepted "
        f"{s['accepted']} ({s['failed']} failed) at {s['rate']} mail/s, p50 {s['p50_ms']} ms, p99 "
        f"{s['p99_ms']} ms; ticketed {p['ticketed_rate']} mail/s ({p['ticketed_seconds']} s), "
        f"all handed over after {p['handed_over_seconds']} s"
    )
    print(f"  load average {p['loadavg_before']} -> {p['loadavg_after']}")
    for i in p["instances"]:
        cpu, t = i["cpu_seconds"], i["sending"]
        per_mail = cpu["total"] / i["processed"] * 1000 if i["processed"] else float("nan")
        print(
            f"  {i['name']} :{i['port']} {i['senders']} senders: {t['accepted']}/{t['mails']} accepted at "
            f"{t['rate']} mail/s, p50 {t['p50_ms']} / p99 {t['p99_ms']} / max {t['max_ms']} ms; wrote "
            f"{i['processed']}; CPU {cpu['total']} s (daemon {cpu['daemon']} + {i['children']} children "
            f"{cpu['children']}) = {per_mail:.1f} ms per mail written; exit {i['exit_code']}"
        )
        if i["log_problems"]:
            print(f"    log: {', '.join(f'{k} x{n}' for k, n in i['log_problems'].items())}")
    cpu, mails = p["cpu_seconds"], max(1, s["accepted"]) / 1000
    print(
        f"  CPU s in the {p['window_seconds']} s window: maild {cpu['maild']} ({cpu['maild'] / mails:.1f} ms "
        f"per mail), PostgreSQL {cpu['postgres']} ({cpu['postgres'] / mails:.1f} ms per mail, "
        f"{p['postgres_backends']} backends), this script {cpu['this_script']}; the machine was busy "
        f"{cpu['machine_busy']} of {cpu['machine_capacity']}"
    )
    waits = f"{p['lock_waits']} (samples, every {SAMPLE_SECONDS} s)" if p["lock_waits"] else "none"
    print(f"  PostgreSQL backends waiting on a lock: {waits}")
    c = p["checks"]
    verdict = "OK" if not c["problems"] else "PROBLEMS: " + "; ".join(c["problems"])
    print(f"  checks: {verdict}\n    {dict((k, v) for k, v in c.items() if k not in ('problems', 'lost'))}")


def print_report(report: dict[str, Any]) -> None:
    print(f"revision {report['revision']}, {report['cpus']} CPUs")
    phases = {p["instances_count"]: p for p in report["phases"]}
    for phase in report["phases"]:
        print_phase(phase)
    one, two = phases.get(1), phases.get(2)
    if one and two and one["sending"]["rate"] and one["ticketed_rate"] and two["ticketed_rate"]:
        ratios = two["sending"]["rate"] / one["sending"]["rate"], two["ticketed_rate"] / one["ticketed_rate"]
        print("two / one instance: accepted {:.2f}x, ticketed {:.2f}x".format(*ratios))


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--mails", type=int, default=1000, help="mails per phase (default 1000)")
    parser.add_argument("--senders", type=int, default=10, help="senders per instance, two instances")
    parser.add_argument("--baseline-senders", type=int, default=0, help="default: 2 x --senders")
    parser.add_argument("--workers", type=int, default=2, help="[listen] workers: parse processes per daemon")
    parser.add_argument("--phases", default="1,2", help="instance counts to run, in order (default 1,2)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:54329/postgres")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the databases and the work directory")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--render", metavar="FILE", help="print the tables of a saved --json report")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.render:
        return print_report(json.loads(Path(args.render).read_text()))
    report: dict[str, Any] = {"revision": st.revision(), "cpus": os.cpu_count(), "phases": []}
    workdir = Path(tempfile.mkdtemp(prefix="twoinst-"))
    for count in (int(n) for n in args.phases.split(",") if n):
        rng = random.Random(args.seed + count)
        mails = [st.make_mail(f"{count}i", i, rng) for i in range(args.mails)]
        report["phases"].append(run_phase(args, workdir, count, mails))
    if args.keep:
        st.say(f"kept {workdir} and the databases twoinst_{os.getpid()}_*")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2)) if args.json else print_report(report)
    sys.exit(1 if any(p["checks"]["problems"] for p in report["phases"]) else 0)


if __name__ == "__main__":
    main()
