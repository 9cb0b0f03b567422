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
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maild.config import load_config  # noqa: E402
from maild.mailparse import NotAMessage, parse_mail  # noqa: E402
from pipeline.runner import process  # noqa: E402
from storage.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Desk, DeskAddress  # noqa: E402
from storage.spool import record_received, write_raw  # noqa: E402
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


def prepare(workdir: Path) -> Path:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    config = workdir / "maild.toml"
    config.write_text(f'data_dir = "{data_dir}"\n')
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="size factor of the pipeline cases")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only these pipeline cases")
    parser.add_argument("--no-parse", action="store_true", help="skip the parse-only fuzz shapes")
    args = parser.parse_args()
    results = [] if args.no_parse else bench_parse()
    results += bench_pipeline(args.case or list(CASES), args.scale)
    slow = [name for name, elapsed in results if elapsed > BUDGET_S]
    if slow:
        print(f"over {BUDGET_S:.0f} s: {', '.join(slow)}")
        raise SystemExit(1)
    print(f"all {len(results)} cases ≤ {BUDGET_S:.0f} s")


if __name__ == "__main__":
    main()
