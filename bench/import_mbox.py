"""Import a generated mailbox backlog with `maildctl import mbox` and check its threading.

    .venv/bin/python bench/import_mbox.py [--conversations 2500] [--mails 10000] [--database-url URL]

Generates an mbox of `--mails` messages in `--conversations` conversations: a customer's new mail, then
replies, about 30% of them the desk's own (From the desk address: stored as its answers) and the rest the
customer's, threaded by In-Reply-To and References (half both, a quarter References only, a quarter
In-Reply-To only), none with a [NUMBER] in the subject ("Re:", "AW:", "RE:" prefixes). Dates spread
over two years, a reply 10 minutes to 3 days after the previous mail; the file order is shuffled (as
folders concatenated into one mbox), so only the date order threads correctly. About 1% of the customer
replies, each the last of its conversation, have no Date; about 3% of the mails carry a 20-150 KB
attachment. Each mail is generated from its own seed, so the mbox is written one mail at a time.

Then, in a fresh data dir (SQLite, or the empty PostgreSQL database of --database-url): `maildctl init`,
`maildctl desk add support`, `maildctl import mbox … --json` as a child process. Prints the import's
summary and rate, the child's peak RSS, and the threading check: every conversation is exactly one ticket
holding exactly its mails (the customer's and the desk's, which are agent messages), nothing is in the outbox.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from maild.config import load_config  # noqa: E402
from maild.storage.db import make_engine, make_sessionmaker  # noqa: E402
from maild.storage.models import Message, OutboxMessage, Ticket  # noqa: E402

DESK = "support@example.com"
START = dt.datetime(2024, 11, 1, 8, 0, tzinfo=dt.UTC)
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
    "monitor",
    "keyboard",
    "contract",
    "payment",
]


@dataclass(frozen=True)
class Spec:
    conversation: int
    k: int  # position in the conversation
    kind: str  # new | customer | desk
    date: dt.datetime | None
    style: str  # both | refs | irt: which threading headers a reply carries
    attachment: int  # bytes, 0 for none


def _sizes(rng: random.Random, conversations: int, mails: int) -> list[int]:
    """Conversation lengths 1..8 summing to `mails`."""
    base, extra = divmod(mails, conversations)
    sizes = [base + (1 if c < extra else 0) for c in range(conversations)]
    for _ in range(conversations * 2):
        i, j, d = rng.randrange(conversations), rng.randrange(conversations), rng.randint(1, 3)
        if i != j and sizes[i] + d <= 8 and sizes[j] - d >= 1:
            sizes[i] += d
            sizes[j] -= d
    return sizes


def plan(seed: int, conversations: int, mails: int) -> list[list[Spec]]:
    rng = random.Random(seed)
    result = []
    for c, size in enumerate(_sizes(rng, conversations, mails)):
        when = START + dt.timedelta(seconds=rng.uniform(0, 700 * 86400))
        specs = [Spec(c, 0, "new", when, "", 0)]
        for k in range(1, size):
            when += dt.timedelta(seconds=rng.uniform(600, 3 * 86400))
            kind = "desk" if rng.random() < 0.3 else "customer"
            style = rng.choice(("both", "both", "refs", "irt"))
            undated = kind == "customer" and k == size - 1 and rng.random() < 0.04
            specs.append(Spec(c, k, kind, None if undated else when, style, 0))
        specs = [
            Spec(s.conversation, s.k, s.kind, s.date, s.style, rng.randint(20_000, 150_000))
            if rng.random() < 0.03
            else s
            for s in specs
        ]
        result.append(specs)
    return result


def message_id(seed: int, spec: Spec) -> str:
    token = hashlib.sha256(f"{seed}/{spec.conversation}/{spec.k}".encode()).hexdigest()[:24]
    host = "example.com" if spec.kind == "desk" else "mail.example.org"
    return f"<{token}.{spec.k}@{host}>"


def customer(c: int) -> tuple[str, str]:
    n = c % 900  # customers come back with new problems: separate conversations, separate tickets
    return f"Customer {n}", f"customer{n}@example.org"


def subject_of(seed: int, c: int) -> str:
    rng = random.Random(f"{seed}/subject/{c}")
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))).capitalize()


def render(seed: int, spec: Spec, conversation: list[Spec]) -> bytes:
    rng = random.Random(f"{seed}/{spec.conversation}/{spec.k}")
    name, address = customer(spec.conversation)
    subject = subject_of(seed, spec.conversation)
    earlier = conversation[: spec.k]
    head = []
    if spec.kind == "desk":
        head += [f"From: Support <{DESK}>", f"To: {name} <{address}>"]
    else:
        head += [f"From: {name} <{address}>", f"To: Support <{DESK}>"]
    if spec.k:
        subject = f"{rng.choice(('Re:', 'Re:', 'AW:', 'RE:'))} {subject}"
    head += [f"Subject: {subject}", f"Message-ID: {message_id(seed, spec)}"]
    if spec.date is not None:
        head.append(f"Date: {format_datetime(spec.date)}")
    if earlier:
        chain = " ".join(message_id(seed, s) for s in earlier)
        # In-Reply-To alone names the customer's own previous mail: the desk's is not stored.
        parent = (
            earlier[-1] if spec.style != "irt" else next(s for s in reversed(earlier) if s.kind != "desk")
        )
        if spec.style in ("both", "irt"):
            head.append(f"In-Reply-To: {message_id(seed, parent)}")
        if spec.style in ("both", "refs"):
            head.append(f"References: {chain}")
    lines = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(rng.randint(4, 30))
    ]
    body = "Hello,\n\n" + "\n".join(lines) + f"\n\nRegards,\n{'Support' if spec.kind == 'desk' else name}\n"
    if earlier:
        body += "\n" + "\n".join("> " + line for line in lines[:8]) + "\n"
    head.append("MIME-Version: 1.0")
    if not spec.attachment:
        parts = ["Content-Type: text/plain; charset=utf-8", "", body]
    else:
        data = base64.encodebytes(rng.randbytes(spec.attachment)).decode()
        parts = [
            'Content-Type: multipart/mixed; boundary="=-b"',
            "",
            "--=-b",
            "Content-Type: text/plain; charset=utf-8",
            "",
            body,
            "--=-b",
            "Content-Type: application/pdf",
            f'Content-Disposition: attachment; filename="scan-{spec.conversation}-{spec.k}.pdf"',
            "Content-Transfer-Encoding: base64",
            "",
            data,
            "--=-b--",
            "",
        ]
    return "\n".join([*head, *parts]).encode()


def write_mbox(path: Path, seed: int, plans: list[list[Spec]]) -> int:
    """The mbox in shuffled file order, written one mail at a time; its size."""
    order = [(c, k) for c, specs in enumerate(plans) for k in range(len(specs))]
    random.Random(f"{seed}/order").shuffle(order)
    with path.open("wb") as out:
        for c, k in order:
            raw = render(seed, plans[c][k], plans[c])
            raw = b"\n".join(b">" + line if line.startswith(b"From ") else line for line in raw.split(b"\n"))
            out.write(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n" + raw.rstrip(b"\n") + b"\n\n")
    return path.stat().st_size


def maildctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    program = Path(sys.executable).parent / "maildctl"
    proc = subprocess.run([str(program), "--config", str(config), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"maildctl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def reset_postgresql(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def check(config: Path, seed: int, plans: list[list[Spec]], summary: dict[str, Any]) -> list[str]:
    """What is wrong with the threading; empty when every conversation is exactly one ticket."""
    cfg = load_config(str(config))
    engine = make_engine(cfg.database_url)
    problems = []
    with make_sessionmaker(engine)() as session:
        ticket_of = dict(session.execute(select(Message.message_id, Message.ticket_id)).all())
        kind_of = dict(session.execute(select(Message.message_id, Message.kind)).all())
        per_ticket = Counter(ticket_of.values())
        ticket_count = session.scalar(select(func.count(Ticket.id)))
        outbox = session.scalar(select(func.count(OutboxMessage.id)))
    engine.dispose()
    customer_mails = sum(1 for specs in plans for s in specs if s.kind != "desk")
    desk_mails = sum(1 for specs in plans for s in specs if s.kind == "desk")
    if ticket_count != len(plans):
        problems.append(f"{ticket_count} tickets for {len(plans)} conversations")
    if outbox:
        problems.append(f"{outbox} outbox rows (an import sends nothing)")
    expected = (len(plans), customer_mails - len(plans), desk_mails, 0)
    got = (summary["created"], summary["threaded"], summary["desk_replies"], summary["desk_own_mail"])
    if got != expected:
        problems.append(f"created/threaded/desk replies/own unthreaded {got}, expected {expected}")
    for specs in plans:
        ids = [message_id(seed, s) for s in specs]
        found = {ticket_of.get(i) for i in ids}
        if len(found) != 1 or None in found or per_ticket[next(iter(found))] != len(ids):
            problems.append(f"conversation {specs[0].conversation}: tickets {found}, {len(ids)} mails")
    kinds = Counter(kind_of.values())
    if kinds["agent"] != desk_mails:
        problems.append(f"{kinds['agent']} agent messages for {desk_mails} desk mails")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=2500)
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    backend = "postgresql" if args.database_url else "sqlite"
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        plans = plan(args.seed, args.conversations, args.mails)
        mbox = work / "backlog.mbox"
        size = write_mbox(mbox, args.seed, plans)
        mails = sum(len(p) for p in plans)
        attachments = sum(1 for p in plans for s in p if s.attachment)
        undated = sum(1 for p in plans for s in p if s.date is None)
        print(
            f"generated {mails} mails in {len(plans)} conversations ({attachments} with attachments, "
            f"{undated} undated), {size / 1e6:.1f} MB, in {time.perf_counter() - started:.1f} s"
        )
        data_dir = work / "data"
        config = work / "maild.toml"
        lines = [f'data_dir = "{data_dir}"']
        if args.database_url:
            reset_postgresql(args.database_url)
            lines += ["[database]", f'url = "{args.database_url}"']
        config.write_text("\n".join(lines) + "\n")
        maildctl(config, "init")
        maildctl(
            config, "desk", "add", "support", "--address", DESK, "--pattern", "SUP-{{yy}}-{{mm}}-{{nr-m}}"
        )
        proc = maildctl(config, "import", "mbox", str(mbox), "--desk", "support", "--json")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = json.loads(proc.stdout)
        print(f"{backend}: {json.dumps(summary)}")
        print(
            f"{backend}: {summary['mails']} mails in {summary['elapsed_s']:.1f} s "
            f"(index {summary['index_s']:.1f} s) = {summary['rate_per_s']:.1f} mail/s; "
            f"peak RSS of maildctl {peak_kb / 1024:.0f} MiB"
        )
        problems = check(config, args.seed, plans, summary)
        if problems:
            print(f"threading check FAILED ({len(problems)} problems):")
            for problem in problems[:20]:
                print(f"  {problem}")
            raise SystemExit(1)
        print(
            f"threading check passed: {len(plans)} conversations = {summary['created']} tickets, each with "
            f"exactly its mails; {summary['desk_replies']} desk mails stored as its answers; outbox empty"
        )


if __name__ == "__main__":
    main()
