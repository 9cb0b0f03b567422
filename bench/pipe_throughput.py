"""Throughput of the mail → ticket pipeline, in one process and through `maild pipe` per message (alone,
and handing its mail to a running `maild serve` over the control socket).

    .venv/bin/python bench/pipe_throughput.py [--mails 1000] [--pipe-mails 60] [--database-url URL]

`maild pipe` alone takes the fast path as docs/postfix.md's master.cf runs it (`--recipient`, the
desk-address table written as maildctl writes it): it exits once the row is committed and its on-demand
worker processes the mail; the run also reports when the worker had processed them all. Then a few pipes
without --recipient (the pipeline decides before the pipe exits), then the pipe with `maild serve` running.

Without --database-url it runs on SQLite in a temporary data dir; with a postgresql:// URL (an empty
database) on PostgreSQL. A third of the generated mails are replies to earlier ones (half threaded by
In-Reply-To, half by the [NUMBER] in the subject); every new ticket queues and delivers an auto-reply
to the outgoing Maildir, as on the embedded default.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from maild.config import load_config  # noqa: E402
from maild.ingress.desk_table import write_table  # noqa: E402
from maild.ingress.spool_worker import IDLE_ENV, try_lock  # noqa: E402
from maild.outbound.sender import flush  # noqa: E402
from maild.pipeline.runner import process  # noqa: E402
from maild.storage.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from maild.storage.migrate import upgrade  # noqa: E402
from maild.storage.models import Desk, DeskAddress, SpoolEntry  # noqa: E402
from maild.storage.spool import record_received, write_raw  # noqa: E402

WORDS = [
    "printer",
    "invoice",
    "login",
    "password",
    "error",
    "broken",
    "urgent",
    "order",
    "delivery",
    "refund",
    "account",
    "screen",
    "update",
    "network",
    "slow",
    "crash",
    "report",
    "access",
    "license",
    "server",
    "backup",
]


def new_mail(i: int, rng: random.Random) -> bytes:
    subject = " ".join(rng.choice(WORDS) for _ in range(5)).capitalize()
    body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(rng.randint(4, 20)))
    return (
        f"From: Customer {i} <customer{i % 300}@example.org>\r\n"
        f"To: Support <support@example.com>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <bench-{i}-{rng.getrandbits(40)}@example.org>\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello,\r\n\r\n{body}\r\n\r\nRegards\r\n"
    ).encode()


def reply_mail(i: int, rng: random.Random, original_id: str, number: str | None, sender: str) -> bytes:
    subject = f"Re: [{number}] follow-up" if number else "Re: follow-up"
    header = f"In-Reply-To: {original_id}\r\nReferences: {original_id}\r\n" if number is None else ""
    return (
        f"From: {sender}\r\n"
        f"To: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <bench-r{i}-{rng.getrandbits(40)}@example.org>\r\n{header}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Thanks, one more detail.\r\n\r\n> quoted earlier text\r\n"
    ).encode()


def prepare(workdir: Path, database_url: str | None) -> Path:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    config = workdir / "maild.toml"
    lines = [f'data_dir = "{data_dir}"']
    if database_url:
        lines += ["[database]", f'url = "{database_url}"']
    # Two thirds of the mails open a ticket with an auto-reply: the desk-wide hourly cap (200 by default)
    # would stop the replies partway through a run.
    lines += ["[hygiene]", "autoreply_desk_per_hour = 1000000"]
    config.write_text("\n".join(lines) + "\n")
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
    write_table(cfg.data_dir, ["support@example.com"])  # what `maildctl desk add` writes
    return config


def reset_postgresql(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def bench_in_process(config: Path, mails: int, rng: random.Random) -> tuple[float, int]:
    cfg = load_config(str(config))
    factory = make_sessionmaker(make_engine(cfg.database_url, cfg.busy_timeout_ms))
    sent: list[tuple[str, str, str]] = []  # (Message-ID, ticket number, From) of new tickets
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for i in range(mails):
        if sent and i % 3 == 2:
            # From the ticket's customer: a stranger quoting its number opens a new ticket (hijack guard).
            original, number, sender = rng.choice(sent)
            raw = reply_mail(i, rng, original, number if i % 2 else None, sender)
        else:
            raw = new_mail(i, rng)
        digest = write_raw(cfg.spool_dir, raw)
        with transaction(factory) as session:
            spool_id = record_received(session, digest, len(raw), "support@example.com", "bench").id
        result = process(factory, cfg, spool_id)
        if result.outbox_ids:
            flush(factory, cfg, result.outbox_ids)
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        if result.outcome == "created":
            assert result.ticket_number
            header = raw.decode()
            sent.append(
                (
                    header.split("Message-ID: ")[1].split("\r\n")[0],
                    result.ticket_number,
                    header.split("From: ")[1].split("\r\n")[0],
                )
            )
    elapsed = time.perf_counter() - started
    expected_replies = sum(1 for i in range(mails) if i % 3 == 2)
    assert outcomes.get("replied", 0) == expected_replies, outcomes
    return elapsed, len(list((cfg.outgoing_maildir / "new").iterdir()))


def bench_pipe(
    config: Path, mails: int, rng: random.Random, recipient: Sequence[str] | None = None
) -> list[float]:
    maild = Path(sys.executable).parent / "maild"
    # As docs/postfix.md's master.cf runs it: the envelope recipient given.
    given = ["--recipient", "support@example.com"] if recipient is None else list(recipient)
    times = []
    for i in range(mails):
        raw = new_mail(100_000 + i + int(rng.getrandbits(30)), rng)
        started = time.perf_counter()
        argv = [str(maild), "--config", str(config), "pipe", *given]
        proc = subprocess.run(argv, input=raw, capture_output=True)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"maild pipe exited {proc.returncode}: {proc.stderr.decode()}")
    return times


def wait_processed(config: Path, started: float) -> float:
    """Seconds from `started` until no spool row is 'received' and the on-demand worker has exited."""
    cfg = load_config(str(config))
    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
    factory = make_sessionmaker(engine)
    done_at = None
    while True:
        with factory() as session:
            pending = session.query(SpoolEntry).filter(SpoolEntry.state == "received").count()
        if pending == 0 and done_at is None:
            done_at = time.perf_counter()
        if done_at is not None:
            lock = try_lock(cfg.data_dir)
            if lock is not None:  # the worker exited (it holds the lock while it runs)
                os.close(lock)
                engine.dispose()
                return done_at - started
        time.sleep(0.05)


def start_serve(config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    """`maild serve` on the bench's data dir (SMTP on a free loopback port), once it says it is ready."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve_config = workdir / "serve.toml"
    lines = config.read_text().splitlines()
    serve_config.write_text("\n".join([*lines, "[listen]", f'smtp = "127.0.0.1:{port}"']) + "\n")
    maild = Path(sys.executable).parent / "maild"
    proc = subprocess.Popen(
        [str(maild), "--config", str(serve_config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("event") == "ready":
            break
    else:
        raise SystemExit("maild serve did not start")
    # Keep reading its log, or it blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
    return proc


def report_pipe(label: str, times: list[float]) -> None:
    times = sorted(times)
    print(
        f"{label}: {len(times)} mails, median {statistics.median(times) * 1000:.0f} ms, "
        f"p90 {times[int(len(times) * 0.9)] * 1000:.0f} ms, {len(times) / sum(times):.1f} mail/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--pipe-mails", type=int, default=60)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    backend = "postgresql" if args.database_url else "sqlite"
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            reset_postgresql(args.database_url)
        config = prepare(Path(tmp), args.database_url)
        elapsed, replies = bench_in_process(config, args.mails, rng)
        print(
            f"{backend}: in-process pipeline: {args.mails} mails in {elapsed:.2f} s = "
            f"{args.mails / elapsed:.0f} mail/s ({elapsed / args.mails * 1000:.2f} ms/mail, "
            f"{replies} auto-replies written)"
        )
        os.environ[IDLE_ENV] = "1"  # the pipes' on-demand worker exits 1 s after the last mail
        started = time.perf_counter()
        times = bench_pipe(config, args.pipe_mails, rng)
        report_pipe(f"{backend}: maild pipe alone (fast path), one process per mail", times)
        processed = wait_processed(config, started)
        print(
            f"{backend}: ... all {args.pipe_mails} processed by the on-demand worker {processed:.1f} s after "
            f"the first pipe started ({args.pipe_mails / processed:.1f} mail/s)"
        )
        few = max(5, args.pipe_mails // 6)
        report_pipe(
            f"{backend}: maild pipe alone, no --recipient", bench_pipe(config, few, rng, recipient=[])
        )
        serve = start_serve(config, Path(tmp))
        try:
            times = bench_pipe(config, args.pipe_mails, rng)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
        report_pipe(f"{backend}: maild pipe, maild serve running", times)


if __name__ == "__main__":
    main()
