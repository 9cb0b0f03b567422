"""The cost of a desk's rules per mail (issue 19: at most 1 ms with 50 rules on a desk).

    .venv/bin/python bench/rules.py [--mails 400] [--rules 50] [--database-url URL]

Two desks in one fresh database (SQLite in a temporary data dir, or the empty PostgreSQL database of
--database-url): `ruled` with `--rules` rules (a mix of the four event triggers and of conditions: words,
patterns, sender domains, tags, contact attributes, business hours; two of them fire on every new ticket,
one tags and one raises the priority) and `plain` with none. The same mails (a new ticket, then a
customer reply to it) go to each desk through the pipeline's `process_batch` in batches of 20, the desks
alternating batch by batch so that the machine's load falls on both alike. Prints the time per mail of
each desk, the difference, and the time spent inside `rules_engine.run_rules` per mail (measured around
the call), with `uptime`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maild.admin_cli.main import main as maildctl  # noqa: E402
from maild.config import load_config  # noqa: E402
from maild.mail.mailparse import parse_file  # noqa: E402
from maild.pipeline.runner import Job, process_batch  # noqa: E402
from maild.storage.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from maild.storage.files import content_path  # noqa: E402
from maild.storage.spool import record_received, write_raw  # noqa: E402
from maild.tickets import rules_engine  # noqa: E402

BATCH = 20
TRIGGERS = ["ticket created", "customer replied", "agent replied", "status changed"]
CONDITIONS = [
    "subject contains refund invoice",
    "body matches (?i)order\\s+#?\\d{{6,}}",
    "sender domain is partner{n}.example",
    "tag is vip{n}",
    "contact plan is gold{n}",
    "not inside business hours",
    "subject matches ^\\[urgent{n}\\]",
    "body contains cancel subscription{n}",
]


def _rules(count: int) -> list[list[str]]:
    """`count` rules: two that fire on every new ticket, the rest each with two conditions that fail."""
    rules = [
        ["--on", "ticket created", "--if", "sender domain is customer.example", "--then", "tag seen"],
        ["--on", "ticket created", "--if", "subject contains printer", "--then", "priority high"],
    ]
    for n in range(count - len(rules)):
        first = CONDITIONS[n % len(CONDITIONS)].format(n=n)
        second = CONDITIONS[(n + 3) % len(CONDITIONS)].format(n=n)
        rules.append(
            [
                "--on",
                TRIGGERS[n % len(TRIGGERS)],
                "--if",
                second,
                "--if",
                first,
                "--then",
                f"tag r{n}",
                "priority urgent",
            ]
        )
    return rules


def _ctl(config: Path, *args: str) -> None:
    code = maildctl(["--config", str(config), *args])
    if code != 0:
        raise SystemExit(f"maildctl {' '.join(args)} failed ({code})")


def _mail(desk: str, n: int, reply_to: str | None) -> bytes:
    subject = f"Re: [{reply_to}] Printer {n} on fire" if reply_to else f"Printer {n} on fire"
    lines = [
        f"From: Alice <alice{n}@customer.example>",
        f"To: {desk}@example.com",
        f"Subject: {subject}",
        "Date: Sat, 07 Mar 2026 09:00:00 +0000",
        f"Message-ID: <{desk}-{n}-{'r' if reply_to else 'n'}@customer.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Hello,\r\n\r\nthe printer {n} on floor 2 is on fire again.\r\nOrder 12345 is not it.\r\n\r\nAlice",
    ]
    return "\r\n".join(lines).encode()


def _jobs(factory: Any, cfg: Any, raws: list[bytes], recipient: str) -> list[Job]:
    jobs = []
    for raw in raws:
        digest = write_raw(cfg.spool_dir, raw)
        with transaction(factory) as session:
            spool_id = record_received(session, digest, len(raw), recipient, "pipe").id
        parsed = parse_file(str(content_path(cfg.spool_dir, digest, ".eml")))
        jobs.append(Job(spool_id, digest, "", parsed, checked=True))
    return jobs


def _timed_rules() -> tuple[list[float], Callable[[], None]]:
    spent: list[float] = []
    original = rules_engine.run_rules

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    rules_engine.run_rules = timed  # type: ignore[assignment]
    return spent, lambda: setattr(rules_engine, "run_rules", original)


def run(mails: int, rules: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        data = Path(tmp) / "data"
        config = Path(tmp) / "maild.toml"
        config.write_text(
            f'data_dir = "{data}"\n\n[database]\nurl = "{url or f"sqlite:///{tmp}/maild.db"}"\n'
        )
        _ctl(config, "init")
        for desk, pattern in (("ruled", "R-{{nr}}"), ("plain", "P-{{nr}}")):
            _ctl(config, "desk", "add", desk, "--address", f"{desk}@example.com", "--pattern", pattern)
            _ctl(config, "agent", "add", f"agent@{desk}.example", "--name", f"Agent {desk}", "--desk", desk)
        for n, args in enumerate(_rules(rules)):
            _ctl(config, "rule", "add", "ruled", f"rule{n}", *args)
        cfg = load_config(str(config))
        factory = make_sessionmaker(make_engine(cfg.database_url, cfg.busy_timeout_ms))
        spent, restore = _timed_rules()
        pipeline: dict[str, list[float]] = {}  # "<desk> <new|reply>": seconds per mail of each batch
        in_rules: dict[str, list[float]] = {}
        for start in range(0, mails, BATCH):
            for desk in ("ruled", "plain") if start % (2 * BATCH) == 0 else ("plain", "ruled"):
                prefix = "R" if desk == "ruled" else "P"
                new = [_mail(desk, n, None) for n in range(start, start + BATCH)]
                replies = [_mail(desk, n, f"{prefix}-{n + 1}") for n in range(start, start + BATCH)]
                for kind, raws in (("new", new), ("reply", replies)):
                    jobs = _jobs(factory, cfg, raws, f"{desk}@example.com")
                    spent.clear()
                    started = time.perf_counter()
                    results = process_batch(factory, cfg, jobs)
                    pipeline.setdefault(f"{desk} {kind}", []).append(
                        (time.perf_counter() - started) / len(jobs)
                    )
                    in_rules.setdefault(f"{desk} {kind}", []).append(sum(spent) / len(jobs))
                    bad = [r for r in results if r.outcome not in ("created", "replied")]
                    if bad:
                        raise SystemExit(f"unexpected outcomes: {bad[:3]}")
        restore()
        _report(pipeline, in_rules, mails, rules)


def _report(
    pipeline: dict[str, list[float]], in_rules: dict[str, list[float]], mails: int, rules: int
) -> None:
    """Medians over the batches (each already a mean of BATCH mails), in ms per mail."""
    ms = {key: statistics.median(values) * 1000 for key, values in pipeline.items()}
    inner = {key: statistics.median(values) * 1000 for key, values in in_rules.items()}
    print(f"{mails} new tickets and {mails} replies per desk, batches of {BATCH}; medians, ms per mail:")
    print("                         pipeline   run_rules")
    for key in ("ruled new", "plain new", "ruled reply", "plain reply"):
        print(f"  {key:<22} {ms[key]:8.2f}   {inner[key]:9.3f}")
    for kind, what in (("new", "2 of the rules fire: a tag, a priority"), ("reply", "no rule fires")):
        outer = ms["ruled " + kind] - ms["plain " + kind]
        engine = inner["ruled " + kind] - inner["plain " + kind]
        print(
            f"  {rules} rules cost per {kind} mail ({what}): {outer:+.2f} ms in the pipeline, "
            f"{engine:+.3f} ms in run_rules"
        )
    print("  uptime:" + subprocess.run(["uptime"], capture_output=True, text=True).stdout.rstrip())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=400)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--database-url")
    options = parser.parse_args()
    os.environ.setdefault("MAILD_LOG_LEVEL", "warning")
    run(options.mails, options.rules, options.database_url)
