"""Ticketed throughput on a young database and on one with a long history: the in-process pipeline (and
the sender) on the same 300 mails, on a database seeded with 1,000 tickets and on one with 1,000,000
(bench/seed_scale.py), SQLite and PostgreSQL. The goal (issue 16, "Scale"): the big one within 10%.

    .venv/bin/python bench/scale_throughput.py [--backend sqlite|postgresql|both] [--mails 300]
        [--small 1000] [--big 1000000] [--sqlite-seeded FILE] [--pg-seeded DBNAME]
        [--pg-url postgresql://postgres@127.0.0.1:54329] [--rounds 3]

Seeding a million tickets takes many minutes, so a seeded database can be given: --sqlite-seeded FILE is
copied for the run, --pg-seeded DBNAME is the template of a new database (both are upgraded to the code's
schema first; the original stays as it was). Without them the script seeds its own. The mail mix is
bench/pipe_throughput.py's: two thirds new tickets from 300 customers, a third replies (half by
In-Reply-To, half by the [NUMBER] in the subject); every new ticket queues an auto-reply and a notice to
the desk's six agents, and the sender delivers them. The statements' time is summed per statement text
(a `before/after_cursor_execute` listener), so a query that grows with the history shows by name. Small
and big runs alternate for --rounds rounds (new mails each round); the median run of each is reported.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from pipe_throughput import bench_in_process  # noqa: E402
from seed_scale import seed  # noqa: E402
from sqlalchemy import Engine, create_engine, event, text  # noqa: E402

from maild.storage.migrate import upgrade  # noqa: E402


class StatementClock:
    """Time per statement text, over every engine of the process while it runs."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _before(self, conn: Any, _cursor: Any, _statement: str, *_rest: Any) -> None:
        conn.info["statement_started"] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        elapsed = time.perf_counter() - conn.info.pop("statement_started", time.perf_counter())
        key = " ".join(statement.split())
        self.total[key] = self.total.get(key, 0.0) + elapsed
        self.calls[key] = self.calls.get(key, 0) + 1

    @contextmanager
    def running(self) -> Iterator[None]:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        try:
            yield
        finally:
            event.remove(Engine, "before_cursor_execute", self._before)
            event.remove(Engine, "after_cursor_execute", self._after)

    def mean_ms(self, key: str) -> float:
        return self.total.get(key, 0.0) / max(1, self.calls.get(key, 0)) * 1000


def write_config(workdir: Path, url: str) -> Path:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    config = workdir / "maild.toml"
    # Two thirds of the mails open a ticket with an auto-reply: lift the desk-wide hourly cap.
    lines = [f'data_dir = "{data_dir}"', "[database]", f'url = "{url}"', "[hygiene]"]
    config.write_text("\n".join([*lines, "autoreply_desk_per_hour = 1000000"]) + "\n")
    return config


def sqlite_database(workdir: Path, tickets: int, seeded: Path | None) -> str:
    path = workdir / "maild.sqlite3"
    url = f"sqlite:///{path}"
    if seeded is not None:
        started = time.perf_counter()
        upgrade(f"sqlite:///{seeded}")
        shutil.copyfile(seeded, path)
        print(f"  copied {seeded} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return url
    upgrade(url)
    seed(url, tickets)
    return url


def pg_database(base: str, name: str, tickets: int, template: str | None) -> str:
    admin = create_engine(f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        if template:
            upgrade(f"{base}/{template}")
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        else:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{base}/{name}"
    if not template:
        upgrade(url)
        seed(url, tickets)
    return url


def run(config: Path, mails: int, seed_value: int) -> tuple[float, StatementClock]:
    clock = StatementClock()
    with clock.running():
        elapsed, _replies = bench_in_process(config, mails, random.Random(seed_value))
    return mails / elapsed, clock


def report(
    backend: str, small: tuple[float, StatementClock], big: tuple[float, StatementClock]
) -> dict[str, Any]:
    ratio = big[0] / small[0]
    rates = f"small {small[0]:.1f} mail/s, big {big[0]:.1f} mail/s"
    print(f"{backend}: median round: {rates}, big/small {ratio:.2f}")
    for label, (_rate, clock) in (("small", small), ("big", big)):
        top = sorted(clock.total, key=clock.total.__getitem__, reverse=True)[:4]
        print(f"  {label}: SQL {sum(clock.total.values()):.1f} s in all; the most time:")
        for key in top:
            spent = f"{clock.total[key]:6.2f} s {clock.calls[key]:5d} × {clock.mean_ms(key):7.3f} ms"
            print(f"    {spent}: {key[:120]}")
    # The statements that cost more per call on the big database, by the time they added to the run.
    growth = sorted(
        big[1].total,
        key=lambda k: big[1].total[k] - small[1].mean_ms(k) / 1000 * big[1].calls[k],
        reverse=True,
    )
    print("  grew most per call (small → big):")
    for key in growth[:6]:
        before, after = small[1].mean_ms(key), big[1].mean_ms(key)
        print(f"    {before:7.3f} → {after:7.3f} ms × {big[1].calls[key]:5d}: {key[:120]}")
    return {
        "backend": backend,
        "small_rate": round(small[0], 1),
        "big_rate": round(big[0], 1),
        "ratio": round(ratio, 3),
    }


def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    configs = []
    for label, tickets in (("small", args.small), ("big", args.big)):
        where = workdir / f"{backend}-{label}"
        where.mkdir()
        started = time.perf_counter()
        if backend == "sqlite":
            url = sqlite_database(where, tickets, args.sqlite_seeded if label == "big" else None)
        else:
            url = pg_database(
                args.pg_url, f"scale_run_{label}", tickets, args.pg_seeded if label == "big" else None
            )
        print(
            f"{backend} {label}: {tickets} tickets ready in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        configs.append(write_config(where, url))
    # Small and big take turns, round after round: a load that comes and goes on the machine hits both.
    rounds: list[list[tuple[float, StatementClock]]] = [[], []]
    for n in range(args.rounds):
        for size, config in enumerate(configs):
            rounds[size].append(run(config, args.mails, args.seed + n))
            print(
                f"  round {n + 1} {('small', 'big')[size]}: {rounds[size][-1][0]:.1f} mail/s", file=sys.stderr
            )
    # Round 1 creates the 300 customers' contacts, later rounds find them: compare within a round.
    ratios = sorted(big[0] / small[0] for small, big in zip(*rounds, strict=True))
    print(f"{backend}: big/small per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    middle = len(ratios) // 2
    pairs = sorted(zip(*rounds, strict=True), key=lambda pair: pair[1][0] / pair[0][0])
    small, big = pairs[middle]
    return report(backend, small, big)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--mails", type=int, default=300)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--sqlite-seeded", type=Path, help="a seeded SQLite file to copy for the big run")
    parser.add_argument("--pg-seeded", help="a seeded PostgreSQL database: the template of the big run's")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:54329")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each size, alternating")
    parser.add_argument("--workdir", type=Path, help="where the SQLite copies go (default: a temporary dir)")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        summary = [bench_backend(backend, args, Path(tmp)) for backend in backends]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
